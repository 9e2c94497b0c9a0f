"""Graph level: every layer's config of a chain, chosen together under the array's budget.

:func:`allocate` is a dynamic programme over the layers per row block, keeping the Pareto front
of (columns, objective) per state; :func:`confirm` simulates the chosen chain against the default
plan. ``docs/design.md`` ("Tuning") has the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codegen.plan import plan_chain
from ..schedules.dense import DenseConfig
from .measure import chain_program, simulate_cycles

GOALS = ("latency", "throughput")


def pareto_front(points: list) -> list:
    """``[(tiles, cycles, config)]`` -> the points no other beats on both, by increasing tiles."""
    front = []
    for tiles, cycles, cfg in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or cycles < front[-1][1]:
            front.append((tiles, cycles, cfg))
    return front


def columns(cfg: DenseConfig, device) -> int:
    """Columns of the array a layer with ``cfg`` occupies (see the module docstring)."""
    return -(-cfg.n_par // device.compute_rows) * cfg.cascade


@dataclass
class Allocation:
    configs: list
    objective: int  # predicted from the per-task measurements (sum or max of cycles)
    columns: int
    tiles: int


def _prune(front: list) -> list:
    """Keep the (columns, objective, configs) entries not dominated by one with fewer columns."""
    kept = []
    for entry in sorted(front, key=lambda e: (e[0], e[1])):
        if not kept or entry[1] < kept[-1][1]:
            kept.append(entry)
    return kept


def allocate(candidates: list, device, goal: str = "latency") -> Allocation | None:
    """Choose one config per layer from ``candidates[i] = [(config, cycles)]`` (measured).

    Returns the plan minimising the goal within the device's columns (ties: fewer columns), or None
    if no combination of measured configs satisfies the chain constraints.
    """
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, not {goal!r}")
    combine = (lambda a, b: a + b) if goal == "latency" else max
    best = None
    for tm in sorted({cfg.tm for cfg, _ in candidates[0]}):
        # per layer: the fastest measured config for each (n_par, cascade) with this tm
        options = []
        for layer in candidates:
            fastest = {}
            for cfg, cycles in layer:
                key = (cfg.n_par, cfg.cascade)
                if cfg.tm == tm and (key not in fastest or cycles < fastest[key][1]):
                    fastest[key] = (cfg, cycles)
            options.append(list(fastest.values()))
        states = {None: [(0, 0, [])]}
        for i, opts in enumerate(options):
            nxt: dict = {}
            for cfg, cycles in opts:
                for used, obj, cfgs in states.get(None if i == 0 else cfg.cascade, []):
                    cols = used + columns(cfg, device)
                    if cols <= device.columns:
                        nxt.setdefault(cfg.n_par, []).append(
                            (cols, combine(obj, cycles), cfgs + [cfg]))
            states = {k: _prune(v) for k, v in nxt.items()}
        for front in states.values():
            for cols, obj, cfgs in front:
                if best is None or (obj, cols) < (best.objective, best.columns):
                    best = Allocation(cfgs, obj, cols, sum(c.n_par * c.cascade for c in cfgs))
    return best


def confirm(workloads: list, configs: list, device) -> dict:
    """Simulate the chain with ``configs`` and with the default plan; cycles of both."""
    default = plan_chain(workloads, device)
    return {"cycles": simulate_cycles(chain_program(workloads, configs, device)),
            "default_configs": default,
            "default_cycles": simulate_cycles(chain_program(workloads, default, device))}
