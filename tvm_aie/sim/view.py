"""Seeing a run: simulate a program once with a trace and write the trace JSON and the array PNG.

:func:`view` is the Python entry, :func:`main` the command line (``scripts/sim_view.py``; the
``tvm-aie`` CLI can call ``main(argv)`` too). The program is a saved AIE program (``.npz``, as
:meth:`~tvm_aie.codegen.program.Program.to_bytes` writes it) or a dense layer built on the spot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..codegen.program import Program
from .array import simulate
from .plot import plot_array
from .trace import write_trace
from .workloads import dense_program


def view(program, trace_path=None, png_path=None, inputs=None, mode: str = "timing"):
    """Run ``program`` once recording a trace; write what is asked for; return the SimResult."""
    result = simulate(program, inputs, mode=mode, trace=trace_path is not None)
    if trace_path is not None:
        write_trace(result, program, trace_path)
    if png_path is not None:
        plot_array(program, result.report, png_path)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--program", type=Path, help="a saved AIE program (.npz)")
    src.add_argument("--dense", type=int, nargs=3, metavar=("M", "K", "N"),
                     help="an int8 dense layer M x K x N built through the codegen")
    ap.add_argument("--grid", type=int, nargs=2, default=(2, 2), metavar=("N_PAR", "CASCADE"),
                    help="tile grid of --dense (default 2 2)")
    ap.add_argument("--device", default="ve2802", help="device or target tag of --dense")
    ap.add_argument("--trace", type=Path, help="write the Perfetto/Chrome trace JSON here")
    ap.add_argument("--png", type=Path, help="write the array picture here")
    args = ap.parse_args(argv)
    if args.program is not None:
        program = Program.from_bytes(args.program.read_bytes())
    else:
        program = dense_program(*args.dense, *args.grid, device=args.device)
    rep = view(program, args.trace, args.png).report
    print(f"{program.name} on {program.device}: {rep.tiles_used} cores, {rep.cycles:,} cycles, "
          f"{100 * rep.efficiency:.1f}% of peak MACs")
    for what, path in (("trace", args.trace), ("picture", args.png)):
        if path is not None:
            print(f"{what}: {path}")
    return 0
