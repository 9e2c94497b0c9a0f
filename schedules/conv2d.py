"""The conv2d schedule template: one NCHW image, ``Y[o] = sum W[o] * X`` over the tile grid.

Output rows in bands of ``th`` (input halos included), output channels over ``n_par`` tiles with
their weights resident; pooling is the depthwise conv of its window. :func:`tile_layout` reads
the per-tile buffers back; also the default config, the legality check and the tuning space.
``docs/design.md`` ("Conv2d and pooling") has the design.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import SBlock
from tvm.tirx import For

from ..codegen.resources import VECTOR_ALIGN
from .dense import (_ACC, _COMPACT, ANN_BUFFER, ANN_DEPTH, ANN_PAR, ANN_ROWS, OPERANDS, SCOPE,
                    TileBuffer, _nbytes, _plain)
from .knobs import Knobs, TilingError
from .knobs import up as _up
from .legalize import legalized_prim_func

ANN_CONFIG = "aie.conv2d_config"


@dataclass(frozen=True)
class ConvWorkload:
    """A conv2d (+ optional non-overlapping max-pool) on one ``[c, h, w]`` image."""

    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: tuple  # (sh, sw)
    padding: tuple  # (top, left, bottom, right)
    groups: int
    precision: str  # "int8" | "int16xint8" | "float32" | "bfloat16"
    pool: tuple = (1, 1)
    residual: bool = False  # a skip-connection block of the output's shape is added per band
    kind: str = "conv"  # or "avgpool" / "maxpool": a depthwise window (maxpool keeps no weights)

    @property
    def acc_dtype(self) -> str:
        return _ACC[self.precision]

    @property
    def in_dtype(self) -> str:
        """The activations' dtype, in and out (int16 for int16xint8)."""
        return OPERANDS.get(self.precision, (self.precision,))[0]

    @property
    def weight_dtype(self) -> str:
        return OPERANDS.get(self.precision, (self.precision,) * 2)[1]

    @property
    def integer(self) -> bool:
        """Requantised by a per-channel multiplier and shift (int8, int16xint8)."""
        return self.acc_dtype in ("int32", "int64")

    @property
    def hp(self) -> int:
        return self.h + self.padding[0] + self.padding[2]

    @property
    def wp(self) -> int:
        return self.w + self.padding[1] + self.padding[3]

    @property
    def ho(self) -> int:
        return (self.hp - self.kh) // self.stride[0] + 1

    @property
    def wo(self) -> int:
        return (self.wp - self.kw) // self.stride[1] + 1

    @property
    def w_read(self) -> int:
        """Padded input columns the conv reads (a strided conv may skip the last ones)."""
        return (self.wo - 1) * self.stride[1] + self.kw

    @property
    def cin_g(self) -> int:
        return self.c // self.groups

    def __str__(self) -> str:
        op = "conv2d" if self.kind == "conv" else self.kind
        return (f"{op} {self.c}x{self.h}x{self.w} -> {self.o} k{self.kh}x{self.kw} "
                f"s{self.stride[0]} g{self.groups} {self.precision}")


@dataclass(frozen=True)
class ConvConfig(Knobs):
    """The knobs of one conv2d layer: output rows per band, tiles over output channels, depths,
    and ``passes``: blocks of a tile's output channels computed one after another per band, their
    weights streamed from DDR into two slots (1: the tile's weights stay resident)."""

    th: int
    n_par: int
    double_buffer_a: bool = True
    double_buffer_c: bool = True
    passes: int = 1

    def __str__(self) -> str:
        return (f"th={self.th} n_par={self.n_par} db_a={int(self.double_buffer_a)} "
                f"db_c={int(self.double_buffer_c)}" +
                (f" passes={self.passes}" if self.passes > 1 else ""))


def band_channels(wl: ConvWorkload, cfg: ConvConfig) -> int:
    """Input channels of the band a tile receives: every one for a conv of one group (the band
    is broadcast to the tiles), the tile's own groups' for a grouped conv or a pool."""
    return wl.c // cfg.n_par if wl.groups > 1 else wl.c


def band_rows(wl: ConvWorkload, th: int) -> int:
    """Input rows one band of ``th`` output rows reads, halo included."""
    return (th - 1) * wl.stride[0] + wl.kh


def tile_buffers(wl: ConvWorkload, cfg: ConvConfig) -> list[tuple[str, int, int]]:
    """``(buffer, bytes of one slot, slots)`` of one tile, in the codegen's allocation order (with
    ``passes``, a block and a weight slot are one pass's channels; weights take two slots)."""
    op = wl.o // cfg.n_par // cfg.passes
    ph, pw = wl.pool
    # bias at the accumulator's width (int64 for int16xint8), then the multiplier and shift
    params = [wl.acc_dtype] + (["int32", "int8"] if wl.integer else [])
    block = op * (cfg.th // ph) * (wl.wo // pw) * _nbytes(wl.in_dtype)
    return [
        ("input band A", band_channels(wl, cfg) * band_rows(wl, cfg.th) * wl.w_read *
         _nbytes(wl.in_dtype),
         2 if cfg.double_buffer_a else 1)] + \
        ([("residual block R", block, 2 if cfg.double_buffer_a else 1)] if wl.residual else []) + [
        ("output block C", block, 2 if cfg.double_buffer_c else 1)] + (
        [] if wl.kind == "maxpool" else [
            ("weights W", op * wl.cin_g * wl.kh * wl.kw * _nbytes(wl.weight_dtype),
             2 if cfg.passes > 1 else 1),
            ("params", sum(_up(op * _nbytes(d), VECTOR_ALIGN) for d in params), cfg.passes)])


def check(wl: ConvWorkload, cfg: ConvConfig, device) -> None:
    """Raise :class:`TilingError` (one line, naming what does not fit) unless ``cfg`` is legal."""
    where = f"{wl} with {cfg}"
    # what no config changes first: the input image's home
    if device.memtile is None:
        raise TilingError(f"{where}: {device.name} has no memory tiles to hold the padded input",
                          "memory")
    image = wl.c * wl.hp * wl.wp * _nbytes(wl.in_dtype)
    if image > device.memtile["bytes"]:
        raise TilingError(f"{where}: the padded input image ({image:,} B) does not fit in a "
                          f"memory tile ({device.memtile['bytes']:,} B)", "memory")
    ph, pw = wl.pool
    if wl.ho % ph or wl.wo % pw:
        raise TilingError(f"{where}: the {ph}x{pw} pool does not tile the {wl.ho}x{wl.wo} output",
                          "shape")
    if cfg.th < 1 or wl.ho % cfg.th or cfg.th % ph:
        raise TilingError(f"{where}: th must divide the {wl.ho} output rows and be a multiple of "
                          f"the pool height {ph}", "shape")
    if cfg.n_par < 1 or wl.o % cfg.n_par:
        raise TilingError(f"{where}: n_par must divide the {wl.o} output channels", "shape")
    if wl.groups > 1 and wl.groups % cfg.n_par:
        raise TilingError(f"{where}: n_par must divide the {wl.groups} groups (whole groups per "
                          f"tile)", "shape")
    if cfg.passes < 1 or (wl.o // cfg.n_par) % cfg.passes:
        raise TilingError(f"{where}: passes must divide the tile's {wl.o // cfg.n_par} output "
                          f"channels", "shape")
    if cfg.passes > 1 and (wl.groups > 1 or wl.kind != "conv"):
        raise TilingError(f"{where}: streamed weights (passes > 1) are for convs of one group",
                          "shape")
    if wl.groups > 1 and cfg.n_par > device.memtile["mm2s"]:
        raise TilingError(f"{where}: each tile of a grouped conv reads its own band from the "
                          f"memory tile, which has {device.memtile['mm2s']} MM2S channels",
                          "placement")
    streams = 1 + wl.residual + (cfg.passes > 1)  # band, residual blocks, weight blocks
    if streams > device.tile_dma["s2mm"]:
        raise TilingError(f"{where}: a tile would take {streams} input streams (band, residual, "
                          f"streamed weights) on its {device.tile_dma['s2mm']} S2MM channels",
                          "placement")
    if cfg.n_par > device.compute_rows:
        raise TilingError(f"{where}: n_par {cfg.n_par} is more than the {device.compute_rows} "
                          f"compute rows of the layer's column", "placement")
    budget, used = device.usable_data_memory_bytes, 0
    slots = tile_buffers(wl, cfg)
    for name, size, count in slots:
        used += _up(size, VECTOR_ALIGN) * count
        if used > budget:
            parts = ", ".join(f"{n} {s:,} B" + (f" x{c}" if c > 1 else "") for n, s, c in slots)
            raise TilingError(f"{where}: {name} does not fit: a tile needs {used:,} B so far "
                              f"({parts}) but has {budget:,} B of data memory", "memory")


def candidates(wl: ConvWorkload, device):
    """Every config worth checking, in the default plan's order of preference. Resident weights
    first: the fewest tiles over the output channels, then the largest band. Then weights
    streamed from DDR in 2, 4, 8, ... passes: the largest band first (the weights stream once per
    band), then the most tiles whose output streams the next layer's memory tile can take (the
    stream of weights is shared, the compute is not), then the fewest passes."""
    depths = ((True, True), (True, False), (False, True), (False, False))
    rows = min(wl.o, device.compute_rows)
    for n_par in range(1, rows + 1):
        for th in range(wl.ho, 0, -1):
            for dba, dbc in depths:
                yield ConvConfig(th, n_par, dba, dbc)
    if wl.groups > 1 or wl.kind != "conv":
        return
    cap = min(rows, (device.memtile or {}).get("s2mm", rows))
    for th in range(wl.ho, 0, -1):
        for n_par in [*range(cap, 0, -1), *range(rows, cap, -1)]:
            for npass in (2 ** k for k in range(1, wl.o.bit_length()) if wl.o % 2 ** k == 0):
                for dba, dbc in depths:
                    yield ConvConfig(th, n_par, dba, dbc, npass)


def default_config(wl: ConvWorkload, device) -> ConvConfig:
    """The first legal config with resident weights (:func:`candidates`' order: the fewest tiles,
    the largest band, double buffering); if there is none, the legal config with streamed weights
    of the fewest :func:`streamed_cycles`. :class:`TilingError` with the last reason if none is
    legal."""
    last, streamed = None, []
    for cfg in candidates(wl, device):
        if streamed and cfg.passes == 1:
            continue
        try:
            check(wl, cfg, device)
        except TilingError as e:  # what does not fit says more than a shape that does not divide
            last = e if last is None or e.reason != "shape" or last.reason == "shape" else last
            continue
        if cfg.passes == 1:
            return cfg
        streamed.append(cfg)
    if streamed:
        return min(streamed, key=lambda cfg: streamed_cycles(wl, cfg, device))
    raise TilingError(f"{wl}: no legal configuration on {device.name}; e.g. {last}",
                      getattr(last, "reason", "invalid"))


def streamed_cycles(wl: ConvWorkload, cfg: ConvConfig, device) -> float:
    """First-order cycles of a layer whose weights stream: its tiles' kernel calls (the kernel's
    cycle model: a pass of few channels pads the intrinsic) against its weights from DDR once per
    band (every tile's share of the catalog's DDR rate), whichever is longer."""
    from ..sim.kernels_conv import conv2d_cycles  # pylint: disable=import-outside-toplevel

    bands, op = wl.ho // cfg.th, wl.o // cfg.n_par // cfg.passes
    call = conv2d_cycles(device, wl.precision, 1, op, wl.cin_g, wl.kh, wl.kw, cfg.th, wl.wo,
                         wl.in_dtype, wl.pool, wl.residual)
    weights = wl.o * wl.cin_g * wl.kh * wl.kw * _nbytes(wl.weight_dtype)
    return max(bands * cfg.passes * call, bands * weights / device.ddr_bytes_per_cycle)


def conv_prim_func(wl: ConvWorkload) -> tvm.tirx.PrimFunc:
    """The TIR of the conv as Relax legalises it (int8 accumulates in int32; int16xint8, int16
    activations times int8 weights, in int64)."""
    return legalized_prim_func(
        [("x", (1, wl.c, wl.h, wl.w), wl.in_dtype),
         ("w", (wl.o, wl.cin_g, wl.kh, wl.kw), wl.weight_dtype)],
        lambda x, w: relax.op.nn.conv2d(x, w, strides=wl.stride, padding=wl.padding,
                                        groups=wl.groups, out_dtype=wl.acc_dtype))


def schedule(prim_func, wl: ConvWorkload, cfg: ConvConfig, device):
    """Apply the conv2d template (see the module docstring); returns the ``tvm.s_tir.Schedule``."""
    check(wl, cfg, device)
    sch = tvm.s_tir.Schedule(prim_func)
    *_, block = sch.get_child_blocks(sch.get_sblock("root"))
    nn, ff, yy, xx, rc, ry, rx = sch.get_loops(block)
    bands, ty = sch.split(yy, [None, cfg.th])
    par, npass, tf = sch.split(ff, [cfg.n_par, cfg.passes, None])
    sch.reorder(nn, bands, par, npass, tf, ty, xx, rc, ry, rx)
    # The band is read once per band and broadcast to the tiles; weights and outputs are per tile
    # and pass (one pass: the tile's weights, resident).
    a = sch.cache_read(block, 0, SCOPE)
    sch.compute_at(a, par if wl.groups > 1 else bands)  # grouped: each tile its own channels
    w = sch.cache_read(block, 1, SCOPE)
    sch.compute_at(w, npass)
    c = sch.cache_write(block, 0, SCOPE)
    sch.reverse_compute_at(c, npass)
    for pad in sch.get_producers(a):  # the padding is the memory tile's border
        sch.compute_inline(pad)
    sch.annotate(bands, ANN_ROWS, wl.ho // cfg.th)
    sch.annotate(par, ANN_PAR, cfg.n_par)
    for blk, role, depth in ((a, "A", 2 if cfg.double_buffer_a else 1),
                             (w, "W", 2 if cfg.passes > 1 else 1),
                             (c, "C", 2 if cfg.double_buffer_c else 1)):
        sch.annotate(blk, ANN_BUFFER, role)
        sch.annotate(blk, ANN_DEPTH, depth)
    sch.annotate(block, ANN_CONFIG, {**cfg.to_dict(), "precision": wl.precision,
                                     "device": device.name})
    return sch


@dataclass(frozen=True)
class ConvTileLayout:
    """What the codegen builds a conv layer from, read back from its scheduled TIR."""

    workload: ConvWorkload
    bands: int
    n_par: int
    th: int
    th_in: int
    a: TileBuffer  # [1, C, th_in, w_read]
    w: TileBuffer  # [Op / passes, C/groups, KH, KW]
    c: TileBuffer  # [1, Op / passes, th, Wo] (accumulator, before the epilogue and pool)
    config: dict

    @property
    def passes(self) -> int:
        return self.config.get("passes", 1)

    @property
    def op_pass(self) -> int:
        """Output channels one kernel call computes (one pass)."""
        return self.w.shape[0]

    @property
    def op(self) -> int:
        """The tile's output channels (every pass)."""
        return self.w.shape[0] * self.passes

    @property
    def double_buffer_a(self) -> bool:
        return self.a.depth == 2

    @property
    def double_buffer_c(self) -> bool:
        return self.c.depth == 2


def tile_layout(scheduled, wl: ConvWorkload) -> ConvTileLayout:
    """Compact the cache buffers to their tile size and read the layout back from the TIR."""
    if isinstance(scheduled, tvm.tirx.PrimFunc):
        scheduled = tvm.IRModule({"main": scheduled})
    (func,) = _COMPACT(scheduled).functions.values()
    loops, buffers, roles, config = {}, {}, {}, []

    def visit_for(loop):
        for key in (ANN_ROWS, ANN_PAR):
            if key in loop.annotations:
                loops[key] = int(loop.extent)

    def visit_block(block):
        for b in block.alloc_buffers:
            buffers[b.name] = b
        if ANN_CONFIG in block.annotations:
            config.append(_plain(block.annotations[ANN_CONFIG]))
        if ANN_BUFFER in block.annotations:
            roles[str(block.annotations[ANN_BUFFER])] = block

    tvm_ffi.structural_walk(func.body, [(For, visit_for), (SBlock, visit_block)])
    if len(config) != 1 or sorted(roles) != ["A", "C", "W"] or sorted(loops) != sorted(
            (ANN_ROWS, ANN_PAR)):
        raise ValueError("not a module scheduled by tvm_aie.schedules.conv2d (annotations missing)")
    tiles = {}
    for role, block in roles.items():
        region = (block.reads if role == "C" else block.writes)[0]
        buf = buffers[region.source.name]
        tiles[role] = TileBuffer(buf.name, tuple(int(d) for d in buf.shape), str(buf.dtype),
                                 buf.scope(), int(block.annotations[ANN_DEPTH]))
    cfg = ConvConfig.from_dict(config[0])
    lay = ConvTileLayout(wl, loops[ANN_ROWS], loops[ANN_PAR], tiles["C"].shape[2],
                         tiles["A"].shape[2], tiles["A"], tiles["W"], tiles["C"], cfg.to_dict())
    facts = {
        "A is the padded band of the input channels the tile reads":
            lay.a.shape == (1, band_channels(wl, cfg), band_rows(wl, cfg.th), wl.w_read),
        "W is one pass of the tile's output channels":
            lay.w.shape == (wl.o // cfg.n_par // cfg.passes, wl.cin_g, wl.kh, wl.kw),
        "C is [1, Op / passes, th, Wo]":
            lay.c.shape == (1, wl.o // cfg.n_par // cfg.passes, cfg.th, wl.wo),
        "grid matches the config": (lay.bands * lay.th, lay.n_par) == (wl.ho, cfg.n_par),
        "buffers are in tile memory": {lay.a.scope, lay.w.scope, lay.c.scope} == {SCOPE},
    }
    broken = [name for name, ok in facts.items() if not ok]
    if broken:
        raise ValueError(f"inconsistent conv2d TIR ({', '.join(broken)}): {lay}")
    return lay
