"""Search one task's space: an XGBoost cost model choosing what to measure next, or random search.

Each round measures a batch. The XGBoost tuner fits a gradient-boosted regressor of log cycles on
:mod:`~tvm_aie.tune.features` of everything measured so far, ranks every unmeasured legal config,
and measures the best-ranked ones plus a few random ones (exploration, so a wrong model cannot
trap the search). The regressor starts from the analytical :func:`~tvm_aie.tune.features.estimate`
(its base margin) and learns the simulator's departure from it; before the first measurement the
ranking is the estimate's. The first batch also holds the default heuristic's config (so a tuned
task is never slower than the default). Random search draws
the same space uniformly without replacement, for comparison.

Everything measured goes to the database as it arrives, and a run starts from what the database
already holds for the task: a killed run resumes where it stopped. The random generator of round
``r`` is seeded from ``(seed, measurements so far)`` and XGBoost runs single-threaded with the seed,
so the same seed gives the same database and the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .measure import measure_batch

TUNERS = ("xgb", "random")
EXPLORE = 0.25  # share of each XGBoost batch drawn at random


@dataclass
class TuneResult:
    """What one task's search found; ``curve[i]`` is the best cycles after ``i + 1`` trials."""

    task: object
    best: object | None  # the task's config type
    best_cycles: int | None
    default_cycles: int | None  # the default heuristic's config, if measured
    trials: int
    space_size: int
    rejected: dict
    curve: list = field(default_factory=list)


def _key(cfg) -> tuple:
    return tuple(cfg.to_dict().values())


def _grid(cfg) -> tuple:
    """The config without its FIFO depths: the tile grid and block (or band) size."""
    return tuple(v for k, v in cfg.to_dict().items() if not k.startswith("double_buffer"))


def _fit_predict(x_train, y_train, prior_train, x_all, prior_all, seed: int) -> np.ndarray:
    """Predicted log cycles of ``x_all``: the prior (log estimate) plus the learnt correction."""
    if not len(y_train):
        return prior_all
    import xgboost as xgb  # pylint: disable=import-outside-toplevel

    params = {"max_depth": 3, "eta": 0.2, "objective": "reg:squarederror", "nthread": 1,
              "seed": seed, "min_child_weight": 2, "lambda": 2.0}
    booster = xgb.train(params, xgb.DMatrix(x_train, label=y_train, base_margin=prior_train),
                        num_boost_round=30)
    return booster.predict(xgb.DMatrix(x_all, base_margin=prior_all))


def _next_batch(tuner, configs, feats, prior, measured: dict, size: int, rng, seed: int,
                first: list):
    """Indices of the next configs to measure (see the module docstring for the policy)."""
    todo = [i for i, c in enumerate(configs) if _key(c) not in measured]
    if not todo:
        return []
    size = min(size, len(todo))
    first = [i for i in todo if configs[i] in first][:size] if tuner == "xgb" else []
    todo = [i for i in todo if i not in first]
    size -= len(first)
    ok = {k: v for k, v in measured.items() if v is not None}
    if not size or not todo:
        return first
    if tuner == "random":
        return first + [todo[i] for i in rng.choice(len(todo), size, replace=False)]
    worst = math.log(max(ok.values())) + 1.0 if ok else 0.0  # failed: worse than anything seen
    idx = {_key(c): i for i, c in enumerate(configs)}
    rows = [idx[k] for k in measured if k in idx]
    y = np.array([math.log(measured[_key(configs[i])]) if measured[_key(configs[i])] else worst
                  for i in rows])
    pred = _fit_predict(feats[rows], y, prior[rows], feats[todo], prior[todo], seed)
    n_explore = int(round(size * EXPLORE))
    order = [todo[i] for i in np.argsort(pred, kind="stable")]
    # One config per tile grid and row block in the best-ranked part: FIFO depths often do not
    # change the cycles (one row block: nothing to overlap), and the model cannot know yet.
    grids, chosen, rest = set(), [], []
    for i in order:
        grid = _grid(configs[i])
        (chosen if grid not in grids and len(chosen) < size - n_explore else rest).append(i)
        grids.add(grid)
    chosen += rest[:size - n_explore - len(chosen)]
    rest = [i for i in rest if i not in chosen]
    if n_explore and rest:
        chosen += [rest[i] for i in rng.choice(len(rest), min(n_explore, len(rest)), replace=False)]
    return first + chosen


def tune_task(task, db, trials: int, *, tuner: str = "xgb", seed: int = 0, batch: int = 16,
              executor=None, measure=None, progress=None, first: tuple = ()) -> TuneResult:
    """Measure up to ``trials`` configs of ``task`` (counting those already in ``db``).

    ``measure(task, configs) -> [result dict]`` defaults to the simulator through ``executor``;
    ``progress(new_trials, best_cycles)`` is called after every batch. The XGBoost tuner measures
    the task's default config and ``first`` (e.g. the default chain plan's configs) before all else.
    """
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}, not {tuner!r}")
    measure = measure or (lambda t, cfgs: measure_batch(t, cfgs, executor))
    space = task.space()
    configs = space.configs
    feats = task.feature_matrix(configs)
    prior = np.log(task.estimates(configs))
    default = task.default_config()
    first = [default, *first]
    measured, curve = {}, []
    for rec in db.measurements(task.key):
        measured[_key(task.config_type.from_dict(rec["config"]))] = rec["cycles"]
        curve.append(_best(curve, rec["cycles"]))
    while len(measured) < trials:
        rng = np.random.default_rng([seed, len(measured)])
        picks = _next_batch(tuner, configs, feats, prior, measured,
                            min(batch, trials - len(measured)), rng, seed, first)
        if not picks:
            break  # the whole space is measured
        results = measure(task, [configs[i] for i in picks])
        for i, res in zip(picks, results):
            cfg = configs[i]
            db.append({"kind": "measure", "task": task.key, "device": task.device,
                       "workload": dict(task.workload.__dict__), "config": cfg.to_dict(),
                       "cycles": res["cycles"], "error": res.get("error"),
                       "tiles": cfg.n_par * getattr(cfg, "cascade", 1), "tuner": tuner, "seed": seed,
                       "trial": len(measured)})
            measured[_key(cfg)] = res["cycles"]
            curve.append(_best(curve, res["cycles"]))
        if progress:
            progress(len(picks), curve[-1] if curve else None)
    found = db.best(task.key)
    return TuneResult(task, found[0] if found else None, found[1] if found else None,
                      measured.get(_key(default)), len(measured), len(configs), space.rejected, curve)


def _best(curve: list, cycles) -> int | None:
    prev = curve[-1] if curve else None
    if cycles is None:
        return prev
    return cycles if prev is None else min(prev, cycles)
