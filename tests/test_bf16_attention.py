"""``tvm_aie.build(..., precision="bf16")`` for attention: batched matmuls (QKᵀ, P·V) with bf16
operands and float32 accumulation, and row-wise layers (softmax, GELU, sigmoid, tanh, layer norm,
add, multiply) with bf16 tensors in and out and float32 arithmetic between (``exp`` from two bf16
tables, as AIE-ML kernels compute it). Stated tolerance against fp32 TVM on the CPU, as in
``tests/test_bf16.py``: 2e-2 of the largest output (bf16 keeps 8 significant bits; the exp
tables add <= 8.9e-3 relative; the zoo transformer measures 0.8%). The fp32 sigmoid, tanh and
multiply that came with them are checked to 1e-5 of the largest output, as
``tests/test_rowwise.py`` checks the other fp32 row-wise layers."""

import logging
import math

import numpy as np
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bmm import bmm_model
from test_rowwise import add_model, row_model
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.report import programs
from tvm_aie.sim.kernels import CALL_OVERHEAD, matmul_cycles
from tvm_aie.sim.kernels_rows import PASSES, exp_lut
from tvm_aie.target import get_device

BF16_TOL = 2e-2


def _run(ex, *xs):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, xs)).numpy()


def _close(y, ref, tol=BF16_TOL, floor=1e-6):
    """Within ``tol`` of the largest output (or of ``floor``, if that is larger)."""
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() <= tol * max(np.abs(ref).max(), floor)


def _mul_model(shape):
    """``a * b`` of two inputs of one shape."""
    a, b = (relax.Var(v, relax.TensorType(shape, "float32")) for v in "ab")
    bb = relax.BlockBuilder()
    with bb.function("main", [a, b]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.multiply(a, b)))
        bb.emit_func_output(out)
    return bb.get()


def _row_case(shape, op, seed):
    """A one-layer model of ``op`` and its seeded inputs."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, 3, shape).astype(np.float32)
          for _ in range(2 if op in ("add", "mul") else 1)]
    mod = add_model(tuple(shape), "add", False) if op == "add" else \
        _mul_model(tuple(shape)) if op == "mul" else \
        row_model(tuple(shape), op, int8=False, seed=seed)[0]
    return mod, xs


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=2), st.integers(1, 24),
       st.integers(1, 32), st.integers(1, 24), st.integers(0, 20))
def test_bf16_bmm_over_shapes(batch, m, k, n, seed):
    mod, _ = bmm_model(batch, m, k, n, int8=False, scale=0.125)
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (*batch, m, k)).astype(np.float32)
    b = rng.normal(0, 1, (*batch, k, n)).astype(np.float32)
    ex = tvm_aie.build(mod, precision="bf16")
    _close(_run(ex, a, b), _run(tvm.compile(mod, target="llvm"), a, b))
    (sub,) = tvm_aie.report(ex).subgraphs
    dev = get_device()
    assert [(row["op"], row["precision"]) for row in sub.layers] == [("bmm", "bfloat16")]
    # the bf16 datapath: catalog bf16 MAC rate for the peak and the kernel's cycles
    assert sub.peak_macs_per_cycle == sub.tiles * dev.peak_macs_per_cycle("bfloat16")
    (_, program), = programs(ex)[1]
    assert {t.dtype for t in program.ddr} == {"bfloat16"}
    assert sub.layers[0]["kernel_cycles_per_block"] == matmul_cycles(dev, "bfloat16", m, k, n,
                                                           "bfloat16", False)


ROW_OPS = ["gelu", "sigmoid", "tanh", "softmax", "layernorm", "add", "mul"]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3), st.sampled_from(ROW_OPS),
       st.integers(0, 20))
def test_bf16_rowwise_over_shapes(shape, op, seed):
    mod, xs = _row_case(shape, op, seed)
    ex = tvm_aie.build(mod, precision="bf16")
    _close(_run(ex, *xs), _run(tvm.compile(mod, target="llvm"), *xs))
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [(row["op"], row["precision"]) for row in sub.layers] == [(op, "bfloat16")]
    # one block's cycles: the op's passes at the bf16 multiplier's 16 lanes (AIE-ML: 128 / 8)
    cfg = sub.layers[0]["config"]
    elems = cfg["tr"] * shape[-1]
    assert sub.layers[0]["kernel_cycles_per_block"] == \
        CALL_OVERHEAD + math.ceil(elems / 16) * PASSES[op]


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3),
       st.sampled_from(["sigmoid", "tanh", "mul"]), st.integers(0, 20))
def test_fp32_sigmoid_tanh_mul_match_cpu(shape, op, seed):
    mod, xs = _row_case(shape, op, seed)
    ex = tvm_aie.build(mod)
    _close(_run(ex, *xs), _run(tvm.compile(mod, target="llvm"), *xs), tol=1e-5, floor=1.0)
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [(row["op"], row["precision"]) for row in sub.layers] == [(op, "float32")]


def test_exp_table_error_is_as_stated():
    """The bf16 kernels' table ``exp`` is within 8.9e-3 relative over softmax's range."""
    x = np.linspace(-87, 0, 400001).astype(np.float32)
    assert np.abs(exp_lut(x) / np.exp(x.astype(np.float64)) - 1).max() <= 8.9e-3


def test_bf16_transformer_runs_whole_on_the_bf16_datapath():
    mod = from_onnx(zoo.onnx_model("transformer"), keep_params_in_input=False)
    x = zoo.sample_input("transformer")
    ex = tvm_aie.build(mod, precision="bf16")
    y, ref = _run(ex, x), _run(tvm.compile(mod, target="llvm"), x)
    _close(y, ref)
    assert not np.array_equal(y, _run(tvm_aie.build(mod), x))  # it did run in bf16
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share >= 0.95
    layers = [row for sub in rep.subgraphs for row in sub.layers]
    assert {row["precision"] for row in layers} == {"bfloat16"}
    assert {"bmm", "softmax", "gelu", "layernorm", "add"} <= {row.get("op") for row in layers}
    # the whole encoder layer is one program, its 13 tensors between parts in bf16 memory tiles
    (_, program), = programs(ex)[1]
    seams = [buf for buf in program.buffers if buf.name.endswith(".out")]
    assert len(seams) == 13 and {buf.dtype for buf in seams} == {"bfloat16"}


def test_bf16_on_a_device_without_bf16_stays_fp32(caplog):
    mod, _ = bmm_model((2,), 8, 16, 8, int8=False)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(mod, target="aie/vck190", precision="bf16")
    assert "stays float32: vc1902 has no bfloat16 datapath" in caplog.text
    (sub,) = tvm_aie.report(ex).subgraphs
    assert sub.layers[0]["precision"] == "float32"
    a, b = np.ones((2, 8, 16), np.float32), np.ones((2, 16, 8), np.float32)
    np.testing.assert_array_equal(_run(ex, a, b), np.full((2, 8, 8), 16, np.float32))
