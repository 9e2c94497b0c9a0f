"""Lowering: parts of several families -> one AIE program (a CNN or a transformer layer on chip).

Each part (a conv chain, a dense chain, a row-wise layer, a batched matmul) is lowered by its own
module on one placement; at each seam the tensor is a memory-tile buffer instead of DDR, picked
for its channels, lock and bytes (a :class:`ResourceError` names a seam that has none); attention
heads are DMA patterns. ``docs/design.md`` ("Several families in one program") has the design.
"""

from __future__ import annotations

import functools

import numpy as np

from . import fifo as fifos
from .layers import FlattenLayer
from .lower import INPUT, OUTPUT, _DenseChainLowering, dense_shapes, k_slices
from .lower_bmm import BatchView, bmm_meta, lower_bmm_tiles
from .lower_conv import _ConvChainLowering, _numbered, conv_shapes
from .lower_rows import lower_row_tiles, row_meta, row_shapes
from .place import place_layers
from .program import DdrTensor, LockOp, Program
from .resources import VECTOR_ALIGN, ResourceError, TileResources

# the part each layer family goes in; a flatten goes with the conv part that feeds it, and heads
# are no part (they move no data: the batched matmul's patterns split or merge them)
PART_KINDS = {"ConvLayer": "conv", "FlattenLayer": "conv", "DenseLayer": "dense",
              "RowLayer": "row", "BmmLayer": "bmm", "HeadsLayer": "heads"}


class _Seam:
    """The memory-tile buffer holding the tensor between parts, and its "full" lock."""

    def __init__(self, res: TileResources, name: str, tile, shape: list, dtype: str,
                 writers: int, images: int = 1):
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


class _Memtiles:
    """Picks each seam's memory tile: the nearest to a column that still has the DMA channels,
    the lock and the bytes the seam needs (tallied here, as the channels are taken only when the
    parts are lowered)."""

    def __init__(self, device):
        self.device, self.used = device, {}

    def pick(self, seam: str, col: int, writers: int, readers: int, nbytes: int) -> tuple:
        dev, need = self.device, (writers, readers, 1, -(-nbytes // VECTOR_ALIGN) * VECTOR_ALIGN)
        if dev.memtile is None:
            raise ResourceError(f"{dev.name} has no memory tiles to hold {seam}")
        limits = (dev.memtile["s2mm"], dev.memtile["mm2s"], dev.memtile["locks"],
                  dev.memtile["bytes"])
        for dist in range(dev.columns):
            for c in sorted({col - dist, col + dist}):
                for row in range(1, dev.first_compute_row):
                    used = self.used.get((c, row), (0, 0, 0, 0))
                    if 0 <= c < dev.columns and all(u + n <= lim for u, n, lim
                                                    in zip(used, need, limits)):
                        self.used[(c, row)] = tuple(u + n for u, n in zip(used, need))
                        return (c, row)
        raise ResourceError(f"no memory tile of {dev.name} has {writers} S2MM and {readers} "
                            f"MM2S DMA channels, a lock and {nbytes:,} B free for the seam {seam}")


def _shapes(kind: str, layers: list, layouts: list) -> list:
    return {"conv": conv_shapes, "dense": dense_shapes,
            "row": lambda ls, cs: row_shapes(ls[0], cs[0]),
            "bmm": lambda ls, cs: [(ls[0].name, cs[0].tiles, 1)]}[kind](layers, layouts)


def _writers(kind: str, layouts: list) -> int:
    """The DMA channels a part writes its output with (each releases the seam's lock once)."""
    return layouts[-1].tiles if kind in ("row", "bmm") else layouts[-1].n_par


def _operands(kind: str, layers: list, layouts: list) -> list:
    """``[(source, (rows, cols), (rows, width), channels)]``: what a part reads, its matrix and
    the one it walks (padded for a dense part), with how many DMA channels."""
    first, lay = layers[0], layouts[0]
    if kind == "dense":
        return [(first.input, (first.m, first.k), (lay.m_pad, lay.k_pad), lay.cascade)]
    if kind == "row":
        return [(src, (first.rows, first.cols), (first.rows, first.cols), lay.tiles)
                for src in (first.input, first.other) if src is not None]
    if kind == "bmm":
        return [(src, (first.batch * r, c), (first.batch * r, c), lay.tiles)
                for src, r, c in ((first.input, first.m, first.k),
                                  (first.other, first.k, first.n))]
    return []  # a conv part reads DDR by itself


def _result(kind: str, layers: list, layouts: list) -> tuple:
    """``((rows, cols), (rows, width))``: the matrix a part writes and the one its patterns walk
    (a conv part's flattened row is laid out as its reader, the dense head, walks it)."""
    last, lay = layers[-1], layouts[-1]
    if kind == "dense":
        return (last.m, last.n), (lay.m_pad, lay.n_pad)
    if kind == "row":
        return (last.rows, last.cols), (last.rows, last.cols)
    if kind == "bmm":
        return (last.batch * last.m, last.n), (last.batch * last.m, last.n)
    return (0, 0), (0, 0)


def lower_net(name: str, parts: list, device, outputs: tuple | None = None) -> Program:
    """One AIE program for ``parts``, ``[(kind, layers, layouts)]`` in dataflow order: kind
    ``"conv"`` (conv layers, their tile layouts; a :class:`FlattenLayer` may end the layers),
    ``"dense"`` (a chain of dense layers, their tile layouts), ``"row"`` (one row-wise layer, its
    config), ``"bmm"`` (one batched matmul, its config) or ``"heads"`` (one
    :class:`~tvm_aie.codegen.layers.HeadsLayer`, no layouts). ``outputs``: the layers whose
    results the program writes to DDR (by default the last part's). See the module docstring."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    computed = [(kind, [layer for layer in layers if not isinstance(layer, FlattenLayer)],
                 layouts) for kind, layers, layouts in parts]
    placed = [part for part in computed if part[0] != "heads"]
    placement = place_layers([s for kind, layers, layouts in placed
                              for s in _shapes(kind, layers, layouts)], device)
    tiles, first = [], 0
    for kind, layers, _ in computed:
        tiles.append(placement[first:first + len(layers)] if kind != "heads" else None)
        first += len(layers) if kind != "heads" else 0
    heads = {layers[0].name: layers[0] for kind, layers, _ in computed if kind == "heads"}
    merges = {h.input: h for h in heads.values() if not h.split}
    outputs = outputs or (placed[-1][1][-1].name,)

    def home(src):
        """(the tensor ``src`` is read from, the split heads it is read through or None)."""
        h = heads.get(src)
        return (home(h.input)[0], h) if h is not None and h.split else (src, None)

    # every tensor a part reads or writes, as a [rows, stride] matrix wide enough for all
    written, read = {}, {}  # tensor -> (part index, heads merged into it); [(part, heads)]
    logical, rows, width, channels, dtype = {}, {}, {}, {}, {}
    for i, (kind, layers, layouts) in enumerate(computed):
        if kind == "heads":
            continue
        merge = merges.get(layers[-1].name)
        key = merge.name if merge else parts[i][1][-1].name  # a conv part's flatten, if any
        written[key] = (i, merge)
        shape, (r, w) = _result(kind, layers, layouts)
        if merge:
            shape = r, w = (merge.batch * merge.seq, merge.width)
        logical[key], rows[key], width[key] = shape, [r], [w]
        dtype[key] = layers[-1].out_dtype
        for src, shape, (r, w), n in _operands(kind, layers, layouts):
            key, view = home(src)
            read.setdefault(key, []).append((i, view))
            if view is not None:
                r, w = view.batch * view.seq, view.width
            logical.setdefault(key, shape)
            rows.setdefault(key, []).append(r)
            width.setdefault(key, []).append(w)
            channels[key] = channels.get(key, 0) + n
            dtype.setdefault(key, layers[0].in_dtype if kind == "dense" else layers[0].precision)
    stride = {key: max(ws) for key, ws in width.items()}
    shape = {key: [max(rs), stride[key]] for key, rs in rows.items()}
    # the seams: each tensor a part reads, in a memory tile near its writer
    memtiles, seams, ends, edges = _Memtiles(device), {}, {}, []
    for key, (i, merge) in written.items():
        readers = read.get(key, [])
        if readers:  # near its writer's column (a conv part's: its reader's)
            col = tiles[readers[0][0] if computed[i][0] == "conv" else i][0][0][0][0]
            copies = int(key in outputs)  # also written to DDR: a memory-tile MM2S reads it out
            nbytes = int(np.prod(shape[key])) * np.dtype(dtype[key]).itemsize
            tile = memtiles.pick(f"{key}.out", col, _writers(*computed[i][::2]),
                                 channels[key] + copies, nbytes)
            seams[key] = _Seam(res, f"{key}.out", tile, shape[key], dtype[key],
                               _writers(*computed[i][::2]),
                               computed[i][1][0].batch if computed[i][0] == "conv" else 1)
            ends[key] = (seams[key].read, seams[key].write)
            writer = computed[i][1][-1].name + (f" -> {merge.name}" if merge else "")
            flatten = [layer for layer in parts[i][1] if isinstance(layer, FlattenLayer)]
            via = "".join(f" -> {layer.name}" for layer in flatten)
            names = [(f"{view.name} -> " if view else "") + computed[j][1][0].name
                     for j, view in readers]
            edges.append((i, f"{writer}{via} -> {', '.join(names)} "
                             f"({'flattened in ' if flatten else ''}memory tile "
                             f"{tile[0]},{tile[1]})"))
    for k, src in enumerate(sorted(s for s in read if isinstance(s, int))):
        tensor = _numbered(INPUT, k)
        program.ddr.append(DdrTensor(tensor, shape[src], dtype[src], "input",
                                     valid_shape=list(logical[src])))
        ends[src] = (functools.partial(fifos.DdrEndpoint, tensor), None)
    for k, out in enumerate(outputs):
        tensor = _numbered(OUTPUT, k)
        program.ddr.append(DdrTensor(tensor, shape[out], dtype[out], "output",
                                     valid_shape=list(logical[out])))
        sink = functools.partial(fifos.DdrEndpoint, tensor)
        if out in seams:  # read in the program too: copied out of its memory tile
            fifo = fifos.ObjectFifo(f"{out}.copy", tuple(shape[out]), dtype[out],
                                    seams[out].read(0, shape[out], [stride[out], 1]),
                                    [sink(0, shape[out], [stride[out], 1])])
            fifos.lower_producer(res, fifo)
            fifos.lower_consumers(res, fifo)
        else:
            ends[out] = (None, sink)
    metas, parted = [], [i for i, part in enumerate(computed) if part[0] != "heads"]
    for i, (kind, layers, layouts) in enumerate(computed):
        if kind == "heads":
            continue
        key = next(key for key, (j, _) in written.items() if j == i)
        merge = written[key][1]
        sink, out_stride = ends[key][1], stride[key]
        if kind == "conv":
            flatten = [layer for layer in parts[i][1] if isinstance(layer, FlattenLayer)]
            lowering = _ConvChainLowering(layers, layouts, res, tiles[i])
            lowering.run(sink, (flatten or [None])[0])
            metas.append(lowering.meta())
        elif kind == "dense":
            src, _ = home(layers[0].input)
            lowering = _DenseChainLowering(layers, layouts, res, tiles[i], "ddr")
            lowering.run(k_slices(layouts[0], ends[src][0], stride[src]), sink, out_stride)
            metas.append(lowering.meta())
        elif kind == "row":
            (layer,), (cfg,) = layers, layouts
            row_tiles = [t[0] for t in tiles[i][0]]
            lower_row_tiles(res, layer, cfg, row_tiles,
                            {src: (ends[home(src)[0]][0], stride[home(src)[0]])
                             for src in (layer.input, layer.other) if src is not None},
                            (sink, out_stride))
            metas.append(row_meta(layer, cfg, row_tiles))
        else:
            (layer,), (cfg,) = layers, layouts
            bmm_tiles = [t[0] for t in tiles[i][0]]
            views = {}
            for role, src, r, c in (("a", layer.input, layer.m, layer.k),
                                    ("b", layer.other, layer.k, layer.n)):
                key, view = home(src)
                views[role] = _batch_view(ends[key][0], stride[key], view, layer.batch, r, c)
            views["c"] = _batch_view(sink, out_stride, merge, layer.batch, layer.m, layer.n)
            lower_bmm_tiles(res, layer, cfg, bmm_tiles, views)
            metas.append(bmm_meta(layer, cfg, bmm_tiles))
    program.tiles = res.tile_specs()
    program.meta = {
        "precision": placed[0][1][0].precision,
        "macs": sum(meta["macs"] for meta in metas),
        "padded_macs": sum(meta["padded_macs"] for meta in metas),
        "layers": [layer for meta in metas for layer in meta["layers"]],
        # in dataflow order: each part's own, then the seams it writes
        "onchip_intermediates": [edge for i, meta in zip(parted, metas)
                                 for edge in meta["onchip_intermediates"] +
                                 [text for j, text in edges if j == i]],
        "io": "ddr",
        # a conv part over a batch: its images and memory-tile copies (the report's pipeline)
        **{key: metas[0][key] for key in ("batch", "image_buffers") if key in metas[0]},
    }
    return program


def _batch_view(endpoint, stride: int, heads, batch: int, rows: int, cols: int) -> BatchView:
    """A batched matmul's operand or result on the matrix ``endpoint`` walks, rows ``stride``
    apart: through ``heads`` (split or merged), or ``batch`` ``[rows, cols]`` blocks one after
    another."""
    if heads is None:
        return BatchView(endpoint, (batch,), (rows * stride, stride, 1))
    return BatchView(endpoint, (heads.batch, heads.heads), tuple(heads.strides(stride)))
