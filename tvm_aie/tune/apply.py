"""Applying a tuning database in ``tvm_aie.build(..., tuning_db=PATH)``.

For each offloaded chain, in order of preference: the chain's confirmed ``design`` record (from
``tvm-aie tune``); else each layer's best measured config, pinned layer by layer as long as the
chain can still be planned around the pins (a neighbour's pin may force another cascade). Layers
left unpinned get the default heuristic, and the log says which and why.

A function with conv layers (a conv chain, perhaps with a flatten and a dense head) pins its conv
layers the same way: its ``design`` record, else each conv layer's best record as long as the
whole function still lowers and runs with it (the chain constraint: the layers' columns and the DMA
channels of the memory tiles they share, :mod:`tvm_aie.tune.conv`). Its dense head keeps the
default plan.
"""

from __future__ import annotations

import logging

from ..codegen.layers import ConvLayer, DenseLayer
from ..codegen.place import PlacementError
from ..codegen.plan import plan_chain
from ..codegen.relax_ext import compile_chain, conv_workload_of, workload_of
from ..codegen.resources import ResourceError
from ..schedules.conv2d import ConvConfig
from ..schedules.dense import DenseConfig, TilingError, check
from .conv import ConvTask
from ..sim import SimulationError
from .database import Database
from .measure import simulate_cycles
from .task import Task

log = logging.getLogger("tvm_aie.tune")


class TunedConfigs:
    """``pick(layers, device) -> {layer index: DenseConfig}`` from one database."""

    def __init__(self, path):
        self.db = Database.existing(path)

    def __call__(self, layers: list, device) -> dict:
        if any(isinstance(layer, ConvLayer) for layer in layers):
            return self._conv(layers, device)
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

    def _conv(self, layers: list, device) -> dict:
        keys = conv_keys(layers, device)
        design = self.db.design(device.name, list(keys.values()))
        if design is not None:
            pins = dict(zip(keys, (ConvConfig.from_dict(c) for c in design["configs"])))
            why = chain_error(layers, device, pins)
            if why is None:
                log.info("aie: applying the tuned design of %s (%s cycles, default %s)",
                         " -> ".join(keys.values()), design.get("cycles"),
                         design.get("default_cycles"))
                return pins
            log.warning("aie: ignoring the tuned design for %s: %s", list(keys.values()), why)
        return pin_conv_layers(layers, device, self.db)


def conv_keys(layers: list, device) -> dict:
    """``{layer index: task key}`` of the conv layers of a function."""
    return {i: ConvTask(conv_workload_of(layer), device.name).key
            for i, layer in enumerate(layers) if isinstance(layer, ConvLayer)}


def chain_error(layers: list, device, pins: dict) -> str | None:
    """Why the function's layers do not make one working program with ``pins`` (None if they
    do): it does not lower, or its timing simulation deadlocks (a residual layer on several tiles
    with short bands can, in the chain as when measured alone)."""
    try:
        simulate_cycles(compile_chain(layers, "check", device, pins))
    except (PlacementError, ResourceError, TilingError, SimulationError) as e:
        return str(e).splitlines()[0]
    return None


def pin_conv_layers(layers: list, device, db: Database) -> dict:
    """Each conv layer's fastest record that the function still works with, pinned in order.

    A layer's best alone may need more memory-tile DMA channels than its neighbours leave; those
    are set by ``n_par``, so after a conflict the records with that ``n_par`` are skipped (at most
    one check per ``n_par`` value; a deadlock, which needs several tiles, skips that ``n_par`` too)."""
    pins = {}
    for i, key in conv_keys(layers, device).items():
        ranked = sorted((r["cycles"], r["tiles"], n, r) for n, r in enumerate(db.measurements(key))
                        if r.get("cycles") is not None)
        if not ranked:
            log.info("aie: %s is not in the tuning database; default heuristic", key)
            continue
        conflicts = set()
        for cycles, _, _, rec in ranked:
            cfg = ConvConfig.from_dict(rec["config"])
            if cfg.n_par in conflicts:
                continue
            why = chain_error(layers, device, {**pins, i: cfg})
            if why is None:
                pins[i] = cfg
                log.info("aie: %s: tuned %s (%d cycles)", key, cfg, cycles)
                break
            conflicts.add(cfg.n_par)
            log.info("aie: %s: record %s conflicts with the chain (%s)", key, cfg, why)
        else:
            log.info("aie: %s: no record fits the chain; default heuristic", key)
    return pins
