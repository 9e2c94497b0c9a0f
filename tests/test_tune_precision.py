"""The tuner measures a workload on the kernel of its own precision: an int16xint8 or bfloat16
dense candidate costs what ``tvm_aie.build`` runs for that layer with the same config, not what
the fp32 kernel would (int16 workloads were once measured as fp32 layers)."""

import pytest

import tvm_aie
from tvm_aie import zoo
from tvm_aie.schedules import dense
from tvm_aie.target import get_device
from tvm_aie.tune.measure import measure


@pytest.mark.parametrize("precision, onnx_precision, build_precision", [
    ("int16xint8", "int16xint8", None), ("bfloat16", "float32", "bf16"), ("int8", "int8", None)])
def test_dense_measurement_is_the_built_layers_cycles(precision, onnx_precision, build_precision):
    dev = get_device()
    m, k, n = 16, 64, 96
    wl = dense.DenseWorkload(m, k, n, precision)
    fp32 = dense.DenseWorkload(m, k, n, "float32")
    cfg = dense.space(wl, dev).configs[1]  # a legal config other than the default
    measured = measure(dict(wl.__dict__), cfg.to_dict(), dev.name)
    assert measured["error"] is None
    ex = tvm_aie.build(tvm_aie.load_onnx(zoo.dense_layer(m, k, n, onnx_precision)),
                       precision=build_precision, configs={0: cfg})
    (sub,) = tvm_aie.report(ex).subgraphs
    (layer,) = sub.layers
    assert layer["precision"] == precision
    assert dense.DenseConfig.from_dict(layer["config"]) == cfg
    assert measured["cycles"] == sub.cycles
    as_fp32 = measure(dict(fp32.__dict__), cfg.to_dict(), dev.name)
    assert as_fp32["error"] is None and as_fp32["cycles"] != measured["cycles"]
