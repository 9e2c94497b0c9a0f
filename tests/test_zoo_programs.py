"""``build``, ``tvm.compile(..., relax_pipeline="aie")`` and the CLI make the programs recorded in
``tests/data/zoo_programs.json`` (by ``scripts/zoo_programs.py``) for every zoo model and
precision: a change that moves code leaves every program, its layout, weights and DMA, as it was.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import tvm
from tvm import relax

import tvm_aie
from tvm_aie import cli

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "scripts"))
import zoo_programs  # noqa: E402  pylint: disable=wrong-import-position

RECORDED = json.loads((pathlib.Path(__file__).parent / "data" / "zoo_programs.json").read_text())


def test_every_case_is_recorded():
    assert sorted(RECORDED) == sorted(f"{n}/{p}" for n, p in zoo_programs.CASES)


@pytest.mark.parametrize("name,precision", zoo_programs.CASES)
def test_build_makes_the_recorded_programs(name, precision):
    assert zoo_programs.build_digests(name, precision) == RECORDED[f"{name}/{precision}"]


@pytest.mark.parametrize("name,precision", zoo_programs.CASES)
def test_the_aie_pipeline_makes_the_recorded_programs(name, precision):
    pipeline = relax.get_pipeline("aie", precision="bf16") if precision == "bf16" else "aie"
    ex = tvm.compile(zoo_programs.zoo_module(name, precision), target="aie",
                     relax_pipeline=pipeline)
    assert zoo_programs.digests(ex) == RECORDED[f"{name}/{precision}"]


@pytest.mark.parametrize("name,precision", zoo_programs.CASES)
def test_the_cli_makes_the_recorded_programs(name, precision, tmp_path, capsys):
    spec = f"zoo:{name}" + (f":{precision}" if precision in ("int8", "int16") else "")
    out = tmp_path / "m.npz"
    argv = ["compile", spec, "-o", str(out)] + (["--precision", "bf16"] if precision == "bf16"
                                                else [])
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert zoo_programs.digests(tvm_aie.load(str(out))) == RECORDED[f"{name}/{precision}"]
