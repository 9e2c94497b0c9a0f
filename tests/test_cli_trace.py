"""``tvm-aie trace``: a model's AIE programs simulated once, as a Perfetto trace and a picture."""

import json

from tvm_aie.cli import main


def test_trace_writes_one_trace_and_picture_per_program(tmp_path, capsys):
    trace, png = tmp_path / "t.json", tmp_path / "a.png"
    assert main(["trace", "zoo:mlp_sin", "--trace", str(trace), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "aie_0" in out and "aie_1" in out  # the dense layers either side of Sin
    for t in (trace, tmp_path / "t_1.json"):
        events = json.loads(t.read_text())["traceEvents"]
        assert any(e.get("ph") == "X" for e in events)
    for p in (png, tmp_path / "a_1.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
