"""What the benchmark scripts share: one-layer ONNX models, compiling a subgraph with pinned configs,
steady-state intervals, markdown tables and where results go.

Every figure the benchmarks print comes from the simulator through tvm-aie's own report
(:func:`tvm_aie.report.subgraph_report`), so the benchmarks measure what ``tvm_aie.report`` shows a
user. Results are written as JSON under ``out/bench/`` so ``scripts/benchmarks.py`` can render
``docs/benchmarks.md`` from them without rerunning anything.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from tvm_aie import zoo
from tvm_aie.codegen.relax_ext import compile_function
from tvm_aie.frontend import load_onnx
from tvm_aie.partition import partition_for_aie
from tvm_aie.report import subgraph_report
from tvm_aie.target import get_device

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
DEVICE = "aie-ml/vek280"  # VE2802, the device of AIE4ML's published figures


def device():
    return get_device(DEVICE)


def offloaded_functions(model) -> list:
    """``[(name, Relax function)]`` of every subgraph the partitioner gives the array."""
    mod = partition_for_aie(load_onnx(model), DEVICE)
    return [(gv.name_hint, f) for gv, f in mod.functions.items()
            if f.attrs is not None and "Codegen" in f.attrs]


def compile_subgraph(func, name: str, pinned: dict | None = None, io: str = "ddr",
                     precision: str = "fp32"):
    """``(program, seconds)``: the AIE program of one subgraph, configs pinned per layer index;
    ``io``: a dense chain's input and output through shim DMA from DDR or PL stream ports;
    ``precision``: the datapath of its fp32 layers."""
    t0 = time.perf_counter()
    program = compile_function(func, name, device(), pinned, io=io, precision=precision)
    return program, time.perf_counter() - t0


def simulate(program, name: str = "aie_0"):
    """``(SubgraphReport, seconds)``: one timing-mode run of the program, as ``tvm_aie.report``."""
    t0 = time.perf_counter()
    rep = subgraph_report(name, program)
    return rep, time.perf_counter() - t0


def dense_cycles(m: int, k: int, n: int, config, precision: str = "int8", io: str = "ddr"):
    """The report of one dense layer compiled with ``config`` pinned (``io`` as
    :func:`compile_subgraph`'s), and the compile and simulation seconds. ``bfloat16`` is the
    fp32 model built as ``build(..., precision="bf16")`` builds it."""
    bf16 = precision == "bfloat16"
    (name, func), = offloaded_functions(zoo.dense_layer(m, k, n, "float32" if bf16 else precision))
    program, t_compile = compile_subgraph(func, name, {0: config}, io,
                                          "bf16" if bf16 else "fp32")
    rep, t_sim = simulate(program, name)
    return rep, t_compile, t_sim


def interval(cycles_few: int, cycles_many: int, blocks_few: int, blocks_many: int) -> float:
    """Steady-state cycles per row block: the extra cycles of the extra blocks, which leaves out
    the pipeline's fill and drain (what a stream of inferences sees)."""
    return (cycles_many - cycles_few) / (blocks_many - blocks_few)


def table(header: list, rows: list) -> str:
    """A markdown table; numbers are formatted by the caller."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, data: dict) -> pathlib.Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def load(name: str) -> dict:
    return json.loads((OUT / f"{name}.json").read_text())
