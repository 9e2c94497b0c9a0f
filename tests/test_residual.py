"""Residual connections as ResNets have them: a projection shortcut (a 1x1 strided conv read only
by the add), a residual that is a program input, and fp32's ReLU after the add, all on the array.
"""

import numpy as np
import onnxruntime
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_aie
from checks import assert_matches_onnxruntime
from tvm_aie import zoo


def _run(ex, *xs):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, xs)).numpy()


def _weights(rng, inits, name, shape):
    fan = int(np.prod(shape[1:]))
    inits += [numpy_helper.from_array(
        (rng.standard_normal(shape) * np.sqrt(2 / fan)).astype(np.float32), name),
        numpy_helper.from_array((rng.standard_normal(shape[0]) * 0.1).astype(np.float32),
                                name + "_b")]
    return [name, name + "_b"]


def downsample_block(c=8, h=16, seed=0):
    """A stem conv, then a ResNet downsampling basic block: 3x3/2 conv, ReLU, 3x3 conv, plus a
    1x1/2 projection shortcut of the block input, ReLU after the add."""
    rng, inits = np.random.default_rng(seed), []
    nodes = [helper.make_node("Conv", ["x", *_weights(rng, inits, "stem", (c, 3, 3, 3))], ["s"],
                              pads=[1] * 4),
             helper.make_node("Relu", ["s"], ["s1"]),
             helper.make_node("Conv", ["s1", *_weights(rng, inits, "c1", (2 * c, c, 3, 3))], ["a"],
                              pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["a1"]),
             helper.make_node("Conv", ["a1", *_weights(rng, inits, "c2", (2 * c, 2 * c, 3, 3))],
                              ["b"], pads=[1] * 4),
             helper.make_node("Conv", ["s1", *_weights(rng, inits, "p", (2 * c, c, 1, 1))],
                              ["sc"], strides=[2, 2]),
             helper.make_node("Add", ["b", "sc"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["y"])]
    graph = helper.make_graph(
        nodes, "downsample", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, h, h))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2 * c, h // 2, h // 2))],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("quant", [None, "int8"])
def test_projection_shortcut_block_is_one_program(quant):
    """The shortcut's output, read by nothing but the add, goes to a memory-tile map of its own
    that the adding layer reads (it stopped the build: "its residual input ... is not in a memory
    tile of this program"); fp32's ReLU after the add runs in the adding layer's epilogue."""
    model = downsample_block()
    if quant:
        model = zoo.quantize(model, (1, 3, 16, 16), quant=quant)
    mod = tvm_aie.load_onnx(model)
    ex = tvm_aie.build(mod)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert_matches_onnxruntime(model, mod, _run(ex, x), x, quant)
    rep = tvm_aie.report(ex)
    assert len(rep.subgraphs) == 1 and rep.offloaded_macs == zoo.macs(model)
    adder = [layer for layer in rep.subgraphs[0].layers if "+residual" in layer["summary"]]
    assert len(adder) == 1
    assert adder[0]["summary"].endswith("+residual relu") == (quant is None)


def test_residual_from_a_program_input_is_read_from_ddr():
    """``y = conv(x1) + x2``: no layer of the program reads ``x2`` as its input, so the adding
    layer's tiles read their residual blocks from DDR."""
    rng = np.random.default_rng(0)
    c, h = 8, 12
    w = (rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x1", "w"], ["a"], pads=[1] * 4),
         helper.make_node("Add", ["a", "x2"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, (1, c, h, h)) for n in ("x1", "x2")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, c, h, h))],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ex = tvm_aie.build(tvm_aie.load_onnx(model))
    xs = [rng.standard_normal((1, c, h, h)).astype(np.float32) for _ in range(2)]
    ort = onnxruntime.InferenceSession(model.SerializeToString()).run(
        None, {"x1": xs[0], "x2": xs[1]})[0]
    y = _run(ex, *xs)
    assert np.abs(y - ort).max() <= 1e-5 * np.abs(ort).max()
    rep = tvm_aie.report(ex)
    assert rep.offloaded_macs == rep.model_macs
    assert rep.subgraphs[0].layers[0]["summary"].endswith("+residual")
