"""Each part of the simulator on a small hand-built program whose cycle count is worked out by hand.

Device: VE2802 (AIE-ML): shims in row 0, memory tiles in rows 1-2, compute tiles from row 3. A
stream moves ``stream_bytes_per_cycle`` (4) bytes per cycle and every switch it crosses adds
``stream_switch_latency_cycles`` (4); a route from (c0, r0) to (c1, r1) crosses
``|c1 - c0| + |r1 - r0| + 1`` switches.
"""

import math

import numpy as np
import pytest

from tvm_aie.codegen.program import (Buffer, BufferDescriptor, Cascade, Core, DdrTensor,
                                     DmaChannel, Instr, KernelCall, Lock, LockOp, Program, Route,
                                     TileSpec)
from tvm_aie.codegen.resources import ResourceError
from tvm_aie.quant import requantize
from tvm_aie.sim import DeadlockError, SimulationError, matmul_cycles, simulate
from tvm_aie.sim.workloads import dense_layer, dense_program
from tvm_aie.target import get_device

DEV = get_device("ve2802")
RATE, HOP = DEV.stream_bytes_per_cycle, DEV.stream_switch_latency_cycles
SHIM, MEM, T0, T1, T2 = (0, 0), (0, 1), (0, 3), (1, 3), (2, 3)
BASE = DEV.stack_bytes


def _program(tiles, device="ve2802", **kw) -> Program:
    dev = get_device(device)
    specs = [TileSpec(c, r, "shim" if r == 0 else "memtile" if r < dev.first_compute_row
                      else "compute") for c, r in tiles]
    return Program(name="t", device=device, tiles=specs, **kw)


def _bd(i, buf, n, acquire=None, release=None, nxt=None):
    return BufferDescriptor(id=i, buffer=buf, offset=0, sizes=[n], strides=[1], acquire=acquire,
                            release=release, next=nxt)


def _acq(lock, v=1):
    return Instr(op="acquire", lock=LockOp(lock, v))


def _rel(lock, v=1):
    return Instr(op="release", lock=LockOp(lock, v))


def _hop(a, b):
    """Cycles a chunk spends in the switches between tiles a and b."""
    return (abs(a[0] - b[0]) + abs(a[1] - b[1]) + 1) * HOP


def _both_modes(p, inputs=None):
    """Run functionally and timing-only; the cycle counts must agree. Returns the functional run."""
    res = simulate(p, inputs)
    assert simulate(p, mode="timing").report.cycles == res.report.cycles
    return res


# ---- DMA ----

@pytest.mark.parametrize("n", [4, 1000, 4097])
def test_dma_of_n_bytes_shim_to_tile(n):
    p = _program([SHIM, T0], ddr=[DdrTensor("x", [n], "int8", "input")],
                 buffers=[Buffer("b", list(T0), BASE, [n], "int8")],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", n)])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])])
    res = _both_modes(p, {"x": np.arange(n).astype(np.int8)})
    assert res.report.cycles == math.ceil(n / RATE) + _hop(SHIM, T0)


def test_memory_tile_hop_stores_then_forwards():
    """shim -> memory tile (lock set when the whole buffer is in) -> compute tile: two transfers
    one after the other, each with its own switch latency."""
    n = 2048
    p = _program([SHIM, MEM, T0],
                 ddr=[DdrTensor("x", [n], "int8", "input"), DdrTensor("y", [n], "int8", "output")],
                 buffers=[Buffer("m", list(MEM), 0, [n], "int8"),
                          Buffer("b", list(T0), BASE, [n], "int8")],
                 locks=[Lock("in", list(MEM), 0, 0), Lock("got", list(T0), 0, 0)],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel(list(MEM), "s2mm", 0, [_bd(0, "m", n, release=LockOp("in"))]),
                       DmaChannel(list(MEM), "mm2s", 0, [_bd(0, "m", n, acquire=LockOp("in"))]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", n, release=LockOp("got"))]),
                       DmaChannel(list(T0), "mm2s", 0, [_bd(0, "b", n, acquire=LockOp("got"))]),
                       DmaChannel(list(SHIM), "s2mm", 0, [_bd(0, "y", n)])],
                 routes=[Route([0, 0, 0], [[0, 1, 0]]), Route([0, 1, 0], [[0, 3, 0]]),
                         Route([0, 3, 0], [[0, 0, 0]])])
    x = (np.arange(n) % 251).astype(np.int8)
    res = _both_modes(p, {"x": x})
    np.testing.assert_array_equal(res.outputs["y"], x)
    beat = math.ceil(n / min(RATE, DEV.memtile["bytes_per_cycle_per_channel"]))
    assert res.report.cycles == (beat + _hop(SHIM, MEM)) + (beat + _hop(MEM, T0)) \
        + (beat + _hop(T0, SHIM))


# ---- contention ----

def _merge(n, merged: bool):
    """Two shim MM2S channels send n bytes each to tile T0: into one S2MM port (a packet-switched
    merge) or into two."""
    ddr = [DdrTensor("x0", [n], "int8", "input"), DdrTensor("x1", [n], "int8", "input")]
    dmas = [DmaChannel(list(SHIM), "mm2s", i, [_bd(0, f"x{i}", n)]) for i in (0, 1)]
    if merged:
        bufs = [Buffer("b", list(T0), BASE, [2 * n], "int8")]
        dmas.append(DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", 2 * n)]))
        routes = [Route([0, 0, i], [[0, 3, 0]]) for i in (0, 1)]
    else:
        bufs = [Buffer(f"b{i}", list(T0), BASE + i * n, [n], "int8") for i in (0, 1)]
        dmas += [DmaChannel(list(T0), "s2mm", i, [_bd(0, f"b{i}", n)]) for i in (0, 1)]
        routes = [Route([0, 0, i], [[0, 3, i]]) for i in (0, 1)]
    return _program([SHIM, T0], ddr=ddr, buffers=bufs, dmas=dmas, routes=routes)


def test_two_streams_on_one_port_serialise():
    n = 512
    one = math.ceil(n / RATE) + _hop(SHIM, T0)
    x = {"x0": np.full(n, 1, np.int8), "x1": np.full(n, 2, np.int8)}
    assert _both_modes(_merge(n, merged=False), x).report.cycles == one
    assert _both_modes(_merge(n, merged=True), x).report.cycles == 2 * one


def test_two_transfers_on_one_dma_channel_serialise():
    """One shim MM2S channel with a BD per tensor: the BDs run one after the other."""
    n = 256
    p = _program([SHIM, T0],
                 ddr=[DdrTensor("x0", [n], "int8", "input"), DdrTensor("x1", [n], "int8", "input")],
                 buffers=[Buffer("b", list(T0), BASE, [2 * n], "int8")],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x0", n, nxt=1), _bd(1, "x1", n)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", 2 * n)])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])])
    res = _both_modes(p, {"x0": np.zeros(n, np.int8), "x1": np.ones(n, np.int8)})
    assert res.report.cycles == 2 * (math.ceil(n / RATE) + _hop(SHIM, T0))
    assert res.report.bytes_moved["0,0:mm2s0"] == 2 * n


# ---- locks, ping-pong, stalls ----

def _stream_into_core(blocks: int, depth: int, rows=8, k=64, n=64):
    """shim -> T0 through a FIFO of ``depth`` slots; the core runs one matmul per block."""
    w = np.ones((k, n), np.int8)
    bufs = [Buffer("w", list(T0), BASE, [k, n], "int8", initial="w"),
            Buffer("c", list(T0), BASE + k * n, [rows, n], "int32")]
    bufs += [Buffer(f"a{s}", list(T0), BASE + k * n + rows * n * 4 + s * rows * k, [rows, k],
                    "int8") for s in range(depth)]
    locks = [Lock("free", list(T0), 0, depth), Lock("full", list(T0), 1, 0)]
    s2mm = [_bd(s, f"a{s}", rows * k, LockOp("free"), LockOp("full"), (s + 1) % depth)
            for s in range(depth)]
    call = [KernelCall("matmul", {"a": f"a{s}", "b": "w", "c": "c"},
                       {"precision": "int8", "m": rows, "k": k, "n": n, "out_dtype": "int32"})
            for s in range(depth)]
    body = [ins for s in range(depth)
            for ins in (_acq("full"), Instr(op="call", call=call[s]), _rel("free"))]
    p = _program([SHIM, T0], ddr=[DdrTensor("x", [blocks * rows, k], "int8", "input")],
                 buffers=bufs, locks=locks, constants={"w": w},
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", blocks * rows * k)]),
                       DmaChannel(list(T0), "s2mm", 0, s2mm)],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])],
                 cores=[Core(list(T0), [Instr(op="loop", count=blocks // depth, body=body)])])
    t = math.ceil(rows * k / RATE) + _hop(SHIM, T0)
    c = matmul_cycles(DEV, "int8", rows, k, n, "int32", cascade=False)
    return p, t, c


def test_pingpong_overlaps_transfer_and_compute():
    """Two slots: after the first block, the next one is always in before the core wants it
    (transfer t < kernel c), so the run is t + blocks * c and the core stalls only at the start."""
    blocks = 8
    p, t, c = _stream_into_core(blocks, depth=2)
    assert t < c
    rep = simulate(p, mode="timing").report
    assert rep.cycles == t + blocks * c
    assert rep.per_tile["0,3"]["stall_on"] == {"full": t}
    assert rep.per_tile["0,3"]["busy"] == blocks * c


def test_single_buffer_serialises_transfer_and_compute():
    """One slot: each block is transferred only once the core has freed the slot: blocks * (t + c),
    and the core's stall is reported on the lock it waited on."""
    blocks = 6
    p, t, c = _stream_into_core(blocks, depth=1)
    rep = simulate(p, mode="timing").report
    assert rep.cycles == blocks * (t + c)
    assert rep.per_tile["0,3"]["stall"] == blocks * t
    assert rep.per_tile["0,3"]["stall_on"] == {"full": blocks * t}


def test_semaphore_lock_counts_releases():
    """Core 0 releases a lock 3 times (one per kernel call); core 1 acquires all 3 at once."""
    a, w = np.ones((4, 8), np.int8), np.ones((8, 8), np.int8)
    params = {"precision": "int8", "m": 4, "k": 8, "n": 8, "out_dtype": "int32"}
    bufs, cores = [], []
    for i, t in enumerate((T0, T1)):
        bufs += [Buffer(f"a{i}", list(t), BASE, [4, 8], "int8", initial="a"),
                 Buffer(f"w{i}", list(t), BASE + 32, [8, 8], "int8", initial="w"),
                 Buffer(f"c{i}", list(t), BASE + 96, [4, 8], "int32")]
    call = [Instr(op="call", call=KernelCall("matmul", {"a": f"a{i}", "b": f"w{i}",
                                                        "c": f"c{i}"}, params)) for i in (0, 1)]
    cores = [Core(list(T0), [Instr(op="loop", count=3, body=[call[0], _rel("go")])]),
             Core(list(T1), [_acq("go", 3), call[1]])]
    p = _program([T0, T1], buffers=bufs, locks=[Lock("go", list(T1), 0, 0)], cores=cores,
                 constants={"a": a, "w": w})
    rep = simulate(p, mode="timing").report
    c = rep.per_tile["0,3"]["busy"] // 3
    assert rep.cycles == 4 * c
    assert rep.per_tile["1,3"]["stall_on"] == {"go": 3 * c}


def test_boolean_locks_on_aie_hold_one():
    """AIE (VC1902) locks are single bits: a second release without an acquire is an error."""
    t = (0, 1)  # VC1902 has no memory tiles: compute rows start at row 1
    p = _program([t], device="vc1902", locks=[Lock("l", list(t), 0, 0)],
                 cores=[Core(list(t), [_rel("l"), _rel("l")])])
    with pytest.raises(SimulationError, match="exceeds its maximum 1"):
        simulate(p, mode="timing")


# ---- cascade ----

def _cascade_chain(length: int, blocks: int, m=8, k=32, n=16, device="ve2802", row=3):
    """``length`` tiles in a row, in the row's cascade direction, each adding its K slice to the
    partial sum from its predecessor; the last requantises. ``blocks`` calls per tile."""
    dev = get_device(device)
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (m, k * length), dtype=np.int8)
    w = rng.integers(-128, 128, (k * length, n), dtype=np.int8)
    mult, shift = np.full(n, 1 << 30, np.int32), np.full(n, 39, np.int8)
    cols = range(length) if "east" in dev.cascade_direction(row) else range(length - 1, -1, -1)
    tiles = [(c, row) for c in cols]
    bufs, cores, consts = [], [], {"mult": mult, "shift": shift}
    base = dev.stack_bytes
    for i, t in enumerate(tiles):
        consts[f"x{i}"], consts[f"w{i}"] = x[:, i * k:(i + 1) * k], w[i * k:(i + 1) * k]
        bufs += [Buffer(f"x{i}", list(t), base, [m, k], "int8", initial=f"x{i}"),
                 Buffer(f"w{i}", list(t), base + 512, [k, n], "int8", initial=f"w{i}")]
        roles = {"a": f"x{i}", "b": f"w{i}"}
        params = {"precision": "int8", "m": m, "k": k, "n": n, "out_dtype": "int8",
                  "cascade_in": i > 0, "cascade_out": i < length - 1}
        if i == length - 1:
            bufs += [Buffer("mult", list(t), base + 1024, [n], "int32", initial="mult"),
                     Buffer("shift", list(t), base + 1088, [n], "int8", initial="shift"),
                     Buffer("c", list(t), base + 1120, [m, n], "int8")]
            roles.update(mult="mult", shift="shift", c="c")
        body = [Instr(op="call", call=KernelCall("matmul", roles, params))]
        cores.append(Core(list(t), [Instr(op="loop", count=blocks, body=body)]))
    cascades = [Cascade(list(a), list(b)) for a, b in zip(tiles, tiles[1:])]
    p = _program(tiles, device=device, buffers=bufs, cores=cores, cascades=cascades,
                 constants=consts)
    return p, tiles


def test_cascade_chain_runs_in_lockstep():
    """Equal calls on every tile: each pushes its block as the next finishes its own, so the chain
    takes blocks x (one call), with no stall anywhere after the first block."""
    p, tiles = _cascade_chain(length=4, blocks=5)
    rep = simulate(p, mode="timing").report
    c = matmul_cycles(DEV, "int8", 8, 32, 16, "int8", cascade=True)
    assert rep.cycles == 5 * c
    assert all(rep.per_tile[f"{t[0]},{t[1]}"]["stall"] == 0 for t in tiles)


def test_aie_cascade_snakes_west_on_odd_rows():
    """VC1902: compute rows start at row 1; the cascade runs east on row 1 and west on row 2."""
    for row in (1, 2):
        p, tiles = _cascade_chain(length=3, blocks=2, device="vc1902", row=row)
        assert (tiles[0][0] < tiles[-1][0]) == (row == 1)
        assert simulate(p, mode="timing").report.cycles > 0
    p, _ = _cascade_chain(length=2, blocks=1, device="vc1902", row=2)
    p.cascades = [Cascade([0, 2], [1, 2])]  # eastwards on an odd row
    with pytest.raises(ValueError, match="cascade 0,2->1,2: not between neighbours"):
        simulate(p, mode="timing")


# ---- deadlock ----

def test_deadlock_lists_every_blocked_core_channel_and_lock_at_once():
    """Two cores each wait for the other's lock, and a DMA waits for a slot nobody frees: reported
    at the cycle it happens, not after the cycle limit."""
    n = 64
    p = _program([SHIM, T0, T1], ddr=[DdrTensor("x", [n], "int8", "input")],
                 buffers=[Buffer("b", list(T0), BASE, [n], "int8")],
                 locks=[Lock("ping", list(T0), 0, 0), Lock("pong", list(T1), 0, 0),
                        Lock("slot", list(T0), 1, 0)],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", n, LockOp("slot"))])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])],
                 cores=[Core(list(T0), [_acq("pong"), _rel("ping")]),
                        Core(list(T1), [_acq("ping"), _rel("pong")])])
    with pytest.raises(DeadlockError) as e:
        simulate(p, mode="timing", max_cycles=10**12)
    msg = str(e.value)
    assert msg.startswith("deadlock at cycle 0;")
    for line in ("core 0,3: waits on lock pong (wants 1, holds 0)",
                 "core 1,3: waits on lock ping (wants 1, holds 0)",
                 "DMA 0,3:s2mm0: waits on lock slot (wants 1, holds 0)",
                 "DMA 0,0:mm2s0: waits on stream transfer on 0,0:mm2s0"):
        assert line in msg


# ---- functional == timing on what the codegen makes ----

@pytest.mark.parametrize("device", ["ve2802", "npu2"])
def test_codegen_dense_functional_equals_timing(device):
    m, k, n = 32, 256, 128
    p = dense_program(m, k, n, n_par=2, cascade=2, device=device)
    layer = dense_layer(m, k, n)
    x = np.random.default_rng(5).integers(-128, 128, (m, k), dtype=np.int8)
    pad = p.ddr_tensor("input").shape
    xp = np.zeros(pad, np.int8)
    xp[:m, :k] = x
    res = _both_modes(p, {"input": xp})
    ref = requantize(x.astype(np.int64) @ layer.weight.astype(np.int64) + layer.bias,
                     layer.mult, layer.shift, 0, False)
    np.testing.assert_array_equal(res.outputs["output"][:m, :n], ref)
    assert res.report.tiles_used == 4


def test_codegen_dense_on_aie1_needs_more_shim_bds_than_a_channel_has():
    """An AIE1 shim BD is linear (one dimension): the K halves of a cascade read 32 separate
    rows of the input, 32 BDs on a channel of 16."""
    with pytest.raises(ResourceError, match=r"DDR tensor input: its 2-D pattern \[32, 128\] "
                                            r"takes 32 BDs of 1 dimensions on a shim DMA "
                                            r"channel, which has 16"):
        dense_program(32, 256, 128, n_par=2, cascade=2, device="vc1902")
