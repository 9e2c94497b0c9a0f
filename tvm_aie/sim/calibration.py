"""Calibration: the simulator against published measurements (``calibration.json``).

Each row names a published figure, its source, and the workload that reproduces it; this module
runs the workload on the simulator in timing mode and puts the two side by side. Steady-state
figures (throughput, efficiency) are measured as published ones are: the pace per call or per row
block once the pipeline is full, from two runs that differ only in how many calls they make, so
pipeline fill and drain cancel out.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..target import get_device
from .array import simulate
from .workloads import dense_net_program, dense_program, kernel_chain_program

TABLE = Path(__file__).with_name("calibration.json")
CALLS = (4, 8)  # calls per run of the two runs a steady-state pace is measured from


def rows() -> list[dict]:
    with open(TABLE, encoding="utf-8") as f:
        return json.load(f)["rows"]


def _cycles(program) -> int:
    return simulate(program, mode="timing").report.cycles


def _kernel(row: dict) -> float:
    """Cycles of one call on one tile."""
    program = kernel_chain_program(row["m"], row["k"], row["n"], device=row["device"],
                                   out_dtype=row["out_dtype"])
    return _cycles(program)


def _pack(row: dict) -> float:
    """TOPS of ``tiles`` tiles in packs of ``length``, at the pack's steady-state pace."""
    lo, hi = (_cycles(kernel_chain_program(row["m"], row["k"], row["n"], row["length"], calls,
                                           device=row["device"], out_dtype=row["out_dtype"]))
              for calls in CALLS)
    pace = (hi - lo) / (CALLS[1] - CALLS[0])
    ops = 2 * row["m"] * row["k"] * row["n"] * row["tiles"]
    return ops / pace * get_device(row["device"]).clock_hz / 1e12


def _layer(row: dict) -> float:
    """Steady-state cycles of one call of the layer's kernel alone over its pace per row block."""
    tm = row["tm"]
    runs = [dense_program(tm * calls, row["k"], row["n"], row["n_par"], row["cascade"],
                          device=row["device"], tm=tm, io=row.get("io", "ddr"))
            for calls in CALLS]
    lo, hi = (simulate(p, mode="timing").report for p in runs)
    pace = (hi.cycles - lo.cycles) / (CALLS[1] - CALLS[0])
    kernel = max(t["busy"] for t in hi.per_tile.values()) / CALLS[1]
    return kernel / pace


def _network(row: dict) -> float:
    """Cycles from the first input to the first output of one batch through the network."""
    program = dense_net_program(row["layers"], row["grids"], row["batch"], device=row["device"],
                                io=row["io"])
    return simulate(program, mode="timing").report.first_output


SIMULATE = {"kernel": _kernel, "pack": _pack, "layer": _layer, "network": _network}
# what each kind measures: one kernel alone, or a whole design end to end
SCOPE = {"kernel": "kernel", "pack": "kernel", "layer": "end-to-end", "network": "end-to-end"}


def calibrate() -> list[dict]:
    """Every row with ``simulated`` and ``error`` ((simulated - published) / published) added."""
    out = []
    for row in rows():
        sim = SIMULATE[row["kind"]](row)
        out.append({**row, "simulated": sim, "error": (sim - row["published"]) / row["published"]})
    return out


def median_abs_error(results: list[dict]) -> float:
    return statistics.median(abs(r["error"]) for r in results)


def format_table(results: list[dict]) -> str:
    """The table the calibration script and test print: one line per row, then the sources."""
    lines = [f"{'row':<26}{'kind':>11}{'unit':>7}{'published':>11}{'simulated':>11}{'error':>9}"
             "  what"]
    for r in results:
        fmt = "{:>11.3f}" if r["unit"] == "ratio" else "{:>11.1f}"
        lines.append(f"{r['id']:<26}{SCOPE[r['kind']]:>11}{r['unit']:>7}"
                     + fmt.format(r["published"]) + fmt.format(r["simulated"])
                     + f"{100 * r['error']:>+8.1f}%  {r['what']}")
    for scope in ("kernel", "end-to-end"):
        part = [r for r in results if SCOPE[r["kind"]] == scope]
        if part:
            lines.append(f"median |error| over {len(part)} {scope} rows: "
                         f"{100 * median_abs_error(part):.1f}%, largest "
                         f"{100 * max(abs(r['error']) for r in part):.1f}%")
    lines.append(f"median |error| over all {len(results)} rows: "
                 f"{100 * median_abs_error(results):.1f}%")
    lines += ["", "sources:"] + [f"  {r['id']}: {r['source']}" for r in results]
    return "\n".join(lines)
