"""The precisions a user picks in ``tvm-aie``: ``zoo:NAME:int8`` / ``zoo:NAME:int16`` (QDQ models)
and ``--precision bf16`` (fp32 layers on the bf16 datapath), for compile, run, trace and tune, and
the one-line errors for a precision that does not exist."""

import logging
import pathlib
import runpy

import numpy as np
import pytest
import tvm

import tvm_aie
from tvm_aie import cli, zoo
from tvm_aie.tune import Database


def _precisions(ex) -> set:
    return {layer["precision"] for s in tvm_aie.report(ex).subgraphs for layer in s.layers}


def test_zoo_int16_spec_is_the_int16_qdq_model(tmp_path, capsys):
    """``zoo:jet_mlp:int16`` compiles to int16xint8 layers and runs (int16 in and out)."""
    out = tmp_path / "j.npz"
    assert cli.main(["compile", "zoo:jet_mlp:int16", "-o", str(out)]) == 0
    assert "int16xint8" in capsys.readouterr().out
    ex = tvm_aie.load(str(out))
    assert _precisions(ex) == {"int16xint8"}
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](
        tvm.runtime.tensor(zoo.sample_input("jet_mlp"))).numpy()
    model = zoo.onnx_model("jet_mlp", quant="int16")
    assert np.abs(y - zoo.run_onnxruntime(model, zoo.sample_input("jet_mlp"))).max() <= \
        zoo.output_scale(model) * 1.001
    assert cli.main(["run", str(out)]) == 0


@pytest.mark.parametrize("command", ["compile", "run"])
def test_precision_bf16_builds_bf16_layers(command, tmp_path, capsys):
    args = [command, "zoo:lenet", "--precision", "bf16"]
    assert cli.main(args + (["-o", str(tmp_path / "l.npz")] if command == "compile" else [])) == 0
    report = capsys.readouterr().out
    assert "bfloat16" in report and "float32" not in report.split("bfloat16", 1)[1]


@pytest.mark.parametrize("argv, message", [
    (["compile", "zoo:jet_mlp", "--precision", "int4"], "unknown precision 'int4': fp32 or bf16"),
    (["tune", "zoo:jet_mlp", "--precision", "int8"], "unknown precision 'int8': fp32 or bf16")])
def test_unknown_precision_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "zoo:NAME:int16" in err


@pytest.mark.parametrize("argv, message", [
    (["compile", "zoo:jet_mlp:int4"], "unknown zoo precision 'int4' in 'zoo:jet_mlp:int4': "
                                      "zoo:jet_mlp (fp32), zoo:jet_mlp:int8, zoo:jet_mlp:int16"),
    (["compile", "zoo:resnet:int8"], "unknown model 'resnet'; bundled: jet_mlp")])
def test_unknown_zoo_spec_is_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_precision_of_a_compiled_executable_is_refused(tmp_path, capsys):
    out = tmp_path / "j.npz"
    assert cli.main(["compile", "zoo:jet_mlp", "-o", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(out), "--precision", "bf16"]) == 2
    assert "--precision applies when compiling" in capsys.readouterr().err


@pytest.mark.parametrize("spec, extra, precision", [
    ("zoo:jet_mlp", ["--precision", "bf16"], "bfloat16"),
    ("zoo:jet_mlp:int16", [], "int16xint8")])
def test_tune_measures_and_applies_the_picked_precision(spec, extra, precision, tmp_path, capsys,
                                                        caplog):
    """``tvm-aie tune`` keys the tasks by the precision the layers run in (measured as such), and
    ``compile --tuning-db`` with the same precision applies the tuned design."""
    work = tmp_path / "tune"
    assert cli.main(["tune", spec, *extra, "--trials", "16", "--work-dir", str(work),
                     "--workers", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"dense 1x16x64 {precision}" in out and "float32" not in out
    keys = {r["task"] for r in Database(work / cli.DB_NAME).records if r["kind"] == "measure"}
    assert keys and all(k.endswith(f"/{precision}") for k in keys)
    caplog.set_level(logging.INFO, "tvm_aie")
    assert cli.main(["compile", spec, *extra, "--tuning-db", str(work), "-o",
                     str(tmp_path / "t.npz")]) == 0
    assert "applying the tuned design" in caplog.text
    assert _precisions(tvm_aie.load(str(tmp_path / "t.npz"))) == {precision}


def test_demo_checks_every_precision_of_a_model(capsys):
    """``scripts/demo.py --model NAME`` runs NAME in fp32, int8, int16 and bf16, each against its
    references (the int16 transformer within its stated onnxruntime allowance); ``--precisions``
    picks some and an unknown one is argparse's one-line error."""
    demo = runpy.run_path(str(pathlib.Path(__file__).resolve().parent.parent / "scripts" /
                              "demo.py"))["main"]
    assert demo(["--model", "lenet"]) == 0
    out = capsys.readouterr().out
    for line in ("lenet int16: bit-exact vs TVM CPU: True", "lenet bf16: max err vs onnxruntime",
                 "4/4 models match their references"):
        assert line in out
    assert demo(["--model", "transformer", "--precisions", "int16"]) == 0
    assert "transformer int16: bit-exact vs TVM CPU: True" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo(["--precisions", "int4"])
    assert "unknown precision 'int4'; known: fp32, int8, int16, bf16" in capsys.readouterr().err
