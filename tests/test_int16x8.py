"""int16 activations x int8 weights (issue 4's third precision): onnxruntime's QDQ with
``activation_type=QInt16``, ``weight_type=QInt8`` runs on the array's int16 x int8 datapath
(int64 accumulation, requantised to int16 by :func:`tvm_aie.quant.requantize`), bit-exact with the
integer CPU reference over shapes, and within one output quantisation step of onnxruntime."""

import logging

import numpy as np
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.sim.kernels import CALL_OVERHEAD, GROUP, GROUP_OVERHEAD, matmul_cycles
from tvm_aie.target import get_device


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _qdq_dense(m, k, n, bias, per_channel, x_zp, y_zp, seed):
    """One QDQ dense layer with int16 activations as onnxruntime writes it (DQ -> MatMul (+ DQ
    bias) -> Q), scales random."""
    rng = np.random.default_rng(seed)
    s_w = rng.uniform(0.002, 0.02, n if per_channel else ()).astype(np.float32)
    s_x, s_y = np.float32(rng.uniform(1e-4, 1e-3)), np.float32(rng.uniform(1e-3, 1e-2))
    inits = [numpy_helper.from_array(rng.integers(-128, 128, (k, n), dtype=np.int8), "w"),
             numpy_helper.from_array(s_w, "s_w"),
             numpy_helper.from_array(np.zeros(s_w.shape, np.int8), "zp_w"),
             numpy_helper.from_array(np.array(s_x), "s_x"),
             numpy_helper.from_array(np.array(s_y), "s_y"),
             numpy_helper.from_array(np.array(x_zp, np.int16), "zp_x"),
             numpy_helper.from_array(np.array(y_zp, np.int16), "zp_y")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp_x"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"], axis=1),
             helper.make_node("MatMul", ["xf", "wf"], ["mm"])]
    out = "mm"
    if bias:
        s_b = (s_x * s_w).astype(np.float32)
        inits += [numpy_helper.from_array(rng.integers(-50000, 50000, n).astype(np.int32), "b"),
                  numpy_helper.from_array(s_b, "s_b")]
        nodes += [helper.make_node("DequantizeLinear", ["b", "s_b"], ["bf"], axis=0),
                  helper.make_node("Add", ["mm", "bf"], ["mmb"])]
        out = "mmb"
    nodes.append(helper.make_node("QuantizeLinear", [out, "s_y", "zp_y"], ["y"]))
    graph = helper.make_graph(nodes, "int16x8", [helper.make_tensor_value_info(
        "x", TensorProto.INT16, [m, k])], [helper.make_tensor_value_info(
            "y", TensorProto.INT16, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(1, 300), st.integers(1, 70), st.booleans(), st.booleans(),
       st.integers(-3000, 3000), st.integers(-32768, 1000), st.integers(0, 100))
def test_int16x8_dense_is_bit_exact_over_shapes(m, k, n, bias, per_channel, x_zp, y_zp, seed):
    mod = from_onnx(_qdq_dense(m, k, n, bias, per_channel, x_zp, y_zp, seed),
                    keep_params_in_input=False)
    x = np.random.default_rng(seed).integers(-32768, 32768, (m, k), dtype=np.int16)
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    assert y.dtype == np.int16
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [layer["precision"] for layer in sub.layers] == ["int16xint8"]
    assert sub.peak_macs_per_cycle == sub.tiles * get_device().peak_macs_per_cycle("int16xint8")


def _quantized_mlp():
    """A two-layer MLP (Gemm + Relu, MatMul) quantised by onnxruntime with int16 activations and
    per-tensor int8 weights."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((24, 32)).astype(np.float32) * 0.3, rng.standard_normal(32)
    w2 = rng.standard_normal((32, 10)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1.astype(np.float32), "b1"),
         numpy_helper.from_array(w2, "w2")])
    return zoo.quantize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]),
                        (8, 24), per_channel=False, quant="int16")


def test_onnxruntime_int16_model_within_one_step():
    """Against onnxruntime with graph optimisations off, which runs the QDQ operators as written
    (measured: its default optimiser's result on int16 QDQ differs from a float evaluation of the
    same graph by ~200 output steps, while the unoptimised one agrees with it to 1e-7)."""
    model = _quantized_mlp()
    mod = from_onnx(model, keep_params_in_input=False)
    ex = tvm_aie.build(mod)
    x = np.random.default_rng(1).standard_normal((8, 24)).astype(np.float32)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    assert np.abs(y - zoo.run_onnxruntime(model, x)).max() <= zoo.output_scale(model) * 1.001
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share == 1.0
    assert {layer["precision"] for s in rep.subgraphs for layer in s.layers} == {"int16xint8"}


def test_aie1_keeps_int16x8_on_the_cpu(caplog):
    """AIE1's catalog has no int16 x int8 intrinsic: the layer stays on the CPU, logged."""
    mod = from_onnx(_qdq_dense(8, 16, 16, True, False, 0, 0, 0), keep_params_in_input=False)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        parted = partition_for_aie(mod, "aie/vck190")
    assert not any(f.attrs is not None and "Codegen" in f.attrs
                   for f in parted.functions.values())
    assert "no mmul intrinsic for int16xint8" in caplog.text


def test_int16x8_cycle_model_is_the_int8_one_at_its_rate():
    """Same terms as int8: 64^3 on AIE-ML is MAC-bound at the catalog's 128 MAC/cycle (the
    int16 A tiles double the A loads, which stay under the MAC time) and int16 output is
    stored by SRS inside the loop."""
    dev = get_device("ve2802")
    mm, _, mn = dev.mmul_shape("int16xint8")
    groups = (64 // (GROUP * mm)) * (64 // (GROUP * mn))
    assert matmul_cycles(dev, "int16xint8", 64, 64, 64, "int16", False) == \
        CALL_OVERHEAD + groups * GROUP_OVERHEAD + 64 ** 3 // 128
