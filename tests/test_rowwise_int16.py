"""Row-wise layers with int16 activations (onnxruntime's ``QInt16``) and the fp32 row-wise cycle
model.

int16 QDQ adds and multiplies of two tensors requantise in integers as int8 ones do
(:func:`tvm_aie.quant.requantize_add`, :func:`~tvm_aie.quant.requantize_mul`); int16 GELU /
sigmoid / tanh / scalar multiply are computed in float32 on the tile between the dequantise and
the quantise (a table of every int16 input would not fit a tile).
Both are bit-exact with the integer CPU reference and within one output step of the float QDQ
graph (TVM on the CPU, onnxruntime with optimisations off), on AIE-ML and on AIE1, whose vector
unit does int16 and fp32 natively (AM009). fp32 passes cost what the catalog's
``float32_vector`` says: 8 native lanes on AIE1, 16 lanes with each multiply emulated by 6 bf16
products on AIE-ML.
"""

import math

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.partition import partition_with_reasons
from tvm_aie.reference import build_reference
from tvm_aie.sim.kernels import CALL_OVERHEAD
from tvm_aie.sim.kernels_rows import MUL_PASSES, PASSES, QDQ_PASSES
from tvm_aie.target import get_device

OPS = ["add", "mul", "gelu", "sigmoid", "tanh", "scale"]


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def _run(ex, *xs):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, xs)).numpy()


def qdq_model(shape, op, scales, zps, scalar=-0.37, out_dtype="int16"):
    """``q(f(dq(q(a))))``, or ``q(dq(q(a)) + dq(q(b)))`` for ``op="add"`` (``*`` for
    ``"mul"``), with int16 activations; ``scales``/``zps``: a's, b's and the output's."""
    a = relax.Var("a", relax.TensorType(shape, "float32"))
    b = relax.Var("b", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    (s_a, s_b, s_y), (z_a, z_b, z_y) = scales, zps
    with bb.function("main", [a, b]):
        with bb.dataflow():
            qa = bb.emit(relax.op.quantize(a, _c(s_a), _c(z_a, "int16"), out_dtype="int16"))
            da = relax.op.dequantize(qa, _c(s_a), _c(z_a, "int16"))
            if op in ("add", "mul"):
                qb = bb.emit(relax.op.quantize(b, _c(s_b), _c(z_b, "int16"), out_dtype="int16"))
                y = (relax.op.add if op == "add" else relax.op.multiply)(
                    da, relax.op.dequantize(qb, _c(s_b), _c(z_b, "int16")))
            elif op == "scale":
                y = relax.op.multiply(da, _c(scalar))
            else:
                y = {"gelu": relax.op.nn.gelu, "sigmoid": relax.op.sigmoid,
                     "tanh": relax.op.tanh}[op](da)
            y = bb.emit(relax.op.quantize(bb.emit(y), _c(s_y), _c(z_y, out_dtype),
                                          out_dtype=out_dtype))
            out = bb.emit_output(relax.op.dequantize(y, _c(s_y), _c(z_y, out_dtype)))
        bb.emit_func_output(out)
    return bb.get()


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 24), min_size=1, max_size=3), st.sampled_from(OPS),
       st.lists(st.floats(2e-5, 2e-3), min_size=3, max_size=3),
       st.lists(st.integers(-300, 300), min_size=3, max_size=3),
       st.sampled_from(["aie-ml/vek280", "aie/vck190"]), st.integers(0, 50))
def test_int16_rowwise_is_bit_exact(shape, op, scales, zps, target, seed):
    """Over shapes, scales, zero points and both generations: the array equals the integer
    reference bit for bit and the float QDQ graph within one output step."""
    scales = [float(np.float32(s)) for s in scales]
    mod = qdq_model(tuple(shape), op, scales, zps)
    rng = np.random.default_rng(seed)
    # inputs spread over the int16 range of the smaller input scale (saturating some)
    a, b = (rng.normal(0, 12000 * min(scales[:2]), shape).astype(np.float32) for _ in range(2))
    ex = tvm_aie.build(mod, target=target)
    y = _run(ex, a, b)
    np.testing.assert_array_equal(y, _run(build_reference(mod), a, b))
    assert np.abs(y - _run(tvm.compile(mod, target="llvm"), a, b)).max() <= scales[2] * 1.001
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [(layer["op"], layer["precision"]) for layer in sub.layers] == [(op, "int16")]


def _onnx_gate(op, join, shape):
    """fp32 ONNX ``join(x, op(x))`` (op: Sigmoid or Tanh, join: Add or Mul; Sigmoid and Mul is
    SiLU): after quantisation two int16 row-wise layers, the function and the QDQ add or
    multiply of two tensors of different scales."""
    x = helper.make_tensor_value_info(zoo.INPUT, TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node(op, [zoo.INPUT], ["f"]),
                               helper.make_node(join, [zoo.INPUT, "f"], ["y"])],
                              "gate", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("op,join", [("Sigmoid", "Add"), ("Tanh", "Add"), ("Sigmoid", "Mul")])
def test_onnxruntime_qint16_within_one_step(op, join):
    """onnxruntime's QInt16 QDQ of ``join(x, op(x))``: both layers on the array, bit-exact with
    the reference, within one output step of onnxruntime with optimisations off."""
    shape = (16, 64)
    model = zoo.quantize(_onnx_gate(op, join, shape), shape, quant="int16")
    mod = from_onnx(model, keep_params_in_input=False)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 2
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    assert np.abs(y - zoo.run_onnxruntime(model, x)).max() <= zoo.output_scale(model) * 1.001
    rep = tvm_aie.report(ex)
    assert sorted((layer["op"], layer["precision"]) for s in rep.subgraphs
                  for layer in s.layers) == \
        sorted([(op.lower(), "int16"), (join.lower(), "int16")])


def test_int16_in_int8_out_is_not_a_qdq_function():
    """A QDQ GELU from int16 to int8 is neither the int8 table nor the int16 function; its GELU
    still runs on the array in fp32, the dequantize and quantize on the CPU."""
    mod = qdq_model((4, 8), "gelu", [1e-3, 1e-3, 0.05], [0, 0, 0], out_dtype="int8")
    ex = tvm_aie.build(mod)
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [(layer["op"], layer["precision"]) for layer in sub.layers] == [("gelu", "float32")]
    a = np.random.default_rng(0).normal(0, 8, (4, 8)).astype(np.float32)
    y = _run(ex, a, a)
    assert np.abs(y - _run(tvm.compile(mod, target="llvm"), a, a)).max() <= 0.05 * 1.001


def _block_cycles(mod, target):
    ex = tvm_aie.build(mod, target=target)
    (sub,) = tvm_aie.report(ex).subgraphs
    (layer,) = sub.layers
    return layer["config"]["tr"], layer["kernel_cycles_per_block"]


def _fp32_model(shape, op):
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = {"gelu": relax.op.nn.gelu, "softmax": relax.op.nn.softmax,
                 "tanh": relax.op.tanh}[op](x) if op != "add" else relax.op.add(x, x)
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("op", ["gelu", "softmax", "tanh", "add"])
def test_fp32_rowwise_cycles_follow_the_catalog(op):
    """One block of fp32 rows: AIE-ML does 16 lanes per pass (its fp32 accumulator adds) and
    each multiply pass takes 6 cycles (6 bf16 products per fp32 multiply, UG1603); AIE1 does
    8 lanes per pass, multiplies native (AM009)."""
    ml, aie = get_device("aie-ml/vek280"), get_device("aie/vck190")
    assert ml.float32_vector == {"bf16_products_per_mul": 6, "add_lanes": 16}
    assert aie.float32_vector == {"mul_lanes": 8, "add_lanes": 8}
    assert "UG1603" in ml.source_of("float32_vector") and \
        "AM009" in aie.source_of("float32_vector")
    mod = _fp32_model((4, 40), op)
    muls, others = MUL_PASSES[op], PASSES[op] - MUL_PASSES[op]
    tr, cycles = _block_cycles(mod, "aie-ml/vek280")
    assert cycles == CALL_OVERHEAD + math.ceil(tr * 40 / 16) * (others + 6 * muls)
    tr, cycles = _block_cycles(mod, "aie/vck190")
    assert cycles == CALL_OVERHEAD + math.ceil(tr * 40 / 8) * (others + muls)


def test_emulated_fp32_rate_matches_the_catalogs_fp32_macs():
    """On AIE-ML the catalog's 21 fp32 MACs per cycle are its 128 bf16 MACs over the same 6 bf16
    products per fp32 multiply the row-wise model uses."""
    dev = get_device("aie-ml/vek280")
    assert dev.peak_macs_per_cycle("bfloat16") // dev.float32_vector["bf16_products_per_mul"] \
        == dev.peak_macs_per_cycle("float32")


def test_int16_rowwise_cycles():
    """An int16 add or multiply runs at the load width's int16 lanes (AIE-ML: 64 B / 2 = 32); an
    int16 QDQ function is its fp32 passes plus the conversions each way, at the fp32 rates."""
    scales, zps = [1e-3, 2e-3, 3e-3], [0, 0, 0]
    for op in ("add", "mul"):
        tr, cycles = _block_cycles(qdq_model((4, 40), op, scales, zps), "aie-ml/vek280")
        assert cycles == CALL_OVERHEAD + math.ceil(tr * 40 / 32) * PASSES[op]
    tr, cycles = _block_cycles(qdq_model((4, 40), "gelu", scales, zps), "aie-ml/vek280")
    muls = MUL_PASSES["gelu"] + QDQ_PASSES[0]
    others = PASSES["gelu"] - MUL_PASSES["gelu"] + QDQ_PASSES[1]
    assert cycles == CALL_OVERHEAD + math.ceil(tr * 40 / 16) * (others + 6 * muls)


def test_int16_transformer_rowwise_layers_on_the_array():
    """The zoo transformer in int16 QDQ: its residual adds and its GELU (in the feed-forward
    block's program, between two int16xint8 dense layers) are int16 row-wise layers, and the
    whole model is bit-exact with the integer reference."""
    model = zoo.onnx_model("transformer", quant="int16")
    mod = from_onnx(model, keep_params_in_input=False)
    x = zoo.sample_input("transformer")
    ex = tvm_aie.build(mod)
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(mod), x))
    rows = [(layer["op"], layer["precision"]) for s in tvm_aie.report(ex).subgraphs
            for layer in s.layers if layer["name"].startswith("row")]
    assert rows.count(("add", "int16")) == 2 and ("gelu", "int16") in rows


def test_aie_mlv2_has_no_int16_rowwise_layers():
    """AIE-MLv2's catalog has no int16 vector datapath: a QDQ add or function is not an int16
    layer there (the partitioner records why); its float op still runs on the array in fp32,
    the Q/DQ on the CPU, within one output step."""
    scales, zps = [1e-3, 2e-3, 3e-3], [0, 0, 0]
    rng = np.random.default_rng(0)
    a, b = (rng.normal(0, 8, (4, 40)).astype(np.float32) for _ in range(2))
    for op in ("add", "tanh"):
        mod = qdq_model((4, 40), op, scales, zps)
        _, rejected = partition_with_reasons(mod, "aie-mlv2/vek385")
        assert "2ve3858 (aie-mlv2) has no int16 vector datapath in the catalog" in \
            rejected.values()
        ex = tvm_aie.build(mod, target="aie-mlv2/vek385")
        assert [(layer["op"], layer["precision"]) for s in tvm_aie.report(ex).subgraphs
                for layer in s.layers] == [(op, "float32")]
        cpu = _run(tvm.compile(mod, target="llvm"), a, b)
        assert np.abs(_run(ex, a, b) - cpu).max() <= scales[2] * 1.001
