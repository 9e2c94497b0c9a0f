"""The batched matmul of two activations: ``C[b] = A[b] @ B[b]`` (attention's QKᵀ and P·V).

Neither operand is a constant, so nothing stays resident: for each batch (a head), the tile that
owns it receives ``A[b]`` and ``B[b]`` through its two input DMA channels, multiplies them and
sends ``C[b]`` back. Batches are dealt round-robin to ``tiles`` compute tiles, which work in
parallel; double buffering lets the DMA bring batch ``b + tiles`` while batch ``b`` computes.
Buffers are sized in the operands' element type (bf16: 2 bytes, the result bf16 too).

The knob is the number of tiles; the legality check names the buffer that does not fit. (This
family has no TensorIR template yet: a whole ``[M, K] x [K, N]`` product per tile is the design,
so there is no tiling to express.)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codegen.resources import VECTOR_ALIGN
from .dense import _nbytes
from .knobs import Knobs, TilingError, check_tile_memory
from .knobs import up as _up

_OUT_DTYPE = {"int8": "int8", "float32": "float32", "bfloat16": "bfloat16"}


@dataclass(frozen=True)
class BmmWorkload:
    batch: int
    m: int
    k: int
    n: int
    precision: str  # "int8" | "float32" | "bfloat16" (bf16 operands and result)

    def __str__(self) -> str:
        return f"bmm {self.batch}x[{self.m}x{self.k}x{self.n}] {self.precision}"


@dataclass(frozen=True)
class BmmConfig(Knobs):
    tiles: int
    double_buffer: bool = True


def tile_buffers(wl: BmmWorkload, cfg: BmmConfig) -> list[tuple[str, int, int]]:
    """``(buffer, bytes of one slot, slots)`` of one tile, in the codegen's allocation order."""
    size = _nbytes(wl.precision)
    depth = 2 if cfg.double_buffer else 1
    return [("A", wl.m * wl.k * size, depth), ("B", wl.k * wl.n * size, depth),
            ("C", wl.m * wl.n * _nbytes(_OUT_DTYPE[wl.precision]), depth)] + \
        ([("params", 2 * _up(wl.n * 4, VECTOR_ALIGN), 1)] if wl.precision == "int8" else [])


def check(wl: BmmWorkload, cfg: BmmConfig, device) -> None:
    where = f"{wl} with tiles={cfg.tiles} double_buffer={int(cfg.double_buffer)}"
    if not 1 <= cfg.tiles <= min(wl.batch, device.compute_rows * device.columns):
        raise TilingError(f"{where}: tiles must be between 1 and the {wl.batch} batches", "shape")
    check_tile_memory(where, tile_buffers(wl, cfg), device)


def default_config(wl: BmmWorkload, device) -> BmmConfig:
    """One tile per batch up to a column of tiles (they run in parallel), double-buffered if it
    fits."""
    tiles = min(wl.batch, device.compute_rows)
    for cfg in (BmmConfig(tiles, True), BmmConfig(tiles, False)):
        try:
            check(wl, cfg, device)
            return cfg
        except TilingError as err:
            last = err
    raise last
