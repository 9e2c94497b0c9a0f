"""Compute-tile limits the simulator checks at load: which neighbours' data memory a core reaches
(catalog ``core_memory_access``) and the estimated program size against program memory.

Device: VE2802 (AIE-ML), compute tiles from row 3, unless a test names VC1902 (AIE, compute tiles
from row 1).
"""

import numpy as np
import pytest

from tvm_aie.codegen.program import (Buffer, BufferDescriptor, Core, DdrTensor, DmaChannel, Instr,
                                     KernelCall, Lock, LockOp, Program, Route, TileSpec)
from tvm_aie.sim import simulate
from tvm_aie.sim.array import INSTR_BYTES, PROGRAM_BASE_BYTES
from tvm_aie.sim.kernels import MatMul
from tvm_aie.target import get_device

M, K, N = 4, 8, 8


def _tiles(tiles, device):
    first = get_device(device).first_compute_row
    return [TileSpec(c, r, "shim" if r == 0 else "memtile" if r < first else "compute")
            for c, r in tiles]


def _matmul(a="a", b="b", c="c"):
    return Instr(op="call", call=KernelCall("matmul", {"a": a, "b": b, "c": c},
                                            {"precision": "int8", "m": M, "k": K, "n": N,
                                             "out_dtype": "int32"}))


def _buffers(at: dict, device):
    """a [M, K] and b [K, N] int8 constants and c [M, N] int32, each on the tile ``at`` gives."""
    base = get_device(device).stack_bytes
    return [Buffer("a", list(at["a"]), base, [M, K], "int8", initial="a"),
            Buffer("b", list(at["b"]), base + M * K, [K, N], "int8", initial="b"),
            Buffer("c", list(at["c"]), base + M * K + K * N, [M, N], "int32")]


def _consts(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.integers(-128, 128, (M, K), dtype=np.int8),
            "b": rng.integers(-128, 128, (K, N), dtype=np.int8)}


def _loads(core, at: dict, device="ve2802", body=None) -> Program:
    """A core on ``core`` running one matmul on buffers placed as ``at`` says (timing only)."""
    tiles = sorted({tuple(core), *map(tuple, at.values())})
    return Program(name="t", device=device, tiles=_tiles(tiles, device),
                   buffers=_buffers(at, device), constants=_consts(),
                   cores=[Core(list(core), body or [_matmul()])])


def test_core_computes_on_west_and_south_neighbours_memory_bit_exact():
    """The core on (1, 4) multiplies a in its west neighbour's memory by b in its south
    neighbour's into c in its own; a DMA then takes c to DDR. Exact, same cycles in both modes."""
    core, west, south = (1, 4), (0, 4), (1, 3)
    consts = _consts(1)
    p = Program(name="t", device="ve2802",
                tiles=_tiles([(1, 0), west, south, core], "ve2802"),
                ddr=[DdrTensor("y", [M, N], "int32", "output")],
                buffers=_buffers({"a": west, "b": south, "c": core}, "ve2802"),
                constants=consts, locks=[Lock("done", list(core), 0, 0)],
                dmas=[DmaChannel(list(core), "mm2s", 0, [BufferDescriptor(
                          0, "c", 0, [M * N], [1], acquire=LockOp("done"))]),
                      DmaChannel([1, 0], "s2mm", 0,
                                 [BufferDescriptor(0, "y", 0, [M * N], [1])])],
                routes=[Route([1, 4, 0], [[1, 0, 0]])],
                cores=[Core(list(core), [_matmul(), Instr(op="release", lock=LockOp("done"))])])
    res = simulate(p)
    expected = consts["a"].astype(np.int32) @ consts["b"].astype(np.int32)
    np.testing.assert_array_equal(res.outputs["y"], expected)
    assert simulate(p, mode="timing").report.cycles == res.report.cycles


@pytest.mark.parametrize("other", [(2, 4), (0, 5), (1, 6), (1, 2)],
                         ids=["east", "diagonal", "two-north", "memory-tile-south"])
def test_buffer_beyond_the_cores_reach_is_rejected(other):
    """AIE-ML: east, diagonal and farther tiles, and the memory tile below the first compute row,
    are out of a core's reach."""
    core = (1, 4) if other != (1, 2) else (1, 3)
    p = _loads(core, {"a": core, "b": other, "c": core})
    with pytest.raises(ValueError, match=(
            rf"core {core[0]},{core[1]} kernel matmul: buffer b is on tile {other[0]},{other[1]}, "
            r"whose memory the core does not reach \(its own tile's and its north/south/west")):
        simulate(p, mode="timing")


@pytest.mark.parametrize("row, reached, refused", [(1, (0, 1), (2, 1)), (2, (2, 2), (0, 2))])
def test_aie_core_reaches_east_on_even_rows_west_on_odd(row, reached, refused):
    """AIE (VC1902): the memory module alternates sides by row, so the horizontal neighbour a core
    reaches is west on odd array rows and east on even ones (AM009)."""
    core = (1, row)
    simulate(_loads(core, {"a": reached, "b": core, "c": core}, "vc1902"), mode="timing")
    with pytest.raises(ValueError, match=rf"buffer a is on tile {refused[0]},{refused[1]}, whose"):
        simulate(_loads(core, {"a": refused, "b": core, "c": core}, "vc1902"), mode="timing")


def _calls_filling(spare: int) -> int:
    """How many matmul calls bring a core's estimated program to ``spare`` bytes below the limit."""
    room = (get_device("ve2802").program_memory_bytes - PROGRAM_BASE_BYTES - MatMul.CODE_BYTES
            - spare)
    assert room % INSTR_BYTES["call"] == 0
    return room // INSTR_BYTES["call"]


def test_program_that_fills_program_memory_loads():
    """Start-up + one matmul variant + calls exactly filling 16 KB loads; a loop's body is code
    once however often it runs, and further calls of the same variant add no kernel code."""
    calls = _calls_filling(2 * (INSTR_BYTES["loop"] + INSTR_BYTES["call"]))
    body = [_matmul()] * calls + [Instr(op="loop", count=1000, body=[_matmul()])] * 2
    rep = simulate(_loads((0, 3), {"a": (0, 3), "b": (0, 3), "c": (0, 3)}, body=body),
                   mode="timing").report
    assert rep.macs == (calls + 2000) * M * K * N


def test_program_over_program_memory_is_rejected():
    """One call more than fits: rejected at load, naming the tile, the sizes and the limit."""
    calls = _calls_filling(0) + 1
    p = _loads((0, 3), {"a": (0, 3), "b": (0, 3), "c": (0, 3)}, body=[_matmul()] * calls)
    size = PROGRAM_BASE_BYTES + calls * INSTR_BYTES["call"] + MatMul.CODE_BYTES
    with pytest.raises(ValueError, match=(
            rf"core 0,3: program of about {size} bytes \(start-up {PROGRAM_BASE_BYTES}, "
            rf"instructions {calls * INSTR_BYTES['call']}, kernels matmul/int8 "
            rf"{MatMul.CODE_BYTES}\) exceeds the tile's 16384 bytes of program memory")):
        simulate(p, mode="timing")
