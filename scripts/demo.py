"""The main job: compile the bundled models for an AIE device, run them on the simulator, check them.

For each model (the whole zoo in fp32 and int8, or ``--model NAME``): load the ONNX model with
``tvm_aie.load_onnx``, ``tvm_aie.build`` it, run it through the Relax VM (offloaded subgraphs on the
simulator, the rest on the CPU), and compare with
* fp32: onnxruntime (relative 1e-4 of the output's largest magnitude) and TVM on the CPU (1e-5);
* int8 QDQ: TVM on the CPU with the array's integer arithmetic (bit-exact) and onnxruntime on the
  QDQ model (within one quantisation step).
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

# the issue's zoo in fp32 and int8, then the checks the demo started with
ZOO = ["jet_mlp", "autoencoder", "lenet", "mobilenet_block", "transformer", "squeezenet_fire"]
MODELS = [(n, q) for n in ZOO for q in (None, "int8")] + [("mlp_1024", "int8"), ("mlp_sin", None)]


def run_vm(ex, x: np.ndarray) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def check_model(name: str, quant, device: str, batch: int) -> dict:
    model = zoo.onnx_model(name, quant=quant, batch=batch)
    x = zoo.sample_input(name, batch=batch)
    t0 = time.perf_counter()
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target=device)
    compile_s = time.perf_counter() - t0
    y = run_vm(ex, x)
    onnx_ref = zoo.run_onnxruntime(model, x)
    if quant == "int8":
        ref = run_vm(build_reference(tvm_aie.load_onnx(model)), x)
        exact = np.array_equal(y, ref)
        ort_err = float(np.max(np.abs(y - onnx_ref)) / zoo.output_scale(model))
        ok = exact and ort_err <= 1.0
        error = f"{ort_err:.2f} step"
        check = f"bit-exact vs TVM CPU: {exact}; vs onnxruntime: {ort_err:.2f} quant steps"
    else:
        ref = run_vm(tvm.compile(tvm_aie.load_onnx(model), target="llvm"), x)
        scale = float(np.max(np.abs(onnx_ref))) + 1e-30
        ort_rel = float(np.max(np.abs(y - onnx_ref)) / scale)
        ok = ort_rel <= 1e-4 and np.allclose(y, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(ref)))
        error = f"{ort_rel:.1e} rel"
        check = (f"max rel err vs onnxruntime {ort_rel:.1e}; "
                 f"vs TVM CPU {np.max(np.abs(y - ref)) / scale:.1e}")
    rep = tvm_aie.report(ex)
    return {"model": f"{name} {quant or 'fp32'}", "ok": bool(ok), "error": error, "check": check,
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="aie", help="target tag (default: aie = aie-ml/vek280)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", choices=zoo.names(), help="one bundled model (default: the zoo)")
    ap.add_argument("--quant", choices=["fp32", "int8"], help="only this precision")
    ap.add_argument("--min-share", type=float, default=0.0,
                    help="fail models with a smaller share of MACs on the array (0..1)")
    args = ap.parse_args(argv)
    models = [(args.model, q) for q in (None, "int8")] if args.model else MODELS
    if args.quant:
        models = [(n, q) for n, q in models if (q or "fp32") == args.quant]
    rows = []
    for name, quant in models:
        rows.append(check_model(name, quant, args.device, args.batch))
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
    return 0 if all(r["ok"] for r in rows) and not low else 1


if __name__ == "__main__":
    sys.exit(main())
