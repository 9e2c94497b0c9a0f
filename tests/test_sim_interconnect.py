"""Stream switch ports, packet-switched merges, DDR bandwidth through the NoC and memory-tile DMAs
(n-D patterns, zero padding, neighbour memory), each on a hand-built program with hand-computed
cycles and, where data moves, the real bytes.

Device: VE2802 (AIE-ML): shims in row 0, memory tiles in rows 1-2, compute tiles from row 3. A
stream moves 4 bytes per cycle; each switch a chunk crosses adds 4 cycles.
"""

import io
import json
import math

import numpy as np
import pytest

from tvm_aie.codegen.program import (Buffer, BufferDescriptor, DdrTensor, DmaChannel, Lock,
                                     LockOp, Program, Route, TileSpec)
from tvm_aie.sim import simulate
from tvm_aie.target import get_device

DEV = get_device("ve2802")
RATE, HOP = DEV.stream_bytes_per_cycle, DEV.stream_switch_latency_cycles
BASE = DEV.stack_bytes


def _program(tiles, **kw) -> Program:
    specs = [TileSpec(c, r, "shim" if r == 0 else "memtile" if r < DEV.first_compute_row
                      else "compute") for c, r in sorted(set(tiles))]
    return Program(name="t", device="ve2802", tiles=specs, **kw)


def _bd(i, buf, n, nxt=None, **kw):
    kw.setdefault("sizes", [n])
    kw.setdefault("strides", [1])
    return BufferDescriptor(id=i, buffer=buf, offset=0, next=nxt, **kw)


def _both_modes(p, inputs=None):
    res = simulate(p, inputs)
    assert simulate(p, mode="timing").report.cycles == res.report.cycles
    return res


# ---- stream switch ports ----

def _eastward(cols: int) -> Program:
    """Compute tiles (0..cols-1, 3) each send 64 bytes to a shim east of them: X then Y, every
    route would run east along row 3 through the link out of tile (cols-1, 3)."""
    shims = [(5 + i // 2, 0, i % 2) for i in range(cols)]
    tiles = [(c, 3) for c in range(cols)] + [s[:2] for s in shims]
    return _program(tiles, ddr=[DdrTensor(f"y{c}", [64], "int8", "output") for c in range(cols)],
                    buffers=[Buffer(f"b{c}", [c, 3], BASE, [64], "int8") for c in range(cols)],
                    dmas=[DmaChannel([c, 3], "mm2s", 0, [_bd(0, f"b{c}", 64)]) for c in range(cols)]
                    + [DmaChannel(list(s[:2]), "s2mm", s[2], [_bd(0, f"y{c}", 64)])
                       for c, s in enumerate(shims)],
                    routes=[Route([c, 3, 0], [list(s)]) for c, s in enumerate(shims)])


def test_a_route_whose_switch_is_full_takes_the_shortest_free_path():
    """Four routes fill the 4 east ports out of tile (4,3); the fifth, from (4,3) to shim (7,0),
    goes down and then east along the shim row instead: as short (6 links), so the run is still
    the longest route's 64 / 4 + 9 switches (tile (0,3) to shim (5,0))."""
    assert simulate(_eastward(5), mode="timing").report.cycles == 64 // RATE + 9 * HOP


def _npu1_into_memtiles(k: int) -> Program:
    """NPU1 (4 columns, memory tiles in row 1): k compute MM2S channels each send 64 bytes to a
    memory-tile S2MM channel. Every stream must enter the memory-tile row from above, and each
    memory tile has 4 north slave ports: 16 streams at most, whatever the paths."""
    dev = get_device("npu1")
    srcs = [(c, r, ch) for r in range(2, 6) for c in range(4) for ch in (0, 1)][:k]
    dsts = [(c, 1, ch) for ch in range(6) for c in range(4)][:k]
    tiles = sorted({s[:2] for s in srcs} | {d[:2] for d in dsts})
    bufs = [Buffer(f"b{i}", list(s[:2]), dev.stack_bytes + 64 * s[2], [64], "int8")
            for i, s in enumerate(srcs)]
    bufs += [Buffer(f"m{i}", list(d[:2]), 64 * d[2], [64], "int8") for i, d in enumerate(dsts)]
    dmas = [DmaChannel(list(s[:2]), "mm2s", s[2], [_bd(0, f"b{i}", 64)])
            for i, s in enumerate(srcs)]
    dmas += [DmaChannel(list(d[:2]), "s2mm", d[2], [_bd(0, f"m{i}", 64)])
             for i, d in enumerate(dsts)]
    return Program("t", "npu1", [TileSpec(c, r, "memtile" if r == 1 else "compute")
                                 for c, r in tiles], buffers=bufs, dmas=dmas,
                   routes=[Route(list(s), [list(d)]) for s, d in zip(srcs, dsts)])


def test_routes_beyond_every_path_fail_at_load_naming_tile_direction_routes():
    assert simulate(_npu1_into_memtiles(16), mode="timing").report.cycles > 0
    with pytest.raises(ValueError) as e:
        simulate(_npu1_into_memtiles(17), mode="timing")
    msg = str(e.value)
    assert msg.startswith("stream switch of compute tile 0,2: 5 streams leave to the south "
                          "through its 4 master ports: ")
    assert "0,4:mm2s0 -> 0,1:s2mm4" in msg  # the 17th route, on its X-then-Y path


def test_memory_tile_route_leaves_vertically_to_a_row_with_east_west_ports():
    """Memory tiles have no east/west stream ports: memtile (0,1) -> memtile (1,1) climbs to the
    first compute row, crosses, and comes back down: 5 links, 6 switches."""
    n = 400
    p = _program([(0, 1), (1, 1), (1, 0)],
                 buffers=[Buffer("a", [0, 1], 0, [n], "int8", initial="x"),
                          Buffer("b", [1, 1], 0, [n], "int8")],
                 dmas=[DmaChannel([0, 1], "mm2s", 0, [_bd(0, "a", n)]),
                       DmaChannel([1, 1], "s2mm", 0, [_bd(0, "b", n)])],
                 routes=[Route([0, 1, 0], [[1, 1, 0]])], constants={"x": np.ones(n, np.int8)})
    assert _both_modes(p).report.cycles == n // RATE + 6 * HOP


# ---- packet-switched merges ----

def _merge(sources, dsts, n=64):
    """Each source (shim col, channel) sends two BDs (packets) of n bytes; ``dsts`` gives each
    source's S2MM end (col, row, channel); every S2MM channel takes all that arrives."""
    ddr = [DdrTensor(f"x{i}", [2 * n], "int8", "input") for i in range(len(sources))]
    dmas = [DmaChannel([c, 0], "mm2s", ch, [_bd(0, f"x{i}", n, nxt=1),
                                            BufferDescriptor(1, f"x{i}", n, [n], [1])])
            for i, (c, ch) in enumerate(sources)]
    ends = sorted(set(dsts))
    per_end = {e: 2 * n * dsts.count(e) for e in ends}
    bufs = [Buffer(f"b{j}", [e[0], e[1]], BASE + e[2] * 4096, [per_end[e]], "int8")
            for j, e in enumerate(ends)]
    dmas += [DmaChannel([e[0], e[1]], "s2mm", e[2], [_bd(0, f"b{j}", per_end[e])])
             for j, e in enumerate(ends)]
    routes = [Route([c, 0, ch], [list(d)]) for (c, ch), d in zip(sources, dsts)]
    tiles = [(c, 0) for c, _ in sources] + [e[:2] for e in ends]
    return _program(tiles, ddr=ddr, buffers=bufs, dmas=dmas, routes=routes)


def test_packet_merge_grants_sources_round_robin():
    """Three sources into one S2MM port of tile (0,3), two packets each: the port serves
    A0 B0 C0 A1 B1 C1, one at a time, each with its own route's switch latency; then the tile
    sends the 6n bytes to DDR (lock-chained) so the landing order can be read."""
    n = 16
    p = _merge([(0, 0), (0, 1), (1, 0)], [(0, 3, 0)] * 3, n)
    p.ddr.append(DdrTensor("y", [6 * n], "int8", "output"))
    p.locks.append(Lock("in", [0, 3], 0, 0))
    p.dmas[3].bds[0].release = LockOp("in")
    p.dmas += [DmaChannel([0, 3], "mm2s", 0, [_bd(0, "b0", 6 * n, acquire=LockOp("in"))]),
               DmaChannel([1, 0], "s2mm", 0, [_bd(0, "y", 6 * n)])]
    p.routes.append(Route([0, 3, 0], [[1, 0, 0]]))
    x = {f"x{i}": np.repeat(np.array([10 * i, 10 * i + 1], np.int8), n) for i in range(3)}
    res = _both_modes(p, x)
    assert [int(v) for v in res.outputs["y"][::n]] == [0, 10, 20, 1, 11, 21]
    lat = [4 * HOP, 4 * HOP, 5 * HOP]  # (1,0) -> (0,3): one step west, three north
    forward = 6 * n // RATE + 5 * HOP  # (0,3) -> (1,0): one east, three south
    assert res.report.cycles == 2 * sum(n // RATE + t for t in lat) + forward


def test_packet_merge_shares_switch_ports_that_circuits_cannot():
    """Twenty NPU1 compute channels into one memory-tile S2MM port: as circuits 17 cannot load
    (above), merged they are one packet stream wherever they meet, so each takes its X-then-Y
    path, and the twenty 64-byte packets serialise on the port: sum of 16 + switches x 4."""
    p = _npu1_into_memtiles(20)
    srcs = [r.src for r in p.routes]
    p.routes = [Route(list(src), [[0, 1, 0]]) for src in srcs]
    p.buffers = [b for b in p.buffers if b.name.startswith("b")]
    p.buffers.append(Buffer("m", [0, 1], 0, [64 * 20], "int8"))
    p.dmas = [ch for ch in p.dmas if ch.direction == "mm2s"]
    p.dmas.append(DmaChannel([0, 1], "s2mm", 0, [_bd(0, "m", 64 * 20)]))
    assert simulate(p, mode="timing").report.cycles == sum(64 // RATE + (c + r) * HOP
                                                           for c, r, _ in srcs)


# ---- DDR through the NoC ----

def _shims_streaming(k: int, n: int) -> Program:
    """k shim MM2S channels (shims 0.., both channels) each send n bytes to a compute tile of its
    column (row 3 for channel 0, row 4 for channel 1), all starting at cycle 0."""
    srcs = [(i // 2, i % 2) for i in range(k)]
    ddr = [DdrTensor(f"x{i}", [n], "int8", "input") for i in range(k)]
    bufs = [Buffer(f"b{i}", [c, 3 + ch], BASE, [n], "int8") for i, (c, ch) in enumerate(srcs)]
    dmas = [DmaChannel([c, 0], "mm2s", ch, [_bd(0, f"x{i}", n)]) for i, (c, ch) in enumerate(srcs)]
    dmas += [DmaChannel([c, 3 + ch], "s2mm", 0, [_bd(0, f"b{i}", n)])
             for i, (c, ch) in enumerate(srcs)]
    routes = [Route([c, 0, ch], [[c, 3 + ch, 0]]) for c, ch in srcs]
    tiles = [(c, 0) for c, _ in srcs] + [(c, 3 + ch) for c, ch in srcs]
    return _program(tiles, ddr=ddr, buffers=bufs, dmas=dmas, routes=routes)


@pytest.mark.parametrize("k", [1, 6, 8])
def test_shims_share_the_ddr_bandwidth(k):
    """Channel i's chunk books its n bytes on DDR after the i before it: done by
    ceil((i + 1) n / DDR), or by its stream time n / 4 if later. VE2802: 27 B/cycle; 6 channels
    of 2700 B fit under their stream time (600 < 675), 8 do not (800)."""
    ddr = DEV.ddr_bytes_per_cycle
    n = 100 * ddr
    lat = [(4 + i % 2) * HOP for i in range(k)]
    expected = max(max(n // RATE, math.ceil((i + 1) * n / ddr)) + lat[i] for i in range(k))
    assert expected == {1: 675 + 16, 6: 675 + 20, 8: 800 + 20}[k]
    p = _shims_streaming(k, n)
    x = {f"x{i}": np.full(n, i, np.int8) for i in range(k)}
    assert _both_modes(p, x).report.cycles == expected


# ---- the shim's PL interface: stream ports beside DDR ----

def _pl(p: Program) -> Program:
    """The same program with every DDR tensor fed or drained through PL stream ports."""
    for t in p.ddr:
        t.io = "pl"
    return p


def test_pl_stream_moves_n_bytes_at_the_pl_rate():
    """PL port 5 of shim (0,0) (a number past the DMA's two) streams 1000 bytes into compute
    tile (0,3), and the tile streams them back out through PL port 3: each way 1000 / 4 cycles
    (64 bits at the PL clock, half the AIE clock = 4 B/cycle) plus 4 switches."""
    assert DEV.pl_stream_bytes_per_cycle == 4
    n = 1000
    x = np.arange(n).astype(np.int8)
    p = _pl(_program([(0, 0), (0, 3)],
                     ddr=[DdrTensor("x", [n], "int8", "input"),
                          DdrTensor("y", [n], "int8", "output")],
                     buffers=[Buffer("b", [0, 3], BASE, [n], "int8")],
                     locks=[Lock("full", [0, 3], 0, 0)],
                     dmas=[DmaChannel([0, 0], "mm2s", 5, [_bd(0, "x", n)]),
                           DmaChannel([0, 3], "s2mm", 0, [_bd(0, "b", n, release=LockOp("full"))]),
                           DmaChannel([0, 3], "mm2s", 0, [_bd(0, "b", n, acquire=LockOp("full"))]),
                           DmaChannel([0, 0], "s2mm", 3, [_bd(0, "y", n)])],
                     routes=[Route([0, 0, 5], [[0, 3, 0]]), Route([0, 3, 0], [[0, 0, 3]])]))
    res = _both_modes(p, {"x": x})
    np.testing.assert_array_equal(res.outputs["y"], x)
    assert res.report.cycles == 2 * (n // 4 + 4 * HOP)


@pytest.mark.parametrize("k", [8, 16])
def test_pl_fed_shims_are_not_capped_by_ddr(k):
    """The DDR test's k channels of 2700 B through PL ports: each at its stream time 675 plus
    its 4 or 5 switches, however many; through DDR they take ceil(k * 2700 / 27) = 100 k."""
    n = 100 * DEV.ddr_bytes_per_cycle
    x = {f"x{i}": np.full(n, i, np.int8) for i in range(k)}
    ddr = _both_modes(_shims_streaming(k, n), x).report.cycles
    pl = _both_modes(_pl(_shims_streaming(k, n)), x)
    assert ddr == 100 * k + 5 * HOP
    assert pl.report.cycles == n // RATE + 5 * HOP
    # the bytes arrived as they do from DDR
    assert pl.report.bytes_moved["total"] == k * n


def test_pl_port_limits_name_the_shim():
    """A shim has 8 PL-to-array and 6 array-to-PL ports, shared with its 2 DMA channels each way
    (numbers 0..7 / 0..5); NPU1 has no PL; a PL port takes no locks."""
    def one_port(channel, direction="mm2s", device="ve2802", io="pl", acquire=None):
        t = DdrTensor("x", [64], "int8", "input" if direction == "mm2s" else "output", io=io)
        shim = DmaChannel([1, 0], direction, channel, [_bd(0, "x", 64, acquire=acquire)])
        tile = DmaChannel([1, 3], "s2mm" if direction == "mm2s" else "mm2s", 0, [_bd(0, "b", 64)])
        ends = ([[1, 0, channel]], [[1, 3, 0]])[::1 if direction == "mm2s" else -1]
        p = _program([(1, 0), (1, 3)], ddr=[t], buffers=[Buffer("b", [1, 3], BASE, [64], "int8")],
                     dmas=[shim, tile], routes=[Route(ends[0][0], ends[1])])
        p.device = device
        return simulate(p, {"x": np.zeros(64, np.int8)} if direction == "mm2s" else None)

    assert one_port(7).report.cycles == one_port(5, "s2mm").report.cycles == 64 // RATE + 4 * HOP
    with pytest.raises(ValueError, match=r"shim channel 1,0:mm2s8: a shim tile has 8 mm2s"):
        one_port(8)
    with pytest.raises(ValueError, match=r"shim channel 1,0:s2mm6: a shim tile has 6 s2mm"):
        one_port(6, "s2mm")
    with pytest.raises(ValueError, match="npu1 has no PL interface"):
        one_port(0, device="npu1")
    with pytest.raises(ValueError, match="no locks"):
        one_port(0, acquire=LockOp("l"))
    mixed = _shims_streaming(2, 64)  # shim (0,0): DMA channel 0 from DDR, PL port 1
    mixed.ddr[1].io = "pl"
    assert simulate(mixed, mode="timing").report.cycles == 64 // RATE + 5 * HOP
    third = _shims_streaming(2, 64)  # a third DMA channel on shim (0,0), numbered 2
    third.ddr.append(DdrTensor("x2", [64], "int8", "input"))
    third.tiles.append(TileSpec(0, 5, "compute"))
    third.buffers.append(Buffer("b2", [0, 5], BASE, [64], "int8"))
    third.dmas += [DmaChannel([0, 0], "mm2s", 2, [_bd(0, "x2", 64)]),
                   DmaChannel([0, 5], "s2mm", 0, [_bd(0, "b2", 64)])]
    third.routes.append(Route([0, 0, 2], [[0, 5, 0]]))
    with pytest.raises(ValueError, match="shim tile 0,0: 3 mm2s DMA channels, a shim tile has 2"):
        simulate(third, mode="timing")
    third.ddr[2].io = "pl"
    assert simulate(third, mode="timing").report.cycles == 64 // RATE + 6 * HOP


def test_tensor_io_survives_serialisation_and_defaults_to_ddr():
    p = Program.from_bytes(_pl(_shims_streaming(1, 64)).to_bytes())
    assert p.ddr[0].io == "pl"
    d = p.to_json_dict()  # a program written before tensors had io
    del d["ddr"][0]["io"]
    out = io.BytesIO()
    np.savez(out, **{"program.json": np.frombuffer(json.dumps(d).encode(), np.uint8)})
    assert Program.from_bytes(out.getvalue()).ddr[0].io == "ddr"


# ---- memory tiles: n-D patterns, zero padding, neighbour memory ----

def _memtile_to_ddr(x: np.ndarray, bd: BufferDescriptor, out_elems: int, mem=(0, 1),
                    channel=0) -> Program:
    """Memory tile ``mem`` holds ``x`` (initial); its MM2S ``channel`` runs ``bd`` into a shim S2MM
    that writes DDR tensor y."""
    return _program([mem, (0, 1), (mem[0], 0)],
                    ddr=[DdrTensor("y", [out_elems], str(x.dtype), "output")],
                    buffers=[Buffer("m", [0, 1], 0, list(x.shape), str(x.dtype), initial="x")],
                    dmas=[DmaChannel(list(mem), "mm2s", channel, [bd]),
                          DmaChannel([mem[0], 0], "s2mm", 0, [_bd(0, "y", out_elems)])],
                    routes=[Route([mem[0], 1, channel], [[mem[0], 0, 0]])], constants={"x": x})


def test_memtile_zero_padding_puts_zeros_on_the_stream():
    """[4, 6] int16 read with 1 row before, 2 columns before and 1 after: a [5, 9] stream of 90
    bytes (the zeros take stream cycles), memtile (0,1) -> shim (0,0) through 2 switches."""
    x = np.arange(1, 25, dtype=np.int16).reshape(4, 6)
    bd = _bd(0, "m", 24, sizes=[4, 6], strides=[6, 1], pad_before=[1, 2], pad_after=[0, 1])
    res = _both_modes(_memtile_to_ddr(x, bd, 45))
    np.testing.assert_array_equal(res.outputs["y"].reshape(5, 9), np.pad(x, ((1, 0), (2, 1))))
    assert res.report.cycles == math.ceil(90 / RATE) + 2 * HOP


def test_memtile_four_dimensional_pattern_and_its_limit():
    """A 4-D pattern (the catalog's memory-tile maximum): the [2, 3, 4] tensor transposed to
    [2, 4, 3], twice (stride 0 outermost), each row padded with one zero in front: 64 bytes."""
    x = np.arange(24, dtype=np.int8).reshape(2, 3, 4)
    assert DEV.memtile["dims"] == 4
    bd = _bd(0, "m", 0, sizes=[2, 2, 4, 3], strides=[0, 12, 1, 4], pad_before=[0, 0, 0, 1])
    res = _both_modes(_memtile_to_ddr(x, bd, 64))
    want = np.pad(np.stack([x.transpose(0, 2, 1)] * 2), ((0, 0), (0, 0), (0, 0), (1, 0)))
    np.testing.assert_array_equal(res.outputs["y"].reshape(want.shape), want)
    assert res.report.cycles == 64 // RATE + 2 * HOP
    too_deep = _bd(0, "m", 0, sizes=[1, 1, 2, 2, 3, 4], strides=[0, 0, 0, 12, 4, 1])
    with pytest.raises(ValueError, match=r"6-D pattern \[1, 1, 2, 2, 3, 4\], a memtile DMA BD "
                                         r"has 4 plus an iteration dimension of at most 64"):
        simulate(_memtile_to_ddr(x, too_deep, 48), mode="timing")


def test_zero_padding_only_on_memory_tile_mm2s():
    n = 64
    p = _program([(0, 0), (0, 3)], ddr=[DdrTensor("x", [n], "int8", "input")],
                 buffers=[Buffer("b", [0, 3], BASE, [n], "int8")],
                 dmas=[DmaChannel([0, 0], "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel([0, 3], "s2mm", 0, [_bd(0, "b", n, pad_after=[1])])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])])
    with pytest.raises(ValueError, match="zero padding is done by memory-tile MM2S channels only, "
                                         "this is a compute s2mm channel"):
        simulate(p, mode="timing")


def test_memtile_dma_reads_its_west_neighbours_memory():
    """Memory tile (1,1)'s channel 0 reads a buffer in memory tile (0,1) and sends it down to shim
    (1,0): the bytes arrive, at the same stream pace; channel 4 and a tile two columns away
    cannot reach it."""
    x = (np.arange(1000) % 127).astype(np.int8)
    res = _both_modes(_memtile_to_ddr(x, _bd(0, "m", 1000), 1000, mem=(1, 1)))
    np.testing.assert_array_equal(res.outputs["y"], x)
    assert res.report.cycles == 1000 // RATE + 2 * HOP
    for mem, channel in (((1, 1), DEV.memtile["neighbour_channels"]), ((2, 1), 0)):
        with pytest.raises(ValueError, match="nor an east/west memory tile its channel reaches"):
            simulate(_memtile_to_ddr(x, _bd(0, "m", 1000), 1000, mem, channel), mode="timing")


def test_padding_fields_survive_serialisation_and_default_to_none():
    x = np.arange(24, dtype=np.int16).reshape(4, 6)
    bd = _bd(0, "m", 24, sizes=[4, 6], strides=[6, 1], pad_before=[1, 2], pad_after=[0, 1])
    p = Program.from_bytes(_memtile_to_ddr(x, bd, 45).to_bytes())
    assert (p.dmas[0].bds[0].pad_before, p.dmas[0].bds[0].pad_after) == ([1, 2], [0, 1])
    assert p.dmas[1].bds[0].pad_before is None
