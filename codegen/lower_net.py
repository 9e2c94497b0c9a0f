"""Lowering: consecutive parts of several families -> one AIE program (e.g. a whole CNN on-chip).

A part is a conv chain, a dense chain or one row-wise layer; the program is a conv part, an
optional flatten and a dense head (a CNN), or dense parts with a one-input row-wise layer between
them (a transformer's feed-forward block: dense -> GELU -> dense). Each part is lowered as its own
module does (:mod:`~tvm_aie.codegen.lower_conv`, :mod:`~tvm_aie.codegen.lower`,
:mod:`~tvm_aie.codegen.lower_rows`), on one placement (each part's columns follow the previous
one's), with one change at each seam: the tensor between two parts is a buffer in the memory
tile under the consumer's first column instead of a DDR tensor. The producer writes it with the
n-D patterns it would use for its DDR output, the consumer reads it with those it would use for
its DDR input, once every writer has released the buffer's lock (readers take the writers' count
and give it back, so every reader finds it). The buffer is laid out as the dense side of the
seam pads it (``[m_pad, k_pad]`` before a dense part, ``[m_pad, n_pad]`` after one); a row-wise
layer walks it with that row stride, and a conv part's NCHW maps are the flattened rows, image n
in row n (a flatten moves no data of its own; the dense head starts once the whole batch is in). The buffer starts zeroed, so padding reads zeros (the padded weight
rows are zero too, and fp32 ``0 * 0`` keeps the sums exact). A seam buffer has the producer's
output type: under ``precision="bf16"`` every part is bf16 (dense outputs and row-wise tensors
alike), so the seams are bf16 and nothing is cast on chip.
"""

from __future__ import annotations

import functools

import numpy as np

from . import fifo as fifos
from .layers import FlattenLayer
from .lower import INPUT, OUTPUT, _DenseChainLowering, dense_shapes, k_slices
from .lower_conv import _ConvChainLowering, conv_shapes
from .lower_rows import lower_row_tiles, row_meta, row_shapes
from .place import place_layers
from .program import DdrTensor, LockOp, Program
from .resources import ResourceError, TileResources

# the part each layer family goes in; a flatten goes with the conv part that feeds it
PART_KINDS = {"ConvLayer": "conv", "FlattenLayer": "conv", "DenseLayer": "dense",
              "RowLayer": "row"}


class _Seam:
    """The memory-tile buffer holding the tensor between two parts, and its "full" lock."""

    def __init__(self, res: TileResources, name: str, tile, shape: list, dtype: str,
                 writers: int, images: int = 1):
        if res.device.memtile is None:
            raise ResourceError(f"{res.device.name} has no memory tiles to hold {name}")
        if images > res.device.memtile["bds"]:
            raise ResourceError(f"{name}: {images} images written one BD each, a memory tile has "
                                f"{res.device.memtile['bds']} BDs")
        res.program.constants[name] = np.zeros(shape, dtype)
        self.buffer = res.buffer(name, tile, shape, dtype, initial=name).name
        self.full = res.lock(f"{name}.full", tile, init=0).name
        self.tile, self.stride, self.writers, self.images = tile, shape[-1], writers, images

    def write(self, offset: int, sizes: list, strides: list):
        """A writer's end; a conv part over ``images`` writes each image's pattern into its row
        (one BD each) and releases the lock after the last."""
        if self.images == 1:
            return fifos.MemtileEndpoint(self.buffer, offset, sizes, strides,
                                         release=LockOp(self.full, 1))
        return fifos.MemtileChain(self.buffer, [
            fifos.MemtileEndpoint(self.buffer, offset + n * self.stride, sizes, strides,
                                  release=LockOp(self.full, 1) if n == self.images - 1 else None)
            for n in range(self.images)])

    def read(self, offset: int, sizes: list, strides: list):
        done = LockOp(self.full, self.writers)
        return fifos.MemtileEndpoint(self.buffer, offset, sizes, strides, done, done)


def _shapes(kind: str, layers: list, layouts: list) -> list:
    return {"conv": conv_shapes, "dense": dense_shapes,
            "row": lambda ls, cs: row_shapes(ls[0], cs[0])}[kind](layers, layouts)


def _writers(kind: str, layouts: list) -> int:
    """The DMA channels a part writes its output with (each releases the seam's lock once)."""
    return layouts[-1].tiles if kind == "row" else layouts[-1].n_par


def lower_net(name: str, parts: list, device) -> Program:
    """One AIE program for ``parts``, ``[(kind, layers, layouts)]`` in dataflow order: kind
    ``"conv"`` (conv layers, their tile layouts; a :class:`FlattenLayer` may end the layers),
    ``"dense"`` (dense layers, their tile layouts) or ``"row"`` (one row-wise layer, its config).
    See the module docstring."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    computed = [(kind, [layer for layer in layers if not isinstance(layer, FlattenLayer)],
                 layouts) for kind, layers, layouts in parts]
    placement = place_layers([s for kind, layers, layouts in computed
                              for s in _shapes(kind, layers, layouts)], device)
    metas, edges, seam, first = [], [], None, 0
    for i, (kind, layers, layouts) in enumerate(computed):
        tiles = placement[first:first + len(layers)]
        nxt_seam = None
        flatten = [layer for layer in parts[i][1] if isinstance(layer, FlattenLayer)]
        if i + 1 < len(computed):
            nxt_kind, nxt_layers, nxt_layouts = computed[i + 1]
            tile = (placement[first + len(layers)][0][0][0], 1)
            if nxt_kind == "dense" and (kind != "conv" or flatten):
                head = nxt_layouts[0]  # a flattened map is its image's row
                shape = [head.m_pad, head.k_pad]
            elif kind == "dense" and nxt_kind == "row":
                shape = [layouts[-1].m_pad, layouts[-1].n_pad]
            else:
                raise ValueError(f"{name}: no seam from a {kind} part to a {nxt_kind} part"
                                 f"{'' if flatten else ' without a flatten'}")
            via = "".join(f" -> {layer.name}" for layer in flatten)
            nxt_seam = _Seam(res, f"{layers[-1].name}.out", tile, shape,
                             layers[-1].out_dtype, _writers(kind, layouts),
                             layers[0].batch if kind == "conv" else 1)
            edges.append(f"{layers[-1].name}{via} -> {nxt_layers[0].name} "
                         f"({'flattened in ' if flatten else ''}memory tile {tile[0]},{tile[1]})")
        sink = nxt_seam.write if nxt_seam else None
        if kind == "conv":
            lowering = _ConvChainLowering(layers, layouts, res, tiles)
            lowering.run(sink, (flatten or [None])[0])
            metas.append(lowering.meta())
        elif kind == "dense":
            lowering = _DenseChainLowering(layers, layouts, res, tiles, "ddr")
            lowering.run(k_slices(layouts[0], seam.read) if seam else None, sink)
            metas.append(lowering.meta())
        else:
            (layer,), (cfg,) = layers, layouts
            ends = []
            for tensor, role, near in ((INPUT, "input", seam), (OUTPUT, "output", nxt_seam)):
                if near is None:
                    program.ddr.append(DdrTensor(tensor, [layer.rows, layer.cols], layer.precision
                                                 if role == "input" else layer.out_dtype, role))
                ends.append((near.read if role == "input" else near.write, near.stride) if near
                            else (functools.partial(fifos.DdrEndpoint, tensor), layer.cols))
            row_tiles = [t[0] for t in tiles[0]]
            lower_row_tiles(res, layer, cfg, row_tiles, {layer.input: ends[0]}, ends[1])
            metas.append(row_meta(layer, cfg, row_tiles))
        seam, first = nxt_seam, first + len(layers)
    program.tiles = res.tile_specs()
    intermediates = metas[0]["onchip_intermediates"]
    for edge, meta in zip(edges, metas[1:]):
        intermediates = intermediates + [edge] + meta["onchip_intermediates"]
    program.meta = {
        "precision": computed[0][1][0].precision,
        "macs": sum(meta["macs"] for meta in metas),
        "padded_macs": sum(meta["padded_macs"] for meta in metas),
        "layers": [layer for meta in metas for layer in meta["layers"]],
        "onchip_intermediates": intermediates,
        "io": "ddr",
        # a conv part over a batch: its images and memory-tile copies (the report's pipeline)
        **{key: metas[0][key] for key in ("batch", "image_buffers") if key in metas[0]},
    }
    return program

