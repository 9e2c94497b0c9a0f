"""Element- and row-wise layers (activations, softmax, layer norm, element-wise arithmetic of two
tensors, int8 lookup tables, int16 QDQ functions) on the tile grid.

The layer's ``[rows, cols]`` tensor goes through in blocks of ``tr`` whole rows (a softmax or layer
norm needs its whole row on one tile); blocks are dealt round-robin to ``tiles`` compute tiles,
each double-buffered in and out. The knobs are ``tr`` and ``tiles``; the legality check names
the buffer that does not fit. (No TensorIR template: a block is the whole row-wise computation,
there is no reduction to tile.) Blocks are sized in the layer's element type: bf16 and int16
blocks are half the bytes of fp32 ones; layer norm's ``gamma``/``beta`` stay float32, an int16
QDQ function's scales are kernel parameters, not buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codegen.resources import VECTOR_ALIGN
from .dense import _nbytes
from .knobs import Knobs, TilingError, check_tile_memory
from .knobs import up as _up


@dataclass(frozen=True)
class RowWorkload:
    op: str  # a RowLayer's op: "gelu", "softmax", "layernorm", "add", "lut", "relu", ...
    rows: int
    cols: int
    precision: str  # "float32" | "bfloat16" | "int8" | "int16"

    def __str__(self) -> str:
        return f"{self.op} {self.rows}x{self.cols} {self.precision}"


@dataclass(frozen=True)
class RowConfig(Knobs):
    tr: int
    tiles: int
    double_buffer: bool = True


def tile_buffers(wl: RowWorkload, cfg: RowConfig) -> list[tuple[str, int, int]]:
    block = cfg.tr * wl.cols * _nbytes(wl.precision)
    depth = 2 if cfg.double_buffer else 1
    params = {"layernorm": 2 * _up(wl.cols * 4, VECTOR_ALIGN), "lut": 256}.get(wl.op, 0)
    binary = wl.op in ("add", "mul", "sub", "div")  # two tensors of one shape
    return [("X", block, depth)] + ([("X2", block, depth)] if binary else []) + \
        [("Y", block, depth)] + ([("params", params, 1)] if params else [])


def check(wl: RowWorkload, cfg: RowConfig, device) -> None:
    where = f"{wl} with tr={cfg.tr} tiles={cfg.tiles}"
    if cfg.tr < 1 or wl.rows % cfg.tr:
        raise TilingError(f"{where}: tr must divide the {wl.rows} rows", "shape")
    if not 1 <= cfg.tiles <= min(wl.rows // cfg.tr, device.compute_rows):
        raise TilingError(f"{where}: between 1 tile and one per block, in one column", "shape")
    check_tile_memory(where, tile_buffers(wl, cfg), device)


def default_config(wl: RowWorkload, device, max_tiles: int | None = None) -> RowConfig:
    """The largest block that gives every tile of a column (or every row, or ``max_tiles``
    tiles) a block and fits."""
    tiles = min(wl.rows, device.compute_rows, max_tiles or wl.rows)
    last = None
    for tr in (d for d in range(wl.rows // tiles, 0, -1) if wl.rows % d == 0):
        for db in (True, False):
            cfg = RowConfig(tr, min(tiles, wl.rows // tr), db)
            try:
                check(wl, cfg, device)
                return cfg
            except TilingError as err:
                last = err
    raise last or TilingError(f"{wl}: no legal configuration", "shape")
