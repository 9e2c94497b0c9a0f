"""What the partitioner offloads, what it leaves on the CPU, and what the layer reader reads."""

import logging

import numpy as np
import pytest
from onnx import numpy_helper
from tvm import relax, tirx
from tvm.relax.frontend.onnx import from_onnx

from tvm_aie import zoo
from tvm_aie.codegen.layers import count_macs, read_layer_graph, read_layers
from tvm_aie.partition import partition_for_aie


def _import(name, **kw):
    return from_onnx(zoo.onnx_model(name, **kw), keep_params_in_input=False)


def _aie_funcs(mod):
    return [f for _, f in sorted(mod.functions.items(), key=lambda kv: kv[0].name_hint)
            if isinstance(f, relax.Function) and f.attrs is not None and
            f.attrs.get("Codegen") == "aie"]


def _main_ops(mod):
    return [b.value.op.name for block in mod["main"].body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and hasattr(b.value.op, "name")]


def _composites(func):
    return [b.value.attrs["Composite"] for block in func.body.blocks for b in block.bindings
            if isinstance(b.value, relax.Function)]


@pytest.mark.parametrize("name", ["jet_mlp", "jet_mlp_matmul"])
def test_fp32_mlp_is_one_function(name):
    mod = partition_for_aie(_import(name))
    (func,) = _aie_funcs(mod)
    assert _composites(func) == ["aie.dense_fp32_bias_relu"] * 3 + ["aie.dense_fp32_bias"]
    assert _main_ops(mod) == []  # only the call of the offloaded function is left
    layers = read_layers(func)
    assert [(layer.m, layer.k, layer.n) for layer in layers] == [
        (1, 16, 64), (1, 64, 32), (1, 32, 32), (1, 32, 5)]
    assert [layer.relu for layer in layers] == [True, True, True, False]


@pytest.mark.parametrize("name", ["jet_mlp", "jet_mlp_matmul"])
def test_fp32_layers_reproduce_onnxruntime(name):
    """A numpy forward pass over the extracted layers equals the ONNX model: weights come out as
    [K, N] whether the model stores them transposed (Gemm transB=1) or not (MatMul)."""
    model = zoo.onnx_model(name, batch=3)
    graph = read_layer_graph(_aie_funcs(partition_for_aie(from_onnx(model)))[0])
    x = zoo.sample_input(name, batch=3, seed=7)
    vals = {0: x}
    for layer in graph.layers:
        y = vals[layer.input] @ layer.weight + layer.bias
        vals[layer.name] = np.maximum(y, 0) if layer.relu else y
    np.testing.assert_allclose(vals[graph.output], zoo.run_onnxruntime(model, x), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("per_channel", [True, False])
def test_qdq_mlp_is_one_int8_function(per_channel):
    model = zoo.onnx_model("jet_mlp", quant="int8", per_channel=per_channel)
    mod = partition_for_aie(from_onnx(model, keep_params_in_input=False))
    (func,) = _aie_funcs(mod)
    assert func.params[0].ty.dtype == "int8" and func.ret_ty.dtype == "int8"
    assert _main_ops(mod) == ["relax.quantize", "relax.dequantize"]  # model input and output
    layers = read_layers(func)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    gemm0 = next(n for n in model.graph.node if n.op_type == "Gemm")
    w_dq = next(n for n in model.graph.node if n.output[0] == gemm0.input[1])
    first = layers[0]
    assert first.precision == "int8" and first.weight.dtype == np.int8
    np.testing.assert_array_equal(first.weight, inits[w_dq.input[0]].T)
    np.testing.assert_allclose(first.w_scale, np.broadcast_to(inits[w_dq.input[1]], (64,)))
    assert (len(np.unique(first.w_scale)) > 1) == per_channel
    for layer, nxt in zip(layers, layers[1:]):  # int8 hand-over: same scale on both sides
        assert (layer.out_scale, layer.out_zp) == (nxt.in_scale, nxt.in_zp)
    assert all(layer.bias.dtype == np.int32 for layer in layers)
    assert all(np.all((m >= 2**30) & (m < 2**31)) for m in (layer.mult for layer in layers))


def test_qdq_matmul_add_is_one_region():
    """onnxruntime quantises the output of a MatMul before a separate Add, so the bias add is an
    int8 add of its own: it joins the dense layer's composite (its epilogue's second step), and
    the four layers are one region with no add left on the CPU."""
    mod = partition_for_aie(_import("jet_mlp_matmul", quant="int8"))
    funcs = _aie_funcs(mod)
    assert [_composites(f) for f in funcs] == [["aie.dense_int8_addq"] * 4]
    assert _main_ops(mod).count("relax.add") == 0


def test_unsupported_op_splits_regions(caplog):
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        mod = partition_for_aie(_import("mlp_sin"))
    funcs = _aie_funcs(mod)
    assert len(funcs) == 2
    assert [[(layer.k, layer.n) for layer in read_layers(f)] for f in funcs] in (
        [[(16, 32)], [(32, 8)]], [[(32, 8)], [(16, 32)]])
    assert _main_ops(mod) == ["relax.sin"]
    assert "relax.sin stays on the CPU" in caplog.text


def test_symbolic_batch_stays_on_cpu(caplog):
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        mod = partition_for_aie(_import("jet_mlp", quant="int8", batch="N"))
    assert _aie_funcs(mod) == []
    assert _main_ops(mod).count("relax.matmul") == 4
    assert "needs static shapes" in caplog.text


def test_weight_zero_point_rejected(caplog):
    model = zoo.onnx_model("jet_mlp", quant="int8")
    gemm0 = next(n for n in model.graph.node if n.op_type == "Gemm")
    w_dq = next(n for n in model.graph.node if n.output[0] == gemm0.input[1])
    zp = next(t for t in model.graph.initializer if t.name == w_dq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.ones(64, np.int8), zp.name))
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        mod = partition_for_aie(from_onnx(model, keep_params_in_input=False))
    (func,) = _aie_funcs(mod)
    assert [layer.k for layer in read_layers(func)] == [64, 32, 32]
    assert "weight zero point is not 0" in caplog.text


def _matmul_module(x_shape, w, weight_is_param=False, leak=False):
    x = relax.Var("x", relax.TensorType(x_shape, str(w.dtype)))
    wv = relax.Var("w", relax.TensorType(w.shape, str(w.dtype))) if weight_is_param else \
        relax.const(w)
    bb = relax.BlockBuilder()
    with bb.function("main", [x, wv] if weight_is_param else [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, wv))
            z = bb.emit(relax.op.add(y, relax.const(np.ones(w.shape[1], w.dtype))))
            out = bb.emit_output(relax.Tuple([z, y]) if leak else z)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("x_shape, dtype, weight_is_param, offloaded", [
    ((2, 16), "float32", False, True),
    ((2, 16), "float32", True, False),  # weight is not a constant
    ((2, 16), "float16", False, False),
    ((3, 2, 16), "float32", False, True),  # [B, S, K] x [K, N]: the [B*S, K] matrix
    ((tirx.Var("n", "int64"), 16), "float32", False, False),
])
def test_checks(x_shape, dtype, weight_is_param, offloaded):
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(dtype)
    mod = partition_for_aie(_matmul_module(x_shape, w, weight_is_param))
    assert bool(_aie_funcs(mod)) == offloaded


def test_leaking_intermediate_keeps_add_on_cpu():
    w = np.random.default_rng(0).standard_normal((16, 8)).astype("float32")
    mod = partition_for_aie(_matmul_module((2, 16), w, leak=True))
    (func,) = _aie_funcs(mod)
    assert _composites(func) == ["aie.dense_fp32"]
    assert _main_ops(mod) == ["relax.add"]


def test_count_macs():
    assert count_macs(_import("jet_mlp")) == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
    assert count_macs(_import("mlp_1024", batch=2)) == 2 * (16 * 1024 + 1024 * 1024 + 1024 * 8)
    mod = _import("mlp_sin", quant="int8")
    assert count_macs(mod) == count_macs(partition_for_aie(mod)) == 16 * 32 + 32 * 8


@pytest.mark.parametrize("quant", [None, "int8"])
def test_lenet_flatten_joins_the_region(quant):
    """LeNet's Flatten (in int8 between a dequantize and a quantize of one scale) reads an
    offloaded pool's output, so the conv part and the dense head are one function."""
    (func,) = _aie_funcs(partition_for_aie(_import("lenet", quant=quant)))
    kinds = [c.split("_")[0] for c in _composites(func)]
    assert kinds == ["aie.conv2d", "aie.conv2d", "aie.flatten", "aie.dense", "aie.dense",
                     "aie.dense"]
    flatten = read_layers(func)[2]
    assert (flatten.in_shape, flatten.out_shape, flatten.input) == ((1, 16, 4, 4), (1, 256),
                                                                     "conv1")


def test_flatten_of_a_cpu_tensor_stays_on_cpu(caplog):
    """A reshape whose input is not an offloaded conv/pool's output has nothing to join."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 2, 3, 4), "float32"))
    w = np.ones((24, 5), np.float32)
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.reshape(relax.op.sin(x), (1, 24)))
            out = bb.emit_output(bb.emit(relax.op.matmul(y, relax.const(w))))
        bb.emit_func_output(out)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        mod = partition_for_aie(bb.get())
    assert "relax.reshape" in _main_ops(mod)
    assert "not the output of a conv or pooling layer on the array" in caplog.text
