"""The matmul kernel: functional model against numpy, cycle model against published measurements."""

import numpy as np
import pytest

from tvm_aie.codegen.program import (Buffer, BufferDescriptor, Core, DdrTensor, DmaChannel, Instr,
                                     KernelCall, Lock, LockOp, Program, Route, TileSpec)
from tvm_aie.quant import requantize
from tvm_aie.sim import matmul_cycles, simulate
from tvm_aie.target import get_device

DEV = get_device("ve2802")
TILE = [0, 3]


def _one_call(m, k, n, precision="int8", out_dtype="int32", a_offset=0, relu=False, seed=0):
    """One matmul call on one tile (operands loaded at configuration), its result DMA'd to DDR."""
    rng = np.random.default_rng(seed)
    in_dt = "int8" if precision == "int8" else "float32"
    if precision == "int8":
        a = rng.integers(-128, 128, (m, a_offset + k), dtype=np.int8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    else:
        a = rng.standard_normal((m, a_offset + k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
    consts = {"a": a, "b": b}
    if out_dtype == "int8":
        consts.update(mult=np.full(n, 1 << 30, np.int32), shift=np.full(n, 40, np.int8))
    off, bufs = DEV.stack_bytes, []
    for name, arr in consts.items():
        bufs.append(Buffer(name, TILE, off, list(arr.shape), str(arr.dtype), initial=name))
        off += -(-arr.nbytes // 32) * 32
    bufs.append(Buffer("c", TILE, off, [m, n], out_dtype))
    roles = {"a": "a", "b": "b", "c": "c", **{r: r for r in ("mult", "shift") if r in consts}}
    call = KernelCall("matmul", roles, {"precision": precision, "m": m, "k": k, "n": n,
                                        "a_offset": a_offset, "relu": relu, "out_zp": 0,
                                        "out_dtype": out_dtype})
    out = [BufferDescriptor(0, "c", 0, [m * n], [1], acquire=LockOp("done"))]
    p = Program(name="one", device="ve2802",
                tiles=[TileSpec(0, 0, "shim"), TileSpec(0, 3, "compute")],
                ddr=[DdrTensor("y", [m, n], out_dtype, "output")], buffers=bufs,
                locks=[Lock("done", TILE, 0, 0)],
                dmas=[DmaChannel(TILE, "mm2s", 0, out),
                      DmaChannel([0, 0], "s2mm", 0,
                                 [BufferDescriptor(0, "y", 0, [m * n], [1])])],
                routes=[Route([0, 3, 0], [[0, 0, 0]])],
                cores=[Core(TILE, [Instr(op="call", call=call),
                                   Instr(op="release", lock=LockOp("done"))])],
                constants=consts, meta={"precision": precision})
    return p, consts


def _within(cycles, published, tol):
    return abs(cycles - published) / published <= tol


def test_64x64x64_int8_srs_output_matches_xd100():
    """AMD Vitis AI Engine tutorial XD100 (AIE-ML programming and optimization, the UG1603 kernel):
    64x64x64 int8 on one AIE-ML tile, optimised, output narrowed by VST.SRS: 1121 cycles."""
    cycles = matmul_cycles(DEV, "int8", 64, 64, 64, "int8", cascade=False)
    assert _within(cycles, 1121, 0.15)
    rep = simulate(_one_call(64, 64, 64, out_dtype="int8")[0], mode="timing").report
    assert rep.per_tile["0,3"]["busy"] == cycles
    assert rep.per_tile["0,3"]["macs"] == 64 ** 3


def test_64x64x64_int8_int32_output_matches_xd100():
    """XD100: the same product with int32 output (stores not hidden by SRS): 1750 cycles."""
    assert _within(matmul_cycles(DEV, "int8", 64, 64, 64, "int32", cascade=False), 1750, 0.10)


def test_16x16x16_int8_matches_aie4ml_estimate():
    """aie4ml passes/estimate.py: a 16x16x16 int8 dense call on AIE-ML is ~53 cycles."""
    assert _within(matmul_cycles(DEV, "int8", 16, 16, 16, "int8", cascade=False), 53, 0.15)


def test_cycle_model_honours_the_ug1079_bound():
    """UG1079 "Kernel Coding Bounds": never faster than max(MACs / MAC rate, bytes / 64 B)."""
    for m, k, n in [(64, 64, 64), (4, 512, 8), (128, 32, 16), (8, 8, 256)]:
        macs = m * k * n
        a_b_bytes = m * k + k * n
        bound = max(macs / DEV.peak_macs_per_cycle("int8"),
                    a_b_bytes / DEV.vector_load_bytes_per_cycle)
        assert matmul_cycles(DEV, "int8", m, k, n, "int8", cascade=False) >= bound


def test_float32_is_emulated_at_the_catalog_rate():
    cycles = matmul_cycles(DEV, "float32", 32, 32, 32, "float32", cascade=False)
    assert cycles >= 32 ** 3 / DEV.peak_macs_per_cycle("float32")


@pytest.mark.parametrize("relu, a_offset", [(False, 0), (True, 8)])
def test_int8_matmul_int32_output_is_exact(relu, a_offset):
    p, c = _one_call(12, 24, 16, relu=relu, a_offset=a_offset)
    acc = c["a"][:, a_offset:].astype(np.int64) @ c["b"].astype(np.int64)
    np.testing.assert_array_equal(simulate(p).outputs["y"], np.maximum(acc, 0) if relu else acc)


def test_int8_matmul_requantised_output_is_exact():
    p, c = _one_call(8, 32, 16, out_dtype="int8")
    acc = c["a"].astype(np.int64) @ c["b"].astype(np.int64)
    ref = requantize(acc, c["mult"], c["shift"], 0, False)
    np.testing.assert_array_equal(simulate(p).outputs["y"], ref)


def test_float32_matmul_matches_numpy():
    p, c = _one_call(8, 16, 8, precision="float32", out_dtype="float32", relu=True)
    res = simulate(p)
    np.testing.assert_allclose(res.outputs["y"], np.maximum(c["a"] @ c["b"], 0), rtol=1e-5)
    assert res.report.peak_macs_per_cycle == DEV.peak_macs_per_cycle("float32")


def test_wrong_operand_shape_is_rejected():
    p, _ = _one_call(8, 16, 8)
    p.cores[0].body[0].call.params["k"] = 32
    with pytest.raises(ValueError, match="does not hold"):
        simulate(p, mode="timing")
