"""Fuzzers (issue #15): mutated AIE program JSON and tuning records give a clear error or a valid
result, never a traceback or a hang, within a time bound per example.

A clear error is the library's: a ``ValueError`` (``ProgramFormatError``, ``DatabaseFormatError``,
the simulator's load checks) or a ``SimulationError`` (deadlock, cycle limit, no progress), which
the CLI prints as one line with rc 2.
"""

import copy
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tvm_aie.cli import main
from tvm_aie.codegen.program import Program
from tvm_aie.sim import SimulationError, simulate
from tvm_aie.sim.workloads import dense_program

# no shrinking: a failure is reported as drawn, within the suite's time budget
BOUND = dict(deadline=timedelta(seconds=10), phases=(Phase.explicit, Phase.generate),
             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# values a mutation puts anywhere: wrong types, out-of-range numbers, huge and negative counts
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                   st.sampled_from([0, -1, 1, 2**31, 10**12]), st.floats(allow_nan=True),
                   st.text(max_size=6), st.sampled_from(["object", "int8", "float32", "<U6"]),
                   st.lists(st.integers(-4, 4), max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(node, prefix=()):
    """Every path (tuple of keys / indices) into a JSON tree."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def _mutate(tree, path, value, delete: bool):
    tree = copy.deepcopy(tree)
    if not path:
        return value
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


@pytest.fixture(scope="module")
def program():
    p = dense_program(8, 32, 32, n_par=2, cascade=2)
    return p.to_json_dict(), p.constants


def _from_json(d, constants) -> Program:
    out = io.BytesIO()
    np.savez(out, **{"program.json": np.frombuffer(json.dumps(d).encode(), np.uint8)},
             **{f"const/{k}": v for k, v in constants.items()})
    return Program.from_bytes(out.getvalue())


@settings(max_examples=300, **BOUND)
@given(data=st.data())
def test_mutated_program_json_is_a_clear_error_or_runs(program, data):
    tree, constants = program
    paths = list(_paths(tree))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        tree = _mutate(tree, path, data.draw(VALUES), data.draw(st.booleans()))
        paths = list(_paths(tree))
    try:
        simulate(_from_json(tree, constants), mode="timing", max_cycles=2_000_000)
    except (ValueError, SimulationError):
        pass


# the jet MLP's tasks (zoo:jet_mlp on ve2802), so a compile applies the records
JET = ["ve2802/dense/1x16x64/float32", "ve2802/dense/1x64x32/float32",
       "ve2802/dense/1x32x32/float32", "ve2802/dense/1x32x5/float32"]
MEASURE = {"kind": "measure", "task": JET[0], "workload": {},
           "device": "ve2802", "config": {"tm": 4, "n_par": 1, "cascade": 1,
                                          "double_buffer_a": True, "double_buffer_c": True},
           "cycles": 500, "error": None, "tiles": 1, "tuner": "random", "seed": 0, "trial": 0}
DESIGN = {"kind": "design", "device": "ve2802", "tasks": JET, "goal": "latency",
          "function": "chain0", "tuned": True, "configs": [MEASURE["config"]] * len(JET),
          "cycles": 480, "default_cycles": 500, "predicted": None}


@settings(max_examples=60, **BOUND)
@given(data=st.data(), command=st.sampled_from(["report", "compile"]))
def test_mutated_tuning_records_are_a_clear_error_or_applied(tmp_path_factory, data, command,
                                                             capsys):
    records = [copy.deepcopy(MEASURE), copy.deepcopy(DESIGN)]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, 1))
        path = data.draw(st.sampled_from(list(_paths(records[i]))))
        records[i] = _mutate(records[i], path, data.draw(VALUES), data.draw(st.booleans()))
    work = tmp_path_factory.mktemp("db")
    db = work / "database.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["report", str(db)] if command == "report" else \
        ["compile", "zoo:jet_mlp", "--tuning-db", str(db), "-o", str(work / "jet.npz")]
    assert main(argv) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err
