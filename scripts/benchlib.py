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
from onnx import TensorProto, helper

from tvm_aie.codegen.lower import shim_io
from tvm_aie.codegen.relax_ext import compile_function, compute_precision
from tvm_aie.frontend import load_onnx
from tvm_aie.partition import partition_for_aie
from tvm_aie.report import subgraph_report
from tvm_aie.target import get_device

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
DEVICE = "aie-ml/vek280"  # VE2802, the device of AIE4ML's published figures


def device():
    return get_device(DEVICE)


def dense_model(m: int, k: int, n: int, precision: str = "int8", seed: int = 0):
    """One dense layer ``[m, k] @ [k, n]`` as ONNX: int8 QDQ as onnxruntime's quantiser writes it
    (DQ -> MatMul -> Q), or plain fp32. The weights are seeded random; cycles do not depend on them."""
    rng = np.random.default_rng(seed)
    if precision == "float32":
        w = rng.standard_normal((k, n)).astype(np.float32)
        inits = [helper.make_tensor("w", TensorProto.FLOAT, (k, n), w.tobytes(), raw=True)]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        elem = TensorProto.FLOAT
    elif precision in ("int8", "int16xint8"):  # int16xint8: int16 activations, int8 weights
        elem = TensorProto.INT16 if precision == "int16xint8" else TensorProto.INT8
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        inits = [helper.make_tensor("w", TensorProto.INT8, (k, n), w.tobytes(), raw=True),
                 helper.make_tensor("s_x", TensorProto.FLOAT, (), [0.05]),
                 helper.make_tensor("s_w", TensorProto.FLOAT, (), [0.01]),
                 helper.make_tensor("s_y", TensorProto.FLOAT, (), [2.0]),
                 helper.make_tensor("zp", elem, (), [0]),
                 helper.make_tensor("zp_w", TensorProto.INT8, (), [0])]
        nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp"], ["xf"]),
                 helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"]),
                 helper.make_node("MatMul", ["xf", "wf"], ["yf"]),
                 helper.make_node("QuantizeLinear", ["yf", "s_y", "zp"], ["y"])]
    else:
        raise ValueError(f"no ONNX form for {precision} dense layers")
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", elem, (m, k))],
                              [helper.make_tensor_value_info("y", elem, (m, n))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_model(h: int, w: int, cin: int, cout: int, ksize: int = 3, seed: int = 0):
    """One int8 QDQ 2-D convolution (NCHW, stride 1, same padding) as onnxruntime writes it."""
    rng = np.random.default_rng(seed)
    wt = rng.integers(-128, 128, (cout, cin, ksize, ksize), dtype=np.int8)
    inits = [helper.make_tensor("w", TensorProto.INT8, wt.shape, wt.tobytes(), raw=True),
             helper.make_tensor("s_x", TensorProto.FLOAT, (), [0.05]),
             helper.make_tensor("s_w", TensorProto.FLOAT, (), [0.01]),
             helper.make_tensor("s_y", TensorProto.FLOAT, (), [2.0]),
             helper.make_tensor("zp", TensorProto.INT8, (), [0])]
    pad = ksize // 2
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "s_w", "zp"], ["wf"]),
             helper.make_node("Conv", ["xf", "wf"], ["yf"], pads=[pad] * 4),
             helper.make_node("QuantizeLinear", ["yf", "s_y", "zp"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.INT8, (1, cin, h, w))],
        [helper.make_tensor_value_info("y", TensorProto.INT8, (1, cout, h, w))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def offloaded_functions(model) -> list:
    """``[(name, Relax function)]`` of every subgraph the partitioner gives the array."""
    mod = partition_for_aie(load_onnx(model))
    return [(gv.name_hint, f) for gv, f in mod.functions.items()
            if f.attrs is not None and "Codegen" in f.attrs]


def compile_subgraph(func, name: str, pinned: dict | None = None, io: str = "ddr"):
    """``(program, seconds)``: the AIE program of one subgraph, configs pinned per layer index;
    ``io``: a dense chain's input and output through shim DMA from DDR or PL stream ports."""
    t0 = time.perf_counter()
    with shim_io(io):
        program = compile_function(func, name, device(), pinned)
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
    (name, func), = offloaded_functions(dense_model(m, k, n, "float32" if bf16 else precision))
    with compute_precision("bf16" if bf16 else None):
        program, t_compile = compile_subgraph(func, name, {0: config}, io)
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
