"""Configuring the array is counted: each program's initial contents (weights, padded maps) and
code come from DDR at the catalog's rate, every inference for a model of several programs, before
the first one only for a model of one program."""

import math

import numpy as np

import tvm_aie
from tvm_aie import zoo
from tvm_aie.report import programs
from tvm_aie.target import get_device


def _weight_bytes(model) -> int:
    return sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer if len(t.dims) == 2)


def test_several_programs_reconfigure_the_array_every_inference():
    model = zoo.onnx_model("mlp_sin")  # dense, Sin on the CPU, dense: two programs
    ex = tvm_aie.build(tvm_aie.load_onnx(model))
    rep = tvm_aie.report(ex)
    dev = get_device(rep.device)
    assert len(rep.subgraphs) == 2 and rep.reconfigures
    for sub, (_, program) in zip(rep.subgraphs, programs(ex)[1]):
        initial = sum(int(np.prod(b.shape)) * np.dtype(b.dtype).itemsize
                      for b in program.buffers if b.initial is not None)
        assert sub.config_bytes > initial  # the cores' code too
        assert sub.config_cycles == math.ceil(sub.config_bytes / dev.ddr_bytes_per_cycle)
    assert sum(s.config_bytes for s in rep.subgraphs) >= _weight_bytes(model)
    expected = sum(s.cycles + s.config_cycles for s in rep.subgraphs) / dev.clock_hz * 1e9
    assert math.isclose(rep.latency_ns, expected) and rep.first_latency_ns == rep.latency_ns
    assert "every inference (the array is reconfigured for each program)" in str(rep)


def test_one_program_is_configured_once():
    ex = tvm_aie.build(tvm_aie.load_onnx(zoo.onnx_model("lenet", quant="int8")))
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    assert not rep.reconfigures and sub.config_cycles > 0
    assert math.isclose(rep.latency_ns, sub.latency_ns)
    assert math.isclose(rep.first_latency_ns, sub.latency_ns + sub.config_ns)
    assert rep.to_dict()["first_latency_ns"] == rep.first_latency_ns
    assert "before the first inference only" in str(rep)
