"""Compile time and simulator speed per zoo model (batch 1, default plan): every model in int8
QDQ and in int16 QDQ (int16 activations, int8 weights: the int16xint8 datapath), and the
transformer in bf16 (the fp32 model built with ``precision="bf16"``).

Compile time is ``tvm_aie.build`` end to end (ONNX import not included: ``load_onnx`` is timed
apart); simulator speed is one timing-mode run of every offloaded subgraph, as ``tvm_aie.report``
does it, in simulated AIE cycles per second of wall time.

    .venv/bin/python scripts/bench_models.py
"""

from __future__ import annotations

import sys
import time

import benchlib
import tvm_aie
from tvm_aie import zoo


# (model, precision) rows, in order: int8 and int16 QDQ models, fp32 models built in bf16
VARIANTS = [(name, "int8") for name in zoo.names()] + \
    [(name, "int16") for name in zoo.names()] + [("transformer", "bf16")]


def model_row(name: str, precision: str) -> dict:
    model = zoo.onnx_model(name, quant=None if precision == "bf16" else precision)
    t0 = time.perf_counter()
    mod = tvm_aie.load_onnx(model)
    t1 = time.perf_counter()
    ex = tvm_aie.build(mod, target=benchlib.DEVICE,
                       precision="bf16" if precision == "bf16" else None)
    t2 = time.perf_counter()
    rep = tvm_aie.report(ex)
    t3 = time.perf_counter()
    cycles = sum(s.cycles for s in rep.subgraphs)
    return {"name": name, "precision": precision, "import_s": t1 - t0, "build_s": t2 - t1,
            "simulate_s": t3 - t2,
            "subgraphs": len(rep.subgraphs), "tiles": sum(s.tiles for s in rep.subgraphs),
            "cycles": cycles, "offloaded_share": rep.offloaded_share,
            "cycles_per_s": cycles / (t3 - t2) if t3 > t2 else 0.0}


def run() -> dict:
    rows = []
    for name, precision in VARIANTS:
        try:
            rows.append(model_row(name, precision))
        except Exception as err:  # pylint: disable=broad-except  # a failing model is a result
            rows.append({"name": name, "precision": precision,
                         "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"})
    data = {"device": benchlib.DEVICE, "rows": rows}
    benchlib.save("models", data)
    return data


def markdown(data: dict) -> str:
    ok = [r for r in data["rows"] if "error" not in r]
    out = [benchlib.table(
        ["model", "precision", "MACs on the array", "subgraphs", "tiles", "cycles", "import s",
         "build s", "simulate s", "simulated cycles/s"],
        [[r["name"], r["precision"], f"{100 * r['offloaded_share']:.0f}%", r["subgraphs"],
          r["tiles"],
          f"{r['cycles']:,}", f"{r['import_s']:.2f}", f"{r['build_s']:.2f}",
          f"{r['simulate_s']:.2f}", f"{r['cycles_per_s']:,.0f}" if r["subgraphs"] else "nothing offloaded"]
         for r in ok])]
    out += [f"\n- {r['name']} {r['precision']} does not build: {r['error']}"
            for r in data["rows"] if "error" in r]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(print(markdown(run())))
