"""Lowering: one element- or row-wise layer -> one AIE program (see
:mod:`tvm_aie.schedules.rowwise` for the design).

The tensor is ``[rows, cols]`` in DDR (with a second operand of the same shape for an add); tile t
of ``tiles`` owns the blocks ``t, t + tiles, ...`` of ``tr`` rows, read and written back by
strided shim patterns. Layer norm's ``gamma``/``beta`` and int8 lookup tables are loaded into
each tile at configuration. After a dense layer (:mod:`~tvm_aie.codegen.lower_net`) the same
patterns, with the row stride of the padded matrix there, read and write memory tiles instead.
A bf16 layer's tensors are bf16 everywhere (DDR, FIFOs, memory tiles), so between two bf16 dense
parts the tensor stays bf16 on chip; the host casts at a DDR boundary.
"""

from __future__ import annotations

import functools

import numpy as np

from . import fifo as fifos
from .lower import OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, Program
from .resources import TileResources


def row_shapes(layer, cfg) -> list:
    """The layer as :func:`~tvm_aie.codegen.place.place_layers` takes it: a column of tiles."""
    return [(layer.name, cfg.tiles, 1)]


def lower_rowwise(name: str, layer, cfg, device) -> Program:
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    rows, cols = layer.rows, layer.cols
    sources = sorted({layer.input, *([] if layer.other is None else [layer.other])})
    for idx in sources:  # DDR inputs in the order of the function's parameters
        program.ddr.append(DdrTensor(f"in{idx}", [rows, cols], layer.precision, "input"))
    program.ddr.append(DdrTensor(OUTPUT, [rows, cols], layer.out_dtype, "output"))
    tiles = [t[0] for t in place_layers(row_shapes(layer, cfg), device)[0]]
    ends = {idx: (functools.partial(fifos.DdrEndpoint, f"in{idx}"), cols) for idx in sources}
    lower_row_tiles(res, layer, cfg, tiles, ends, (functools.partial(fifos.DdrEndpoint, OUTPUT),
                                                   cols))
    program.tiles, program.meta = res.tile_specs(), row_meta(layer, cfg, tiles)
    return program


def lower_row_tiles(res: TileResources, layer, cfg, tiles: list, sources: dict, sink) -> None:
    """The layer on ``tiles``: ``sources`` maps each operand's source to ``(endpoint, stride)``,
    ``sink`` is the output's; ``endpoint(offset, sizes, strides)`` makes a FIFO end on a tensor
    whose rows are ``stride`` elements apart."""
    program = res.program
    rows, cols, tr = layer.rows, layer.cols, cfg.tr
    blocks, depth = rows // tr, 2 if cfg.double_buffer else 1
    consts = {"lut": layer.lut, "gamma": layer.gamma, "beta": layer.beta}
    params = {"op": layer.op, "precision": layer.precision, "eps": layer.eps,
              "out_zp": layer.out_zp, "add": None if layer.add is None else list(layer.add),
              "qdq": layer.qdq, **({"fn": layer.fn} if layer.fn else {})}
    operands = [("x", layer.input)] + ([] if layer.other is None else [("x2", layer.other)])
    for t, tile in enumerate(tiles):
        count = len(range(t, blocks, cfg.tiles))

        def end(endpoint, stride, t=t, count=count):
            return endpoint(t * tr * stride, [count, tr, cols],
                            [cfg.tiles * tr * stride, stride, 1])

        eps = {}
        for role, idx in operands:
            src = fifos.ObjectFifo(f"{layer.name}.{role}.{t}", (tr, cols), layer.precision,
                                   end(*sources[idx]), [(tile, depth)])
            fifos.lower_producer(res, src)
            eps[role] = fifos.lower_consumers(res, src)[tuple(tile)]
        dst = fifos.ObjectFifo(f"{layer.name}.y{t}", (tr, cols), layer.out_dtype, (tile, depth))
        eps["y"] = fifos.lower_producer(res, dst)
        dst.consumers = [end(*sink)]
        fifos.lower_consumers(res, dst)
        bufs = {}
        for key, arr in consts.items():
            if arr is not None:
                tag = f"{layer.name}.t{t}.{key}"
                program.constants[tag] = np.asarray(arr)
                bufs[key] = res.buffer(tag, tile, np.shape(arr), str(np.asarray(arr).dtype),
                                       initial=tag).name

        def step(i, eps=eps, bufs=bufs):
            call = KernelCall("rowwise", {**bufs, **{r: ep.slot(i) for r, ep in eps.items()}},
                              params)
            return [fifos.acquire(ep, r == "y", i) for r, ep in eps.items()] + \
                [Instr(op="call", call=call)] + \
                [fifos.release(ep, r == "y", i) for r, ep in eps.items()]

        program.cores.append(Core(tile=list(tile), body=_core_loop(count, depth, step)))


def row_meta(layer, cfg, tiles: list) -> dict:
    """The program's description of the layer (what the report prints)."""
    return {
        "precision": layer.precision, "macs": 0, "padded_macs": 0,
        "layers": [{"name": layer.name, "op": layer.op, "precision": layer.precision,
                    "summary": f"{layer.op} {layer.rows}x{layer.cols} {layer.precision}",
                    "blocks": -(-(layer.rows // cfg.tr) // cfg.tiles), "macs": 0,
                    "config": cfg.to_dict(), "tiles": [list(t) for t in tiles]}],
        "onchip_intermediates": [],
    }
