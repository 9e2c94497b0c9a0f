"""Graph-level allocation and applying a database in tvm_aie.build (and the tvm-aie CLI)."""

import itertools
import logging

import numpy as np
import pytest
import tvm

import tvm_aie
from tvm_aie import cli, zoo
from tvm_aie.frontend import load_onnx
from tvm_aie.runtime import load_program
from tvm_aie.schedules.dense import DenseConfig
from tvm_aie.target import get_device
from tvm_aie.tune import Database, Task, allocate, extract_tasks, pareto_front, tune_model, tune_task
from tvm_aie.tune.graph import columns

DEV = get_device("ve2802")


@pytest.fixture(scope="module")
def jet():
    return load_onnx(zoo.onnx_model("jet_mlp", quant="int8"))


def test_pareto_front():
    pts = [(1, 100, "a"), (2, 90, "b"), (2, 80, "c"), (4, 85, "d"), (8, 40, "e")]
    assert [p[2] for p in pareto_front(pts)] == ["a", "c", "e"]


@pytest.mark.parametrize("goal", ["latency", "throughput"])
def test_allocate_matches_brute_force(goal):
    rng = np.random.default_rng(0)
    cands = [[(DenseConfig(4, p, c), int(rng.integers(50, 500)))
              for p in (1, 2, 4, 8) for c in (1, 2, 4) if rng.random() < 0.7] for _ in range(3)]
    combine = sum if goal == "latency" else max
    feasible = [combo for combo in itertools.product(*cands)
                if all(b[0].cascade == a[0].n_par for a, b in zip(combo, combo[1:]))
                and sum(columns(c, DEV) for c, _ in combo) <= DEV.columns]
    best = min(combine(cy for _, cy in combo) for combo in feasible)
    alloc = allocate(cands, DEV, goal)
    assert alloc.objective == best
    assert all(b.cascade == a.n_par for a, b in zip(alloc.configs, alloc.configs[1:]))


def test_extract_tasks(jet):
    tasks = extract_tasks(jet, DEV)
    assert [str(t) for t in tasks] == ["dense 1x16x64 int8", "dense 1x64x32 int8",
                                       "dense 1x32x32 int8", "dense 1x32x5 int8"]


def _layer_configs(ex):
    (_, blob) = tvm.relax.VirtualMachine(ex, tvm.cpu())["aie_programs"]()
    return [DenseConfig.from_dict(lay["config"]) for lay in load_program(blob).meta["layers"]]


def _run(ex):
    x = zoo.sample_input("jet_mlp")
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def test_build_applies_the_tuned_design(jet, tmp_path, caplog):
    db = Database(tmp_path / "db.jsonl")
    res = tune_model(jet, DEV, db, 60, seed=0, batch=8)
    (design,) = res.designs
    assert design["cycles"] <= design["default_cycles"]
    caplog.set_level(logging.INFO, "tvm_aie")
    ex = tvm_aie.build(jet, target="aie", tuning_db=db.path)
    assert "applying the tuned design" in caplog.text
    assert _layer_configs(ex) == [DenseConfig.from_dict(c) for c in design["configs"]]
    assert np.array_equal(_run(ex), _run(tvm_aie.build(jet, target="aie")))  # same integers


def test_build_pins_best_records_and_says_which_fall_back(jet, tmp_path, caplog):
    db = Database(tmp_path / "db.jsonl")
    first = extract_tasks(jet, DEV)[0]
    tune_task(first, db, 12, seed=0, batch=6)  # only the first layer is tuned, no design
    caplog.set_level(logging.INFO, "tvm_aie")
    ex = tvm_aie.build(jet, target="aie", tuning_db=db.path)
    assert _layer_configs(ex)[0] == db.best(first.key)[0]
    for wl in [t.workload for t in extract_tasks(jet, DEV)[1:]]:
        assert f"{Task(wl, DEV.name).key} is not in the tuning database; default" in caplog.text


def test_cli_tune_and_report(tmp_path, capsys):
    work = tmp_path / "tune"
    assert cli.main(["tune", "zoo:jet_mlp", "--device", "aie-ml/vek280", "--trials", "24",
                     "--work-dir", str(work), "--workers", "1", "-q",
                     "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "dense 1x16x64 float32" in out and "chain0" in out
    assert (tmp_path / "c.png").stat().st_size > 0
    assert cli.main(["report", str(work)]) == 0
    assert "ve2802/dense/1x32x5/float32" in capsys.readouterr().out
