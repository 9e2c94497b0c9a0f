"""The searches: seeded determinism, the default measured first, parallel and Dask executors."""

from tvm_aie.schedules.dense import DenseWorkload
from tvm_aie.tune import Database, Task, executor, tune_task

TASK = Task(DenseWorkload(1, 128, 64, "int8"), "ve2802")


def _run(path, seed, tuner="xgb", ex=None, trials=40):
    return tune_task(TASK, Database(path), trials, tuner=tuner, seed=seed, batch=8, executor=ex)


def test_same_seed_same_database_and_result(tmp_path):
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    ra, rb = _run(a, 7), _run(b, 7)
    assert a.read_bytes() == b.read_bytes()
    assert (ra.best, ra.best_cycles, ra.curve) == (rb.best, rb.best_cycles, rb.curve)
    _run(c, 8)
    assert c.read_bytes() != a.read_bytes()


def test_xgb_measures_the_default_first_and_never_loses_to_it(tmp_path):
    res = _run(tmp_path / "db.jsonl", 0, trials=24)
    first = Database(tmp_path / "db.jsonl").records[0]
    assert first["config"] == TASK.default_config().to_dict()
    assert res.best_cycles <= res.default_cycles
    assert res.rejected and sum(res.rejected.values()) > 0


def test_dask_executor_gives_the_same_database(tmp_path):
    with executor(workers=2, dask="local") as ex:
        _run(tmp_path / "dask.jsonl", 1, ex=ex, trials=24)
    _run(tmp_path / "local.jsonl", 1, trials=24)
    assert (tmp_path / "dask.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_random_search_covers_a_small_space_exactly_once(tmp_path):
    task = Task(DenseWorkload(1, 32, 5, "int8"), "ve2802")
    res = tune_task(task, Database(tmp_path / "db.jsonl"), 100, tuner="random", seed=0, batch=5)
    assert res.trials == res.space_size == len(task.space().configs)
