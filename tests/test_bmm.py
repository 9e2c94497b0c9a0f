"""Batched matmul of two activations (attention's QKᵀ and P·V) on the array, over shapes:
int8 bit-exact with the integer reference (and within a step of float QDQ), fp32 within 1e-5."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

import tvm_aie
from tvm_aie.reference import build_reference
from tvm_aie.schedules import bmm
from tvm_aie.schedules.dense import TilingError
from tvm_aie.target import get_device


def _run(ex, *xs):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, xs)).numpy()


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def bmm_model(batch, m, k, n, int8, scale=None):
    """``a[*batch, m, k] @ b[*batch, k, n]`` (times ``scale``), in QDQ form if ``int8``."""
    a = relax.Var("a", relax.TensorType((*batch, m, k), "float32"))
    b = relax.Var("b", relax.TensorType((*batch, k, n), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [a, b]):
        with bb.dataflow():
            if int8:
                qa = bb.emit(relax.op.quantize(a, _c(0.04), _c(5, "int8"), out_dtype="int8"))
                qb = bb.emit(relax.op.quantize(b, _c(0.03), _c(-7, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.matmul(relax.op.dequantize(qa, _c(0.04), _c(5, "int8")),
                                            relax.op.dequantize(qb, _c(0.03), _c(-7, "int8"))))
                s_out = 0.04 * 0.03 * np.sqrt(k) * 3
                y = bb.emit(relax.op.quantize(y, _c(s_out), _c(2, "int8"), out_dtype="int8"))
                y = bb.emit(relax.op.dequantize(y, _c(s_out), _c(2, "int8")))
            else:
                s_out = None
                y = bb.emit(relax.op.matmul(a, b))
                if scale is not None:
                    y = bb.emit(relax.op.multiply(y, _c(scale)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), s_out


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=2), st.integers(1, 24),
       st.integers(1, 24), st.integers(1, 24), st.booleans(), st.integers(0, 20))
def test_bmm_matches_cpu_over_shapes(batch, m, k, n, int8, seed):
    mod, s_out = bmm_model(batch, m, k, n, int8, scale=None if int8 else 0.125)
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (*batch, m, k)).astype(np.float32)
    b = rng.normal(0, 1, (*batch, k, n)).astype(np.float32)
    ex = tvm_aie.build(mod)
    y = _run(ex, a, b)
    ref = _run(tvm.compile(mod, target="llvm"), a, b)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), a, b))
        assert np.abs(y - ref).max() <= s_out * 1.001
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share == 1.0 and rep.subgraphs[0].layers[0]["op"] == "bmm"


@pytest.mark.parametrize("tiles", [1, 3, 6])
def test_bmm_batches_dealt_round_robin_to_tiles(tiles):
    mod, _ = bmm_model((6,), 8, 16, 8, int8=True)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (6, 8, 16)).astype(np.float32), rng.normal(0, 1, (6, 16, 8)).astype(
        np.float32)
    ex = tvm_aie.build(mod, configs={0: bmm.BmmConfig(tiles)})
    np.testing.assert_array_equal(_run(ex, a, b), _run(build_reference(mod), a, b))
    assert tvm_aie.report(ex).subgraphs[0].tiles == tiles


def test_bmm_legality_names_the_buffer():
    with pytest.raises(TilingError, match="B does not fit"):
        bmm.check(bmm.BmmWorkload(2, 16, 128, 256, "float32"), bmm.BmmConfig(2), get_device())


def test_bmm_too_big_for_a_tile_stays_on_cpu(caplog):
    """No configuration holds a 64x256 by 256x64 fp32 product in one tile: the layer stays on
    the CPU with the reason logged, and the model still builds and runs."""
    mod, _ = bmm_model((2,), 64, 256, 64, int8=False)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (2, 64, 256)).astype(np.float32), rng.normal(0, 1, (2, 256, 64)).astype(
        np.float32)
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(mod)
    assert "does not fit the array" in caplog.text
    np.testing.assert_allclose(_run(ex, a, b), a @ b, rtol=1e-4, atol=1e-4)
    assert tvm_aie.report(ex).subgraphs == []
