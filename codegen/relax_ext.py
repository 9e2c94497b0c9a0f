"""``relax.ext.aie``: the codegen entry for one partitioned Relax function.

Reads the function's layers, plans their configurations (tuned or default), schedules each layer's
TensorIR with its configuration, reads the tile layout back from the scheduled TIR and lowers the
chain to an AIE program, returned serialised (uint8) so the executable can carry it as a constant.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging

import numpy as np
import tvm

from ..schedules import dense
from ..target import get_device
from .layers import read_layers
from .lower import lower_dense_chain
from .plan import plan_chain

log = logging.getLogger("tvm_aie")
# pick(layers, device) -> {layer index: config}, set by build(..., tuning_db=...)
_TUNED = contextvars.ContextVar("tvm_aie_tuned", default=None)


@contextlib.contextmanager
def tuned_configs(pick):
    """Within the block, ``relax.ext.aie`` pins the configs ``pick`` returns for each chain."""
    token = _TUNED.set(pick)
    try:
        yield
    finally:
        _TUNED.reset(token)


def workload_of(layer) -> dense.DenseWorkload:
    return dense.DenseWorkload(m=layer.m, k=layer.k, n=layer.n, precision=layer.precision)


def compile_function(func, name: str, device, pinned: dict | None = None):
    """The AIE program of one partitioned function; ``pinned``: layer index -> DenseConfig."""
    layers = read_layers(func)
    workloads = [workload_of(layer) for layer in layers]
    configs = plan_chain(workloads, device, pinned)
    layouts = []
    for layer, wl, cfg in zip(layers, workloads, configs):
        sch = dense.schedule(dense.dense_prim_func(wl), wl, cfg, device)
        layouts.append(dense.tile_layout(sch.mod))
        log.info("aie: %s %s -> %s", name, layer.name, cfg)
    return lower_dense_chain(name, layers, layouts, device)


@tvm.register_global_func("relax.ext.aie", override=True)
def aie_codegen(func, name: str, device_name: str):
    """Partitioned function -> its AIE program as a uint8 tensor."""
    device, pick = get_device(str(device_name)), _TUNED.get()
    pinned = pick(read_layers(func), device) if pick else None
    program = compile_function(func, str(name), device, pinned)
    return tvm.runtime.tensor(np.frombuffer(program.to_bytes(), dtype=np.uint8))
