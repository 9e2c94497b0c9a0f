"""Simulator speed: wall time per simulated inference in timing mode, for one int8 dense layer
spread over 1 to 296 tiles of a VE2802 (the tuner's use: a new program each time, so the time
includes loading and checking the program, not only running it).

Each design is built once through the codegen; it is then simulated ``--reps`` times and the
median wall time and CPU time are printed (CPU time is less disturbed by other work on the
machine). The target for the full-array design (296 tiles) is 50 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from tvm_aie.sim import simulate
from tvm_aie.sim.workloads import dense_program

# (n_par, cascade): tiles = n_par * cascade, up to 8 chains of 37 = 296 of VE2802's 304 tiles
GRIDS = [(1, 1), (2, 2), (4, 4), (8, 8), (8, 16), (8, 24), (8, 37)]
TARGET_MS = 50.0


def bench(n_par: int, cascade: int, rows: int, reps: int) -> dict:
    program = dense_program(rows, 64 * cascade, 64 * n_par, n_par, cascade)
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        report = simulate(program, mode="timing").report
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"tiles": report.tiles_used, "cycles": report.cycles,
            "wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256, help="rows M of the dense layer (default 256)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'tiles':>6}{'layer MxKxN':>18}{'cycles':>10}{'wall ms':>10}{'cpu ms':>9}")
    last = None
    for n_par, cascade in GRIDS:
        r = bench(n_par, cascade, args.rows, args.reps)
        shape = f"{args.rows}x{64 * cascade}x{64 * n_par}"
        print(f"{r['tiles']:>6}{shape:>18}{r['cycles']:>10,}{r['wall_ms']:>10.1f}{r['cpu_ms']:>9.1f}")
        last = r
    ok = last["cpu_ms"] <= TARGET_MS
    print(f"full array ({last['tiles']} tiles): {last['cpu_ms']:.1f} ms CPU per inference "
          f"({'within' if ok else 'over'} the {TARGET_MS:.0f} ms target)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
