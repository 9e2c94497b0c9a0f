"""The main job: compile the bundled models for an AIE device, run them on the simulator, check them.

For each model (the whole zoo in fp32, int8, int16 and bf16, or ``--model NAME``; ``--precisions``
picks some): load the ONNX model with ``tvm_aie.load_onnx``, ``tvm_aie.build`` it, run it through
the Relax VM (offloaded subgraphs on the simulator, the rest on the CPU), and compare with
* fp32: onnxruntime (relative 1e-4 of the output's largest magnitude) and TVM on the CPU (1e-5);
* int8 and int16 QDQ (int16: onnxruntime's QInt16 activations with int8 weights, the int16xint8
  datapath): TVM on the CPU with the array's integer arithmetic (bit-exact) and onnxruntime with
  graph optimisations off on the QDQ model (within one output quantisation step: it dequantises
  and sums in float32, so a value on a rounding boundary can land a step away; the allowances
  over one step, measured and explained, are in ``ORT_STEPS``);
* bf16 (the fp32 model built with ``precision="bf16"``): onnxruntime on the fp32 model, within
  2e-2 of its largest output.
Then print one table and each model's report. The exit status is 0 only if every check passes;
``--min-share`` also fails models that put a smaller share of their MACs on the array.

The share of MACs on the array is the report's offloaded MACs over the model's MACs counted from
the ONNX graph (MatMul, Gemm, Conv), independently of tvm-aie; where tvm-aie's own count of the
model differs, the demo says so.
Latency and throughput are the array's: the offloaded subgraphs one after another, from the
simulator's cycle counts at the device clock; CPU parts of a model are not timed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import tvm

import tvm_aie
from tvm_aie import zoo
from tvm_aie.reference import build_reference

PRECISIONS = ("fp32", "int8", "int16", "bf16")
# the issue's zoo in every precision, then the checks the demo started with
ZOO = ["jet_mlp", "autoencoder", "lenet", "mobilenet_block", "transformer", "squeezenet_fire"]
MODELS = [(n, p) for n in ZOO for p in PRECISIONS] + [("mlp_1024", "int8"), ("mlp_sin", "fp32")]
# int16 QDQ outputs are whole steps apart; the fraction over that is float32 rounding of the
# dequantised values (2^-24 of outputs up to 2^15 steps: 0.2% of a step)
STEP_SLACK = 1.01
# onnxruntime steps allowed over one, and why. The int16 transformer is bit-exact with the integer
# reference, but each of its integer layers rounds up to a step from onnxruntime's float QDQ and
# its layer norms (on the CPU) scale those up: measured, 38 of its 1024 outputs are 2 or 3 steps
# from onnxruntime, while TVM evaluating the same QDQ graph in float is within one
ORT_STEPS = {("transformer", "int16"): (3, "integer rounding through its layer norms")}


def run_vm(ex, x: np.ndarray) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def check_model(name: str, precision: str, device: str, batch: int) -> dict:
    quant = precision if precision in zoo.QUANTS else None
    model = zoo.onnx_model(name, quant=quant, batch=batch)
    x = zoo.sample_input(name, batch=batch)
    t0 = time.perf_counter()
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target=device,
                       precision="bf16" if precision == "bf16" else None)
    compile_s = time.perf_counter() - t0
    y = run_vm(ex, x)
    onnx_ref = zoo.run_onnxruntime(model, x)
    if quant:
        ref = run_vm(build_reference(tvm_aie.load_onnx(model)), x)
        exact = np.array_equal(y, ref)
        ort_err = float(np.max(np.abs(y - onnx_ref)) / zoo.output_scale(model))
        allowed, why = ORT_STEPS.get((name, precision), (1, ""))
        ok = exact and ort_err <= allowed * STEP_SLACK
        error = f"{ort_err:.2f} step"
        check = (f"bit-exact vs TVM CPU: {exact}; vs onnxruntime: {ort_err:.2f} quant steps"
                 + (f" (allowed {allowed}: {why})" if why else ""))
    elif precision == "bf16":
        ort_rel = float(np.max(np.abs(y - onnx_ref)) / (float(np.max(np.abs(onnx_ref))) + 1e-30))
        ok = ort_rel <= 2e-2
        error = f"{ort_rel:.1e} rel"
        check = f"max err vs onnxruntime (fp32) {ort_rel:.1e} of its largest output"
    else:
        ref = run_vm(tvm.compile(tvm_aie.load_onnx(model), target="llvm"), x)
        scale = float(np.max(np.abs(onnx_ref))) + 1e-30
        ort_rel = float(np.max(np.abs(y - onnx_ref)) / scale)
        ok = ort_rel <= 1e-4 and np.allclose(y, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(ref)))
        error = f"{ort_rel:.1e} rel"
        check = (f"max rel err vs onnxruntime {ort_rel:.1e}; "
                 f"vs TVM CPU {np.max(np.abs(y - ref)) / scale:.1e}")
    rep = tvm_aie.report(ex)
    return {"model": f"{name} {precision}", "ok": bool(ok), "error": error, "check": check,
            "report": rep, "share": rep.offloaded_macs / zoo.macs(model),
            "macs": (rep.model_macs, zoo.macs(model)), "compile_s": compile_s}


def table(rows: list, batch: int) -> str:
    """One line per model: where its MACs run, how fast the array runs it, how close it is."""
    lines = [f"{'model':<22}{'ok':>4}{'MACs on array':>15}{'tiles':>7}{'latency us':>12}"
             f"{'inf/s':>11}{'eff':>7}{'max error':>13}{'compile s':>11}"]
    for r in rows:
        rep = r["report"]
        tiles = sum(s.tiles for s in rep.subgraphs)
        eff = (sum(s.macs for s in rep.subgraphs) /
               max(1, sum(s.cycles * s.peak_macs_per_cycle for s in rep.subgraphs)))
        rate = f"{batch / (rep.latency_ns * 1e-9):>11,.0f}" if rep.latency_ns else f"{'-':>11}"
        lines.append(f"{r['model']:<22}{'yes' if r['ok'] else 'NO':>4}"
                     f"{100 * r['share']:>14.1f}%{tiles:>7}{rep.latency_ns / 1e3:>12.2f}"
                     f"{rate}{100 * eff:>6.1f}%{r['error']:>13}{r['compile_s']:>11.1f}")
    return "\n".join(lines)


def _precisions(value: str) -> tuple:
    """``--precisions``' type: a comma-separated subset of :data:`PRECISIONS`."""
    picked = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in picked if p not in PRECISIONS]
    if unknown or not picked:
        named = ", ".join(map(repr, unknown)) or repr(value)
        raise argparse.ArgumentTypeError(f"unknown precision {named}; known: "
                                         f"{', '.join(PRECISIONS)}")
    return picked


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="aie", help="target tag (default: aie = aie-ml/vek280)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", choices=zoo.names(large=True),
                    help="one bundled model (default: the zoo)")
    ap.add_argument("--large", action="store_true",
                    help="also the full-size networks at 224 (ResNet-18/50, MobileNetV2, "
                         "EfficientNet-B0, ViT-Tiny, DeiT-Small, BERT-base) in fp32 and int8; slow")
    ap.add_argument("--precisions", type=_precisions, default=PRECISIONS,
                    help=f"comma-separated, of {','.join(PRECISIONS)} (default: all)")
    ap.add_argument("--min-share", type=float, default=0.0,
                    help="fail models with a smaller share of MACs on the array (0..1)")
    args = ap.parse_args(argv)
    models = [(args.model, p) for p in PRECISIONS] if args.model else \
        MODELS + ([(n, p) for n in zoo.LARGE for p in ("fp32", "int8")] if args.large else [])
    rows, failed = [], []
    for name, precision in models:
        if precision not in args.precisions:
            continue
        try:
            rows.append(check_model(name, precision, args.device, args.batch))
        except Exception as err:  # pylint: disable=broad-except  # one model's failure is a result
            failed.append(f"{name} {precision}: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0]}")
            print(f"{failed[-1]}", flush=True)
            continue
        print(f"{rows[-1]['model']}: {rows[-1]['check']}", flush=True)
    for r in rows:
        print(f"\n== {r['model']} ==\n{r['report']}")
    low = [r["model"] for r in rows if r["share"] < args.min_share]
    print(f"\n{table(rows, args.batch)}")
    for r in rows:
        if r["macs"][0] != r["macs"][1]:
            print(f"{r['model']}: tvm-aie counts {r['macs'][0]:,} MACs in the model, the ONNX "
                  f"graph has {r['macs'][1]:,}")
    print(f"{sum(r['ok'] for r in rows)}/{len(rows)} models match their references; "
          f"{sum(r['share'] >= 0.95 for r in rows)}/{len(rows)} offload >= 95% of their MACs")
    if low:
        print(f"below --min-share {args.min_share:.0%}: {', '.join(low)}")
    if failed:
        print(f"{len(failed)} failed to build or run:\n  " + "\n  ".join(failed))
    return 0 if all(r["ok"] for r in rows) and not low and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
