"""int16 activations x int8 weights for conv2d and pooling (the int16xint8 precision dense layers
have, tests/test_int16x8.py).

Models are written in fp32 and quantised by onnxruntime's static quantiser with
``activation_type=QInt16``, ``weight_type=QInt8`` (per channel;
``tvm_aie.zoo.quantize(..., quant="int16")``), so the QDQ graphs are the ones it
writes (ReLU and Clip folded into the output quantisation, Q/DQ around every pooling layer). The
array must be bit-exact with the integer CPU reference. Against onnxruntime with graph
optimisations off (:func:`tvm_aie.zoo.run_onnxruntime`; its optimised int16 QDQ kernels are
wrong on AVX2) the check is one output step: onnxruntime dequantises and sums in float32, so a
value on a rounding boundary can land one step from the exact integer accumulation.
"""

import logging

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.schedules import conv2d
from tvm_aie.sim.kernels_conv import conv2d_cycles
from tvm_aie.target import get_device
from tvm_aie.tune.conv import ConvTask, measure


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def float_conv(c, h, w, o, k, s, p, groups, bias, act, pool, seed):
    """An fp32 ONNX Conv (+ bias) (+ ReLU / Clip(0, 1)) (+ 2x2 MaxPool / AveragePool, or
    GlobalAveragePool)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(
        rng.normal(0, 1 / np.sqrt(c // groups * k * k), (o, c // groups, k, k)).astype(np.float32),
        "w")]
    inputs = [zoo.INPUT, "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, o).astype(np.float32), "b"))
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["conv"], kernel_shape=[k, k], strides=[s, s],
                              pads=[p] * 4, group=groups)]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["conv"], ["act"]))
    elif act == "clip":
        inits += [numpy_helper.from_array(np.float32(0), "lo"),
                  numpy_helper.from_array(np.float32(1), "hi")]
        nodes.append(helper.make_node("Clip", ["conv", "lo", "hi"], ["act"]))
    if pool == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", [nodes[-1].output[0]], ["pool"]))
    elif pool:
        nodes.append(helper.make_node({"max": "MaxPool", "avg": "AveragePool"}[pool],
                                      [nodes[-1].output[0]], ["pool"], kernel_shape=[2, 2],
                                      strides=[2, 2]))
    nodes[-1].output[0] = zoo.OUTPUT
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info(zoo.INPUT, TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(zoo.OUTPUT, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def check(model, x, configs=None):
    """Build ``model`` for the array (``configs``: layer index -> config pinned), run it;
    bit-exact with the integer reference, within one output step of onnxruntime. Returns the
    report."""
    mod = from_onnx(model, keep_params_in_input=False)
    ex = tvm_aie.build(mod, configs=configs)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    step = zoo.output_scale(model)
    assert np.abs(y - zoo.run_onnxruntime(model, x)).max() <= step * 1.001
    return tvm_aie.report(ex)


@st.composite
def conv_specs(draw):
    kind = draw(st.sampled_from(["standard", "depthwise", "pointwise"]))
    c, o = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    k = 1 if kind == "pointwise" else draw(st.sampled_from([3, 5]))
    h, w = draw(st.integers(k, 12)), draw(st.integers(k, 12))
    s, p = draw(st.sampled_from([1, 2])), draw(st.integers(0, k // 2))
    groups = c if kind == "depthwise" else 1
    o = c if kind == "depthwise" else o
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    pool = draw(st.sampled_from([None, "max", "avg", "gap"]))
    # the fused max-pool must tile the output; a 2x2 pooling layer needs 2 rows and columns
    assume(pool is None or pool == "gap" or (ho % 2 == 0 and wo % 2 == 0 and ho >= 2))
    return dict(c=c, h=h, w=w, o=o, k=k, s=s, p=p, groups=groups, bias=draw(st.booleans()),
                act=draw(st.sampled_from([None, "relu", "clip"])), pool=pool)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_specs(), st.integers(0, 100))
def test_int16_conv_is_bit_exact_over_shapes(spec, seed):
    model = zoo.quantize(float_conv(**spec, seed=seed), (1, spec["c"], spec["h"], spec["w"]),
                         quant="int16")
    x = np.random.default_rng(seed + 1).standard_normal(
        (1, spec["c"], spec["h"], spec["w"])).astype(np.float32)
    rep = check(model, x)
    assert rep.offloaded_share == 1.0
    layers = [layer for s in rep.subgraphs for layer in s.layers]
    assert {layer["precision"] for layer in layers} == {"int16xint8"}
    # a max-pool joins the conv's layer; an average pool is a layer of its own
    assert len(layers) == 1 + (spec["pool"] in ("avg", "gap"))


@pytest.mark.parametrize("spec", [
    dict(c=8, h=12, w=12, o=8, k=3, s=1, p=1, groups=1, bias=True, act="relu", pool="max"),
    dict(c=8, h=12, w=10, o=8, k=3, s=2, p=1, groups=8, bias=True, act="clip", pool=None)])
def test_int16_conv_on_two_tiles(spec):
    """Output channels split over two tiles (whole groups each for the depthwise conv), bands of
    two rows: each tile's int64 bias, multipliers and shifts are its own channels'."""
    model = zoo.quantize(float_conv(**spec, seed=3), (1, spec["c"], spec["h"], spec["w"]),
                         quant="int16")
    x = np.random.default_rng(4).standard_normal(
        (1, spec["c"], spec["h"], spec["w"])).astype(np.float32)
    rep = check(model, x, configs={0: conv2d.ConvConfig(2, 2, True, False)})
    (layer,) = rep.subgraphs[0].layers
    assert layer["config"]["n_par"] == 2 and len(layer["tiles"]) == 2


@pytest.mark.parametrize("name", ["lenet", "mobilenet_block"])
def test_zoo_cnn_in_int16(name):
    """LeNet (conv, max-pool, flatten and a dense head) and the MobileNetV2 block (pointwise,
    depthwise with ReLU6, pointwise and the residual add in int16) on the array."""
    model = zoo.onnx_model(name, quant="int16")
    rep = check(model, zoo.sample_input(name))
    assert rep.offloaded_share >= 0.95
    layers = [layer for s in rep.subgraphs for layer in s.layers if layer.get("op") != "flatten"]
    assert {layer["precision"] for layer in layers} == {"int16xint8"}
    if name == "mobilenet_block":
        assert any("skip connection" in e for s in rep.subgraphs for e in s.onchip_intermediates)


def test_aie1_keeps_int16_convs_on_the_cpu(caplog):
    """AIE1 has no int16 x int8 intrinsic: every conv stays on the CPU, logged, and the model is
    still correct (the residual add of two dequantised tensors is an fp32 add, which AIE1 runs)."""
    model = zoo.onnx_model("mobilenet_block", quant="int16")
    mod = from_onnx(model, keep_params_in_input=False)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        parted = partition_for_aie(mod, "aie/vck190")
    assert "aie.conv2d" not in parted.script() and "aie.pool2d" not in parted.script()
    rejected = [m for m in caplog.messages if "relax.nn.conv2d stays on the CPU" in m]
    assert len(rejected) == 3 and all("no mmul intrinsic for int16xint8" in m for m in rejected)
    x = zoo.sample_input("mobilenet_block")
    ex = tvm_aie.build(mod, target="aie/vck190")
    assert tvm_aie.report(ex).offloaded_share == 0.0
    y = _run(ex, x)
    assert np.abs(y - zoo.run_onnxruntime(model, x)).max() <= zoo.output_scale(model) * 1.001


def test_int16_conv_cycles_use_the_catalogs_int16x8_rate():
    """One 3x3 conv on one tile, one call: the kernel's cycles are the conv cycle model's at the
    int16xint8 precision (AIE-ML: 128 MAC/cycle, half int8's 256), above the MAC bound at that
    rate, and more than the same layer's in int8."""
    dev = get_device()
    cycles = {}
    for precision in ("int8", "int16xint8"):
        mod = from_onnx(zoo.conv_layer(8, 8, 16, 16, precision=precision),
                        keep_params_in_input=False)
        (sub,) = tvm_aie.report(tvm_aie.build(mod)).subgraphs
        (layer,) = sub.layers
        assert layer["precision"] == precision and sub.tiles == 1 and layer["blocks"] == 1
        cycles[precision] = layer["kernel_cycles_per_block"]
    macs = 16 * 8 * 8 * 16 * 9
    assert cycles["int16xint8"] == conv2d_cycles(dev, "int16xint8", 1, 16, 16, 3, 3, 8, 8, "int16",
                                                 (1, 1), False)
    assert dev.peak_macs_per_cycle("int16xint8") * 2 == dev.peak_macs_per_cycle("int8")
    assert cycles["int16xint8"] >= macs / dev.peak_macs_per_cycle("int16xint8")
    assert cycles["int16xint8"] > cycles["int8"]


def test_tuner_measures_int16_conv_tasks():
    """The conv tuning task sizes and measures int16xint8 workloads (2-byte bands and blocks), a
    residual one behind its carrier conv too."""
    dev = get_device()
    for residual in (False, True):
        wl = conv2d.ConvWorkload(8, 16, 16, 8, 3, 3, (1, 1), (1, 1, 1, 1), 1, "int16xint8",
                                 residual=residual)
        task = ConvTask(wl, dev.name)
        cfg = task.default_config()
        band = {n: s for n, s, _ in conv2d.tile_buffers(wl, cfg)}["input band A"]
        assert band == 8 * conv2d.band_rows(wl, cfg.th) * wl.w_read * 2
        result = measure(wl, cfg.to_dict(), dev.name)
        assert result["error"] is None and result["cycles"] > 0
