"""The integer CPU reference: bit-exact with numpy's ``quant.requantize``, and the model it
computes is the QDQ model onnxruntime runs (within one quantisation step)."""

from dataclasses import replace

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from tvm_aie import zoo
from tvm_aie.codegen.layers import read_layer_graph
from tvm_aie.partition import partition_for_aie
from tvm_aie.quant import requantize
from tvm_aie.reference import build_reference, reference_function


def _run(ex, *args):
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def _numpy_int8(graph, x):
    vals = {0: x}
    for layer in graph.layers:
        acc = vals[layer.input].astype(np.int64) @ layer.weight.astype(np.int64)
        if layer.bias is not None:
            acc += layer.bias
        vals[layer.name] = requantize(acc, layer.mult, layer.shift, layer.out_zp, layer.relu)
    return vals[graph.output]


@pytest.mark.parametrize("name, per_channel, relu", [
    ("jet_mlp", True, False), ("jet_mlp", False, False), ("jet_mlp", True, True),
    ("mlp_1024", True, False)])
def test_reference_function_matches_numpy_requantize(name, per_channel, relu):
    """The offloaded function's reference on random int8 inputs, bit for bit. onnxruntime folds
    ReLU into the output's zero point (-128), so the ReLU clamp is tested by switching it on."""
    model = zoo.onnx_model(name, quant="int8", per_channel=per_channel, batch=8)
    (func,) = [f for _, f in partition_for_aie(from_onnx(model)).functions.items()
               if f.attrs is not None and f.attrs.get("Codegen") == "aie"]
    graph = read_layer_graph(func)
    if relu:
        graph.layers = [replace(layer, relu=True, out_zp=-5) for layer in graph.layers]
    x = np.random.default_rng(1).integers(-128, 128, graph.params[0].shape, dtype=np.int8)
    ref = reference_function(graph).with_attr("global_symbol", "main")
    y = _run(tvm.compile(tvm.IRModule({"main": ref}), target="llvm"), x)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, _numpy_int8(graph, x))


@pytest.mark.parametrize("name, per_channel", [
    ("jet_mlp", True), ("jet_mlp", False), ("jet_mlp_matmul", True), ("mlp_1024", True)])
def test_reference_within_one_step_of_onnxruntime(name, per_channel):
    model = zoo.onnx_model(name, quant="int8", per_channel=per_channel, batch=4)
    x = zoo.sample_input(name, batch=4, seed=5)
    y = _run(build_reference(from_onnx(model, keep_params_in_input=False)), x)
    steps = np.abs(y - zoo.run_onnxruntime(model, x)) / zoo.output_scale(model)
    assert steps.max() <= 1.0 + 1e-4


def test_fp32_reference_is_the_model():
    model = zoo.onnx_model("mlp_sin", batch=2)
    x = zoo.sample_input("mlp_sin", batch=2, seed=2)
    y = _run(build_reference(from_onnx(model)), x)
    np.testing.assert_allclose(y, zoo.run_onnxruntime(model, x), rtol=1e-5, atol=1e-6)
