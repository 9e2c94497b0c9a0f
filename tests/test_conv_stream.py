"""Convs whose weights do not fit their tiles: the weights stream from DDR in passes over the
tile's output channels, two slots deep, for every band; each streamed byte is a timed DMA."""

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_aie
from tvm_aie import zoo
from tvm_aie.reference import build_reference
from tvm_aie.schedules import conv2d
from tvm_aie.target import get_device


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _streamed(ex):
    """The report's layer configs with more than one pass, and the program's weight tensors."""
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    return rep, [layer["config"] for layer in sub.layers if layer["config"].get("passes", 1) > 1]


@pytest.mark.parametrize("c, o, h", [(256, 256, 8), (512, 512, 7)])
def test_int8_conv_streams_weights_bit_exact(c, o, h):
    """256->256 3x3 int8 needs 73,728 B of weights per tile on a column's 8 tiles (a tile has
    64 KB): it was left on the CPU ("weights W does not fit"). Streamed in passes it runs on the
    array, bit-exact; the DMA moves the tile's weights once per band."""
    model = zoo.conv_layer(h, h, c, o, 3)
    mod = tvm_aie.load_onnx(model)
    ex = tvm_aie.build(mod)
    x = np.random.default_rng(0).integers(-20, 20, (1, c, h, h)).astype(np.int8)
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(mod), x))
    rep, streamed = _streamed(ex)
    assert rep.offloaded_macs == rep.model_macs and len(streamed) == 1
    cfg = streamed[0]
    bands = h // cfg["th"]
    weights = o * c * 9  # int8 bytes
    assert rep.subgraphs[0].bytes_moved >= bands * weights


def test_fp32_conv_streams_weights():
    """The same for fp32 (4 bytes a weight), within 1e-4 of onnxruntime."""
    rng = np.random.default_rng(1)
    c, h = 128, 6
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, c, h, h))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, c, h, h))],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ex = tvm_aie.build(tvm_aie.load_onnx(model))
    x = rng.standard_normal((1, c, h, h)).astype(np.float32)
    ort = zoo.run_onnxruntime(model, x)
    assert np.abs(_run(ex, x) - ort).max() <= 1e-4 * np.abs(ort).max()
    assert _streamed(ex)[1]


def test_resident_weights_are_preferred_and_passes_are_checked():
    """A layer whose weights fit keeps them resident (one pass); passes must divide the tile's
    channels, and grouped convs keep theirs resident."""
    dev = get_device()
    small = conv2d.ConvWorkload(16, 8, 8, 16, 3, 3, (1, 1), (1, 1, 1, 1), 1, "int8")
    assert conv2d.default_config(small, dev).passes == 1
    with pytest.raises(conv2d.TilingError, match="passes must divide"):
        conv2d.check(small, conv2d.ConvConfig(8, 2, passes=3), dev)
    dw = conv2d.ConvWorkload(16, 8, 8, 16, 3, 3, (1, 1), (1, 1, 1, 1), 16, "int8")
    with pytest.raises(conv2d.TilingError, match="convs of one group"):
        conv2d.check(dw, conv2d.ConvConfig(8, 2, passes=2), dev)
