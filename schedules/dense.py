"""The dense (matmul) schedule template: ``Y[M,N] = X[M,K] @ W[K,N]`` on a grid of AIE tiles.

The schedule pads the einsum, splits it into ``n_par x cascade`` tiles and row blocks of ``tm``,
stages A, W and C in ``local.aie`` and blockizes the per-tile loops into ``mmul`` intrinsics;
:func:`tile_layout` reads the per-tile buffers back. Also the default plan's heuristic, the
legality check and the tuning space. ``docs/design.md`` ("Schedules") has the design.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import SBlock
from tvm.tirx import For

from ..codegen.place import PlacementError, place_layers
from ..codegen.resources import VECTOR_ALIGN
from ..target import get_device
from .knobs import Knobs, TilingError
from .knobs import up as _up
from .legalize import legalized_prim_func

SCOPE = "local.aie"  # a compute tile's data memory
MAX_TM_INTRINSICS = 4  # default and tuned row blocks: at most this many intrinsic rows

_ACC = {"int8": "int32", "int16xint8": "int64", "float32": "float32", "bfloat16": "float32"}
# (input, weight) dtypes of a precision that names two; the others use the precision for both.
# int16xint8 accumulates in 64-bit lanes (AIE-ML accumulator registers are 16 x 32-bit or
# 8 x 64-bit, AM020), so sums of int16 x int8 products are exact at any K.
OPERANDS = {"int16xint8": ("int16", "int8")}


def accumulator_dtype(precision: str) -> str:
    """The accumulator's (and the bias's) dtype of a dense precision."""
    return _ACC[precision]


ANN_CONFIG, ANN_MMUL, ANN_BUFFER, ANN_DEPTH = "aie.dense_config", "aie.mmul", "aie.buffer", "aie.depth"
ANN_ROWS, ANN_PAR, ANN_CASCADE = "aie.row_blocks", "aie.parallel", "aie.cascade"


@dataclass(frozen=True)
class DenseConfig(Knobs):
    """The knobs of one dense layer: row block, tile grid and FIFO depths."""

    tm: int
    n_par: int
    cascade: int
    double_buffer_a: bool = True
    double_buffer_c: bool = True

    def __str__(self) -> str:
        return (f"tm={self.tm} n_par={self.n_par} cascade={self.cascade} "
                f"db_a={int(self.double_buffer_a)} db_c={int(self.double_buffer_c)}")


@dataclass(frozen=True)
class DenseWorkload:
    """``Y[m,n] = X[m,k] @ W[k,n]``; int8 accumulates in int32 (int16xint8: int16 activations,
    int8 weights, int64) and is requantised to ``out_dtype`` (int8; int16 for int16xint8)."""

    m: int
    k: int
    n: int
    precision: str  # "int8" | "int16xint8" | "float32" | "bfloat16"
    in_dtype: str | None = None
    weight_dtype: str | None = None
    out_dtype: str | None = None
    # a QDQ bias add after the requantisation: one more constant per column on the last tile
    bias_add: bool = False

    def __post_init__(self):
        if self.precision not in _ACC:
            raise ValueError(f"dense precision must be one of {sorted(_ACC)}, not {self.precision!r}")
        in_dtype, weight_dtype = OPERANDS.get(self.precision, (self.precision,) * 2)
        for name, dtype in (("in_dtype", in_dtype), ("weight_dtype", weight_dtype),
                            ("out_dtype", in_dtype)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, dtype)

    @property
    def acc_dtype(self) -> str:
        return accumulator_dtype(self.precision)

    def __str__(self) -> str:
        return f"dense {self.m}x{self.k}x{self.n} {self.precision}"


def _nbytes(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def padded_shape(workload: DenseWorkload, config: DenseConfig, device) -> tuple[int, int, int]:
    """(M_pad, K_pad, N_pad): whole row blocks, and whole intrinsics in every tile's K and N slice.

    K and N pad to the same quantum (the larger of the intrinsic's K and N) so that a layer's
    output block is exactly the next layer's K slice when ``cascade[i+1] == n_par[i]``.
    """
    _, mk, mn = device.mmul_shape(workload.precision)
    q = max(mk, mn)
    return (_up(workload.m, config.tm), _up(workload.k, config.cascade * q),
            _up(workload.n, config.n_par * q))


def _slots(workload: DenseWorkload, config: DenseConfig, device) -> list[tuple[str, int, int]]:
    """``(buffer, bytes of one slot, slots)`` on the last tile of a chain, in the codegen's
    allocation order (A FIFO, C FIFO, W, epilogue constants); other tiles hold only A and W."""
    _, k_pad, n_pad = padded_shape(workload, config, device)
    kc, nc = k_pad // config.cascade, n_pad // config.n_par
    params = [workload.acc_dtype] + (["int32", "int8"] if workload.acc_dtype.startswith("int")
                                     else []) + ([workload.out_dtype] if workload.bias_add else [])
    return [("A", config.tm * kc * _nbytes(workload.in_dtype), 2 if config.double_buffer_a else 1),
            ("C", config.tm * nc * _nbytes(workload.out_dtype), 2 if config.double_buffer_c else 1),
            ("W", kc * nc * _nbytes(workload.weight_dtype), 1),
            ("params", sum(_up(nc * _nbytes(d), VECTOR_ALIGN) for d in params), 1)]


def buffer_bytes(workload: DenseWorkload, config: DenseConfig, device) -> dict[str, int]:
    """Bytes of each buffer of a chain's last tile, all slots, as the codegen's allocator lays them
    out (each buffer rounded up to its vector alignment, so ``check`` agrees with the allocator)."""
    return {name: _up(size, VECTOR_ALIGN) * slots for name, size, slots in
            _slots(workload, config, device)}


def _kb(n: int) -> str:
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n:,} B"


def check(workload: DenseWorkload, config: DenseConfig, device) -> None:
    """Raise :class:`TilingError` (one line) unless ``config`` can run ``workload`` on ``device``."""
    mm, mk, mn = device.mmul_shape(workload.precision)
    where = f"{workload} with {config}"
    if config.tm < 1 or config.tm % mm:
        raise TilingError(f"{where}: tm must be a positive multiple of the {workload.precision} "
                          f"mmul M ({mm})", "shape")
    if config.n_par < 1 or config.cascade < 1:
        raise TilingError(f"{where}: n_par and cascade must be at least 1", "shape")
    m_pad, k_pad, n_pad = padded_shape(workload, config, device)
    kc, nc = k_pad // config.cascade, n_pad // config.n_par
    if config.tm > _up(workload.m, mm):
        raise TilingError(f"{where}: a row block of {config.tm} rows is more than the "
                          f"{workload.m} rows there are", "padding")
    if (config.n_par - 1) * nc >= workload.n or (config.cascade - 1) * kc >= workload.k:
        raise TilingError(f"{where}: some tiles would hold only padding (Kc={kc}, Nc={nc})",
                          "padding")
    tiles = config.n_par * config.cascade
    if tiles > device.compute_tiles:
        raise TilingError(f"{where}: needs {tiles} compute tiles, {device.name} has "
                          f"{device.compute_tiles}", "tiles")
    try:
        place_layers([(str(workload), config.n_par, config.cascade)], device)
    except PlacementError as e:
        raise TilingError(f"{where}: {e}", "placement") from e
    budget = device.usable_data_memory_bytes
    slots = _slots(workload, config, device)
    used, over = 0, None
    for name, size, count in slots:
        used += _up(size, VECTOR_ALIGN) * count
        over = over or (name if used > budget else None)
    if over:
        parts = ", ".join(f"{n} {s:,} B" + (f" ×{c}" if c > 1 else "") for n, s, c in slots)
        stack = f" ({_kb(device.data_memory_bytes)} less {_kb(device.stack_bytes)} stack)" \
            if device.stack_bytes else ""
        raise TilingError(
            f"{where}: {over} does not fit: the last tile of a chain needs {used:,} B ({parts}) "
            f"but an {device.generation.upper()} tile has {budget:,} B of data memory{stack}",
            "memory")


def _tm_choices(workload: DenseWorkload, device) -> list[int]:
    """Row blocks worth trying: multiples of the intrinsic M covering the rows, largest first."""
    mm = device.mmul_shape(workload.precision)[0]
    return list(range(min(_up(workload.m, mm), MAX_TM_INTRINSICS * mm), 0, -mm))


def _candidates(workload: DenseWorkload, device, tm=None, n_par=None, cascade=None):
    _, mk, mn = device.mmul_shape(workload.precision)
    pars = [n_par] if n_par else range(1, min(-(-workload.n // mn), device.compute_tiles) + 1)
    cascades = [cascade] if cascade else range(1, min(-(-workload.k // mk), device.compute_tiles) + 1)
    for t in ([tm] if tm else _tm_choices(workload, device)):
        for p in pars:
            for c in cascades:
                if p * c <= device.compute_tiles:
                    for dba, dbc in ((True, True), (True, False), (False, True), (False, False)):
                        yield DenseConfig(t, p, c, dba, dbc)


def _legal(workload, device, configs, rejected: Counter | None = None):
    for cfg in configs:
        try:
            check(workload, cfg, device)
        except TilingError as e:
            if rejected is not None:
                rejected[e.reason] += 1
            continue
        yield cfg


def default_config(workload: DenseWorkload, device, *, tm: int | None = None,
                   n_par: int | None = None, cascade: int | None = None) -> DenseConfig:
    """The legal config with the fewest tiles (the array is shared by every offloaded layer).

    Ties go to the least padded work per tile, then to double buffering (DMA overlaps compute),
    then to the larger row block (fewer kernel calls), then to the longer cascade (smaller A).
    Pinned knobs are kept; :class:`TilingError` if nothing legal has them.
    """
    def key(c: DenseConfig):
        _, k_pad, n_pad = padded_shape(workload, c, device)
        return (c.n_par * c.cascade, k_pad * n_pad // (c.n_par * c.cascade),
                -(c.double_buffer_a + c.double_buffer_c), -c.tm, -c.cascade)

    best = min(_legal(workload, device, _candidates(workload, device, tm, n_par, cascade)),
               key=key, default=None)
    if best is None:
        pins = ", ".join(f"{k}={v}" for k, v in
                         (("tm", tm), ("n_par", n_par), ("cascade", cascade)) if v) or "no pins"
        raise TilingError(f"{workload}: no legal configuration on {device.name} ({pins})"
                          f"{_widest_reason(workload, device, tm, n_par, cascade)}")
    return best


def _widest_reason(workload: DenseWorkload, device, tm, n_par, cascade) -> str:
    """``"; e.g. <why>"``: what stops the configs that spread the layer over the most tiles (a
    memory limit first: it is what more tiles would have to cure), or ``""``."""
    spread = sorted(_candidates(workload, device, tm, n_par, cascade),
                    key=lambda c: (-c.n_par * c.cascade, c.tm))[:64]
    errors = []
    for cfg in spread:
        try:
            check(workload, cfg, device)
        except TilingError as e:
            errors.append(e)
    e = next((e for e in errors if e.reason == "memory"), errors[0] if errors else None)
    return f"; e.g. {e}" if e else ""


@dataclass
class Space:
    """The legal configs of one workload, and how many candidates were rejected for what."""

    configs: list
    rejected: dict


def space(workload: DenseWorkload, device) -> Space:
    """Every legal config (row blocks up to ``MAX_TM_INTRINSICS`` intrinsics), for the tuner."""
    rejected = Counter()
    configs = list(_legal(workload, device, _candidates(workload, device), rejected))
    return Space(configs, dict(rejected))


def dense_prim_func(workload: DenseWorkload) -> tvm.tirx.PrimFunc:
    """The TIR of the matmul as Relax legalises it (int8 accumulates in int32)."""
    return legalized_prim_func(
        [("x", (workload.m, workload.k), workload.in_dtype),
         ("w", (workload.k, workload.n), workload.weight_dtype)],
        lambda x, w: relax.op.matmul(x, w, out_dtype=workload.acc_dtype))


def _einsum_block(sch):
    """The one block of the legalised matmul, checked to be ``Y[i,j] += X[i,k] * W[k,j]``-shaped."""
    (block,) = sch.get_child_blocks(sch.get_sblock("root"))
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    if kinds != [tvm.tirx.IterVar.DataPar, tvm.tirx.IterVar.DataPar, tvm.tirx.IterVar.CommReduce]:
        raise ValueError(f"dense schedule expects a 2-D matmul block, got iterators {kinds}")
    return block


def schedule(prim_func, workload: DenseWorkload, config: DenseConfig, device=None):
    """Apply the dense template (see module docstring) and return the ``tvm.s_tir.Schedule``.

    ``device`` (a :class:`~tvm_aie.target.Device` or a name; default device if None) gives the
    intrinsic shape. The config and intrinsic are annotated on the blocks because MetaSchedule
    builders see only the scheduled module, not the trace. ``prim_func`` may also be a fresh
    ``Schedule`` of it, which is scheduled in place (a MetaSchedule space function gets one).
    """
    device = device if hasattr(device, "mmul_shape") else get_device(device)
    check(workload, config, device)
    mm, mk, mn = device.mmul_shape(workload.precision)
    m_pad, k_pad, n_pad = padded_shape(workload, config, device)
    sch = prim_func if isinstance(prim_func, tvm.s_tir.Schedule) else tvm.s_tir.Schedule(prim_func)
    block = _einsum_block(sch)
    sch.pad_einsum(block, [m_pad, n_pad, k_pad])
    i, j, k = sch.get_loops(block)
    rows, ti = sch.split(i, [None, config.tm])
    par, tj = sch.split(j, [config.n_par, None])
    cas, tk = sch.split(k, [config.cascade, None])
    sch.reorder(rows, par, cas, ti, tj, tk)
    # A and W are per-tile (inside the cascade loop), C per chain (outside it: it sums over c).
    a = sch.cache_read(block, 0, SCOPE)
    sch.compute_at(a, cas)
    w = sch.cache_read(block, 1, SCOPE)
    sch.compute_at(w, cas)
    c = sch.cache_write(block, 0, SCOPE)
    sch.reverse_compute_at(c, par)
    # The padding copies fold into the DMAs: zero-filled reads, a predicated write-back.
    for pad in sch.get_producers(a) + sch.get_producers(w):
        sch.compute_inline(pad)
    for out in sch.get_consumers(c):
        sch.reverse_compute_inline(out)
    io, ii = sch.split(ti, [None, mm])
    jo, ji = sch.split(tj, [None, mn])
    ko, ki = sch.split(tk, [None, mk])
    sch.reorder(io, jo, ko, ii, ji, ki)
    mmul = sch.blockize(ii)
    for loop, key, extent in ((rows, ANN_ROWS, m_pad // config.tm), (par, ANN_PAR, config.n_par),
                              (cas, ANN_CASCADE, config.cascade)):
        sch.annotate(loop, key, extent)
    for blk, role, depth in ((a, "A", 2 if config.double_buffer_a else 1), (w, "W", 1),
                             (c, "C", 2 if config.double_buffer_c else 1)):
        sch.annotate(blk, ANN_BUFFER, role)
        sch.annotate(blk, ANN_DEPTH, depth)
    sch.annotate(mmul, ANN_MMUL, [mm, mk, mn])
    sch.annotate(block, ANN_CONFIG, {**config.to_dict(), "m": workload.m, "k": workload.k,
                                     "n": workload.n, "precision": workload.precision,
                                     "out_dtype": workload.out_dtype, "device": device.name})
    return sch


@dataclass(frozen=True)
class TileBuffer:
    """One per-tile buffer as the compacted TIR allocates it; ``depth`` slots of ``shape``."""

    name: str
    shape: tuple
    dtype: str
    scope: str
    depth: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * _nbytes(self.dtype) * self.depth


@dataclass(frozen=True)
class TileLayout:
    """What the codegen builds a layer from, read back from its scheduled TIR.

    ``c.dtype`` is the accumulator's (the TIR computes the matmul); the block the chain's last tile
    emits holds ``out_dtype`` after the epilogue.
    """

    m: int
    k: int
    n: int
    precision: str
    out_dtype: str
    m_blocks: int
    n_par: int
    cascade: int
    tm: int
    kc: int
    nc: int
    mmul: tuple
    a: TileBuffer
    w: TileBuffer
    c: TileBuffer
    config: dict  # the annotated DenseConfig (plain, JSON-serialisable)

    @property
    def m_pad(self) -> int:
        return self.m_blocks * self.tm

    @property
    def k_pad(self) -> int:
        return self.cascade * self.kc

    @property
    def n_pad(self) -> int:
        return self.n_par * self.nc

    @property
    def double_buffer_a(self) -> bool:
        return self.a.depth == 2

    @property
    def double_buffer_c(self) -> bool:
        return self.c.depth == 2


_COMPACT = tvm.ir.transform.Sequential([
    tvm.s_tir.transform.LowerInitBlock(),
    tvm.s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
    tvm.s_tir.transform.ConvertBlocksToOpaque(),
    tvm.s_tir.transform.CompactBufferAllocation(),
])


def _plain(value):
    """A TIR annotation value as plain Python."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value"):
        return value.value
    return [_plain(v) for v in value]


def tile_layout(scheduled) -> TileLayout:
    """Compact the cache buffers to their tile size and read the tile layout from the TIR.

    ``scheduled``: the ``Schedule.mod`` (one PrimFunc) or the PrimFunc. Raises ``ValueError`` if
    the TIR contradicts its own annotations (a hand-edited or foreign module).
    """
    if isinstance(scheduled, tvm.tirx.PrimFunc):
        scheduled = tvm.IRModule({"main": scheduled})
    (func,) = _COMPACT(scheduled).functions.values()
    loops, buffers, blocks = {}, {}, {}

    def visit_for(loop):
        for key in (ANN_ROWS, ANN_PAR, ANN_CASCADE):
            if key in loop.annotations:
                loops[key] = (int(loop.extent), int(loop.annotations[key]))

    def visit_block(block):
        allocated = {b.name: b for b in block.alloc_buffers}
        for b in allocated.values():
            buffers[b.name] = b
        for key in (ANN_CONFIG, ANN_MMUL, ANN_BUFFER):
            if key in block.annotations:
                blocks.setdefault(key, []).append(block)

    tvm_ffi.structural_walk(func.body, [(For, visit_for), (SBlock, visit_block)])
    if sorted(loops) != sorted((ANN_ROWS, ANN_PAR, ANN_CASCADE)) or \
            len(blocks.get(ANN_CONFIG, [])) != 1 or len(blocks.get(ANN_BUFFER, [])) != 3:
        raise ValueError("not a module scheduled by tvm_aie.schedules.dense (annotations missing)")
    for key, (extent, annotated) in loops.items():
        if extent != annotated:
            raise ValueError(f"loop {key} has extent {extent} but is annotated {annotated}")
    cfg = _plain(blocks[ANN_CONFIG][0].annotations[ANN_CONFIG])
    tiles = {}
    for block in blocks[ANN_BUFFER]:
        role = str(block.annotations[ANN_BUFFER])
        region = (block.reads if role == "C" else block.writes)[0]
        buf = buffers[region.source.name]  # the compacted allocation (buffers are Vars in 0.27)
        tiles[role] = TileBuffer(buf.name, tuple(int(d) for d in buf.shape), str(buf.dtype),
                                 buf.scope(), int(block.annotations[ANN_DEPTH]))
    mmuls = {tuple(_plain(b.annotations[ANN_MMUL])) for b in blocks[ANN_MMUL]}
    if len(mmuls) != 1:
        raise ValueError(f"the mmul blocks disagree on the intrinsic shape: {mmuls}")
    a, w, c = tiles["A"], tiles["W"], tiles["C"]
    (tm, kc), nc = a.shape, w.shape[1]
    layout = TileLayout(
        m=cfg["m"], k=cfg["k"], n=cfg["n"], precision=cfg["precision"], out_dtype=cfg["out_dtype"],
        m_blocks=loops[ANN_ROWS][0], n_par=loops[ANN_PAR][0], cascade=loops[ANN_CASCADE][0],
        tm=tm, kc=kc, nc=nc, mmul=mmuls.pop(), a=a, w=w, c=c,
        config=DenseConfig.from_dict(cfg).to_dict())
    _cross_check(layout)
    return layout


def _cross_check(lay: TileLayout) -> None:
    """The buffers, grid, intrinsic and annotated config must describe one and the same design."""
    cfg, (mm, mk, mn) = lay.config, lay.mmul
    facts = {
        "W is [Kc, Nc]": lay.w.shape == (lay.kc, lay.nc),
        "C is [tm, Nc]": lay.c.shape == (lay.tm, lay.nc),
        "buffers are in tile memory": {lay.a.scope, lay.w.scope, lay.c.scope} == {SCOPE},
        "tile grid matches the config": (lay.tm, lay.n_par, lay.cascade) ==
                                        (cfg["tm"], cfg["n_par"], cfg["cascade"]),
        "FIFO depths match the config": (lay.double_buffer_a, lay.double_buffer_c) ==
                                        (cfg["double_buffer_a"], cfg["double_buffer_c"]),
        "tiles hold whole intrinsics": lay.tm % mm == 0 and lay.kc % mk == 0 and lay.nc % mn == 0,
        "padding covers the workload": lay.m <= lay.m_pad < lay.m + lay.tm and
                                       lay.k <= lay.k_pad and lay.n <= lay.n_pad,
    }
    broken = [name for name, ok in facts.items() if not ok]
    if broken:
        raise ValueError(f"inconsistent dense TIR ({', '.join(broken)}): {lay}")
