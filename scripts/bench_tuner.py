"""Benchmark the autotuner: XGBoost tuner vs random search on the same spaces, and tuned vs default
builds of the bundled models.

1. Tasks: the dense workloads of the bundled int8 models (jet_mlp, mlp_1024, autoencoder), a few
   larger dense shapes, and the conv layers of lenet and mobilenet_block (int8 and fp32). Every legal config of each task is measured once on the simulator (timing
   mode), which gives the exhaustive optimum; the table is kept in ``WORK/exhaustive-<sim>.jsonl``
   (a tuning database; ``<sim>`` fingerprints the simulator and catalog) so reruns skip it. The simulator is deterministic, so both searches then
   "measure" by looking the table up: the same numbers they would get, at no cost.
2. For each task and seed, both searches run until they have measured a config within 3% of the
   optimum; printed: the median trials over seeds, per task, and the medians over tasks.
   MetaSchedule driving the same simulator (``tvm_aie.tune.metaschedule``: evolutionary search,
   XGBModel on the same features) runs on the largest spaces for comparison (real measurements).
3. Each bundled model is tuned (XGBoost, graph-level allocation, whole chain simulated) and its
   default-plan and tuned cycles printed; the database keeps the default when tuning is not faster.
   For lenet the conv layers are tuned and the dense head keeps its plan (one program).

    python scripts/bench_tuner.py [--work-dir bench_tune] [--seeds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import statistics
import sys
import tempfile
import time

import tvm_aie
from tvm_aie import zoo
from tvm_aie.frontend import load_onnx
from tvm_aie.schedules.dense import DenseWorkload
from tvm_aie.target import get_device
from tvm_aie.tune import Database, Task, executor, extract_tasks, tune_model, tune_task
from tvm_aie.tune.plot import tuning_curves

DEVICE = "ve2802"
MODELS = [("jet_mlp", "int8"), ("jet_mlp", None), ("mlp_1024", "int8"), ("autoencoder", "int8"),
          ("lenet", "int8"), ("lenet", None), ("mobilenet_block", "int8"),
          ("mobilenet_block", None)]
CONV_MODELS = [("lenet", "int8"), ("mobilenet_block", "int8"), ("lenet", None),
               ("mobilenet_block", None)]
EXTRA = [DenseWorkload(64, 512, 512, "int8"), DenseWorkload(16, 1024, 256, "int8"),
         DenseWorkload(32, 256, 512, "float32")]
WITHIN = 1.03


def sim_fingerprint() -> str:
    """Digest of the simulator's sources and the device catalog: cached cycles are only valid for
    the simulator that measured them."""
    root = pathlib.Path(tvm_aie.__file__).parent
    files = sorted((root / "sim").glob("*.py")) + [root / "devices.json"]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:10]


def _model_tasks(models: list) -> list:
    """The distinct tasks of ``models`` whose spaces make a search worth running."""
    seen, tasks = set(), []
    for name, quant in models:
        for t in extract_tasks(load_onnx(zoo.onnx_model(name, quant=quant)), DEVICE):
            if t.key not in seen and len(t.space().configs) >= 30:
                seen.add(t.key)
                tasks.append(t)
    return tasks


def bench_tasks() -> list:
    dense = _model_tasks([(name, "int8") for name in ("jet_mlp", "mlp_1024", "autoencoder")])
    return dense + [Task(wl, DEVICE) for wl in EXTRA] + _model_tasks(CONV_MODELS)


def exhaustive(task: Task, db: Database, ex) -> dict:
    """Cycles of every legal config (measured once, then read back from the database)."""
    n = len(task.space().configs)
    tune_task(task, db, n, tuner="random", seed=0, batch=64, executor=ex)
    return {task.config_type.from_dict(r["config"]): r["cycles"]
            for r in db.measurements(task.key)}


class _Reached(Exception):
    """Stops a search once it has measured a config within 3% of the optimum."""


def trials_to_reach(task: Task, table: dict, tuner: str, seed: int, budget: int) -> tuple:
    """(trials until a config within 3% of the optimum is measured, the best-so-far curve).

    The curve stops there; ``budget + 1`` trials if the search never gets there.
    """
    target = min(c for c in table.values() if c is not None) * WITHIN
    curve = []

    def progress(_n, _best):
        if curve and curve[-1] is not None and curve[-1] <= target:
            raise _Reached

    def record(_task, configs):  # "measure" by looking the exhaustive table up
        results = [{"cycles": table[c], "error": None} for c in configs]
        for r in results:
            best = curve[-1] if curve else None
            curve.append(r["cycles"] if best is None else min(best, r["cycles"] or best))
        return results

    with tempfile.TemporaryDirectory() as d:
        try:
            tune_task(task, Database(f"{d}/db.jsonl"), budget, tuner=tuner, seed=seed, batch=8,
                      measure=record, progress=progress)
        except _Reached:
            pass
    hit = next((i + 1 for i, c in enumerate(curve) if c is not None and c <= target), None)
    return (hit or budget + 1), curve


def compare_metaschedule(tasks, tables, args) -> None:
    """MetaSchedule vs the native XGBoost tuner at the same trial budget, on the largest spaces."""
    from tvm_aie.tune import metaschedule  # pylint: disable=import-outside-toplevel

    n = args.ms_trials
    print(f"\nMetaSchedule vs native tuner, {n} trials each (seed 0); measurements until within "
          f"3% of the optimum (MetaSchedule's trials also include the points its builder rejects):")
    print(f"{'task':<26}{'optimum':>9}{'MS best':>9}{'MS to 3%':>10}{'MS rejected':>13}"
          f"{'native best':>13}{'native to 3%':>14}")
    big = sorted(zip(tasks, tables), key=lambda p: -len(p[1]))[:3]
    for task, table in big:
        with tempfile.TemporaryDirectory() as d:
            _, runner, builder = metaschedule.tune(task, d, n, seed=0, batch=8)
        hit, curve = trials_to_reach(task, table, "xgb", 0, n)
        opt = min(c for c in table.values() if c is not None)
        ms_hit = next((i + 1 for i, c in enumerate(runner.cycles) if c <= opt * WITHIN), None)
        print(f"{str(task):<26}{opt:>9}{min(runner.cycles, default=0):>9}"
              f"{ms_hit or f'>{len(runner.cycles)}':>10}{sum(builder.rejected.values()):>13}"
              f"{curve[-1]:>13}{hit:>14}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default="bench_tune")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model-trials", type=int, default=200, help="per model, for part 3")
    ap.add_argument("--ms-trials", type=int, default=64, help="MetaSchedule comparison (0: skip)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tasks = bench_tasks()
    db = Database(f"{args.work_dir}/exhaustive-{sim_fingerprint()}.jsonl")
    print(f"{len(tasks)} tasks on {DEVICE}; exhaustive tables in {db.path}")
    rows, curves, optimum = [], {}, {}
    with executor(args.workers) as ex:
        tables = [exhaustive(t, db, ex) for t in tasks]
    print(f"\n{'task':<40}{'space':>7}{'rejected':>9}{'optimum':>9}{'default':>9}"
          f"{'xgb trials':>12}{'random trials':>15}   (to within 3% of the optimum; median of "
          f"{args.seeds} seeds)")
    for task, table in zip(tasks, tables):
        budget = len(table)
        runs = {tuner: [trials_to_reach(task, table, tuner, s, budget) for s in range(args.seeds)]
                for tuner in ("xgb", "random")}
        med = {tuner: statistics.median(n for n, _ in r) for tuner, r in runs.items()}
        opt = min(c for c in table.values() if c is not None)
        rows.append((task, med))
        curves[str(task)] = {tuner: r[0][1] for tuner, r in runs.items()}
        optimum[str(task)] = opt
        print(f"{str(task):<40}{budget:>7}{sum(task.space().rejected.values()):>9}{opt:>9}"
              f"{table[task.default_config()]:>9}{med['xgb']:>12g}{med['random']:>15g}")
    m_xgb = statistics.median(m["xgb"] for _, m in rows)
    m_rand = statistics.median(m["random"] for _, m in rows)
    print(f"\nmedian over {len(rows)} tasks: xgb {m_xgb:g} trials, random {m_rand:g} trials "
          f"(ratio {m_xgb / m_rand:.2f}; goal <= 0.33)")
    if args.ms_trials:
        compare_metaschedule(tasks, tables, args)
    png = f"{args.work_dir}/tuning_curves.png"
    tuning_curves(curves, png, optimum)
    print(f"tuning curves (seed 0): {png}")

    print(f"\n{'model':<20}{'layers':>7}{'default cycles':>16}{'tuned cycles':>14}{'speedup':>9}")
    dev = get_device(DEVICE)
    for name, quant in MODELS:
        mod = load_onnx(zoo.onnx_model(name, quant=quant))
        mdb = Database(f"{args.work_dir}/{name}_{quant or 'fp32'}-{sim_fingerprint()}.jsonl")
        with executor(args.workers) as ex:
            res = tune_model(mod, dev, mdb, args.model_trials, seed=0, batch=8, executor=ex)
        for d in res.designs:
            print(f"{name + ' ' + (quant or 'fp32'):<20}{len(d['tasks']):>7}"
                  f"{d['default_cycles']:>16}{d['cycles']:>14}"
                  f"{d['default_cycles'] / d['cycles']:>8.2f}x"
                  f"{'' if d['tuned'] else '  (default kept: tuned not faster)'}")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0 if m_xgb <= m_rand / 3 else 1


if __name__ == "__main__":
    sys.exit(main())
