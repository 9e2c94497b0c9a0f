"""Lowering: a chain of scheduled conv2d layers -> one AIE program.

Input: the layers of one offloaded subgraph (:class:`~tvm_aie.codegen.layers.ConvLayer`) and, for
each, the tile layout read back from its scheduled TensorIR
(:func:`tvm_aie.schedules.conv2d.tile_layout`). Output: a program in which

* layer i's input is a feature map ``[C, H+pt+pb, W+pl+pr]`` in the memory tile under its column,
  configured with the input zero point (0 in fp32) so the border *is* the padding; the DMA writes
  the interior with a 3-D pattern (from DDR for the first layer) or 4-D (the previous layer's
  output blocks, each at its channels and rows), and every write releases the image's "full" lock;
* once all writers are done, one 4-D read pattern walks the bands, halo rows included
  (consecutive bands overlap by ``KH - stride`` rows), and broadcasts them to the layer's ``n_par``
  tiles, which keep their output channels' weights resident and compute on tile memory only;
* a residual add (skip connection) reads its blocks from the memory tile that already holds that
  tensor as an earlier layer's input image (readers take the image's "full" count and return it
  after their first block, :func:`~tvm_aie.codegen.fifo._memtile_channel`, so a read paced by
  its tile never keeps the other readers out);
* the last layer's tiles write their blocks straight into the DDR output with 4-D patterns (or,
  in a program that goes on with a dense head, :mod:`~tvm_aie.codegen.lower_net`, with the same
  patterns into a memory tile).

Intermediate feature maps stay in memory tiles; layers run one after another (a layer starts when
its input image is complete).
"""

from __future__ import annotations

import functools
import math
from dataclasses import astuple

import numpy as np

from . import fifo as fifos
from .lower import INPUT, OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, LockOp, Program
from .resources import ResourceError, TileResources


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


class _ConvChainLowering:
    """Lowers the chain into ``res``'s program on the tiles ``placement`` gives it."""

    def __init__(self, layers: list, layouts: list, res: TileResources, placement: list):
        self.layers, self.layouts, self.res, self.placement = layers, layouts, res, placement
        self.program = res.program
        # tensor (a layer's input source) -> (its memory-tile image, reader locks, workload)
        self.images = {}

    def run(self, sink=None, flatten=None) -> None:
        """``sink(offset, sizes, strides)``: the consumer end of the last layer's blocks (the NCHW
        output's elements the pattern visits), by default the DDR output; ``flatten``: the
        :class:`~tvm_aie.codegen.layers.FlattenLayer` after the chain (the output then has its
        shape, and its transpose reorders the writes)."""
        first, last = self.layers[0], self.layers[-1]
        c, h, w = first.in_shape
        src = first.in_slice.in_shape if first.in_slice else (1, c, h, w)
        self.program.ddr.append(DdrTensor(INPUT, list(src), first.in_dtype, "input"))
        if sink is None:
            self.program.ddr.append(DdrTensor(
                OUTPUT, list(flatten.out_shape if flatten else (1, *last.out_shape)),
                last.out_dtype, "output"))
            sink = functools.partial(fifos.DdrEndpoint, OUTPUT)
        self.sink = permuted(sink, last.out_shape, flatten.perm if flatten else None)
        pattern = first.in_slice.pattern() if first.in_slice else (0, [c * h * w], [1])
        writers = [fifos.ObjectFifo(f"{first.name}.x", (c * h * w,), first.in_dtype,
                                    fifos.DdrEndpoint(INPUT, *pattern))]
        for i, (layer, lay) in enumerate(zip(self.layers, self.layouts)):
            writers = self._lower_layer(i, layer, lay, writers)

    def _sliced(self, i: int, layer, writers: list) -> list:
        """The previous layer's blocks (``writers``) into a memory-tile buffer of its whole output,
        and one FIFO reading the layer's ``in_slice`` of it with an offset n-D pattern, in the
        slice's row-major order (DMA only: the slice moves bytes, it computes nothing)."""
        prev, lay = self.layers[i - 1], self.layouts[i - 1]
        _, ho, wo = prev.out_shape
        memtile = (self.placement[i - 1][0][0][0], 1)
        name = f"{layer.in_slice.name}.src"
        self.program.constants[name] = np.zeros(prev.out_shape, prev.out_dtype)
        buf = self.res.buffer(name, memtile, list(prev.out_shape), prev.out_dtype,
                              initial=name).name
        full = self.res.lock(f"{name}.full", memtile, init=0).name
        for p, fifo in enumerate(writers):
            tho = fifo.shape[1]
            fifo.consumers = [fifos.MemtileEndpoint(
                buf, p * lay.op * ho * wo, [lay.bands, lay.op, tho, wo], [tho * wo, ho * wo, wo, 1],
                release=LockOp(full, 1))]
            fifos.lower_consumers(self.res, fifo)
        done = LockOp(full, len(writers))
        return [fifos.ObjectFifo(f"{layer.name}.x", (int(np.prod(layer.in_shape)),),
                                 layer.in_dtype, fifos.MemtileEndpoint(
                                     buf, *layer.in_slice.pattern(), done, done))]

    def _image(self, i: int, layer, lay, writers: list):
        """The layer's padded input image in a memory tile, filled by ``writers``; returns the FIFO
        that broadcasts its bands."""
        if i > 0 and layer.in_slice is not None:
            writers = self._sliced(i, layer, writers)
        wl = lay.workload
        col = self.placement[i][0][0][0]
        memtile = (col, 1)
        pad_value = layer.in_zp or 0
        self.program.constants[f"{layer.name}.image"] = np.full((wl.c, wl.hp, wl.wp), pad_value,
                                                                layer.in_dtype)
        image = self.res.buffer(f"{layer.name}.image", memtile, [wl.c, wl.hp, wl.wp],
                                layer.in_dtype, initial=f"{layer.name}.image").name
        full = self.res.lock(f"{layer.name}.image.full", memtile, init=0).name
        interior = wl.padding[0] * wl.wp + wl.padding[1]
        row, plane = wl.wp, wl.hp * wl.wp
        for p, fifo in enumerate(writers):
            if len(fifo.shape) == 1:  # the whole image in order (from DDR or a slice's read)
                sizes, strides, offset = [wl.c, wl.h, wl.w], [plane, row, 1], interior
            else:  # block p of the previous layer: its channels, band after band
                prev = self.layouts[i - 1]
                op, (_, tho, wo) = prev.op, fifo.shape
                sizes, strides = [prev.bands, op, tho, wo], [tho * row, plane, row, 1]
                offset = p * op * plane + interior
            fifo.consumers = [fifos.MemtileEndpoint(image, offset, sizes, strides,
                                                    release=LockOp(full, 1))]
            if fifo.src is None:
                fifos.lower_producer(self.res, fifo)
            fifos.lower_consumers(self.res, fifo)
        # Readers take the "full" count and give it back, so later readers (a skip connection
        # reading the same image) find it again.
        done = (LockOp(full, len(writers)), LockOp(full, len(writers)))
        self.images[layer.input] = (image, done, wl)
        sh = wl.stride[0]
        return fifos.ObjectFifo(
            f"{layer.name}.a", (wl.c, lay.th_in, wl.w_read), layer.in_dtype,
            fifos.MemtileEndpoint(image, 0, [lay.bands, wl.c, lay.th_in, wl.w_read],
                                  [lay.th * sh * row, plane, row, 1], *done))

    def _residual(self, layer, lay, p: int, tile, tho: int, wo: int):
        """Tile p's blocks of the tensor added to the layer's output, read band by band from the
        memory tile that holds it as an earlier layer's input image."""
        if layer.residual not in self.images:
            raise ResourceError(f"{layer.name}: its residual input {layer.residual!r} is not in a "
                                f"memory tile of this program")
        image, done, src = self.images[layer.residual]
        if (src.c, src.h, src.w) != (lay.workload.o, lay.th * lay.bands, wo):
            raise ValueError(f"{layer.name}: residual image {src} is not the output's shape")
        row, plane = src.wp, src.hp * src.wp
        fifo = fifos.ObjectFifo(
            f"{layer.name}.r{p}", (lay.op, tho, wo), layer.out_dtype,
            fifos.MemtileEndpoint(image, p * lay.op * plane + src.padding[0] * row + src.padding[1],
                                  [lay.bands, lay.op, tho, wo], [tho * row, plane, row, 1], *done),
            [(tile, 2 if lay.double_buffer_a else 1)])
        fifos.lower_producer(self.res, fifo)
        return fifos.lower_consumers(self.res, fifo)[tuple(tile)]

    def _lower_layer(self, i: int, layer, lay, writers: list) -> list:
        tiles = [t[0] for t in self.placement[i]]
        bands = self._image(i, layer, lay, writers)
        bands.consumers = [(t, 2 if lay.double_buffer_a else 1) for t in tiles]
        fifos.lower_producer(self.res, bands)
        a_eps = fifos.lower_consumers(self.res, bands)
        _, ho, wo = layer.out_shape
        tho = lay.th // (layer.pool or (1, 1))[0]
        outputs = []
        for p, tile in enumerate(tiles):
            r_ep = None if layer.residual is None else self._residual(layer, lay, p, tile, tho, wo)
            fifo = fifos.ObjectFifo(f"{layer.name}.c{p}", (lay.op, tho, wo), layer.out_dtype,
                                    (tile, 2 if lay.double_buffer_c else 1))
            c_ep = fifos.lower_producer(self.res, fifo)
            if i == len(self.layers) - 1:
                fifo.consumers = [self.sink(p * lay.op * ho * wo, [lay.bands, lay.op, tho, wo],
                                            [tho * wo, ho * wo, wo, 1])]
                fifos.lower_consumers(self.res, fifo)
            outputs.append(fifo)
            self._lower_tile(layer, lay, p, tile, a_eps[tuple(tile)], c_ep, r_ep)
        return outputs

    def _lower_tile(self, layer, lay, p: int, tile, a_ep, c_ep, r_ep) -> None:
        tag = f"{layer.name}.p{p}"
        chans = slice(p * lay.op, (p + 1) * lay.op)
        consts = {}
        if layer.kind != "maxpool":  # a max-pool only compares: no weights, no epilogue
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
        cout_g = wl.o // wl.groups
        params = {"precision": layer.precision, "stride": list(wl.stride),
                  "group_size": cout_g if wl.groups > 1 else lay.op,
                  # the first input channel of the tile's first group
                  "cin_offset": (p * lay.op // cout_g) * wl.cin_g if wl.groups > 1 else 0,
                  "relu": bool(layer.relu), "clip_max": layer.clip_max,
                  "pool": list(layer.pool or (1, 1)),
                  "out_zp": int(layer.out_zp or 0), "out_dtype": layer.out_dtype,
                  "residual": r_ep is not None, "kind": layer.kind,
                  "window": [wl.kh, wl.kw]}
        if layer.add is not None:
            params["add"] = [int(v) for v in astuple(layer.add)]
        ins = [(a_ep, False)] + ([(r_ep, False)] if r_ep else []) + [(c_ep, True)]

        def step(i):
            roles = {"a": a_ep.slot(i), "c": c_ep.slot(i)} | ({"r": r_ep.slot(i)} if r_ep else {})
            call = KernelCall("conv2d", {**bufs, **roles}, params)
            return [fifos.acquire(ep, prod, i) for ep, prod in ins] + \
                [Instr(op="call", call=call)] + [fifos.release(ep, prod, i) for ep, prod in ins]

        unroll = math.lcm(*(ep.depth for ep, _ in ins))
        self.program.cores.append(Core(tile=list(tile), body=_core_loop(lay.bands, unroll, step)))

    def meta(self) -> dict:
        """The program's description of these layers (what the report prints)."""
        return {
            "precision": self.layers[0].precision,
            "macs": int(sum(layer.macs for layer in self.layers)),
            "padded_macs": int(sum(layer.macs for layer in self.layers)),
            "layers": [{"name": layer.name, "op": layer.kind, "precision": layer.precision,
                        "summary": _summary(layer, lay),
                        "macs": int(layer.macs), "blocks": lay.bands, "config": lay.config,
                        "tiles": [list(t[0]) for t in tiles]}
                       for layer, lay, tiles in zip(self.layers, self.layouts, self.placement)],
            "onchip_intermediates": [
                f"{layer.name}"
                f"{f' -> {nxt.in_slice.name} (sliced by DMA)' if nxt.in_slice else ''}"
                f" -> {nxt.name} (memory tile {self.placement[i + 1][0][0][0]},1)"
                for i, (layer, nxt) in enumerate(zip(self.layers, self.layers[1:]))] + [
                f"{'input' if isinstance(layer.residual, int) else layer.residual} -> "
                f"{layer.name} (skip connection, read again from its memory tile)"
                for layer in self.layers if layer.residual is not None],
        }


def _summary(layer, lay) -> str:
    act = f" clip(0,{layer.clip_max:g})" if layer.clip_max is not None else \
        " relu" if layer.relu else ""
    pool = f" maxpool{layer.pool[0]}x{layer.pool[1]}" if layer.pool else ""
    return f"{lay.workload}{act}{pool}" + (" +residual" if layer.residual is not None else "")


def lower_conv_chain(name: str, layers: list, layouts: list, device, flatten=None) -> Program:
    """One AIE program for a chain of conv2d layers (see the module docstring for the design);
    ``flatten``: the flatten layer after the chain, if any."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    lowering = _ConvChainLowering(layers, layouts, res,
                                  place_layers(conv_shapes(layers, layouts), device))
    lowering.run(flatten=flatten)
    program.tiles, program.meta = res.tile_specs(), lowering.meta()
    return program
        wl = lay.workload
