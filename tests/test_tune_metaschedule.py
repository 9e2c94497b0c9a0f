"""The MetaSchedule adapters: knob space, mutator coverage, builder rejection, runner, JSONDatabase."""

import numpy as np
import pytest
import tvm

from tvm_aie.schedules.dense import DenseWorkload, dense_prim_func
from tvm_aie.tune import Task

ms_adapter = pytest.importorskip("tvm_aie.tune.metaschedule")
TASK = Task(DenseWorkload(1, 64, 128, "int8"), "ve2802")


def test_mutator_reaches_every_knob():
    sch = tvm.s_tir.Schedule(dense_prim_func(TASK.workload), seed=1)
    values = ms_adapter.knob_values(TASK)  # sampled and annotated as the space function does
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    for name, vals in values.items():
        sch.annotate(block, ms_adapter.KNOB + name,
                     sch.sample_categorical(candidates=vals, probs=[1 / len(vals)] * len(vals)))
    mutator, trace = ms_adapter.MutateKnob(seed=1), sch.trace

    def knobs(tr):  # decisions in program order (the decision map's own order is a hash order)
        return [int(tr.decisions[inst]) for inst in tr.insts if inst in tr.decisions]

    before, changed = knobs(trace), set()
    for _ in range(200):
        after = knobs(mutator.apply(trace))
        changed |= {i for i, (a, b) in enumerate(zip(before, after)) if a != b}
    movable = sum(len(v) > 1 for v in values.values())
    assert len(changed) == movable


def test_tune_with_metaschedule(tmp_path):
    db, runner, builder = ms_adapter.tune(TASK, str(tmp_path), 16, seed=0, batch=8)
    assert runner.cycles and all(c > 0 for c in runner.cycles)
    records = db.get_all_tuning_records()
    assert len(records) == len(runner.cycles) + sum(builder.rejected.values())
    assert (tmp_path / "database_tuning_record.json").exists()
    best = min(r.run_secs[0].value for r in records if r.run_secs)
    assert np.isclose(best * 1.25e9, min(runner.cycles), rtol=1e-6)
