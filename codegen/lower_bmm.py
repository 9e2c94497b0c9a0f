"""Lowering: a batched matmul of two activations -> one AIE program (see
:mod:`tvm_aie.schedules.bmm` for the design).

Both operands and the result live in DDR as ``[batch, rows, cols]``. Tile t of ``tiles`` owns the
batches ``t, t + tiles, ...``: two shim MM2S patterns stride through ``A`` and ``B`` by ``tiles``
batches and feed its two input FIFOs, and one S2MM pattern puts its ``C`` blocks back in place.
In bf16 all three DDR tensors are bf16: the host casts the fp32 operands in and the result out
(:func:`tvm_aie.runtime.host_inputs`), as for a bf16 dense layer.
"""

from __future__ import annotations

import math

import numpy as np

from . import fifo as fifos
from .lower import OUTPUT, _core_loop
from .place import place_layers
from .program import Core, DdrTensor, Instr, KernelCall, Program
from .resources import TileResources


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
    depth = 2 if cfg.double_buffer else 1
    for t, tile in enumerate(tiles):
        count = len(range(t, batch, cfg.tiles))
        eps = {}
        for role, src, (r, c) in (("a", layer.input, (m, k)), ("b", layer.other, (k, n))):
            fifo = fifos.ObjectFifo(f"{layer.name}.{role}{t}", (r, c), layer.precision,
                                    fifos.DdrEndpoint(f"in{src}", t * r * c, [count, r, c],
                                                      [cfg.tiles * r * c, c, 1]),
                                    [(tile, depth)])
            fifos.lower_producer(res, fifo)
            eps[role] = fifos.lower_consumers(res, fifo)[tuple(tile)]
        out = fifos.ObjectFifo(f"{layer.name}.c{t}", (m, n), layer.out_dtype, (tile, depth))
        eps["c"] = fifos.lower_producer(res, out)
        out.consumers = [fifos.DdrEndpoint(OUTPUT, t * m * n, [count, m, n],
                                           [cfg.tiles * m * n, n, 1])]
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
    program.tiles = res.tile_specs()
    program.meta = {
        "precision": layer.precision, "macs": int(layer.macs), "padded_macs": int(layer.macs),
        "layers": [{"name": layer.name, "op": "bmm", "precision": layer.precision,
                    "summary": f"bmm {batch}x[{m}x{k}x{n}] {layer.precision}",
                    "blocks": -(-batch // cfg.tiles), "macs": int(layer.macs),
                    "config": cfg.to_dict(), "tiles": [list(t) for t in tiles]}],
        "onchip_intermediates": [],
    }
    return program
