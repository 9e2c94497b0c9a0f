"""Input shapes: ``build(..., input_shapes=)`` and ``--input-shapes`` (tvmc's spelling) bind a
dynamic-batch model's symbolic dimensions before partitioning, so it makes the programs of the
static model; an input left symbolic runs on the CPU with one log line naming it; bad spellings
are one line (rc 2 from the CLI)."""

import json
import logging
import pathlib

import numpy as np
import onnx
import pytest
import tvm

import tvm_aie
from tvm_aie import cli, zoo
from tvm_aie.report import programs
from tvm_aie.shapes import bind_input_shapes, parse_input_shapes

RECORDED = json.loads((pathlib.Path(__file__).parent / "data" / "zoo_programs.json").read_text())


def _digests(ex) -> list:
    return [program.digest() for _, program in programs(ex)[1]]


@pytest.mark.parametrize("text,shapes", [
    ("x:[1,3,224,224]", {"x": [1, 3, 224, 224]}),
    ("x:[1, 3, 224, 224] y:[2,8]", {"x": [1, 3, 224, 224], "y": [2, 8]}),
    ("input.1:[1,8],ns/in:0:[-1, 4]", {"input.1": [1, 8], "ns/in:0": [-1, 4]}),
])
def test_parse_input_shapes_as_tvmc_spells_them(text, shapes):
    assert parse_input_shapes(text) == shapes


@pytest.mark.parametrize("text,match", [("x[1,2]", "cannot read 'x\\[1,2\\]'"),
                                        ("x:[1,a]", "cannot read"), ("", "is empty"),
                                        ("x:[1] x:[2]", "given twice")])
def test_bad_spellings_are_one_line(text, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_input_shapes(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,quant", [("lenet", None), ("squeezenet_fire", "int8")])
def test_dynamic_batch_builds_the_static_programs(name, quant):
    mod = tvm_aie.load_onnx(zoo.onnx_model(name, quant=quant, batch="N"))
    ex = tvm_aie.build(mod, input_shapes={"x": list(zoo.input_shape(name))})
    assert _digests(ex) == RECORDED[f"{name}/{quant or 'fp32'}"]
    x = zoo.sample_input(name)
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    assert y.shape == zoo.output_shape(name)


def test_cli_binds_the_batch(tmp_path, capsys):
    path = tmp_path / "lenet_dyn.onnx"
    onnx.save(zoo.onnx_model("lenet", quant="int8", batch="N"), path)
    out = tmp_path / "m.npz"
    assert cli.main(["compile", str(path), "--input-shapes", "x:[1, 1, 28, 28]", "-o",
                     str(out)]) == 0
    capsys.readouterr()
    assert _digests(tvm_aie.load(str(out))) == RECORDED["lenet/int8"]


def test_unbound_input_runs_on_the_cpu_and_the_log_names_it(tmp_path, capsys, caplog):
    model = zoo.onnx_model("lenet", batch="N")
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(tvm_aie.load_onnx(model))
    lines = [r.getMessage() for r in caplog.records if "symbolic shape" in r.getMessage()]
    assert lines == ['aie: input x has the symbolic shape [N,1,28,28]: what depends on it stays '
                     'on the CPU; bind it with build(..., input_shapes={\'x\': [...]}) or '
                     '--input-shapes "x:[...]"']
    x = zoo.sample_input("lenet", batch=3)
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(y, zoo.run_onnxruntime(model, x), rtol=1e-4, atol=1e-4)
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ('tvm-aie run: error: input x has the symbolic shape [N,1,28,28], so no random '
                   'input can be made: compile with --input-shapes "x:[...]" or give --input '
                   'x.npy')


@pytest.mark.parametrize("shapes,match", [
    ({"y": [1, 1, 28, 28]}, "the model's inputs are x"),
    ({"x": [1, 28, 28]}, "of rank 3, but it has rank 4"),
    ({"x": [1, 2, 28, 28]}, "but its shape is \\[N,1,28,28\\]"),
    ({"x": [0, 1, 28, 28]}, "dimensions are positive"),
])
def test_wrong_shapes_are_one_line(shapes, match):
    mod = tvm_aie.load_onnx(zoo.onnx_model("lenet", batch="N"))
    with pytest.raises(ValueError, match=match) as err:
        bind_input_shapes(mod, shapes)
    assert "\n" not in str(err.value)


def test_cli_bad_spelling_is_rc_2(capsys):
    assert cli.main(["compile", "zoo:lenet", "--input-shapes", "x=[1,1,28,28]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0]
