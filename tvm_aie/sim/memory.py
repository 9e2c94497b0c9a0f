"""Memories: tile data memories, memory tiles and DDR, with buffers as typed views at byte offsets.

Every compute tile and memory tile owns one byte array of the size the catalog gives; a buffer is a
view of it at the buffer's ``offset``, so two buffers that overlap would share bytes, and that is
rejected when the program is loaded, as is a buffer outside its memory or over the core's stack.
Each DDR tensor is a byte array of its own (shim DMAs address it directly). In timing mode the
layout is still checked but no bytes are allocated.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def tile_key(tile) -> str:
    return f"{tile[0]},{tile[1]}"


class Memories:
    """All byte arrays of one program run and the typed views onto them."""

    def __init__(self, program, device, functional: bool):
        self.functional = functional
        self.kinds = {tile_key((t.col, t.row)): t.kind for t in program.tiles}
        self.tile_bytes: dict = {}
        self.ddr_bytes: dict = {}
        self._buffers = {b.name: b for b in program.buffers}
        self._ddr = {t.name: t for t in program.ddr}
        self._check_layout(program, device)
        if functional:
            for key, kind in self.kinds.items():
                if kind != "shim":
                    self.tile_bytes[key] = np.zeros(self._size(kind, device)[1], np.uint8)
            for t in program.ddr:
                self.ddr_bytes[t.name] = np.zeros(_nbytes(t.shape, t.dtype), np.uint8)

    @staticmethod
    def _size(kind: str, device) -> tuple[int, int]:
        """(first byte buffers may use, memory size); a compute tile's stack sits at the bottom."""
        if kind == "memtile":
            if device.memtile is None:
                raise ValueError(f"{device.name} has no memory tiles")
            return 0, device.memtile["bytes"]
        return device.stack_bytes, device.data_memory_bytes

    def _check_layout(self, program, device) -> None:
        per_tile: dict = {}
        for b in program.buffers:
            key = tile_key(b.tile)
            kind = self.kinds.get(key)
            if kind is None:
                raise ValueError(f"buffer {b.name}: tile {key} is not among the program's tiles")
            if kind == "shim":
                raise ValueError(f"buffer {b.name}: shim tile {key} has no data memory")
            lo, size = self._size(kind, device)
            end = b.offset + _nbytes(b.shape, b.dtype)
            if b.offset < lo or end > size:
                raise ValueError(
                    f"buffer {b.name} [{b.offset}, {end}) lies outside the usable "
                    f"memory [{lo}, {size}) of {kind} tile {key}")
            if b.initial is not None:
                init = program.constants.get(b.initial)
                if init is None or tuple(np.shape(init)) != tuple(b.shape):
                    raise ValueError(f"buffer {b.name}: initial constant {b.initial} is "
                                     f"{'missing' if init is None else np.shape(init)}, "
                                     f"not {tuple(b.shape)}")
            per_tile.setdefault(key, []).append((b.offset, end, b.name))
        for key, spans in per_tile.items():
            spans.sort()
            for (x0, x1, x), (y0, y1, y) in zip(spans, spans[1:]):
                if y0 < x1:
                    raise ValueError(f"buffers {x} and {y} overlap on tile {key} "
                                     f"([{x0}, {x1}) and [{y0}, {y1}))")

    def kind(self, tile) -> str:
        return self.kinds[tile_key(tile)]

    def buffer_view(self, name: str) -> np.ndarray:
        b = self._buffers[name]
        raw = self.tile_bytes[tile_key(b.tile)][b.offset:b.offset + b.nbytes]
        return raw.view(b.dtype).reshape(b.shape)

    def ddr_view(self, name: str) -> np.ndarray:
        t = self._ddr[name]
        return self.ddr_bytes[name].view(t.dtype).reshape(t.shape)

    def load(self, program, inputs: dict | None) -> None:
        """Configuration: initial buffer contents, DDR inputs and constants (not timed)."""
        for b in program.buffers:
            if b.initial is not None:
                self.buffer_view(b.name)[...] = _conformed(
                    program.constants.get(b.initial), b.shape, b.dtype,
                    f"constant {b.initial} of buffer {b.name}")
        inputs = inputs or {}
        unknown = set(inputs) - {t.name for t in program.inputs()}
        if unknown:
            raise ValueError(f"program {program.name} has no inputs {sorted(unknown)}; its inputs "
                             f"are {[t.name for t in program.inputs()]}")
        for t in program.ddr:
            if t.role == "input":
                if t.name not in inputs:
                    raise ValueError(f"program {program.name}: missing input {t.name} "
                                     f"({t.shape} {t.dtype})")
                self.ddr_view(t.name)[...] = _conformed(inputs[t.name], t.shape, t.dtype,
                                                        f"input {t.name}")
            elif t.role == "constant":
                self.ddr_view(t.name)[...] = _conformed(program.constants.get(t.name), t.shape,
                                                        t.dtype, f"constant {t.name}")


def _nbytes(shape, dtype) -> int:
    return math.prod(shape) * _itemsize(dtype)


@lru_cache(maxsize=None)
def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _conformed(arr, shape, dtype, what: str) -> np.ndarray:
    """``arr`` as ``shape``/``dtype``, or a ValueError saying what is wrong with it."""
    if arr is None:
        raise ValueError(f"{what} is missing")
    arr = np.asarray(arr)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {arr.shape}")
    out = arr.astype(dtype)
    if np.dtype(dtype).kind in "iu" and not np.array_equal(out, arr):
        raise ValueError(f"{what}: values do not fit {dtype}")
    return out
