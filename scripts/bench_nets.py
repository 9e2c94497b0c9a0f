"""Where the zoo's full-size networks (``zoo.LARGE``) stand on the array: the baseline the work on
full-size CNNs and transformers improves.

For each network in fp32 and int8 QDQ: ``tvm_aie.build`` it for aie-ml/vek280 (timed, in a child
process given ``--limit`` seconds for the build and the report; a build that takes longer is
skipped and flagged), then print the share of its MACs on the array (the report's offloaded MACs
over ``zoo.macs``), the programs, their tiles (summed), the simulated latency of the offloaded
programs one after another, the build time (until the error, for a build that fails), and
onnxruntime's latency of the same ONNX model on this machine's CPU (median of ``--runs``, default
graph optimisations). A build error is one line.

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


def build_row(model, out) -> None:
    """Build ``model`` and put what its report says (or the error) on queue ``out``."""
    t0 = time.perf_counter()
    try:
        ex = tvm_aie.build(tvm_aie.load_onnx(model), target=DEVICE)
        build_s = time.perf_counter() - t0
        rep = tvm_aie.report(ex)
        out.put({"offloaded_macs": rep.offloaded_macs, "programs": len(rep.subgraphs),
                 "tiles": sum(s.tiles for s in rep.subgraphs), "latency_us": rep.latency_ns / 1e3,
                 "build_s": build_s})
    except Exception as err:  # pylint: disable=broad-except  # a failing build is a result
        out.put({"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0]}",
                 "build_s": time.perf_counter() - t0})


def measure(name: str, precision: str, limit: float, runs: int) -> dict:
    model = zoo.onnx_model(name, quant=precision if precision in zoo.QUANTS else None)
    row = {"model": name, "precision": precision, "macs": zoo.macs(model),
           "cpu_ms": ort_latency_ms(model, zoo.sample_input(name), runs)}
    out = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=build_row, args=(model, out))
    child.start()
    child.join(limit)
    if child.is_alive():
        child.kill()
        child.join()
        return {**row, "error": f"skipped: build and report over {limit:.0f} s"}
    return {**row, **(out.get() if not out.empty() else {"error": f"exit {child.exitcode}"})}


def line(r: dict) -> str:
    head = f"{r['model']:<17}{r['precision']:<6}"
    tail = (f"{r['build_s']:>9.1f}" if "build_s" in r else f"{'-':>9}") + f"{r['cpu_ms']:>11.1f}"
    if "error" in r:
        return f"{head}{'-':>9}{'-':>6}{'-':>7}{'-':>13}{tail}  {r['error']}"
    return (f"{head}{100 * r['offloaded_macs'] / r['macs']:>8.1f}%{r['programs']:>6}"
            f"{r['tiles']:>7}{r['latency_us']:>13,.1f}{tail}")


HEADER = (f"{'model':<17}{'prec':<6}{'on array':>9}{'progs':>6}{'tiles':>7}{'sim lat us':>13}"
          f"{'build s':>9}{'ORT CPU ms':>11}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=zoo.LARGE, help="default: all")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="of fp32,int8")
    ap.add_argument("--limit", type=float, default=180, help="seconds for a build and its report")
    ap.add_argument("--runs", type=int, default=5, help="onnxruntime runs to take the median of")
    args = ap.parse_args(argv)
    print(HEADER, flush=True)
    for name in args.model or zoo.LARGE:
        for precision in args.precisions.split(","):
            print(line(measure(name, precision, args.limit, args.runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
