"""The address-generation dimensions of each DMA kind: the catalog's facts, the simulator's check
of every BD against them, and the codegen's shim BDs that stay within them."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_aie.codegen.fifo import (DdrEndpoint, MemtileEndpoint, ObjectFifo, _shim_bds,
                                  lower_producer)
from tvm_aie.codegen.program import (Buffer, BufferDescriptor, DdrTensor, DmaChannel, LockOp,
                                     Lock, Program, Route, TileSpec)
from tvm_aie.codegen.resources import ResourceError, TileResources
from tvm_aie.sim import simulate
from tvm_aie.sim.dma import pattern_elements
from tvm_aie.target import get_device

ML = get_device("ve2802")


def test_catalog_dims_per_dma_kind():
    aie, ml = get_device("vc1902"), ML
    assert (aie.tile_dma["dims"], aie.shim_dma["dims"]) == (2, 1)
    assert "iteration" not in aie.tile_dma and "iteration" not in aie.shim_dma
    assert (ml.tile_dma["dims"], ml.memtile["dims"], ml.shim_dma["dims"]) == (3, 4, 3)
    assert ml.tile_dma["iteration"] == ml.memtile["iteration"] == ml.shim_dma["iteration"] == 64


def _shim_to_memtile(x: np.ndarray, mm2s_bds: list, device: str = "ve2802",
                     row1: str = "memtile") -> Program:
    """DDR tensor x -> shim (0,0) MM2S chain ``mm2s_bds`` -> tile (0,1) (a memory tile; a compute
    tile on AIE1) buffer m, whose MM2S sends m back to DDR tensor y (so the test reads what
    arrived)."""
    n = x.size
    dt = str(x.dtype)
    tiles = [TileSpec(0, 0, "shim"), TileSpec(0, 1, row1)]
    return Program(
        name="t", device=device, tiles=tiles,
        ddr=[DdrTensor("x", list(x.shape), dt, "input"), DdrTensor("y", [n], dt, "output")],
        buffers=[Buffer("m", [0, 1], 0, [n], dt)],
        locks=[Lock("full", [0, 1], 0, 0)],
        dmas=[DmaChannel([0, 0], "mm2s", 0, mm2s_bds),
              DmaChannel([0, 1], "s2mm", 0, [BufferDescriptor(0, "m", 0, [n], [1],
                                                              release=LockOp("full", 1))]),
              DmaChannel([0, 1], "mm2s", 0, [BufferDescriptor(0, "m", 0, [n], [1],
                                                              acquire=LockOp("full", 1))]),
              DmaChannel([0, 0], "s2mm", 0, [BufferDescriptor(0, "y", 0, [n], [1])])],
        routes=[Route([0, 0, 0], [[0, 1, 0]]), Route([0, 1, 0], [[0, 0, 0]])])


def _bds(pattern_sizes, pattern_strides, tensor="x", offset=0):
    return _shim_bds(ML.shim_dma, DdrEndpoint(tensor, offset, pattern_sizes, pattern_strides))


def test_shim_iteration_dimension_moves_a_four_d_pattern_in_one_bd():
    """[2, 3, 4, 5] int32 transposed to [3, 2, 5, 4]: 3 dimensions plus the iteration one."""
    x = np.arange(120, dtype=np.int32).reshape(2, 3, 4, 5)
    bd = BufferDescriptor(0, "x", 0, [3, 2, 5, 4], [20, 60, 1, 5])
    res = simulate(_shim_to_memtile(x, [bd]), {"x": x})
    np.testing.assert_array_equal(res.outputs["y"].reshape(3, 2, 5, 4), x.transpose(1, 0, 3, 2))


@pytest.mark.parametrize("sizes, strides, why", [
    ([65, 2, 2, 2], [8, 4, 2, 1], "4-D pattern \\[65, 2, 2, 2\\], a shim DMA BD has 3 plus an "
                                  "iteration dimension of at most 64 steps"),
    ([2, 2, 2, 2, 2], [16, 8, 4, 2, 1], "5-D pattern"),
])
def test_simulator_rejects_shim_bds_beyond_their_dimensions(sizes, strides, why):
    x = np.zeros(int(np.prod(sizes)) * 2, np.int32)
    p = _shim_to_memtile(x, [BufferDescriptor(0, "x", 0, sizes, strides)])
    with pytest.raises(ValueError, match=f"DMA channel 0,0:mm2s0 BD 0: {why}"):
        simulate(p, mode="timing")


def test_iteration_dimension_needs_a_lone_lock_free_bd():
    """The iteration offset advances once per execution of the BD: in a chain it would interleave
    with the other BDs, so a 4-D shim BD in a chain of two is refused."""
    x = np.zeros(64, np.int32)
    chain = [BufferDescriptor(0, "x", 0, [2, 2, 2, 2], [8, 4, 2, 1], next=1),
             BufferDescriptor(1, "x", 16, [16], [1])]
    with pytest.raises(ValueError, match=r"4-D pattern .* \(on a channel's only BD, without "
                                         r"locks\)"):
        simulate(_shim_to_memtile(x, chain), mode="timing")


def test_aie1_shim_bd_is_linear():
    x = np.zeros(16, np.int32)
    p = _shim_to_memtile(x, [BufferDescriptor(0, "x", 0, [4, 4], [1, 4])], device="vc1902",
                         row1="compute")
    with pytest.raises(ValueError, match="2-D pattern \\[4, 4\\], a shim DMA BD has 1$"):
        simulate(p, mode="timing")


def test_split_chain_moves_a_five_d_pattern():
    """A 5-D permutation of a [2, 3, 2, 4, 2] int32 tensor: six BDs of 3-D (the outermost two
    indices), which the simulator accepts and which deliver the permuted tensor; each BD after
    the first costs one more chunk latency on the route (2 stream switches) than one linear BD."""
    x = np.arange(96, dtype=np.int32).reshape(2, 3, 2, 4, 2)
    perm = (1, 0, 3, 2, 4)
    el = np.array(x.strides) // x.itemsize
    sizes, strides = [x.shape[a] for a in perm], [int(el[a]) for a in perm]
    bds = _bds(sizes, strides)
    assert len(bds) == 6 and all(len(bd.sizes) <= 3 for bd in bds)
    res = simulate(_shim_to_memtile(x, bds), {"x": x})
    np.testing.assert_array_equal(res.outputs["y"], x.transpose(perm).reshape(-1))
    linear = simulate(_shim_to_memtile(x, [BufferDescriptor(0, "x", 0, [96], [1])]),
                      mode="timing").report.cycles
    assert res.report.cycles == linear + 5 * 2 * ML.stream_switch_latency_cycles


def test_split_chain_longer_than_the_channel_is_a_resource_error():
    with pytest.raises(ResourceError, match=r"DDR tensor t: its 5-D pattern \[5, 4, 3, 3, 3\] "
                                            r"takes 20 BDs of 3 dimensions on a shim DMA "
                                            r"channel, which has 16"):
        _bds([5, 4, 3, 3, 3], [1000, 200, 50, 10, 2], tensor="t")


@st.composite
def _patterns(draw):
    rank = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(0, 40), min_size=rank, max_size=rank))
    return sizes, strides, draw(st.integers(0, 7))


@settings(max_examples=60, deadline=None)
@given(_patterns())
def test_shim_bds_walk_the_pattern_in_order_within_the_limits(pattern):
    """Whatever the rank, the BDs (when they fit) visit the pattern's elements in its order, each
    within 3 dimensions (4 for a lone BD, its outermost at most 64 steps)."""
    sizes, strides, offset = pattern
    want = pattern_elements(offset, sizes, strides)
    try:
        bds = _bds(sizes, strides, offset=offset)
    except ResourceError:
        assert len([n for n in sizes if n > 1]) > 3
        return
    got = np.concatenate([pattern_elements(bd.offset, bd.sizes, bd.strides) for bd in bds])
    np.testing.assert_array_equal(got, want)
    assert len(bds) <= ML.shim_dma["bds"]
    assert [bd.next for bd in bds] == [*range(1, len(bds)), None]
    for bd in bds:
        assert len(bd.sizes) <= 3 or (len(bds) == 1 and len(bd.sizes) == 4 and bd.sizes[0] <= 64)


def test_memtile_pattern_beyond_its_dimensions_is_a_resource_error():
    """A memory tile's BDs take locks, so a pattern past its 4 dimensions fails at compile time,
    naming the buffer."""
    res = TileResources(Program(name="t", device="ve2802"), ML, ML.first_compute_row)
    res.buffer("m", (0, 1), [2, 2, 2, 2, 2], "int8")
    fifo = ObjectFifo("f", (2,), "int8", producer=MemtileEndpoint("m", 0, [2] * 5,
                                                                   [16, 8, 4, 2, 1]),
                      consumers=[((0, ML.first_compute_row), 2)])
    with pytest.raises(ResourceError, match=r"memory-tile buffer m: a 5-D pattern "
                                            r"\[2, 2, 2, 2, 2\], a memory-tile DMA BD has 4 "
                                            r"dimensions"):
        lower_producer(res, fifo)
