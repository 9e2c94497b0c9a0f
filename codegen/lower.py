"""Lowering: a chain of scheduled dense layers -> one AIE program.

Each tile keeps its weight block resident; rows stream through in blocks of ``tm`` down cascade
chains; layer i's output block p is layer i+1's K slice p, so intermediates go tile to tile; the
chain reads and writes DDR through shims (or PL streams with ``io="pl"``). ``docs/design.md``
("Dense chains") has the design.
"""

from __future__ import annotations

import functools
import math
from dataclasses import astuple

import numpy as np

from . import fifo as fifos
from .place import first_compute_row, place_layers
from .program import Cascade, Core, DdrTensor, Instr, KernelCall, Program
from .resources import TileResources
from ..options import IO
from ..schedules.dense import accumulator_dtype

INPUT, OUTPUT = "input", "output"


def _pad(a: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def _core_loop(iterations: int, unroll: int, step) -> list:
    """``iterations`` of ``step(i)``, as a loop over groups of ``unroll`` (ping-pong) and a tail."""
    body = [ins for i in range(unroll) for ins in step(i)]
    instrs = [Instr(op="loop", count=iterations // unroll, body=body)] if iterations >= unroll else []
    for i in range(iterations - iterations % unroll, iterations):
        instrs += step(i)
    return instrs


def dense_shapes(layers: list, layouts: list) -> list:
    """The layers as :func:`~tvm_aie.codegen.place.place_layers` takes them."""
    return [(layer.name, lay.n_par, lay.cascade) for layer, lay in zip(layers, layouts)]


def k_slices(lay, endpoint, stride: int | None = None) -> list:
    """The first layer's K slices of its ``[m_pad, k_pad]`` input, one n-D pattern per cascade
    stage; ``endpoint(offset, sizes, strides)`` makes the FIFO end (DDR or a memory tile) on a
    matrix whose rows are ``stride`` elements apart (``k_pad`` unless a memory-tile buffer is
    wider for another reader or the writer)."""
    stride = stride or lay.k_pad
    return [endpoint(c * lay.kc, [lay.m_pad // lay.tm, lay.tm, lay.kc],
                     [lay.tm * stride, stride, 1]) for c in range(lay.cascade)]


class _DenseChainLowering:
    """Lowers the chain into ``res``'s program on the tiles ``placement`` gives it."""

    def __init__(self, layers: list, layouts: list, res: TileResources, placement: list, io: str):
        self.layers, self.layouts, self.res, self.placement = layers, layouts, res, placement
        self.program, self.io = res.program, io

    def run(self, inputs: list | None = None, sink=None, out_stride: int | None = None) -> None:
        """``inputs``: the first layer's K-slice sources, by default from the DDR input;
        ``sink(offset, sizes, strides)``: the consumer end of the last layer's output blocks on
        its ``[m_pad, n_pad]`` output (rows ``out_stride`` apart, by default ``n_pad``), by
        default the DDR output."""
        first, last = self.layouts[0], self.layouts[-1]
        if inputs is None:
            self.program.ddr.append(DdrTensor(
                INPUT, [first.m_pad, first.k_pad], self.layers[0].in_dtype, "input",
                valid_shape=[self.layers[0].m, self.layers[0].k], io=self.io))
            inputs = k_slices(first, functools.partial(fifos.DdrEndpoint, INPUT))
        if sink is None:
            self.program.ddr.append(DdrTensor(
                OUTPUT, [last.m_pad, last.n_pad], self.layers[-1].out_dtype, "output",
                valid_shape=[self.layers[-1].m, self.layers[-1].n], io=self.io))
            sink = functools.partial(fifos.DdrEndpoint, OUTPUT)
        self.sink, self.out_stride = sink, out_stride or last.n_pad
        for i, (layer, lay) in enumerate(zip(self.layers, self.layouts)):
            inputs = self._lower_layer(i, layer, lay, inputs)

    def _lower_layer(self, i: int, layer, lay, inputs: list) -> list:
        """Lower layer ``i`` whose K-slice sources are ``inputs``; return its output block sources."""
        tiles = self.placement[i]
        is_last = i == len(self.layers) - 1
        a_eps = {}
        for c, src in enumerate(inputs):
            consumers = [(tiles[p][c], 2 if lay.double_buffer_a else 1) for p in range(lay.n_par)]
            if isinstance(src, (fifos.DdrEndpoint, fifos.MemtileEndpoint)):
                src = fifos.ObjectFifo(f"{layer.name}.a{c}", (lay.tm, lay.kc), layer.in_dtype, src)
                src.consumers = consumers
                fifos.lower_producer(self.res, src)
            else:  # the previous layer's output object FIFO, its producer already lowered
                src.consumers = consumers
            a_eps.update(fifos.lower_consumers(self.res, src))
        outputs = []
        for p in range(lay.n_par):
            last_tile = tiles[p][lay.cascade - 1]
            fifo = fifos.ObjectFifo(f"{layer.name}.c{p}", (lay.tm, lay.nc), layer.out_dtype,
                                    (last_tile, 2 if lay.double_buffer_c else 1))
            # The producer end lives on this layer's tile; the consumer ends are lowered with the
            # next layer, which knows its tiles and depths (or here, for DDR).
            c_ep = fifos.lower_producer(self.res, fifo)
            if is_last:
                stride = self.out_stride
                fifo.consumers = [self.sink(p * lay.nc, [lay.m_pad // lay.tm, lay.tm, lay.nc],
                                            [lay.tm * stride, stride, 1])]
                fifos.lower_consumers(self.res, fifo)
            else:
                outputs.append(fifo)
            for c in range(lay.cascade):
                self._lower_tile(layer, lay, p, c, tiles, a_eps[tuple(tiles[p][c])],
                                 c_ep if c == lay.cascade - 1 else None)
        return outputs

    def _lower_tile(self, layer, lay, p: int, c: int, tiles, a_ep, c_ep) -> None:
        tile = tiles[p][c]
        tag = f"{layer.name}.p{p}c{c}"
        w_pad = _pad(layer.weight, (lay.k_pad, lay.n_pad))
        w_block = np.ascontiguousarray(w_pad[c * lay.kc:(c + 1) * lay.kc, p * lay.nc:(p + 1) * lay.nc])
        self.program.constants[f"{tag}.w"] = w_block
        bufs = {"b": self.res.buffer(f"{tag}.w", tile, w_block.shape, str(w_block.dtype),
                                     initial=f"{tag}.w").name}
        if c_ep is not None:
            for key, arr in self._epilogue_params(layer, lay, p).items():
                self.program.constants[f"{tag}.{key}"] = arr
                bufs[key] = self.res.buffer(f"{tag}.{key}", tile, arr.shape, str(arr.dtype),
                                            initial=f"{tag}.{key}").name
        else:
            self.program.cascades.append(Cascade(src=list(tile), dst=list(tiles[p][c + 1])))
        params = {"precision": layer.precision, "m": lay.tm, "k": lay.kc, "n": lay.nc,
                  "a_offset": 0, "cascade_in": c > 0, "cascade_out": c_ep is None,
                  "relu": bool(layer.relu), "out_zp": int(layer.out_zp or 0),
                  "out_dtype": layer.out_dtype}
        if layer.add is not None:  # a QDQ bias add: the epilogue's second step
            params["add"] = [int(v) for v in astuple(layer.add)]

        def step(i):
            call = KernelCall("matmul", {**bufs, "a": a_ep.slot(i)}, params)
            if c_ep is not None:
                call.buffers["c"] = c_ep.slot(i)
                return [fifos.acquire(a_ep, False, i), fifos.acquire(c_ep, True, i),
                        Instr(op="call", call=call),
                        fifos.release(a_ep, False, i), fifos.release(c_ep, True, i)]
            return [fifos.acquire(a_ep, False, i), Instr(op="call", call=call),
                    fifos.release(a_ep, False, i)]

        unroll = math.lcm(a_ep.depth, c_ep.depth if c_ep else 1)
        self.program.cores.append(Core(tile=list(tile),
                                       body=_core_loop(lay.m_pad // lay.tm, unroll, step)))

    @staticmethod
    def _epilogue_params(layer, lay, p: int) -> dict:
        """Per-column bias and requantisation constants of output block ``p``."""
        cols = slice(p * lay.nc, (p + 1) * lay.nc)
        acc_dtype = accumulator_dtype(layer.precision)
        bias = layer.bias if layer.bias is not None else np.zeros(layer.n, acc_dtype)
        params = {"bias": _pad(bias.astype(acc_dtype), (lay.n_pad,))[cols]}
        if acc_dtype.startswith("int"):
            # Padded columns get a harmless multiplier: their outputs are never read.
            params["mult"] = _pad(np.asarray(layer.mult, np.int32), (lay.n_pad,))[cols]
            shift = np.asarray(layer.shift, np.int32)
            params["shift"] = np.concatenate([shift, np.full(lay.n_pad - layer.n, 31, np.int32)]
                                             )[cols].astype(np.int8)
        if layer.addend is not None:
            params["addend"] = _pad(layer.addend, (lay.n_pad,))[cols]
        return params

    def meta(self) -> dict:
        """The program's description of these layers (what the report prints)."""
        macs = sum(lay.m_pad * lay.k_pad * lay.n_pad for lay in self.layouts)
        return {
            "precision": self.layers[0].precision,
            "macs": int(sum(layer.m * layer.k * layer.n for layer in self.layers)),
            "padded_macs": int(macs),
            "layers": [{"name": layer.name, "m": layer.m, "k": layer.k, "n": layer.n,
                        "precision": layer.precision, "relu": bool(layer.relu),
                        "config": lay.config, "tiles": [list(t) for row in tiles for t in row]}
                       for layer, lay, tiles in zip(self.layers, self.layouts, self.placement)],
            "onchip_intermediates": [f"{layer.name} -> {nxt.name}"
                                     for layer, nxt in zip(self.layers, self.layers[1:])],
            "io": self.io,
        }


def lower_dense_chain(name: str, layers: list, layouts: list, device,
                      io: str = "ddr") -> Program:
    """One AIE program for a chain of dense layers (see the module docstring for the design).

    ``io``: how the input and output reach the array, ``"ddr"`` (shim DMA over the NoC) or
    ``"pl"`` (PL stream ports).
    """
    if io not in IO:
        raise ValueError(f"io must be one of {IO}, not {io!r}")
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, first_compute_row(device))
    lowering = _DenseChainLowering(layers, layouts, res,
                                   place_layers(dense_shapes(layers, layouts), device),
                                   io)
    lowering.run()
    program.tiles, program.meta = res.tile_specs(), lowering.meta()
    return program
