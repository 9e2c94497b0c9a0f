"""The tuning database: durable appends, resume after kill -9, corrupted lines, malformed files."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tvm_aie.schedules.dense import DenseWorkload
from tvm_aie.tune import Database, DatabaseFormatError, Task, tune_task

TASK = Task(DenseWorkload(16, 1024, 256, "int8"), "ve2802")

_RUN = textwrap.dedent("""
    import sys
    from tvm_aie.schedules.dense import DenseWorkload
    from tvm_aie.tune import Database, Task, tune_task
    task = Task(DenseWorkload(16, 1024, 256, "int8"), "ve2802")
    tune_task(task, Database(sys.argv[1]), int(sys.argv[2]), seed=3, batch=2)
""")


def _lines(path):
    return path.read_bytes().splitlines() if path.exists() else []


def test_resume_after_kill_9(tmp_path):
    path, trials = tmp_path / "db.jsonl", 60
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(path), str(trials)])
    deadline = time.time() + 120
    while len(_lines(path)) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = Database(path).records  # every finished record survived (a torn tail is skipped)
    assert 10 <= len(before) < trials, "the run was not killed mid-way"
    res = tune_task(TASK, Database(path), trials, seed=3, batch=2)
    after = Database(path).records
    assert after[:len(before)] == before
    configs = [json.dumps(r["config"], sort_keys=True) for r in after]
    assert len(configs) == len(set(configs)) == trials == res.trials


def test_corrupted_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "db.jsonl"
    tune_task(TASK, Database(path), 4, seed=0, batch=2)
    lines = _lines(path)
    path.write_bytes(b"\n".join([lines[0], b'{"kind": "measure", "task": tru', *lines[1:]])
                     + b'\n{"kind": "measure", "task"')  # and a torn tail, as kill -9 leaves
    db = Database(path)
    assert len(db.records) == 4
    assert "db.jsonl:2: skipping a corrupted record" in caplog.text
    assert "db.jsonl:6: skipping a corrupted record" in caplog.text
    tune_task(TASK, db, 6, seed=0, batch=2)  # appending after a torn tail starts a new line
    assert len(Database(path).records) == 6


def test_not_a_database(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x04onnx garbage")
    with pytest.raises(DatabaseFormatError, match="not a database"):
        Database(path)
    with pytest.raises(DatabaseFormatError, match="directory"):
        Database(tmp_path)
