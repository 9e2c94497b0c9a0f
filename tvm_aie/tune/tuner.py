"""Tuning a whole model: every task's search, then the graph-level choice per offloaded chain.

This is what ``tvm-aie tune`` runs. Trials are shared evenly between tasks (like MetaSchedule's
global trial budget). Each task's search starts with the configs the default plan would use, so the
graph level always has at least the default design to fall back on; each chain's chosen design is
simulated whole next to the default plan and recorded in the database only as the better of the
two, so a tuned build is never slower than the default one. A function with conv layers gets the
same: its conv layers' best records pinned as long as it still lowers and runs (:mod:`tvm_aie.tune.apply`;
its layers run one after another and share no knob, so each layer's fastest config is the best
design for both goals when the chain can hold it), confirmed against the default by simulation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..codegen.plan import plan_chain
from ..codegen.relax_ext import compile_chain, conv_workload_of
from ..schedules import conv2d
from ..schedules.dense import DenseConfig
from ..target import get_device
from .apply import conv_keys, pin_conv_layers
from .database import Database
from .graph import allocate, confirm
from .measure import simulate_cycles
from .search import tune_task
from .task import Task, conv_chains, extract_tasks, offloaded_chains

log = logging.getLogger("tvm_aie.tune")


@dataclass
class ModelTuneResult:
    tasks: list  # TuneResult per task
    designs: list = field(default_factory=list)  # the design record written per chain


def tune_model(mod, device, db: Database, trials: int, *, tuner: str = "xgb", seed: int = 0,
               batch: int = 16, goal: str = "latency", executor=None, progress=None,
               on_task=None, precision: str = "fp32") -> ModelTuneResult:
    """Tune every task of ``mod`` (``trials`` in all), then choose and confirm each chain's design.

    ``precision``: the datapath of the model's fp32 layers (``"bf16"``: its bf16 layers are the
    tasks, measured as such).
    ``progress(new_trials, best_cycles)`` as in :func:`~tvm_aie.tune.search.tune_task`;
    ``on_task(task)`` is called when a task's search starts.
    """
    device = device if hasattr(device, "mmul_shape") else get_device(device)
    chains = offloaded_chains(mod, device, precision)
    tasks = extract_tasks(mod, device, precision)
    planned: dict = {}  # the default plan's config of each workload, measured first
    for workloads in chains.values():
        for wl, cfg in zip(workloads, plan_chain(workloads, device)):
            planned.setdefault(wl, []).append(cfg)
    per_task = -(-trials // max(1, len(tasks)))
    results = []
    for task in tasks:
        if on_task:
            on_task(task)
        results.append(tune_task(task, db, per_task, tuner=tuner, seed=seed, batch=batch,
                                 executor=executor, progress=progress,
                                 first=tuple(planned.get(task.workload, ()))))
    out = ModelTuneResult(results)
    for name, workloads in chains.items():
        out.designs.append(choose_design(name, workloads, device, db, goal))
    for name, layers in conv_chains(mod, device, precision).items():
        out.designs.append(choose_conv_design(name, layers, device, db, goal))
    return out


def choose_design(name: str, workloads: list, device, db: Database, goal: str) -> dict:
    """Allocate the chain over its tasks' measurements, confirm by simulation, record the winner."""
    keys = [Task(wl, device.name).key for wl in workloads]
    candidates = [[(DenseConfig.from_dict(r["config"]), r["cycles"]) for r in db.measurements(k)
                   if r["cycles"] is not None] for k in keys]
    alloc = allocate(candidates, device, goal) if all(candidates) else None
    configs = alloc.configs if alloc else plan_chain(workloads, device)
    sim = confirm(workloads, configs, device)
    tuned = sim["cycles"] < sim["default_cycles"]
    return _record(db, name, keys, goal, device, tuned, sim["cycles"], sim["default_cycles"],
                   configs if tuned else sim["default_configs"],
                   alloc.objective if alloc else None)


def choose_conv_design(name: str, layers: list, device, db: Database, goal: str) -> dict:
    """Pin the conv layers' best records, simulate the function against its default build,
    record the winner (the goal does not change the choice, see the module docstring)."""
    keys = conv_keys(layers, device)
    pins = pin_conv_layers(layers, device, db)
    cycles = simulate_cycles(compile_chain(layers, name, device, pins))
    default_cycles = simulate_cycles(compile_chain(layers, name, device, {}))
    tuned = cycles < default_cycles
    configs = [(pins.get(i) if tuned else None) or
               conv2d.default_config(conv_workload_of(layers[i]), device) for i in keys]
    return _record(db, name, list(keys.values()), goal, device, tuned, cycles, default_cycles,
                   configs, None)


def _record(db, name, keys, goal, device, tuned, cycles, default_cycles, configs,
            predicted) -> dict:
    """Append the design record of one function (the default's cycles if not tuned), unless the
    chain's latest design record is this one (a resumed run)."""
    if not tuned:
        log.info("%s: the tuned design (%d cycles) is not faster than the default plan (%d); "
                 "keeping the default", name, cycles, default_cycles)
    record = {"kind": "design", "device": device.name, "tasks": keys, "goal": goal,
              "function": name, "tuned": tuned,
              "configs": [c.to_dict() for c in configs],
              "cycles": cycles if tuned else default_cycles, "default_cycles": default_cycles,
              "predicted": predicted}
    last = db.design(device.name, keys)
    same = ("goal", "function", "tuned", "configs", "cycles", "default_cycles")
    if last is not None and all(last.get(k) == record[k] for k in same):
        return last  # a resumed run that chose the same design: recorded already
    db.append(record)
    return record
