"""Applying a tuning database in ``tvm_aie.build(..., tuning_db=PATH)``.

For each offloaded chain, in order of preference: the chain's confirmed ``design`` record (from
``tvm-aie tune``); else each layer's best measured config, pinned layer by layer as long as the
chain can still be planned around the pins (a neighbour's pin may force another cascade). Layers
left unpinned get the default heuristic, and the log says which and why.
"""

from __future__ import annotations

import logging

from ..codegen.layers import DenseLayer
from ..codegen.plan import plan_chain
from ..codegen.relax_ext import workload_of
from ..schedules.dense import DenseConfig, TilingError, check
from .database import Database
from .task import Task

log = logging.getLogger("tvm_aie.tune")


class TunedConfigs:
    """``pick(layers, device) -> {layer index: DenseConfig}`` from one database."""

    def __init__(self, path):
        self.db = Database(path)

    def __call__(self, layers: list, device) -> dict:
        if not all(isinstance(layer, DenseLayer) for layer in layers):
            log.info("aie: %s: only dense chains are tuned so far; default heuristic",
                     ", ".join(layer.name for layer in layers))
            return {}
        workloads = [workload_of(layer) for layer in layers]
        keys = [Task(wl, device.name).key for wl in workloads]
        design = self.db.design(device.name, keys)
        if design is not None:
            configs = [DenseConfig.from_dict(c) for c in design["configs"]]
            try:
                for wl, cfg in zip(workloads, configs):
                    check(wl, cfg, device)
                plan_chain(workloads, device, dict(enumerate(configs)))
            except TilingError as e:
                log.warning("aie: ignoring the tuned design for %s: %s", keys, e)
            else:
                log.info("aie: applying the tuned design of %s (%s cycles, default %s)",
                         " -> ".join(keys), design.get("cycles"), design.get("default_cycles"))
                return dict(enumerate(configs))
        pinned = {}
        for i, (wl, key) in enumerate(zip(workloads, keys)):
            best = self.db.best(key)
            if best is None:
                log.info("aie: %s is not in the tuning database; default heuristic", key)
                continue
            try:
                check(wl, best[0], device)
                plan_chain(workloads, device, {**pinned, i: best[0]})
            except TilingError as e:
                log.info("aie: %s: best record %s conflicts with the chain (%s); default "
                         "heuristic", key, best[0], str(e).splitlines()[0])
                continue
            pinned[i] = best[0]
            log.info("aie: %s: tuned %s (%d cycles)", key, best[0], best[1])
        return pinned
