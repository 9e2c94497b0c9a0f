"""The main job: compile the bundled models for an AIE device, run them on the simulator, check them.

For each model: import the ONNX file with TVM's frontend, ``tvm_aie.build`` it, run it through the
Relax VM (offloaded subgraphs on the simulator), and compare with
* fp32: TVM on the CPU (relative 1e-5) and onnxruntime;
* int8 QDQ: TVM on the CPU with the array's integer arithmetic (bit-exact) and onnxruntime on the
  QDQ model (within one quantisation step).
Then print one table and each model's report.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import tvm
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.reference import build_reference

MODELS = [("jet_mlp", None), ("jet_mlp", "int8"), ("mlp_1024", "int8"), ("mlp_sin", None)]


def run_vm(ex, x: np.ndarray) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def check_model(name: str, quant, device: str, batch: int) -> dict:
    model = zoo.onnx_model(name, quant=quant, batch=batch)
    x = zoo.sample_input(name, batch=batch)
    t0 = time.perf_counter()
    ex = tvm_aie.build(from_onnx(model, keep_params_in_input=False), target=device)
    compile_s = time.perf_counter() - t0
    y = run_vm(ex, x)
    onnx_ref = zoo.run_onnxruntime(model, x)
    if quant == "int8":
        ref = run_vm(build_reference(from_onnx(model, keep_params_in_input=False)), x)
        exact = np.array_equal(y, ref)
        step = zoo.output_scale(model)
        ort_err = float(np.max(np.abs(y - onnx_ref)) / step)
        ok = exact and ort_err <= 1.0
        check = f"bit-exact vs TVM CPU: {exact}; vs onnxruntime: {ort_err:.2f} quant steps"
    else:
        ref = run_vm(tvm.compile(from_onnx(model, keep_params_in_input=False), target="llvm"), x)
        rel = float(np.max(np.abs(y - ref)) / (np.max(np.abs(ref)) + 1e-30))
        ok = np.allclose(y, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(ref)))
        check = f"max rel err vs TVM CPU {rel:.1e}; vs onnxruntime {np.max(np.abs(y - onnx_ref)):.1e}"
    rep = tvm_aie.report(ex)
    return {"model": f"{name} {quant or 'fp32'}", "ok": bool(ok), "check": check, "report": rep,
            "compile_s": compile_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="aie", help="target tag (default: aie = aie-ml/vek280)")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    rows = [check_model(n, q, args.device, args.batch) for n, q in MODELS]
    print(f"\n{'model':<18}{'ok':>4}{'MACs on array':>15}{'tiles':>7}{'latency us':>12}"
          f"{'eff':>7}{'compile s':>11}  check")
    for r in rows:
        rep = r["report"]
        tiles = sum(s.tiles for s in rep.subgraphs)
        eff = (sum(s.macs for s in rep.subgraphs) /
               max(1, sum(s.cycles * s.peak_macs_per_cycle for s in rep.subgraphs)))
        print(f"{r['model']:<18}{'yes' if r['ok'] else 'NO':>4}{100 * rep.offloaded_share:>14.1f}%"
              f"{tiles:>7}{rep.latency_ns / 1e3:>12.2f}{100 * eff:>6.1f}%{r['compile_s']:>11.1f}"
              f"  {r['check']}")
    for r in rows:
        print(f"\n== {r['model']} ==\n{r['report']}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
