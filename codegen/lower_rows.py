"""Lowering: one element- or row-wise layer -> one AIE program (see
:mod:`tvm_aie.schedules.rowwise` for the design).

The tensor is ``[rows, cols]`` in DDR (with a second operand of the same shape for an add); tile t
of ``tiles`` owns the blocks ``t, t + tiles, ...`` of ``tr`` rows, read and written back by
strided shim patterns. Layer norm's ``gamma``/``beta`` and int8 lookup tables are loaded into
each tile at configuration.
"""

from __future__ import annotations

import numpy as np

from . import fifo as fifos
from .lower import OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, Program
from .resources import TileResources


def lower_rowwise(name: str, layer, cfg, device) -> Program:
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    rows, cols, tr = layer.rows, layer.cols, cfg.tr
    sources = sorted({layer.input, *([] if layer.other is None else [layer.other])})
    for idx in sources:  # DDR inputs in the order of the function's parameters
        program.ddr.append(DdrTensor(f"in{idx}", [rows, cols], layer.precision, "input"))
    program.ddr.append(DdrTensor(OUTPUT, [rows, cols], layer.out_dtype, "output"))
    blocks, depth = rows // tr, 2 if cfg.double_buffer else 1
    tiles = [t[0] for t in place_layers([(layer.name, cfg.tiles, 1)], device)[0]]
    consts = {"lut": layer.lut, "gamma": layer.gamma, "beta": layer.beta}
    params = {"op": layer.op, "precision": layer.precision, "eps": layer.eps,
              "out_zp": layer.out_zp, "add": None if layer.add is None else list(layer.add)}
    operands = [("x", layer.input)] + ([] if layer.other is None else [("x2", layer.other)])
    for t, tile in enumerate(tiles):
        count = len(range(t, blocks, cfg.tiles))
        pattern = ([count, tr, cols], [cfg.tiles * tr * cols, cols, 1])
        eps = {}
        for role, idx in operands:
            src = fifos.ObjectFifo(f"{layer.name}.{role}.{t}", (tr, cols), layer.precision,
                                   fifos.DdrEndpoint(f"in{idx}", t * tr * cols, *pattern),
                                   [(tile, depth)])
            fifos.lower_producer(res, src)
            eps[role] = fifos.lower_consumers(res, src)[tuple(tile)]
        dst = fifos.ObjectFifo(f"{layer.name}.y{t}", (tr, cols), layer.out_dtype, (tile, depth))
        eps["y"] = fifos.lower_producer(res, dst)
        dst.consumers = [fifos.DdrEndpoint(OUTPUT, t * tr * cols, *pattern)]
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
    program.tiles = res.tile_specs()
    program.meta = {
        "precision": layer.precision, "macs": 0, "padded_macs": 0,
        "layers": [{"name": layer.name, "op": layer.op, "precision": layer.precision,
                    "summary": f"{layer.op} {rows}x{cols} {layer.precision}",
                    "blocks": -(-blocks // cfg.tiles), "macs": 0, "config": cfg.to_dict(),
                    "tiles": [list(t) for t in tiles]}],
        "onchip_intermediates": [],
    }
    return program
