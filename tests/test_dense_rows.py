"""Dense layers on activations with leading dimensions ([B, S, K] x [K, N], as in transformers):
the leading dimensions are rows of one [B*S, K] matrix in DDR, and the result is shaped back."""

import numpy as np
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

import tvm_aie
from tvm_aie.reference import build_reference


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def _model(shape, n, int8, seed):
    rng = np.random.default_rng(seed)
    k = shape[-1]
    w = rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            if int8:
                q = bb.emit(relax.op.quantize(x, _c(0.03), _c(2, "int8"), out_dtype="int8"))
                s_w = np.abs(w).max() / 127
                y = bb.emit(relax.op.matmul(
                    relax.op.dequantize(q, _c(0.03), _c(2, "int8")),
                    relax.op.dequantize(_c(np.round(w / s_w), "int8"), _c(s_w), _c(0, "int8"))))
                y = bb.emit(relax.op.quantize(relax.op.nn.relu(y), _c(0.02), _c(-128, "int8"),
                                              out_dtype="int8"))
                y = bb.emit(relax.op.dequantize(y, _c(0.02), _c(-128, "int8")))
            else:
                y = bb.emit(relax.op.nn.relu(relax.op.matmul(x, _c(w))))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=2), st.integers(1, 40),
       st.integers(1, 24), st.booleans(), st.integers(0, 50))
def test_leading_dimensions_are_rows(lead, k, n, int8, seed):
    shape = (*lead, k)
    mod = _model(shape, n, int8, seed)
    x = np.random.default_rng(seed + 1).normal(0, 1, shape).astype(np.float32)
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    assert y.shape == (*lead, n)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    else:
        ref = _run(tvm.compile(mod, target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    assert tvm_aie.report(ex).offloaded_share == 1.0
