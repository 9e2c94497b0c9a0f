"""A transformer encoder layer kept on chip as one AIE program: the Q/K/V projections, the heads
split and merge (DMA patterns on memory-tile buffers, keys transposed), both attention matmuls,
softmax, the output projection, residual adds, layer norms and the feed-forward block, with every
tensor between them in a memory tile (lower_net's DAG of parts). Devices too small for it split
it into programs that hand their tensors over through DDR, and still match."""

import logging

import numpy as np
import onnx
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.codegen.lower_net import _Memtiles
from tvm_aie.codegen.resources import ResourceError
from tvm_aie.reference import build_reference
from tvm_aie.report import programs
from tvm_aie.target import get_device

FP32_TOL, BF16_TOL = 1e-4, 2e-2  # relative to the largest output (test_bf16_attention's bf16)
# the zoo layer's tensors between parts: Q, K, V (read through heads), scores, probabilities,
# the merged heads, the output projection, the residual add, layer norm 0 (read twice), the FFN's
# hidden layer and GELU, its output projection and the second residual add
SEAMS = 13


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _close(y, ref, tol):
    assert np.abs(y - ref).max() <= tol * np.abs(ref).max()


def encoder_layer(batch: int, seq: int, width: int, heads: int, ffn: int, seed: int = 0):
    """A post-norm encoder layer as zoo's ``transformer`` writes it (ONNX opset 20), any sizes."""
    rng = np.random.default_rng(seed)
    nodes, inits, hd = [], [], width // heads

    def const(value):
        name = f"c{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind, inputs, **attrs):
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def dense(x, k, n):
        w = (rng.standard_normal((k, n)) * np.sqrt(2 / k)).astype(np.float32)
        return op("Add", [op("MatMul", [x, const(w)]),
                          const((rng.standard_normal(n) * 0.1).astype(np.float32))])

    def norm(x):
        return op("LayerNormalization", [
            x, const((1 + 0.1 * rng.standard_normal(width)).astype(np.float32)),
            const((0.1 * rng.standard_normal(width)).astype(np.float32))], axis=-1, epsilon=1e-5)

    split = const(np.array([-1, seq, heads, hd], np.int64))
    qkv = [op("Transpose", [op("Reshape", [dense("x", width, width), split])], perm=perm)
           for perm in ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3])]
    scores = op("Mul", [op("MatMul", qkv[:2]), const(np.float32(1 / np.sqrt(hd)))])
    ctx = op("MatMul", [op("Softmax", [scores], axis=-1), qkv[2]])
    ctx = op("Reshape", [op("Transpose", [ctx], perm=[0, 2, 1, 3]),
                         const(np.array([-1, seq, width], np.int64))])
    h = norm(op("Add", ["x", dense(ctx, width, width)]))
    norm(op("Add", [h, dense(op("Gelu", [dense(h, width, ffn)]), ffn, width)]))
    nodes[-1].output[0] = "y"
    shape = [batch, seq, width]
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                         shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def _zoo(quant=None):
    model = zoo.onnx_model("transformer", quant)
    return model, from_onnx(model, keep_params_in_input=False), \
        zoo.sample_input("transformer", seed=2)


def test_fp32_transformer_is_one_program(caplog):
    model, mod, x = _zoo()
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(mod)
    assert "stays on the CPU" not in caplog.text  # the heads' reshapes and transposes too
    y = _run(ex, x)
    _close(y, _run(tvm.compile(mod, target="llvm"), x), FP32_TOL)
    _close(y, zoo.run_onnxruntime(model, x), FP32_TOL)
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share >= 0.95 and len(rep.subgraphs) == 1
    (sub,) = rep.subgraphs
    edges = sub.onchip_intermediates
    assert len(edges) == SEAMS and all("memory tile" in edge for edge in edges)
    # Q and V split into heads, K split and transposed, the attention output merged again
    assert sum(" -> heads" in edge for edge in edges) == 4
    ops = [layer.get("op") for layer in sub.layers]
    assert ops.count("bmm") == 2 and ops.count("layernorm") == 2 and ops.count("add") == 2
    # the program's only DDR tensors are the layer's input and output
    ((_, program),) = programs(ex)[1]
    assert [(t.role, t.valid_shape) for t in program.ddr] == [("input", [16, 64]),
                                                              ("output", [16, 64])]


def test_bf16_transformer_is_one_program():
    _, mod, x = _zoo()
    ex = tvm_aie.build(mod, precision="bf16")
    _close(_run(ex, x), _run(tvm.compile(mod, target="llvm"), x), BF16_TOL)
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share >= 0.95 and len(rep.subgraphs) == 1
    ((_, program),) = programs(ex)[1]
    seams = [buf for buf in program.buffers if buf.name.endswith(".out")]
    assert len(seams) == SEAMS and {buf.dtype for buf in seams} == {"bfloat16"}


def test_int8_transformer_programs_and_bit_exact():
    """int8 QDQ: 4 programs, not 1. The heads (reshapes and transposes between QDQ pairs of one
    scale) are DMA patterns as in fp32, but the softmax and both layer norms are float functions
    between a dequantize and a quantize: there is no int8 softmax or layer norm on the array, so
    the softmax runs as an fp32 program of its own between a dequantize and a quantize on the
    CPU (with the scores' scale multiply, whose scalar is itself a dequantized constant) and the
    layer norms run on the CPU. The graph is cut there: Q and K projections with the scores'
    matmul; the softmax; V projection, the context matmul, heads merge, output projection and
    residual add; the FFN with its residual add."""
    model, mod, x = _zoo("int8")
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    np.testing.assert_array_equal(y, zoo.run_onnxruntime(model, x))
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share >= 0.95 and len(rep.subgraphs) == 4
    ops = [[layer.get("op", "dense") for layer in sub.layers] for sub in rep.subgraphs]
    assert ops == [["dense", "dense", "bmm"], ["dense", "bmm", "dense", "add"],
                   ["dense", "lut", "dense", "add"], ["softmax"]]
    assert sum(" -> heads" in edge for sub in rep.subgraphs
               for edge in sub.onchip_intermediates) == 4


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([(1, 16), (2, 8), (4, 8)]), st.sampled_from([8, 16]),
       st.sampled_from([1, 2]), st.sampled_from([32, 64]), st.integers(0, 9))
def test_encoder_layers_match_cpu(heads_hd, seq, batch, ffn, seed):
    heads, hd = heads_hd
    model = encoder_layer(batch, seq, heads * hd, heads, ffn, seed)
    mod = from_onnx(model, keep_params_in_input=False)
    x = np.random.default_rng(seed).standard_normal((batch, seq, heads * hd)).astype(np.float32)
    ex = tvm_aie.build(mod)
    _close(_run(ex, x), _run(tvm.compile(mod, target="llvm"), x), FP32_TOL)
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share == 1.0 and len(rep.subgraphs) == 1
    assert len(rep.subgraphs[0].onchip_intermediates) == SEAMS


@pytest.mark.parametrize("device,count", [("aie-ml/npu1", 4), ("aie-mlv2/npu2", 2)])
def test_small_device_splits_and_matches(device, count):
    """NPU1's 4 columns hold a quarter of the layer, NPU2's 8 its attention block: the layer is
    split where it does not fit, each program saying why, the cuts handing over every tensor
    that crosses them (the input x goes to the programs reading it)."""
    model, mod, x = _zoo()
    ex = tvm_aie.build(mod, target=device)
    _close(_run(ex, x), zoo.run_onnxruntime(model, x), FP32_TOL)
    rep = tvm_aie.report(ex)
    assert len(rep.subgraphs) == count and rep.offloaded_share == 1.0
    assert all("do not fit" in sub.split for sub in rep.subgraphs[:-1])
    assert rep.subgraphs[-1].split is None
    (_, progs) = programs(ex)
    assert sum(p.meta["writes"] != ["row17"] for _, p in progs) == count - 1


def test_device_without_memory_tiles_keeps_heads_on_the_cpu(caplog):
    """AIE1 (VC1902) has no memory tiles to hold a seam: the heads' reshape and transpose stay on
    the CPU with that reason, every layer is a program of its own with DDR between them, and the
    layer still matches."""
    model, mod, x = _zoo()
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(mod, target="aie/vck190")
    assert "vc1902 has no memory tiles to hold the heads between two layers" in caplog.text
    _close(_run(ex, x), zoo.run_onnxruntime(model, x), FP32_TOL)
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share == 1.0 and len(rep.subgraphs) > 1
    assert all(not sub.onchip_intermediates for sub in rep.subgraphs)


def test_heads_not_read_by_a_batched_matmul_stay_on_the_cpu(caplog):
    """A split into heads that the model returns (no batched matmul reads it) is no data
    movement of an AIE program: it stays on the CPU with its reason."""
    w = numpy_helper.from_array(np.eye(16, dtype=np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 8, 2, 8], np.int64), "s")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Reshape", ["h", "s"], ["r"]),
         helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])], "heads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [w, shape])
    mod = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                    keep_params_in_input=False)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(mod)
    assert "relax.permute_dims stays on the CPU: it is not read by a batched matmul of two " \
        "activations alone" in caplog.text
    x = np.random.default_rng(0).standard_normal((1, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(ex, x), x.reshape(1, 8, 2, 8).transpose(0, 2, 1, 3),
                               rtol=1e-6)


def test_seam_without_free_memory_tile_channels_is_one_clear_error():
    memtiles = _Memtiles(get_device("aie-ml/npu1"))
    with pytest.raises(ResourceError, match="no memory tile of npu1 has 7 S2MM and 1 MM2S DMA "
                                            "channels, a lock and 64 B free for the seam d0.out"):
        memtiles.pick("d0.out", 0, 7, 1, 64)


def test_a_graph_function_returns_several_tensors():
    """``a = x @ w1`` feeds the offloaded ``a + x @ w2`` and a Sin on the CPU: the program
    returns both ``a`` (copied out of its memory tile, which the add reads) and the sum."""
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), n)
              for n in ("w1", "w2"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"]),
         helper.make_node("MatMul", ["x", "w2"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Sin", ["a"], ["s"]),
         helper.make_node("Mul", ["c", "s"], ["y"])], "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])], [w1, w2])
    mod = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                    keep_params_in_input=False)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    ex = tvm_aie.build(mod)
    _close(_run(ex, x), _run(tvm.compile(mod, target="llvm"), x), FP32_TOL)
    first = programs(ex)[1][0][1]
    assert [t.name for t in first.outputs()] == ["output", "output1"]
    assert [layer.get("op", "dense") for layer in first.meta["layers"]] == ["dense", "dense", "add"]
