"""The bundled models: what the zoo generates, and each one through tvm-aie against onnxruntime
(int8: bit-exact with TVM on the CPU and within one quantisation step of onnxruntime; fp32: 1e-4
relative), as ``scripts/demo.py`` checks them."""

import runpy
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm

import tvm_aie
from checks import assert_matches_onnxruntime
from tvm_aie import zoo

ZOO = ["jet_mlp", "autoencoder", "lenet", "mobilenet_block", "transformer"]
# at batch 2 their convs run on the array too, the layers pipelined over the images
CNNS = ["lenet", "mobilenet_block"]


def _run(ex, x):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("quant", [None, "int8"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_onnxruntime(name, quant):
    model = zoo.onnx_model(name, quant, batch=2)
    x = zoo.sample_input(name, batch=2, seed=7)
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie")
    if name in CNNS:
        rep = tvm_aie.report(ex)
        assert len(rep.subgraphs) == 1 and rep.offloaded_share >= 0.95
        assert rep.subgraphs[0].batch == 2
    assert_matches_onnxruntime(model, tvm_aie.load_onnx(model), _run(ex, x), x, quant)


def test_models_are_the_same_on_every_call():
    for name in zoo.names():
        a, b = zoo.onnx_model(name, "int8"), zoo.onnx_model(name, "int8")
        assert a.SerializeToString() == b.SerializeToString(), name


def test_folding_batchnorm_keeps_the_function():
    """The int8 model is quantised from the folded graph; folding must not change the output."""
    x = zoo.sample_input("mobilenet_block", batch=2)
    ref = zoo.run_onnxruntime(zoo.float_model("mobilenet_block"), x[:1])
    folded = zoo.run_onnxruntime(zoo.float_model("mobilenet_block", fold_bn=True), x[:1])
    np.testing.assert_allclose(folded, ref, rtol=1e-5, atol=1e-5)
    ops = {n.op_type for n in zoo.float_model("mobilenet_block", fold_bn=True).graph.node}
    assert "BatchNormalization" not in ops


def test_int8_models_are_qdq_with_per_channel_weights():
    model = zoo.onnx_model("lenet", "int8")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    inits = {t.name: t for t in model.graph.initializer}
    conv_w = [inits[n.input[1]] for n in model.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in inits and
              onnx.numpy_helper.to_array(inits[n.input[0]]).ndim == 4]
    assert conv_w and all(np.prod(t.dims) > 1 for t in conv_w)  # a scale per output channel


def test_macs_counted_from_the_onnx_graph():
    # LeNet: 24*24*6*25 + 8*8*16*150 + 256*120 + 120*84 + 84*10
    assert zoo.macs(zoo.onnx_model("lenet")) == 86400 + 153600 + 30720 + 10080 + 840
    # transformer: q, k, v, o projections, two attention matmuls, the FFN
    assert zoo.macs(zoo.onnx_model("transformer")) == 4 * 16 * 64 * 64 + 2 * 4 * 16 * 16 * 16 + \
        2 * 16 * 64 * 128


def test_make_zoo_writes_loadable_files(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_zoo.py"
    make_zoo = runpy.run_path(str(script))["main"]
    assert make_zoo([str(tmp_path), "--model", "lenet", "--batch", "N"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx", "lenet_int16.onnx",
                                                          "lenet_int8.onnx"]
    for path in tmp_path.iterdir():
        assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
