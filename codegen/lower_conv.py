"""Lowering: scheduled conv2d and pooling layers, a chain or a DAG (branches, concats) -> one
AIE program.

Each layer's input is a zero-point-padded image in a memory tile, read in bands with halos and
broadcast to its tiles, which keep their output channels' weights resident; concats and branches
are DMA patterns; a batch of images is a pipeline over two copies of each map where they fit.
``docs/design.md`` ("Conv chains and DAGs") has the design.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

from . import fifo as fifos
from .layers import sources
from .lower import INPUT, OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, LockOp, Program
from .resources import VECTOR_ALIGN, ResourceError, TileResources


def conv_shapes(layers: list, layouts: list) -> list:
    """The layers as :func:`~tvm_aie.codegen.place.place_layers` takes them (no cascades)."""
    return [(layer.name, lay.n_par, 1) for layer, lay in zip(layers, layouts)]


def permuted(sink, shape: tuple, perm: tuple | None):
    """``sink`` for patterns over the NCHW map ``shape`` (C, H, W), made to address the map
    transposed by ``perm`` (axes of (1, C, H, W), batch first) instead: the same elements land in
    the order ``permute_dims`` then a flatten give them. Each stride of a pattern moves along
    the axes without carrying over (a band, a channel, a row, a column), so it maps to the same
    moves in the transposed layout; a dimension of size 1 never moves."""
    if perm is None:
        return sink
    new_dims = [shape[a - 1] for a in perm[1:]]
    new_strides = [int(np.prod(new_dims[j + 1:])) for j in range(3)]
    stride_of = {perm[j + 1] - 1: new_strides[j] for j in range(3)}

    def move(flat: int) -> int:
        return sum(int(c) * stride_of[i] for i, c in enumerate(np.unravel_index(flat, shape)))

    def remapped(offset: int, sizes: list, strides: list):
        return sink(move(offset), sizes, [move(s) if n > 1 else 0 for n, s in zip(sizes, strides)])

    return remapped


def _numbered(name: str, k: int) -> str:
    """The DDR tensor of the ``k``-th program input or output: ``name``, then ``name1``, ..."""
    return name if k == 0 else f"{name}{k}"


def _feeds(layer) -> list:
    """The tensors whose data fills ``layer``'s input image: a concat's inputs, or its input."""
    return list(layer.in_concat.inputs) if layer.in_concat else [layer.input]


def _relay(buffer: str, offset: int, sizes: list, strides: list, acquire: LockOp,
           early: LockOp | None, release: LockOp) -> list:
    """The BDs of one pattern that takes ``acquire``, releases ``early`` after its first object
    (along the outermost dimension with more than one) and ``release`` at its end."""
    if early is None:
        return [fifos.MemtileEndpoint(buffer, offset, sizes, strides, acquire, release)]
    d = next((d for d, n in enumerate(sizes) if n > 1), None)
    if d is None:
        raise ResourceError(f"{buffer}: a one-element pattern cannot hand on the lock it takes")
    head = [*sizes[:d], 1, *sizes[d + 1:]]
    rest = [*sizes[:d], sizes[d] - 1, *sizes[d + 1:]]
    return [fifos.MemtileEndpoint(buffer, offset, head, strides, acquire, early),
            fifos.MemtileEndpoint(buffer, offset + strides[d], rest, strides, None, release)]


class _MapSlots:
    """A map in a memory tile for every image of the batch: ``depth`` copies, two (ping-pong)
    when there is more than one image and the tile has room for both, else one (the layers
    around it then take turns), image n in copy ``n % depth``. Its writers (the DMA channels
    filling parts of an image) and readers (the channels reading it) follow one lock protocol per
    copy:

    * ``full`` counts the writers done; the first reader takes all of them (the image is
      complete) and, after its first object, lets the other readers in through ``gate``;
    * ``empty`` counts the readers done (at first all: the copy is free); the first writer takes
      all of them and, after its first object, lets the other writers in through ``go``.

    So writers fill one copy while the readers drain the other, no reader keeps the others out
    while its consumer paces it, and a copy is overwritten only once every reader is done. With
    one image no copy is reused: writers only count into ``full`` and every reader takes the
    count and gives it back (:func:`~tvm_aie.codegen.fifo._memtile_channel` holds it for the
    first object only)."""

    def __init__(self, res: TileResources, name: str, tile, shape: list, dtype: str, fill,
                 images: int, writers: int, readers: int):
        self.size = int(np.prod(shape))
        nbytes = self.size * np.dtype(dtype).itemsize
        two = -(-nbytes // VECTOR_ALIGN) * VECTOR_ALIGN + nbytes
        self.depth = 2 if images > 1 and res.free_bytes(tile) >= two else 1
        self.images, self.writers, self.readers = images, writers, readers
        res.program.constants[name] = np.full((self.depth, *shape), fill, dtype)
        self.buffer = res.buffer(name, tile, [self.depth, *shape], dtype, initial=name).name
        self.locks = [{role: res.lock(f"{name}.{role}{s}", tile, init=init).name
                       for role, init, used in (("full", 0, True), ("empty", readers, images > 1),
                                                ("gate", 0, readers > 1 and images > 1),
                                                ("go", 0, writers > 1 and images > 1))
                       if used} for s in range(self.depth)]
        self.handed = {"write": 0, "read": 0}

    def _chain(self, role: str, offset: int, sizes: list, strides: list):
        """The next writer's or reader's end: one image's pattern in each copy, in turn."""
        first = self.handed[role] == 0
        self.handed[role] += 1
        if self.images == 1:
            full = self.locks[0]["full"]
            ops = (None, LockOp(full)) if role == "write" else (LockOp(full, self.writers),) * 2
            return fifos.MemtileEndpoint(self.buffer, offset, sizes, strides, *ops)
        # (the lock the first takes, how much, the others' lock, how many they are, the release)
        take, need, others, count, done = ("empty", self.readers, "go", self.writers, "full") \
            if role == "write" else ("full", self.writers, "gate", self.readers, "empty")
        bds = []
        for s, lk in enumerate(self.locks):
            base = offset + s * self.size
            if first:  # takes the copy for all and lets the others in after its first object
                bds += _relay(self.buffer, base, sizes, strides, LockOp(lk[take], need),
                              LockOp(lk[others], count - 1) if count > 1 else None,
                              LockOp(lk[done]))
            else:
                bds.append(fifos.MemtileEndpoint(self.buffer, base, sizes, strides,
                                                 LockOp(lk[others]), LockOp(lk[done])))
        return fifos.MemtileChain(self.buffer, bds, cyclic=self.images > self.depth)

    def write(self, offset: int, sizes: list, strides: list):
        return self._chain("write", offset, sizes, strides)

    def read(self, offset: int, sizes: list, strides: list):
        return self._chain("read", offset, sizes, strides)


@dataclass(frozen=True)
class _Unpadded:
    """The shape of a map with no border, as :meth:`_ConvChainLowering._residual` reads it."""

    c: int
    h: int
    w: int
    padding: tuple = (0, 0, 0, 0)

    @property
    def hp(self) -> int:
        return self.h

    @property
    def wp(self) -> int:
        return self.w


class _ConvChainLowering:
    """Lowers the layers, a DAG in dataflow order (a chain is the simple case), into ``res``'s
    program on the tiles ``placement`` gives it; ``outputs``: the layers whose outputs the
    program returns, in order (by default those no other layer reads)."""

    def __init__(self, layers: list, layouts: list, res: TileResources, placement: list,
                 outputs: list | None = None):
        self.layers, self.layouts, self.res, self.placement = layers, layouts, res, placement
        self.program = res.program
        read = {s for layer in layers for s in sources(layer)}
        self.outputs = list(outputs or [x.name for x in layers if x.name not in read])
        self.index = {layer.name: i for i, layer in enumerate(layers)}
        self.batch = layers[0].batch
        if any(layer.batch != self.batch for layer in layers):
            raise ValueError(f"the conv layers have batches {[x.batch for x in layers]}, not one")
        # tensor (a layer's input source) -> (its memory-tile image, workload)
        self.images = {}
        self.depths = {}  # layer -> copies of its input image (2: ping-pong over the batch)
        # layer -> its output FIFOs (one per tile), and how many readers have yet to add their
        # image as a consumer: a FIFO is lowered once all have, as one broadcast to all of them
        self.fifos, self.pending = {}, {}
        for src in (s for layer in layers for s in _feeds(layer) if isinstance(s, str)):
            self.pending[src] = self.pending.get(src, 0) + 1
        self.sinks = {}

    def run(self, sink=None, flatten=None) -> None:
        """``sink(offset, sizes, strides)``: the consumer end of the output layer's blocks (the
        NCHW output's elements the pattern visits) when there is one output, by default a DDR
        output per output layer; ``flatten``: the
        :class:`~tvm_aie.codegen.layers.FlattenLayer` after the one output layer (the output then
        has its shape, and its transpose reorders the writes)."""
        params = sorted({s for layer in self.layers for s in [*_feeds(layer), layer.residual]
                         if isinstance(s, int)})
        if params != list(range(len(params))):
            raise ValueError(f"the conv layers read program inputs {params}, not each of the first "
                             f"{len(params)}")
        for k in params:
            reader = next((layer for layer in self.layers if k in _feeds(layer)), None)
            if reader is None:  # read only as a residual: the output's shape
                adder = next(layer for layer in self.layers if layer.residual == k)
                shape, dtype = (self.batch, *adder.out_shape), adder.out_dtype
            else:
                shape = reader.in_slice.in_shape if reader.in_slice else \
                    (self.batch, *reader.in_shape)
                dtype = reader.in_dtype
            self.program.ddr.append(DdrTensor(_numbered(INPUT, k), list(shape), dtype, "input"))
        if (sink or flatten) and len(self.outputs) != 1:
            raise ValueError(f"{len(self.outputs)} outputs where one layer's output goes on")
        for k, name in enumerate(self.outputs):
            layer = self.layers[self.index[name]]
            if sink is None:
                self.program.ddr.append(DdrTensor(
                    _numbered(OUTPUT, k), list(flatten.out_shape if flatten else
                                               (self.batch, *layer.out_shape)), layer.out_dtype,
                    "output"))
            self.sinks[name] = permuted(sink or self._ddr(_numbered(OUTPUT, k),
                                                          int(np.prod(layer.out_shape))),
                                        layer.out_shape, flatten.perm if flatten else None)
        for i, (layer, lay) in enumerate(zip(self.layers, self.layouts)):
            self._lower_layer(i, layer, lay)
        unread = [name for name, outs in self.fifos.items() if not outs[0].consumers]
        if unread:
            raise ValueError(f"the outputs of {unread} are neither read nor returned")

    def _ddr(self, tensor: str, image: int):
        """``endpoint(offset, sizes, strides)``: DDR tensor ``tensor`` walked with one image's
        pattern in each image of the batch (``image`` elements apart), as one BD."""
        def endpoint(offset: int, sizes: list, strides: list) -> fifos.DdrEndpoint:
            if self.batch == 1:
                return fifos.DdrEndpoint(tensor, offset, sizes, strides)
            return fifos.DdrEndpoint(tensor, offset, [self.batch, *sizes], [image, *strides])
        return endpoint

    def _read_by(self, src: str) -> None:
        """One more reader of ``src`` added its consumer ends; lower its FIFOs after the last."""
        self.pending[src] -= 1
        if self.pending[src] == 0:
            for fifo in self.fifos[src]:
                fifos.lower_consumers(self.res, fifo)

    def _sliced(self, layer, src: str):
        """The blocks of layer ``src`` into a memory-tile buffer of its whole output, and one FIFO
        reading ``layer``'s ``in_slice`` of it with an offset n-D pattern, in the slice's
        row-major order (DMA only: the slice moves bytes, it computes nothing)."""
        j = self.index[src]
        prev, lay = self.layers[j], self.layouts[j]
        _, ho, wo = prev.out_shape
        memtile = (self.placement[j][0][0][0], 1)
        whole = _MapSlots(self.res, f"{layer.in_slice.name}.src", memtile, list(prev.out_shape),
                          prev.out_dtype, 0, self.batch, len(self.fifos[src]), 1)
        self.depths[whole.buffer] = whole.depth
        for p, fifo in enumerate(self.fifos[src]):
            tho = fifo.shape[1]
            fifo.consumers.append(whole.write(p * lay.op * ho * wo, [lay.bands, lay.op, tho, wo],
                                              [tho * wo, ho * wo, wo, 1]))
        self._read_by(src)
        return fifos.ObjectFifo(f"{layer.name}.x", (int(np.prod(layer.in_shape)),),
                                layer.in_dtype, whole.read(*layer.in_slice.pattern()))

    def _writers(self, layer) -> list:
        """``[(fifo, first channel, producer's layout)]`` filling ``layer``'s input image: a
        program input from DDR or a slice of a layer's output (each one FIFO of the whole image in
        order, no layout), or the blocks of the layers it reads, a concat's inputs each at its
        channel offset."""
        concat = layer.in_concat
        out = []
        for src, first in zip(*(concat.inputs, concat.offsets) if concat else ([layer.input], [0])):
            if isinstance(src, int):
                c, h, w = layer.in_shape
                pattern = layer.in_slice.pattern() if layer.in_slice else (0, [c * h * w], [1])
                image = int(np.prod(layer.in_slice.in_shape[1:])) if layer.in_slice else c * h * w
                out.append((fifos.ObjectFifo(f"{layer.name}.x", (c * h * w,), layer.in_dtype,
                                             self._ddr(_numbered(INPUT, src), image)(*pattern)),
                            0, None))
            elif layer.in_slice is not None:
                out.append((self._sliced(layer, src), 0, None))
            else:
                lay = self.layouts[self.index[src]]
                out += [(fifo, first + p * lay.op, lay) for p, fifo in enumerate(self.fifos[src])]
        return out

    def _image(self, i: int, layer, lay):
        """The layer's padded input image in a memory tile, filled by its writers; returns the
        FIFO that broadcasts its bands."""
        writers = self._writers(layer)
        limit = (self.res.device.memtile or {}).get("s2mm", len(writers))
        if len(writers) > limit:  # one S2MM channel of the memory tile per writing stream
            cat = layer.in_concat
            raise ResourceError(
                f"{layer.name}: {len(writers)} streams write its input image"
                f"{f' ({cat.name} of ' + ' + '.join(cat.inputs) + ')' if cat else ''}, a memory "
                f"tile has {limit} S2MM channels: fewer tiles per producer would fit")
        wl = lay.workload
        memtile = (self.placement[i][0][0][0], 1)
        key = layer.in_slice.name if layer.in_slice else layer.input
        # its bands (one broadcast, or one per tile of a grouped conv), and (the first image of a
        # tensor) one read per tile of a layer adding it
        readers = (lay.n_par if wl.groups > 1 else 1) + (0 if key in self.images else sum(
            self.layouts[j].n_par for j, x in enumerate(self.layers) if x.residual == key))
        # the border is the padding: the copies start filled with the input zero point
        image = _MapSlots(self.res, f"{layer.name}.image", memtile, [wl.c, wl.hp, wl.wp],
                          layer.in_dtype, layer.in_zp or 0, self.batch, len(writers), readers)
        self.depths[layer.name] = image.depth
        interior = wl.padding[0] * wl.wp + wl.padding[1]
        row, plane = wl.wp, wl.hp * wl.wp
        for fifo, first, src in writers:
            if src is None:  # the whole image in order (from DDR or a slice's read)
                sizes, strides, offset = [wl.c, wl.h, wl.w], [plane, row, 1], interior
            else:  # a producer's block: its channels, band after band
                _, tho, wo = fifo.shape
                sizes, strides = [src.bands, src.op, tho, wo], [tho * row, plane, row, 1]
                offset = first * plane + interior
            end = image.write(offset, sizes, strides)
            if src is None:  # a FIFO of this image alone
                fifo.consumers = [end]
                if fifo.src is None:
                    fifos.lower_producer(self.res, fifo)
                fifos.lower_consumers(self.res, fifo)
            else:
                fifo.consumers.append(end)
        if layer.in_slice is None:
            for src in _feeds(layer):
                if isinstance(src, str):
                    self._read_by(src)
        # the bands are the image's first readers; a skip connection's reads come later
        cg = wl.c // lay.n_par if wl.groups > 1 else wl.c
        band = [lay.bands, cg, lay.th_in, wl.w_read], [lay.th * wl.stride[0] * row, plane, row, 1]
        bands = [fifos.ObjectFifo(f"{layer.name}.a" + (f"{p}" if cg < wl.c else ""),
                                  (cg, lay.th_in, wl.w_read), layer.in_dtype,
                                  image.read(p * cg * plane, *band))
                 for p in range(wl.c // cg)]
        self.images.setdefault(key, (image, wl))
        return bands

    def _residual(self, layer, lay, p: int, tile, tho: int, wo: int):
        """Tile p's blocks of the tensor added to the layer's output, read band by band from the
        memory tile that holds it (an earlier layer's input image, else a map of its producer's
        output made for it), or from DDR when it is a program input no layer here reads."""
        if layer.residual not in self.images and isinstance(layer.residual, str):
            self._residual_map(layer.residual)
        if layer.residual in self.images:
            image, src = self.images[layer.residual]
            row, plane, first = src.wp, src.hp * src.wp, src.padding[0] * src.wp + src.padding[1]
            shape = (src.c, src.h, src.w)
        else:  # a program input: its blocks straight from DDR
            shape = (lay.workload.o, lay.th * lay.bands, wo)
            row, plane, first = wo, shape[1] * wo, 0
            image = None
        if shape != (lay.workload.o, lay.th * lay.bands, wo):
            raise ValueError(f"{layer.name}: residual image {shape} is not the output's shape")
        sizes, strides = [lay.bands, lay.op, tho, wo], [tho * row, plane, row, 1]
        offset = p * lay.op * plane + first
        fifo = fifos.ObjectFifo(
            f"{layer.name}.r{p}", (lay.op_pass, tho, wo), layer.out_dtype,
            image.read(offset, sizes, strides) if image is not None else
            self._ddr(_numbered(INPUT, layer.residual), int(np.prod(shape)))(offset, sizes,
                                                                              strides),
            [(tile, 2 if lay.double_buffer_a else 1)])
        fifos.lower_producer(self.res, fifo)
        return fifos.lower_consumers(self.res, fifo)[tuple(tile)]

    def _residual_map(self, src: str) -> None:
        """Layer ``src``'s whole output in a memory tile of its column (no padding), for the
        layers that add it: its blocks are written there as to any reader's image (a projection
        shortcut's output, read by nothing else, has no image of its own)."""
        j = self.index[src]
        prev, lay = self.layers[j], self.layouts[j]
        c, ho, wo = prev.out_shape
        readers = sum(self.layouts[k].n_par for k, x in enumerate(self.layers) if x.residual == src)
        memtile = (self.placement[j][0][0][0], 1)
        whole = _MapSlots(self.res, f"{src}.map", memtile, [c, ho, wo], prev.out_dtype, 0,
                          self.batch, len(self.fifos[src]), readers)
        self.depths[whole.buffer] = whole.depth
        for p, fifo in enumerate(self.fifos[src]):
            tho = fifo.shape[1]
            fifo.consumers.append(whole.write(p * lay.op * ho * wo, [lay.bands, lay.op, tho, wo],
                                              [tho * wo, ho * wo, wo, 1]))
        if not self.pending.get(src):  # no later layer reads it as its input: lower it now
            for fifo in self.fifos[src]:
                fifos.lower_consumers(self.res, fifo)
        self.images[src] = (whole, _Unpadded(c, ho, wo))

    def _lower_layer(self, i: int, layer, lay) -> None:
        tiles = [t[0] for t in self.placement[i]]
        bands = self._image(i, layer, lay)  # one broadcast to every tile, or one per tile
        a_eps = {}
        for fifo, readers in zip(bands, [tiles] if len(bands) == 1 else [[t] for t in tiles]):
            fifo.consumers = [(t, 2 if lay.double_buffer_a else 1) for t in readers]
            fifos.lower_producer(self.res, fifo)
            a_eps.update(fifos.lower_consumers(self.res, fifo))
        _, ho, wo = layer.out_shape
        tho = lay.th // (layer.pool or (1, 1))[0]
        sink = self.sinks.get(layer.name)
        outputs = []
        for p, tile in enumerate(tiles):
            r_ep = None if layer.residual is None else self._residual(layer, lay, p, tile, tho, wo)
            fifo = fifos.ObjectFifo(f"{layer.name}.c{p}", (lay.op_pass, tho, wo),
                                    layer.out_dtype, (tile, 2 if lay.double_buffer_c else 1))
            c_ep = fifos.lower_producer(self.res, fifo)
            if sink is not None:  # read by layers too: lowered with their images (_read_by)
                fifo.consumers = [sink(p * lay.op * ho * wo, [lay.bands, lay.op, tho, wo],
                                       [tho * wo, ho * wo, wo, 1])]
                if not self.pending.get(layer.name):
                    fifos.lower_consumers(self.res, fifo)
            outputs.append(fifo)
            self._lower_tile(layer, lay, p, tile, a_eps[tuple(tile)], c_ep, r_ep)
        self.fifos[layer.name] = outputs

    def _constants(self, layer, lay, p: int, tile) -> dict:
        """Tile ``p``'s bias, multiplier and shift (every pass's channels) and, unless they
        stream, its weights, resident in the tile: ``{role: buffer}``."""
        wl, tag = lay.workload, f"{layer.name}.p{p}"
        chans = slice(p * lay.op, (p + 1) * lay.op)
        consts = {}
        if layer.kind != "maxpool":  # a max-pool only compares: no weights, no epilogue
            if lay.passes == 1:
                consts["w"] = np.ascontiguousarray(layer.weight[chans])
            if layer.bias is not None:  # at the accumulator's width (int16xint8: int64)
                consts["bias"] = layer.bias[chans].astype(wl.acc_dtype)
            if wl.integer:
                consts["mult"] = np.asarray(layer.mult, np.int32)[chans]
                consts["shift"] = np.asarray(layer.shift, np.int8)[chans]
        bufs = {}
        for key, arr in consts.items():
            self.program.constants[f"{tag}.{key}"] = arr
            bufs[key] = self.res.buffer(f"{tag}.{key}", tile, arr.shape, str(arr.dtype),
                                        initial=f"{tag}.{key}").name
        return bufs

    def _streamed_weights(self, layer, lay, p: int, tile):
        """Tile ``p``'s weights in DDR, streamed pass after pass for every band into two slots:
        the consumer end on the tile."""
        name = f"{layer.name}.p{p}.w"
        blocks = np.ascontiguousarray(layer.weight[p * lay.op:(p + 1) * lay.op])
        self.program.constants[name] = blocks
        self.program.ddr.append(DdrTensor(name, list(blocks.shape), str(blocks.dtype),
                                          "constant"))
        # the outer dimension repeats the tile's weights once per band (stride 0: a repeat)
        fifo = fifos.ObjectFifo(name, (lay.op_pass, *blocks.shape[1:]), str(blocks.dtype),
                                fifos.DdrEndpoint(name, 0, [lay.bands * self.batch, blocks.size],
                                                  [0, 1]), [(tile, 2)])
        fifos.lower_producer(self.res, fifo)
        return fifos.lower_consumers(self.res, fifo)[tuple(tile)]

    def _lower_tile(self, layer, lay, p: int, tile, a_ep, c_ep, r_ep) -> None:
        wl, npass = lay.workload, lay.passes
        bufs = self._constants(layer, lay, p, tile)
        w_ep = self._streamed_weights(layer, lay, p, tile) if npass > 1 else None
        cout_g = wl.o // wl.groups
        params = {"precision": layer.precision, "stride": list(wl.stride),
                  "group_size": cout_g if wl.groups > 1 else lay.op_pass,
                  "relu": bool(layer.relu), "clip_max": layer.clip_max,
                  "pool": list(layer.pool or (1, 1)),
                  "out_zp": int(layer.out_zp or 0), "out_dtype": layer.out_dtype,
                  "residual": r_ep is not None, "kind": layer.kind,
                  **({"relu_after": True} if layer.relu_after else {}),
                  "window": [wl.kh, wl.kw]}
        if layer.add is not None:
            params["add"] = [int(v) for v in astuple(layer.add)]
        if layer.rescale is not None:
            params["rescale"] = [int(v) for v in layer.rescale]
        ins = [(a_ep, False)] + [(ep, prod) for ep, prod in ((r_ep, False), (c_ep, True)) if ep]
        if npass == 1:
            def step(i):
                roles = {"a": a_ep.slot(i), "c": c_ep.slot(i)} | \
                    ({"r": r_ep.slot(i)} if r_ep else {})
                call = KernelCall("conv2d", {**bufs, **roles}, params)
                return [fifos.acquire(ep, prod, i) for ep, prod in ins] + \
                    [Instr(op="call", call=call)] + \
                    [fifos.release(ep, prod, i) for ep, prod in ins]

            unroll = math.lcm(*(ep.depth for ep, _ in ins))
            body = _core_loop(lay.bands * self.batch, unroll, step)
        else:
            body = _core_loop(lay.bands * self.batch, a_ep.depth,
                              self._passes_of_band(bufs, params, a_ep, w_ep, ins[1:], npass))
        self.program.cores.append(Core(tile=list(tile), body=body))

    @staticmethod
    def _passes_of_band(bufs: dict, params: dict, a_ep, w_ep, ins: list, npass: int):
        """``step(band)``: take the band, loop over the passes (each a call on the next weight
        slot, the next output and residual slots), give the band back. Each call instruction of
        the loop body computes every ``unroll``-th pass (its ``pass_first``, ``pass_step``)."""
        ins = [(w_ep, False)] + ins
        unroll = math.lcm(*(ep.depth for ep, _ in ins))

        def step(band):
            calls = []
            for i in range(unroll):
                roles = {"a": a_ep.slot(band)} | {role: ep.slot(i) for role, (ep, _) in
                                                   zip(("w", *(("r",) if len(ins) == 3 else ()),
                                                        "c"), ins)}
                call = KernelCall("conv2d", {**bufs, **roles},
                                  {**params, "passes": npass, "pass_first": i,
                                   "pass_step": unroll})
                calls += [fifos.acquire(ep, prod, i) for ep, prod in ins] + \
                    [Instr(op="call", call=call)] + \
                    [fifos.release(ep, prod, i) for ep, prod in ins]
            return [fifos.acquire(a_ep, False, band),
                    Instr(op="loop", count=npass // unroll, body=calls),
                    fifos.release(a_ep, False, band)]

        return step

    def meta(self) -> dict:
        """The program's description of these layers (what the report prints); a batch's
        ``image_buffers``: the copies of each memory-tile map (2: ping-pong, 1: its writers and
        readers take turns)."""
        return {
            "precision": self.layers[0].precision,
            "batch": self.batch,
            "image_buffers": dict(self.depths),
            "macs": int(sum(layer.macs for layer in self.layers)),
            "padded_macs": int(sum(layer.macs for layer in self.layers)),
            "layers": [{"name": layer.name, "op": layer.kind, "precision": layer.precision,
                        "summary": _summary(layer, lay),
                        "macs": int(layer.macs), "blocks": lay.bands, "config": lay.config,
                        "tiles": [list(t[0]) for t in tiles]}
                       for layer, lay, tiles in zip(self.layers, self.layouts, self.placement)],
            "onchip_intermediates": [self._edge(i, layer) for i, layer in enumerate(self.layers)
                                     if any(isinstance(s, str) for s in _feeds(layer))] + [
                f"{'input' if isinstance(layer.residual, int) else layer.residual} -> "
                f"{layer.name} (skip connection, read again from its memory tile)"
                for layer in self.layers if layer.residual is not None],
        }

    def _edge(self, i: int, layer) -> str:
        """How layer i's input reaches its memory-tile image on-chip (a branch read by several
        layers is one edge per reader)."""
        tile = f"memory tile {self.placement[i][0][0][0]},1"
        if self.batch > 1:
            tile += ", ping-pong" if self.depths[layer.name] == 2 else \
                ", one buffer: its writers and readers take turns"
        if layer.in_concat:
            cat = layer.in_concat
            return f"{' + '.join(cat.inputs)} -> {cat.name} (concatenated by DMA) -> " \
                f"{layer.name} ({tile})"
        via = f" -> {layer.in_slice.name} (sliced by DMA)" if layer.in_slice else ""
        return f"{layer.input}{via} -> {layer.name} ({tile})"


def _summary(layer, lay) -> str:
    act = f" clip(0,{layer.clip_max:g})" if layer.clip_max is not None else \
        " relu" if layer.relu else ""
    pool = f" maxpool{layer.pool[0]}x{layer.pool[1]}" if layer.pool else ""
    return f"{lay.workload}{act}{pool}" + (" +residual" if layer.residual is not None else "") + \
        (" relu" if layer.relu_after else "")


def lower_conv_chain(name: str, layers: list, layouts: list, device, flatten=None,
                     outputs: list | None = None) -> Program:
    """One AIE program for conv2d layers in dataflow order (see the module docstring for the
    design); ``flatten``: the flatten layer after the last one, if any; ``outputs``: the layers
    whose outputs the program returns (by default those no other layer reads)."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    lowering = _ConvChainLowering(layers, layouts, res,
                                  place_layers(conv_shapes(layers, layouts), device), outputs)
    lowering.run(flatten=flatten)
    program.tiles, program.meta = res.tile_specs(), lowering.meta()
    return program
