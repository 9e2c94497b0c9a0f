"""Where the zoo's full-size networks (``zoo.LARGE``) stand on the array: the baseline the work on
full-size CNNs and transformers improves.

For each network in fp32 and int8 QDQ: ``tvm_aie.build`` it for aie-ml/vek280 (timed, in a child
process given ``--limit`` seconds for the build and the report; a build that takes longer is
skipped and flagged), then print the share of its MACs on the array (the report's offloaded MACs
over ``zoo.macs``), the programs, their tiles (summed), the simulated latency of the offloaded
programs one after another (every program's configuration included when there are several), the
share of the array's peak that latency means, the build time (until the error, for a build that
fails), and the CPU latency of the same model on this machine, measured in the same run:
onnxruntime (default graph optimisations) and TVM's own llvm build (``tvm.compile``), each the
median of ``--runs``, with the array's speedup over the faster of the two (for a model with at
least 99% of its MACs on the array: the CPU parts are not timed). A build error is one
line. ``scripts/benchmarks.py`` runs this as its part 5 (``run``/``markdown``).

    .venv/bin/python scripts/bench_nets.py [--model NAME] [--precisions fp32,int8] [--limit 180]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

import numpy as np

import tvm_aie
from tvm_aie import zoo

DEVICE = "aie-ml/vek280"
PRECISIONS = ("fp32", "int8")


def ort_latency_ms(model, x: np.ndarray, runs: int) -> float:
    """Median wall time of onnxruntime running ``model`` on ``x`` (after one warm-up run)."""
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run(None, {zoo.INPUT: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {zoo.INPUT: x})
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def tvm_latency_ms(model, x: np.ndarray, runs: int) -> float:
    """Median wall time of TVM's llvm build of ``model`` on this CPU (after one warm-up run)."""
    import tvm  # pylint: disable=import-outside-toplevel

    vm = tvm.relax.VirtualMachine(tvm.compile(tvm_aie.load_onnx(model), target="llvm"),
                                  tvm.cpu())
    arg = tvm.runtime.tensor(x)
    vm["main"](arg)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        vm["main"](arg)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def build_row(model, out) -> None:
    """Build ``model`` and put what its report says (or the error) on queue ``out``."""
    t0 = time.perf_counter()
    try:
        ex = tvm_aie.build(tvm_aie.load_onnx(model), target=DEVICE)
        build_s = time.perf_counter() - t0
        rep = tvm_aie.report(ex)
        dev = tvm_aie.get_device(DEVICE)
        peak = dev.compute_tiles * dev.peak_macs_per_cycle(
            rep.subgraphs[0].layers[0]["precision"] if rep.subgraphs else "int8")
        out.put({"offloaded_macs": rep.offloaded_macs, "programs": len(rep.subgraphs),
                 "tiles": max((s.tiles for s in rep.subgraphs), default=0),
                 "latency_us": rep.latency_ns / 1e3, "build_s": build_s,
                 "peak_share": rep.offloaded_macs / (rep.latency_ns * 1e-9 * dev.clock_hz * peak)
                 if rep.latency_ns else 0.0})
    except Exception as err:  # pylint: disable=broad-except  # a failing build is a result
        out.put({"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0]}",
                 "build_s": time.perf_counter() - t0})


def measure(name: str, precision: str, limit: float, runs: int) -> dict:
    model = zoo.onnx_model(name, quant=precision if precision in zoo.QUANTS else None)
    x = zoo.sample_input(name)
    row = {"model": name, "precision": precision, "macs": zoo.macs(model),
           "cpu_ms": ort_latency_ms(model, x, runs), "tvm_ms": tvm_latency_ms(model, x, runs)}
    out = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=build_row, args=(model, out))
    child.start()
    child.join(limit)
    if child.is_alive():
        child.kill()
        child.join()
        return {**row, "error": f"skipped: build and report over {limit:.0f} s"}
    return {**row, **(out.get() if not out.empty() else {"error": f"exit {child.exitcode}"})}


COLUMNS = ("model", "precision", "MACs on array", "programs", "tiles (max)", "latency ms",
           "frames/s", "% of peak", "build s", "ORT CPU ms", "TVM llvm ms", "speedup")


def cells(r: dict) -> list:
    """One row of :data:`COLUMNS`; a failed build keeps its CPU columns and says why."""
    cpu = [f"{r['cpu_ms']:.1f}", f"{r['tvm_ms']:.1f}"]
    build = f"{r['build_s']:.1f}" if "build_s" in r else "-"
    if "error" in r:
        return [r["model"], r["precision"], *["-"] * 6, build, *cpu, r["error"]]
    ms = r["latency_us"] / 1e3
    return [r["model"], r["precision"], f"{100 * r['offloaded_macs'] / r['macs']:.1f}%",
            str(r["programs"]), str(r["tiles"]), f"{ms:.2f}", f"{1e3 / ms:,.0f}" if ms else "-",
            f"{100 * r['peak_share']:.2f}%", build, *cpu, _speedup(r, ms)]


def _speedup(r: dict, ms: float) -> str:
    """The array's speedup over the faster CPU figure, for a model (nearly) all on the array:
    the CPU parts of a model are not timed, so a smaller share would flatter it."""
    share = r["offloaded_macs"] / r["macs"]
    if share < 0.99 or not ms:
        return f"n/a ({100 * (1 - share):.0f}% of MACs on the CPU)"
    return f"{min(r['cpu_ms'], r['tvm_ms']) / ms:.1f}x"


def run(limit: float = 180, runs: int = 3) -> dict:
    """Every large zoo network in fp32 and int8 (``scripts/benchmarks.py``'s part 5)."""
    return {"rows": [measure(name, precision, limit, runs)
                     for name in zoo.LARGE for precision in PRECISIONS]}


def markdown(data: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in data["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=zoo.LARGE, help="default: all")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="of fp32,int8")
    ap.add_argument("--limit", type=float, default=180, help="seconds for a build and its report")
    ap.add_argument("--runs", type=int, default=5, help="onnxruntime runs to take the median of")
    args = ap.parse_args(argv)
    print(" | ".join(COLUMNS), flush=True)
    for name in args.model or zoo.LARGE:
        for precision in args.precisions.split(","):
            print(" | ".join(cells(measure(name, precision, args.limit, args.runs))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
