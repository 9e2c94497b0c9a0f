"""Row-wise layers on the array: fp32 GELU (erf polynomial, |error| <= 3e-7 |x| + float32
rounding), softmax and layer norm over the last axis (float32 arithmetic, checked to 1e-5 of the
largest value), int8 QDQ GELU / sigmoid / tanh / scalar multiply as 256-entry tables and int8
QDQ adds and multiplies of two tensors in integers (bit-exact with the reference and within one
quantisation step of float QDQ)."""

import numpy as np
import pytest
import tvm
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tvm import relax

import tvm_aie
from tvm_aie.reference import build_reference
from tvm_aie.schedules import rowwise
from tvm_aie.schedules.dense import TilingError
from tvm_aie.target import get_device


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def row_model(shape, op, int8, seed=0):
    rng = np.random.default_rng(seed)
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    s_in, s_out = 0.05, 0.02
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            if int8:
                y = bb.emit(relax.op.quantize(y, _c(s_in), _c(3, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.dequantize(y, _c(s_in), _c(3, "int8")))
            if op == "gelu":
                y = bb.emit(relax.op.nn.gelu(y))
            elif op == "softmax":
                y = bb.emit(relax.op.nn.softmax(y, axis=-1))
            elif op == "layernorm":
                n = shape[-1]
                y = bb.emit(relax.op.nn.layer_norm(y, _c(rng.uniform(0.5, 1.5, n)),
                                                   _c(rng.normal(0, 0.3, n)), axes=[-1]))
            elif op == "sigmoid":
                y = bb.emit(relax.op.sigmoid(y))
            elif op == "tanh":
                y = bb.emit(relax.op.tanh(y))
            else:
                y = bb.emit(relax.op.multiply(y, _c(0.37)))
            if int8:
                y = bb.emit(relax.op.quantize(y, _c(s_out), _c(-9, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.dequantize(y, _c(s_out), _c(-9, "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), s_out


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3),
       st.sampled_from(["gelu", "softmax", "layernorm"]), st.integers(0, 20))
def test_fp32_rowwise_matches_cpu(shape, op, seed):
    mod, _ = row_model(tuple(shape), op, int8=False, seed=seed)
    x = (np.random.default_rng(seed).normal(0, 3, shape)).astype(np.float32)
    ex = tvm_aie.build(mod)
    y, ref = _run(ex, x), _run(tvm.compile(mod, target="llvm"), x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    (sub,) = tvm_aie.report(ex).subgraphs
    assert sub.layers[0]["op"] == op


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3),
       st.sampled_from(["gelu", "sigmoid", "tanh", "scale"]), st.integers(0, 20))
def test_int8_lookup_tables_are_exact(shape, op, seed):
    mod, s_out = row_model(tuple(shape), op, int8=True, seed=seed)
    x = (np.random.default_rng(seed).normal(0, 3, shape)).astype(np.float32)
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    assert np.abs(y - _run(tvm.compile(mod, target="llvm"), x)).max() <= s_out * 1.001
    (sub,) = tvm_aie.report(ex).subgraphs
    assert sub.layers[0]["op"] == "lut"


def test_gelu_polynomial_error_is_as_stated():
    """The erf the GELU kernel evaluates is within 6e-7 of the exact one everywhere."""
    from math import erf
    from tvm_aie.sim.kernels_rows import erf as poly_erf
    z = np.linspace(-8, 8, 100001).astype(np.float32)
    exact = np.array([erf(float(v)) for v in z])
    assert np.abs(poly_erf(z) - exact).max() <= 6e-7


def test_rowwise_legality_names_the_buffer():
    with pytest.raises(TilingError, match="X does not fit"):
        rowwise.check(rowwise.RowWorkload("softmax", 64, 16384, "float32"),
                      rowwise.RowConfig(1, 1), get_device())


def add_model(shape, kind, int8):
    """``a + b`` of two inputs (int8: QDQ, requantised to a third scale; ``"int8mul"``: ``a * b``
    so), or fp32 ``a + c + b`` / ``a * c + b`` with ``c`` along the last axis (the constant op
    stays on the CPU)."""
    a = relax.Var("a", relax.TensorType(shape, "float32"))
    b = relax.Var("b", relax.TensorType(shape, "float32"))
    c = _c(np.linspace(-1, 1, shape[-1]))
    bb = relax.BlockBuilder()
    with bb.function("main", [a, b]):
        with bb.dataflow():
            if int8:
                qa = bb.emit(relax.op.quantize(a, _c(0.03), _c(4, "int8"), out_dtype="int8"))
                qb = bb.emit(relax.op.quantize(b, _c(0.05), _c(-6, "int8"), out_dtype="int8"))
                op = relax.op.multiply if kind == "int8mul" else relax.op.add
                y = bb.emit(op(relax.op.dequantize(qa, _c(0.03), _c(4, "int8")),
                               relax.op.dequantize(qb, _c(0.05), _c(-6, "int8"))))
                y = bb.emit(relax.op.quantize(y, _c(0.06), _c(1, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.dequantize(y, _c(0.06), _c(1, "int8")))
            elif kind == "add":
                y = bb.emit(relax.op.add(a, b))
            else:
                op = relax.op.add if kind == "addc" else relax.op.multiply
                y = bb.emit(relax.op.add(op(a, c), b))  # the second add: two tensors again
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=3),
       st.sampled_from(["add", "addc", "mulc", "int8", "int8mul"]), st.integers(0, 20))
@example([3, 17], "int8mul", 1)
def test_elementwise_adds(shape, kind, seed):
    int8 = kind.startswith("int8")
    mod = add_model(tuple(shape), kind, int8)
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(0, 2, shape).astype(np.float32) for _ in range(2))
    ex = tvm_aie.build(mod)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    y = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    cpu = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    ref = cpu["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy()
    if int8:
        exact = relax.VirtualMachine(build_reference(mod), tvm.cpu())
        np.testing.assert_array_equal(
            y, exact["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b)).numpy())
        assert np.abs(y - ref).max() <= 0.06 * 1.001
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6 * max(1.0, np.abs(ref).max()))
    ops = [layer["op"] for s in tvm_aie.report(ex).subgraphs for layer in s.layers]
    assert ops == ["mul" if kind == "int8mul" else "add"]


@pytest.mark.parametrize("int8", [False, True])
def test_add_whose_operands_come_in_the_other_order(int8):
    """``b + a`` with ``a`` the first parameter: the offloaded add still reads its inputs in the
    function's parameter order."""
    a = relax.Var("a", relax.TensorType((3, 5), "float32"))
    b = relax.Var("b", relax.TensorType((3, 5), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [a, b]):
        with bb.dataflow():
            if int8:
                qa = bb.emit(relax.op.quantize(a, _c(0.03), _c(4, "int8"), out_dtype="int8"))
                qb = bb.emit(relax.op.quantize(b, _c(0.05), _c(-6, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.add(relax.op.dequantize(qb, _c(0.05), _c(-6, "int8")),
                                         relax.op.dequantize(qa, _c(0.03), _c(4, "int8"))))
                y = bb.emit(relax.op.dequantize(relax.op.quantize(y, _c(0.06), _c(1, "int8"),
                                                                  out_dtype="int8"),
                                                _c(0.06), _c(1, "int8")))
            else:
                y = bb.emit(relax.op.add(b, a))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = bb.get()
    rng = np.random.default_rng(1)
    xs = [tvm.runtime.tensor(rng.normal(0, 2, (3, 5)).astype(np.float32)) for _ in range(2)]
    y = relax.VirtualMachine(tvm_aie.build(mod), tvm.cpu())["main"](*xs).numpy()
    ref_mod = build_reference(mod) if int8 else tvm.compile(mod, target="llvm")
    ref = relax.VirtualMachine(ref_mod, tvm.cpu())["main"](*xs).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=0 if int8 else 1e-6)


def ffn_model(rows, d, hidden, op, int8, seed=0):
    """``x[rows, d]`` -> dense to ``hidden`` -> the row-wise ``op`` -> dense back to ``d`` (a
    transformer's feed-forward block); int8 in onnxruntime's QDQ form, the op as a table."""
    rng = np.random.default_rng(seed)
    x = relax.Var("x", relax.TensorType((rows, d), "float32"))
    bb = relax.BlockBuilder()
    scales = [0.05, 0.04, 0.02, 0.03]
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for i, (k, n) in enumerate([(d, hidden), (hidden, d)]):
                w = rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32)
                if int8:
                    s_w = np.abs(w).max() / 127
                    if i == 0:
                        y = bb.emit(relax.op.quantize(y, _c(scales[0]), _c(3, "int8"),
                                                      out_dtype="int8"))
                    wf = relax.op.dequantize(_c(np.round(w / s_w), "int8"), _c(s_w), _c(0, "int8"))
                    zp = 3 if i == 0 else -9
                    y = bb.emit(relax.op.matmul(relax.op.dequantize(
                        y, _c(scales[2 * i]), _c(zp, "int8")), wf))
                    y = bb.emit(relax.op.quantize(y, _c(scales[2 * i + 1]), _c(5, "int8"),
                                                  out_dtype="int8"))
                else:
                    y = bb.emit(relax.op.add(relax.op.matmul(y, _c(w)),
                                             _c(rng.normal(0, 0.3, n))))
                if i == 1:
                    break
                if int8:
                    y = bb.emit(relax.op.dequantize(y, _c(scales[1]), _c(5, "int8")))
                if op == "gelu":
                    y = bb.emit(relax.op.nn.gelu(y))
                elif op == "softmax":
                    y = bb.emit(relax.op.nn.softmax(y, axis=-1))
                elif op == "layernorm":
                    y = bb.emit(relax.op.nn.layer_norm(y, _c(rng.uniform(0.5, 1.5, hidden)),
                                                       _c(rng.normal(0, 0.3, hidden)), axes=[-1]))
                else:
                    y = bb.emit(relax.op.tanh(y))
                if int8:
                    y = bb.emit(relax.op.quantize(y, _c(scales[2]), _c(-9, "int8"),
                                                  out_dtype="int8"))
            if int8:
                y = bb.emit(relax.op.dequantize(y, _c(scales[3]), _c(5, "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), scales[3]


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 16), st.integers(1, 40), st.integers(1, 64),
       st.sampled_from([("gelu", False), ("softmax", False), ("layernorm", False),
                        ("gelu", True), ("tanh", True)]), st.integers(0, 100))
def test_dense_rowwise_dense_is_one_program(rows, d, hidden, op_int8, seed):
    """dense -> row-wise layer -> dense is one program: the row-wise layer reads the first dense
    layer's output from a memory tile and writes the second's input to another (no DDR in
    between); int8 bit-exact with the reference, fp32 within 1e-5 of the largest output."""
    op, int8 = op_int8
    mod, out_scale = ffn_model(rows, d, hidden, op, int8, seed)
    x = np.random.default_rng(seed).normal(0, 1, (rows, d)).astype(np.float32)
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    ref = _run(tvm.compile(mod, target="llvm"), x)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
        assert np.abs(y - ref).max() <= out_scale * 1.001
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [layer["name"] for layer in sub.layers] == ["dense0", "row1", "dense2"]
    assert [edge.split(" (")[0] for edge in sub.onchip_intermediates] == \
        ["dense0 -> row1", "row1 -> dense2"]


def test_dense_rowwise_dense_splits_where_there_are_no_memory_tiles():
    """AIE (VC1902) has no memory tiles for the seams: the block runs as three programs through
    DDR, still correct, and the report says where and why."""
    mod, _ = ffn_model(16, 64, 256, "gelu", False)
    x = np.random.default_rng(0).normal(0, 1, (16, 64)).astype(np.float32)
    ex = tvm_aie.build(mod, target="aie/vck190")
    ref = _run(tvm.compile(mod, target="llvm"), x)
    np.testing.assert_allclose(_run(ex, x), ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    rep = tvm_aie.report(ex)
    assert [[layer["name"] for layer in s.layers] for s in rep.subgraphs] == \
        [["dense0"], ["row1"], ["dense2"]]
    assert "dense0..row1 do not fit: vc1902 has no memory tiles" in rep.subgraphs[0].split


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "mul"])
def test_reference_of_fp32_sigmoid_tanh_mul(op):
    """The integer reference rebuilds fp32 sigmoid, tanh and the multiply of two tensors as TVM's
    own ops (it used to fall through to layer norm)."""
    shape = (3, 7)
    a = relax.Var("a", relax.TensorType(shape, "float32"))
    b = relax.Var("b", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [a, b]):
        with bb.dataflow():
            y = relax.op.multiply(a, b) if op == "mul" else \
                {"sigmoid": relax.op.sigmoid, "tanh": relax.op.tanh}[op](relax.op.add(a, b))
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    mod = bb.get()
    rng = np.random.default_rng(2)
    xs = [tvm.runtime.tensor(rng.normal(0, 2, shape).astype(np.float32)) for _ in range(2)]
    ref = relax.VirtualMachine(build_reference(mod), tvm.cpu())["main"](*xs).numpy()
    cpu = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())["main"](*xs).numpy()
    np.testing.assert_allclose(ref, cpu, rtol=0, atol=1e-6)
