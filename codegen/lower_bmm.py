"""Lowering: a batched matmul of two activations -> one AIE program (see
:mod:`tvm_aie.schedules.bmm` for the design).

Both operands and the result live in DDR as ``[batch, rows, cols]``. Tile t of ``tiles`` owns the
batches ``t, t + tiles, ...``: two MM2S patterns stride through ``A`` and ``B`` by ``tiles``
batches and feed its two input FIFOs, and one S2MM pattern puts its ``C`` blocks back in place.
Inside a program of several parts (:mod:`~tvm_aie.codegen.lower_net`) the same patterns walk
memory-tile buffers instead, and a :class:`BatchView` may give them other strides: attention
heads are then read from (and merged into) the ``[B*S, D]`` matrix of a dense layer, keys
transposed, by the addresses alone. In bf16 all three tensors are bf16: the host casts the fp32
operands in and the result out (:func:`tvm_aie.runtime.host_inputs`), as for a bf16 dense layer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import fifo as fifos
from .lower import OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, Program
from .resources import ResourceError, TileResources


@dataclass
class BatchView:
    """Where a batched matmul's operand or result lies: ``endpoint(offset, sizes, strides)``
    makes a FIFO end on the tensor holding it (DDR or a memory-tile buffer), ``batch`` are its
    batch dimensions (one, or images and heads) and ``strides`` the element strides of those,
    then of its rows and of its columns."""

    endpoint: object
    batch: tuple
    strides: tuple

    @classmethod
    def contiguous(cls, endpoint, batch: int, rows: int, cols: int) -> "BatchView":
        return cls(endpoint, (batch,), (rows * cols, cols, 1))

    def end(self, t: int, tiles: int, rows: int, cols: int):
        """The FIFO end of tile ``t`` of ``tiles``: its batches ``t, t + tiles, ...`` in order,
        one ``[rows, cols]`` object each."""
        batch, strides = list(self.batch), list(self.strides)
        if len(batch) == 2 and (batch[0] == 1 or strides[0] == batch[1] * strides[1]):
            batch, strides = [batch[0] * batch[1]], strides[1:]  # one run of batches
        if len(batch) == 1:
            return self.endpoint(t * strides[0], [len(range(t, batch[0], tiles)), rows, cols],
                                 [tiles * strides[0], *strides[1:]])
        outer, inner = batch
        if inner % tiles:
            raise ResourceError(f"{tiles} tiles do not divide the {inner} heads of each of "
                                f"{outer} images")
        return self.endpoint(t * strides[1], [outer, inner // tiles, rows, cols],
                             [strides[0], tiles * strides[1], *strides[2:]])


def lower_bmm(name: str, layer, cfg, device) -> Program:
    """One AIE program for one :class:`~tvm_aie.codegen.layers.BmmLayer` with ``cfg`` tiles."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    m, k, n, batch = layer.m, layer.k, layer.n, layer.batch
    shapes = {layer.input: [batch, m, k], layer.other: [batch, k, n]}
    for idx in sorted(shapes):  # DDR inputs in the order of the function's parameters
        program.ddr.append(DdrTensor(f"in{idx}", shapes[idx], layer.precision, "input"))
    program.ddr.append(DdrTensor(OUTPUT, [batch, m, n], layer.out_dtype, "output"))
    tiles = [t[0] for t in place_layers([(layer.name, cfg.tiles, 1)], device)[0]]
    views = {role: BatchView.contiguous(functools.partial(fifos.DdrEndpoint, tensor), batch, r, c)
             for role, tensor, r, c in (("a", f"in{layer.input}", m, k),
                                        ("b", f"in{layer.other}", k, n), ("c", OUTPUT, m, n))}
    lower_bmm_tiles(res, layer, cfg, tiles, views)
    program.tiles, program.meta = res.tile_specs(), bmm_meta(layer, cfg, tiles)
    return program


def lower_bmm_tiles(res: TileResources, layer, cfg, tiles: list, views: dict) -> None:
    """The layer on ``tiles``; ``views`` holds the :class:`BatchView` of ``"a"``, ``"b"`` (the
    operands) and ``"c"`` (the result)."""
    program = res.program
    m, k, n, batch = layer.m, layer.k, layer.n, layer.batch
    depth = 2 if cfg.double_buffer else 1
    for t, tile in enumerate(tiles):
        count = len(range(t, batch, cfg.tiles))
        eps = {}
        for role, (r, c) in (("a", (m, k)), ("b", (k, n))):
            fifo = fifos.ObjectFifo(f"{layer.name}.{role}{t}", (r, c), layer.precision,
                                    views[role].end(t, cfg.tiles, r, c), [(tile, depth)])
            fifos.lower_producer(res, fifo)
            eps[role] = fifos.lower_consumers(res, fifo)[tuple(tile)]
        out = fifos.ObjectFifo(f"{layer.name}.c{t}", (m, n), layer.out_dtype, (tile, depth))
        eps["c"] = fifos.lower_producer(res, out)
        out.consumers = [views["c"].end(t, cfg.tiles, m, n)]
        fifos.lower_consumers(res, out)
        bufs, params = {}, {"precision": layer.precision, "scale": layer.scale,
                            "a_zp": layer.a_zp, "b_zp": layer.b_zp, "out_zp": layer.out_zp}
        if layer.precision == "int8":
            for key, arr in (("mult", np.asarray(layer.mult, np.int32)),
                             ("shift", np.asarray(layer.shift, np.int8))):
                program.constants[f"{layer.name}.t{t}.{key}"] = arr
                bufs[key] = res.buffer(f"{layer.name}.t{t}.{key}", tile, arr.shape,
                                       str(arr.dtype), initial=f"{layer.name}.t{t}.{key}").name
        roles = [("a", False), ("b", False), ("c", True)]

        def step(i, eps=eps, bufs=bufs, params=params, roles=roles):
            call = KernelCall("bmm", {**bufs, **{r: eps[r].slot(i) for r, _ in roles}}, params)
            return [fifos.acquire(eps[r], prod, i) for r, prod in roles] + \
                [Instr(op="call", call=call)] + \
                [fifos.release(eps[r], prod, i) for r, prod in roles]

        program.cores.append(Core(tile=list(tile), body=_core_loop(count, math.lcm(depth), step)))


def bmm_meta(layer, cfg, tiles: list) -> dict:
    """The program's description of the layer (what the report prints)."""
    batch, m, k, n = layer.batch, layer.m, layer.k, layer.n
    return {
        "precision": layer.precision, "macs": int(layer.macs), "padded_macs": int(layer.macs),
        "layers": [{"name": layer.name, "op": "bmm", "precision": layer.precision,
                    "summary": f"bmm {batch}x[{m}x{k}x{n}] {layer.precision}",
                    "blocks": -(-batch // cfg.tiles), "macs": int(layer.macs),
                    "config": cfg.to_dict(), "tiles": [list(t) for t in tiles]}],
        "onchip_intermediates": [],
    }
