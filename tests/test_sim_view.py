"""The trace JSON and the array picture of a run, from the Python API and the command line."""

import json

import pytest

from tvm_aie.sim import simulate
from tvm_aie.sim.trace import chrome_trace
from tvm_aie.sim.view import main, view
from tvm_aie.sim.workloads import dense_program

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_trace_and_picture_of_a_run(tmp_path):
    program = dense_program(32, 128, 64, n_par=2, cascade=2)
    res = view(program, tmp_path / "run.json", tmp_path / "array.png")
    doc = json.loads((tmp_path / "run.json").read_text())
    events = doc["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {f"core {c},{r}" for c, r in ((0, 3), (1, 3), (0, 4), (1, 4))} <= names
    assert any(n.startswith("DMA ") for n in names) and any(n.startswith("lock ") for n in names)
    kernels = [e for e in events if e["ph"] == "X" and e["name"] == "kernel"]
    assert sum(e["args"]["cycles"] for e in kernels) == sum(
        t["busy"] for t in res.report.per_tile.values())
    assert any(e["ph"] == "X" and e["name"] == "transfer" for e in events)
    assert any(e["ph"] == "C" for e in events)
    assert doc["otherData"]["cycles"] == res.report.cycles
    assert (tmp_path / "array.png").read_bytes()[:8] == PNG_MAGIC


def test_tracing_changes_no_cycle():
    program = dense_program(32, 128, 64, n_par=2, cascade=2)
    assert simulate(program, mode="timing", trace=True).report.cycles == \
        simulate(program, mode="timing").report.cycles


def test_trace_needs_a_traced_run():
    program = dense_program(16, 64, 64, n_par=1, cascade=1)
    with pytest.raises(ValueError, match="trace=True"):
        chrome_trace(simulate(program, mode="timing"), program)


def test_command_line_writes_both(tmp_path, capsys):
    saved = tmp_path / "p.npz"
    saved.write_bytes(dense_program(16, 64, 64, n_par=1, cascade=2, device="npu1").to_bytes())
    assert main(["--program", str(saved), "--trace", str(tmp_path / "t.json"),
                 "--png", str(tmp_path / "a.png")]) == 0
    assert "traceEvents" in json.loads((tmp_path / "t.json").read_text())
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
    assert "2 cores" in capsys.readouterr().out
