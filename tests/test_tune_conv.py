"""Conv tuning tasks: the space's rejections, seeded determinism, and tuned conv builds bit-exact."""

import logging

import numpy as np
import pytest
import tvm

import tvm_aie
from tvm_aie import zoo
from tvm_aie.codegen.layers import read_layers
from tvm_aie.frontend import load_onnx
from tvm_aie.partition import partition_for_aie
from tvm_aie.runtime import load_program
from tvm_aie.schedules import conv2d
from tvm_aie.schedules.conv2d import ConvConfig
from tvm_aie.target import get_device
from tvm_aie.tune import Database, extract_tasks, tune_model, tune_task
from tvm_aie.tune.apply import conv_keys, pin_conv_layers
from tvm_aie.tune.conv import ConvTask

DEV = get_device("ve2802")
# mobilenet_block's expansion in fp32: rejections for shape and memory
WL = conv2d.ConvWorkload(16, 16, 16, 32, 1, 1, (1, 1), (0, 0, 0, 0), 1, "float32")


@pytest.fixture(scope="module")
def block():
    return load_onnx(zoo.onnx_model("mobilenet_block", quant="int8"))


def test_space_rejects_illegal_points_with_counts():
    task = ConvTask(WL, DEV.name)
    space = task.space()
    assert space.rejected["shape"] > 0 and space.rejected["memory"] > 0
    assert len(space.configs) + sum(space.rejected.values()) == \
        len(list(conv2d.candidates(WL, DEV)))
    for cfg in space.configs:
        conv2d.check(WL, cfg, DEV)
    assert task.default_config() in space.configs


def test_extract_tasks_finds_the_conv_layers(block):
    tasks = extract_tasks(block, DEV)
    assert [t.key.split("/")[1] for t in tasks] == ["conv2d"] * 3
    assert tasks[2].workload.residual and tasks[2].key.endswith("/residual/int8")


def test_conv_tuning_is_deterministic(tmp_path):
    task = ConvTask(WL, DEV.name)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ra, rb = (tune_task(task, Database(p), 16, seed=3, batch=8) for p in (a, b))
    assert a.read_bytes() == b.read_bytes()
    assert (ra.best, ra.best_cycles) == (rb.best, rb.best_cycles)
    assert ra.best_cycles <= ra.default_cycles


def _conv_configs(ex):
    (blob,) = tvm.relax.VirtualMachine(ex, tvm.cpu())["aie_programs"]()[1:]
    return [ConvConfig.from_dict(lay["config"]) for lay in load_program(blob).meta["layers"]]


def test_build_applies_conv_records_bit_exact(block, tmp_path, caplog):
    db = Database(tmp_path / "db.jsonl")
    res = tune_model(block, DEV, db, 48, seed=0, batch=8)
    (design,) = res.designs
    assert design["tuned"] and design["cycles"] < design["default_cycles"]
    caplog.set_level(logging.INFO, "tvm_aie")
    ex = tvm_aie.build(block, target="aie", tuning_db=db.path)
    assert "applying the tuned design" in caplog.text
    assert _conv_configs(ex) == [ConvConfig.from_dict(c) for c in design["configs"]]
    x = tvm.runtime.tensor(zoo.sample_input("mobilenet_block"))
    run = lambda e: tvm.relax.VirtualMachine(e, tvm.cpu())["main"](x).numpy()  # noqa: E731
    assert np.array_equal(run(ex), run(tvm_aie.build(block, target="aie")))


def test_pins_keep_the_chain_constraint(block, tmp_path):
    """conv1 on 8 tiles would write conv2's image with 8 streams, more than its memory tile's 6
    S2MM channels: that record is skipped for the fastest one the chain can hold."""
    (func,) = [f for f in partition_for_aie(block).functions.values()
               if isinstance(f, tvm.relax.Function) and f.attrs and f.attrs.get("Codegen") == "aie"]
    layers = read_layers(func)
    db = Database(tmp_path / "db.jsonl")
    for n_par, cycles in ((8, 100), (4, 200)):
        db.append({"kind": "measure", "task": conv_keys(layers, DEV)[1], "cycles": cycles,
                   "tiles": n_par, "config": ConvConfig(16, n_par).to_dict()})
    assert pin_conv_layers(layers, DEV, db) == {1: ConvConfig(16, 4)}
