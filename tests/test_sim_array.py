"""The array simulator on small hand-built programs whose bytes and cycles are worked out by hand.

Device: VE2802 (AIE-ML): shims in row 0, memory tiles in rows 1-2, compute tiles from row 3.
"""

import math

import numpy as np
import pytest

from tvm_aie.codegen.program import (Buffer, BufferDescriptor, Cascade, Core, DdrTensor,
                                     DmaChannel, Instr, KernelCall, Lock, LockOp, Program, Route,
                                     TileSpec)
from tvm_aie.quant import requantize
from tvm_aie.sim import CycleLimitError, DeadlockError, SimulationError, simulate
from tvm_aie.target import get_device

DEV = get_device("ve2802")
STREAM_SWITCH_LATENCY = DEV.stream_switch_latency_cycles
SHIM, T0, T1 = (0, 0), (0, 3), (1, 3)
BASE = DEV.stack_bytes  # first byte a compute tile's buffers may use


def _program(tiles, **kw) -> Program:
    kinds = {0: "shim", 1: "memtile", 2: "memtile"}
    specs = [TileSpec(c, r, kinds.get(r, "compute")) for c, r in tiles]
    return Program(name="t", device="ve2802", tiles=specs, **kw)


def _bd(i, buf, n, acquire=None, release=None, nxt=None, offset=0, sizes=None, strides=None):
    return BufferDescriptor(id=i, buffer=buf, offset=offset, sizes=sizes or [n],
                            strides=strides or [1], acquire=acquire, release=release, next=nxt)


def _acq(lock, v=1):
    return Instr(op="acquire", lock=LockOp(lock, v))


def _rel(lock, v=1):
    return Instr(op="release", lock=LockOp(lock, v))


def _switches(a, b):
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) + 1


def test_shim_to_tile_dma_takes_bytes_over_stream_width_plus_switch_latency():
    n = 1000
    p = _program([SHIM, T0],
                 ddr=[DdrTensor("x", [n], "int8", "input")],
                 buffers=[Buffer("buf", list(T0), BASE, [n], "int8")],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "buf", n)])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])])
    x = np.arange(n).astype(np.int8)
    res = simulate(p, {"x": x})
    latency = _switches(SHIM, T0) * STREAM_SWITCH_LATENCY
    expected = math.ceil(n / DEV.stream_bytes_per_cycle) + latency
    assert res.report.cycles == expected == 250 + 4 * 4
    assert res.report.bytes_moved["total"] == n
    assert res.report.bytes_moved["0,0:mm2s0"] == n
    assert simulate(p, mode="timing").report.cycles == expected


def _pingpong(rows=8, blocks=4, k=16, n=16):
    """shim -> tile (2 ping-pong slots) -> matmul + requantise -> 2 slots -> shim."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-2000, 2000, n).astype(np.int32)
    mult = np.full(n, 1 << 30, np.int32)
    shift = np.full(n, 38, np.int8)
    m = rows * blocks
    bufs = [Buffer("w", list(T0), BASE, [k, n], "int8", initial="w"),
            Buffer("bias", list(T0), BASE + 256, [n], "int32", initial="bias"),
            Buffer("mult", list(T0), BASE + 320, [n], "int32", initial="mult"),
            Buffer("shift", list(T0), BASE + 384, [n], "int8", initial="shift")]
    off = BASE + 512
    for s in range(2):
        bufs += [Buffer(f"a{s}", list(T0), off, [rows, k], "int8"),
                 Buffer(f"c{s}", list(T0), off + rows * k, [rows, n], "int8")]
        off += rows * (k + n)
    locks = [Lock("a.free", list(T0), 0, 2), Lock("a.full", list(T0), 1, 0),
             Lock("c.free", list(T0), 2, 2), Lock("c.full", list(T0), 3, 0)]
    s2mm = [_bd(s, f"a{s}", rows * k, LockOp("a.free"), LockOp("a.full"), (s + 1) % 2)
            for s in range(2)]
    mm2s = [_bd(s, f"c{s}", rows * n, LockOp("c.full"), LockOp("c.free"), (s + 1) % 2)
            for s in range(2)]
    params = {"precision": "int8", "m": rows, "k": k, "n": n, "relu": False, "out_zp": 3,
              "out_dtype": "int8"}

    def step(s):
        call = KernelCall("matmul", {"a": f"a{s}", "b": "w", "c": f"c{s}", "bias": "bias",
                                     "mult": "mult", "shift": "shift"}, params)
        return [_acq("a.full"), _acq("c.free"), Instr(op="call", call=call),
                _rel("a.free"), _rel("c.full")]

    body = [Instr(op="loop", count=blocks // 2, body=step(0) + step(1))]
    p = _program([SHIM, T0],
                 ddr=[DdrTensor("x", [m, k], "int8", "input"),
                      DdrTensor("y", [m, n], "int8", "output")],
                 buffers=bufs, locks=locks,
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", m * k)]),
                       DmaChannel(list(T0), "s2mm", 0, s2mm),
                       DmaChannel(list(T0), "mm2s", 0, mm2s),
                       DmaChannel(list(SHIM), "s2mm", 0, [_bd(0, "y", m * n)])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]]), Route([0, 3, 0], [[0, 0, 0]])],
                 cores=[Core(list(T0), body)],
                 constants={"w": w, "bias": bias, "mult": mult, "shift": shift})
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    ref = requantize(x.astype(np.int64) @ w.astype(np.int64) + bias, mult, shift, 3, False)
    return p, x, ref


def test_pingpong_pipeline_output_and_timing_mode_cycles():
    p, x, ref = _pingpong()
    res = simulate(p, {"x": x})
    np.testing.assert_array_equal(res.outputs["y"], ref)
    assert res.outputs["y"].dtype == np.int8
    timing = simulate(p, None, mode="timing")
    assert timing.outputs == {}
    assert timing.report.cycles == res.report.cycles
    rep = res.report
    tile = rep.per_tile["0,3"]
    assert tile["macs"] == rep.macs == 32 * 16 * 16
    assert rep.tiles_used == 1 and rep.peak_macs_per_cycle == DEV.peak_macs_per_cycle("int8")
    # The core waits for the first block, so its stall is on the input FIFO's "full" lock.
    assert tile["stall_on"]["a.full"] > 0
    assert tile["busy"] + tile["stall"] <= rep.cycles
    assert 0 < rep.efficiency < 1
    assert rep.to_dict()["cycles"] == rep.cycles


def test_lock_handshake_orders_two_cores():
    """Core 1 waits on a lock core 0 releases after its kernel: it stalls exactly that long."""
    a = np.ones((4, 8), np.int8)
    w = np.ones((8, 8), np.int8)
    bufs, cores = [], []
    for t in (T0, T1):
        tag = f"{t[0]}"
        bufs += [Buffer(f"a{tag}", list(t), BASE, [4, 8], "int8", initial="a"),
                 Buffer(f"w{tag}", list(t), BASE + 32, [8, 8], "int8", initial="w"),
                 Buffer(f"c{tag}", list(t), BASE + 96, [4, 8], "int32")]
    params = {"precision": "int8", "m": 4, "k": 8, "n": 8, "out_dtype": "int32"}

    def call(tag):
        return Instr(op="call", call=KernelCall("matmul", {"a": f"a{tag}", "b": f"w{tag}",
                                                           "c": f"c{tag}"}, params))

    cores = [Core(list(T0), [call("0"), _rel("go")]), Core(list(T1), [_acq("go"), call("1")])]
    p = _program([T0, T1], buffers=bufs, locks=[Lock("go", list(T1), 0, 0)], cores=cores,
                 constants={"a": a, "w": w})
    rep = simulate(p, mode="timing").report
    kernel = rep.per_tile["0,3"]["busy"]
    assert rep.cycles == 2 * kernel
    assert rep.per_tile["1,3"]["stall_on"] == {"go": kernel}


def test_cascade_chain_k_split_matmul_is_bit_exact():
    rng = np.random.default_rng(1)
    m, k, n = 8, 64, 16
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = np.full(n, 1_500_000_000, np.int32)
    shift = np.full(n, 40, np.int8)
    h = k // 2
    consts = {"x0": x[:, :h], "x1": x[:, h:], "w0": w[:h], "w1": w[h:], "bias": bias,
              "mult": mult, "shift": shift}
    bufs = [Buffer("x0", list(T0), BASE, [m, h], "int8", initial="x0"),
            Buffer("w0", list(T0), BASE + 256, [h, n], "int8", initial="w0"),
            Buffer("x1", list(T1), BASE, [m, h], "int8", initial="x1"),
            Buffer("w1", list(T1), BASE + 256, [h, n], "int8", initial="w1"),
            Buffer("bias", list(T1), BASE + 768, [n], "int32", initial="bias"),
            Buffer("mult", list(T1), BASE + 832, [n], "int32", initial="mult"),
            Buffer("shift", list(T1), BASE + 896, [n], "int8", initial="shift"),
            Buffer("c", list(T1), BASE + 928, [m, n], "int8")]
    base = {"precision": "int8", "m": m, "k": h, "n": n, "relu": True, "out_zp": -5,
            "out_dtype": "int8"}
    c0 = KernelCall("matmul", {"a": "x0", "b": "w0"}, {**base, "cascade_out": True})
    c1 = KernelCall("matmul", {"a": "x1", "b": "w1", "bias": "bias", "mult": "mult",
                               "shift": "shift", "c": "c"}, {**base, "cascade_in": True})
    p = _program([SHIM, T0, T1], buffers=bufs, constants=consts,
                 ddr=[DdrTensor("y", [m, n], "int8", "output")],
                 locks=[Lock("done", list(T1), 0, 0)],
                 cascades=[Cascade(list(T0), list(T1))],
                 cores=[Core(list(T0), [Instr(op="call", call=c0)]),
                        Core(list(T1), [Instr(op="call", call=c1), _rel("done")])],
                 dmas=[DmaChannel(list(T1), "mm2s", 0, [_bd(0, "c", m * n, LockOp("done"))]),
                       DmaChannel(list(SHIM), "s2mm", 0, [_bd(0, "y", m * n)])],
                 routes=[Route([1, 3, 0], [[0, 0, 0]])])
    res = simulate(p)
    ref = requantize(x.astype(np.int64) @ w.astype(np.int64) + bias, mult, shift, -5, True)
    np.testing.assert_array_equal(res.outputs["y"], ref)
    assert res.report.macs == m * k * n
    assert simulate(p, mode="timing").report.cycles == res.report.cycles


def test_broadcast_route_delivers_the_same_bytes_to_two_tiles():
    n = 256
    bufs, locks, dmas, routes, ddr = [], [], [], [], [DdrTensor("x", [n], "int8", "input")]
    dmas.append(DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]))
    routes.append(Route([0, 0, 0], [[0, 3, 0], [1, 3, 0]]))
    for i, t in enumerate((T0, T1)):
        bufs.append(Buffer(f"b{i}", list(t), BASE, [n], "int8"))
        locks.append(Lock(f"got{i}", list(t), 0, 0))
        ddr.append(DdrTensor(f"y{i}", [n], "int8", "output"))
        dmas += [DmaChannel(list(t), "s2mm", 0, [_bd(0, f"b{i}", n, release=LockOp(f"got{i}"))]),
                 DmaChannel(list(t), "mm2s", 0, [_bd(0, f"b{i}", n, acquire=LockOp(f"got{i}"))]),
                 DmaChannel(list(SHIM), "s2mm", i, [_bd(0, f"y{i}", n)])]
        routes.append(Route([t[0], t[1], 0], [[0, 0, i]]))
    p = _program([SHIM, T0, T1], ddr=ddr, buffers=bufs, locks=locks, dmas=dmas, routes=routes)
    x = np.arange(n).astype(np.int8)
    res = simulate(p, {"x": x})
    np.testing.assert_array_equal(res.outputs["y0"], x)
    np.testing.assert_array_equal(res.outputs["y1"], x)
    beat = math.ceil(n / DEV.stream_bytes_per_cycle)
    # In: one chunk to the farther tile; out: the farther tile's chunk back, in parallel.
    far = max(_switches(SHIM, T0), _switches(SHIM, T1)) * STREAM_SWITCH_LATENCY
    assert res.report.cycles == 2 * beat + far + _switches(T1, SHIM) * STREAM_SWITCH_LATENCY
    assert res.report.bytes_moved["0,0:mm2s0"] == n  # sent once, received twice
    assert res.report.bytes_moved["total"] == 4 * n


@pytest.mark.parametrize("offset, sizes, strides, pick", [
    (2, [8, 4], [16, 1], lambda x: x[:, 2:6]),          # 2-D strided gather: columns 2..5
    (0, [16, 8], [1, 16], lambda x: x.T),               # transpose
    (1, [2, 4, 3], [64, 16, 2], lambda x: x.reshape(2, 4, 16)[:, :, 1:7:2]),  # 3-D
])
def test_nd_bd_gathers_the_right_elements(offset, sizes, strides, pick):
    x = np.arange(128, dtype=np.int16).reshape(8, 16) * 3 - 100
    cnt = int(np.prod(sizes))
    p = _program([SHIM, T0],
                 ddr=[DdrTensor("x", [8, 16], "int16", "input"),
                      DdrTensor("y", [cnt], "int16", "output")],
                 buffers=[Buffer("b", list(T0), BASE, [cnt], "int16")],
                 locks=[Lock("got", list(T0), 0, 0)],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0,
                                  [_bd(0, "x", 0, offset=offset, sizes=sizes, strides=strides)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", cnt, release=LockOp("got"))]),
                       DmaChannel(list(T0), "mm2s", 0, [_bd(0, "b", cnt, acquire=LockOp("got"))]),
                       DmaChannel(list(SHIM), "s2mm", 0, [_bd(0, "y", cnt)])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]]), Route([0, 3, 0], [[0, 0, 0]])])
    res = simulate(p, {"x": x})
    np.testing.assert_array_equal(res.outputs["y"], pick(x).reshape(-1))
    assert res.report.bytes_moved["total"] == 2 * cnt * 2


def test_deadlock_names_the_core_and_the_lock():
    buf = Buffer("a", list(T0), BASE, [4, 8], "int8")
    p = _program([T0], buffers=[buf], locks=[Lock("never", list(T0), 0, 0)],
                 cores=[Core(list(T0), [_acq("never", 2)])])
    with pytest.raises(DeadlockError, match=r"core 0,3: waits on lock never \(wants 2, holds 0\)"):
        simulate(p, mode="timing")


def test_cyclic_chain_waiting_at_the_end_is_not_a_deadlock():
    """The ping-pong S2MM chain waits for a free slot forever after the last block: that is the
    end of the program, not a deadlock."""
    p, x, ref = _pingpong(blocks=2)
    np.testing.assert_array_equal(simulate(p, {"x": x}).outputs["y"], ref)


def test_stalled_dma_shows_in_deadlock_message():
    """A tile S2MM BD waits on a lock nobody releases: the shim's data cannot go anywhere."""
    n = 64
    p = _program([SHIM, T0],
                 ddr=[DdrTensor("x", [n], "int8", "input")],
                 buffers=[Buffer("b", list(T0), BASE, [n], "int8")],
                 locks=[Lock("free", list(T0), 0, 0)],
                 dmas=[DmaChannel(list(SHIM), "mm2s", 0, [_bd(0, "x", n)]),
                       DmaChannel(list(T0), "s2mm", 0, [_bd(0, "b", n, LockOp("free"))])],
                 routes=[Route([0, 0, 0], [[0, 3, 0]])])
    with pytest.raises(DeadlockError) as e:
        simulate(p, mode="timing")
    assert "DMA 0,3:s2mm0: waits on lock free (wants 1, holds 0)" in str(e.value)
    assert "DMA 0,0:mm2s0: waits on stream transfer" in str(e.value)


def test_buffer_past_tile_memory_is_rejected():
    big = Buffer("big", list(T0), DEV.data_memory_bytes - 100, [200], "int8")
    with pytest.raises(ValueError, match=r"buffer big .* compute tile 0,3"):
        simulate(_program([T0], buffers=[big]), mode="timing")


def test_overlapping_buffers_are_rejected():
    bufs = [Buffer("a", list(T0), BASE, [64], "int8"),
            Buffer("b", list(T0), BASE + 32, [8], "int32")]
    with pytest.raises(ValueError, match="buffers a and b overlap on tile 0,3"):
        simulate(_program([T0], buffers=bufs), mode="timing")


def test_missing_and_misshaped_inputs_are_rejected():
    p, x, _ = _pingpong()
    with pytest.raises(ValueError, match="missing input x"):
        simulate(p, {})
    with pytest.raises(ValueError, match=r"input x must have shape \(32, 16\)"):
        simulate(p, {"x": x[:4]})


def test_kernel_on_another_tiles_buffer_is_rejected():
    bufs = [Buffer("a", list(T1), BASE, [4, 8], "int8"),
            Buffer("w", list(T0), BASE, [8, 8], "int8"),
            Buffer("c", list(T0), BASE + 64, [4, 8], "int32")]
    call = KernelCall("matmul", {"a": "a", "b": "w", "c": "c"},
                      {"precision": "int8", "m": 4, "k": 8, "n": 8, "out_dtype": "int32"})
    p = _program([T0, T1], buffers=bufs, cores=[Core(list(T0), [Instr(op="call", call=call)])])
    with pytest.raises(ValueError, match="buffer a is on tile 1,3"):
        simulate(p, mode="timing")


def test_lock_released_past_its_maximum_is_an_error():
    p = _program([T0], locks=[Lock("l", list(T0), 0, 63)], cores=[Core(list(T0), [_rel("l")])])
    with pytest.raises(SimulationError, match="exceeds its maximum 63"):
        simulate(p, mode="timing")


def test_cycle_limit_stops_a_run_with_a_clear_error():
    p, _, _ = _pingpong()
    with pytest.raises(CycleLimitError, match="no end after 100 cycles"):
        simulate(p, mode="timing", max_cycles=100)


def test_missing_initial_constant_is_rejected_in_timing_mode_too():
    buf = Buffer("w", list(T0), BASE, [8, 8], "int8", initial="w")
    with pytest.raises(ValueError, match="initial constant w is missing"):
        simulate(_program([T0], buffers=[buf]), mode="timing")
