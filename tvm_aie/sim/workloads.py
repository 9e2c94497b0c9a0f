"""Synthetic workloads for the speed benchmark and the calibration, with seeded data.

* :func:`dense_program`: one dense layer on a chosen tile grid, built the way ``relax.ext.aie``
  builds it (schedule, tile layout, lowering), so what is measured is what the compiler emits;
* :func:`dense_net_program`: a multi-layer dense network with each layer's tile grid pinned, the
  layers joined through memory tiles, as AIE4ML's published designs are built (end-to-end rows);
* :func:`kernel_chain_program`: matmul kernels alone or in a cascade pack, operands resident, the
  setting in which kernel benchmarks and papers report cycles per call.
"""

from __future__ import annotations

import numpy as np

from ..codegen.layers import DenseLayer
from ..codegen.lower import lower_dense_chain
from ..codegen.lower_net import lower_net
from ..codegen.program import Cascade, Core, Instr, KernelCall, Program, TileSpec
from ..codegen.resources import TileResources
from ..schedules import dense
from ..target import get_device


def dense_layer(m: int, k: int, n: int, precision: str = "int8", seed: int = 0) -> DenseLayer:
    """``y = x @ w + b`` with seeded weights; int8 with a requantisation to int8."""
    rng = np.random.default_rng(seed)
    if precision == "int8":
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        bias = rng.integers(-1000, 1000, n).astype(np.int32)
        return DenseLayer("dense0", "int8", m, k, n, w, bias, relu=False, input=0, out_zp=0,
                          mult=np.full(n, 1 << 30, np.int64), shift=np.full(n, 38, np.int64))
    w = rng.standard_normal((k, n)).astype(np.float32)
    return DenseLayer("dense0", "float32", m, k, n, w, np.zeros(n, np.float32), relu=False,
                      input=0)


def dense_program(m: int, k: int, n: int, n_par: int, cascade: int, device="ve2802",
                  precision: str = "int8", tm: int | None = None, seed: int = 0,
                  io: str = "ddr"):
    """The AIE program of one dense layer on ``n_par x cascade`` tiles (``tm``: default plan's;
    ``io``: input and output through shim DMA from DDR, or PL streams)."""
    device = get_device(device) if isinstance(device, str) else device
    layer = dense_layer(m, k, n, precision, seed)
    wl = dense.DenseWorkload(m=m, k=k, n=n, precision=precision)
    layout = _layout(wl, device, tm, n_par, cascade)
    return lower_dense_chain(f"dense_{m}x{k}x{n}", [layer], [layout], device, io)


def _layout(wl, device, tm: int, n_par: int, cascade: int):
    cfg = dense.default_config(wl, device, tm=tm, n_par=n_par, cascade=cascade)
    return dense.tile_layout(dense.schedule(dense.dense_prim_func(wl), wl, cfg, device).mod)


def dense_net_program(layers: list, grids: list, batch: int, device="ve2802", io: str = "pl",
                      seed: int = 0) -> Program:
    """The AIE program of an int8 dense network (ReLU after each layer): ``layers`` its
    ``[k, n]``, ``grids`` each layer's ``[cascade, n_par]`` tiles (AIE4ML's ``cas_length`` x
    ``cas_num``), ``batch`` rows in one block. Each layer is its own part of
    :func:`~tvm_aie.codegen.lower_net.lower_net`, so layer i writes its output into a memory tile
    and layer i+1 reads its K slices from there, whatever the two grids (AIE4ML's structure);
    ``io="pl"``: the network's input and output cross the shims' PL stream ports."""
    device = get_device(device) if isinstance(device, str) else device
    parts, source = [], 0
    for i, ((k, n), (cascade, n_par)) in enumerate(zip(layers, grids)):
        layer = dense_layer(batch, k, n, seed=seed + i)
        layer.name, layer.input, layer.relu = f"dense{i}", source, True
        source = layer.name
        wl = dense.DenseWorkload(m=batch, k=k, n=n, precision="int8")
        parts.append(("dense", [layer], [_layout(wl, device, batch, n_par, cascade)]))
    program = lower_net(f"net_{len(layers)}x{batch}", parts, device)
    for tensor in program.ddr:
        tensor.io = io
    program.meta["io"] = io
    return program


def _operands(rng, precision: str, shape) -> np.ndarray:
    if precision == "int8":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(np.float32)


def kernel_chain_program(m: int, k: int, n: int, length: int = 1, calls: int = 1,
                         device="ve2802", precision: str = "int8", out_dtype: str = "int8",
                         seed: int = 0) -> Program:
    """``length`` cores in a row, linked by cascades, each calling ``[m, k] @ [k, n]`` ``calls``
    times on operands loaded at configuration (no DMA): a kernel measured on its own, or a
    cascade pack at its steady-state pace, as kernel benchmarks measure them.

    The chain follows the cascade direction of the first compute row; the last core writes the
    ``[m, n]`` result in ``out_dtype`` (requantised for int8/int16).
    """
    device = get_device(device) if isinstance(device, str) else device
    rng = np.random.default_rng(seed)
    row = device.first_compute_row
    cols = range(length) if "east" in device.cascade_direction(row) else range(length)[::-1]
    tiles = [[c, row] for c in cols]
    program = Program(name=f"chain_{length}x{m}x{k}x{n}", device=device.name,
                      tiles=[TileSpec(c, r, "compute") for c, r in tiles],
                      meta={"precision": precision})
    res = TileResources(program, device, row)
    for i, tile in enumerate(tiles):
        last = i == length - 1
        consts = {"a": _operands(rng, precision, (m, k)), "b": _operands(rng, precision, (k, n))}
        if last and precision == "int8" and out_dtype in ("int8", "int16"):
            consts.update(mult=np.full(n, 1 << 30, np.int32), shift=np.full(n, 40, np.int8))
        roles = {}
        for role, arr in consts.items():
            program.constants[f"{role}{i}"] = arr
            roles[role] = res.buffer(f"{role}{i}", tile, arr.shape, str(arr.dtype),
                                     initial=f"{role}{i}").name
        if last:
            roles["c"] = res.buffer(f"c{i}", tile, (m, n), out_dtype).name
        else:
            program.cascades.append(Cascade(src=list(tile), dst=list(tiles[i + 1])))
        params = {"precision": precision, "m": m, "k": k, "n": n, "out_dtype": out_dtype,
                  "cascade_in": i > 0, "cascade_out": not last}
        call = Instr(op="call", call=KernelCall("matmul", roles, params))
        program.cores.append(Core(tile=list(tile), body=[Instr(op="loop", count=calls,
                                                               body=[call])]))
    return program
