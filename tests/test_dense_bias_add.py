"""A bias added as a separate QDQ Add after a dense layer (onnxruntime's quantiser on MatMul + Add
of a constant: ``q(dq(q(matmul)) + dq(b_q))``) runs inside the dense layer's epilogue: the matmul
requantised to its own int8, then the fixed-point add of the residual add
(:func:`tvm_aie.quant.requantize_add`). So MatMul + Add QDQ models are one AIE program, bit-exact
with the integer CPU reference and with onnxruntime (optimisations off)."""

import logging

import numpy as np
import onnx
import pytest
import tvm
from tvm import relax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

import tvm_aie
from tvm_aie import zoo
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.tune.measure import measure
from tvm_aie.tune.task import extract_tasks

FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(ex, x):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _qdq_matmul_add(m, k, n, s_mid, s_b, s_out, zps, b_lo, b_hi, per_channel, bias_first, seed,
                    gemm_bias=False):
    """``Q(DQ(Q(DQ(x) @ DQ(W))) + DQ(b_q))`` as onnxruntime's quantiser writes MatMul + Add, with
    the given scales, zero points (x, mid, bias, out) and bias integers in [b_lo, b_hi];
    ``gemm_bias``: the matmul has an int32 bias of its own too (Gemm + Add)."""
    rng = np.random.default_rng(seed)
    s_w = rng.uniform(0.002, 0.02, n if per_channel else ()).astype(np.float32)
    zp_x, zp_mid, zp_b, zp_out = zps
    inits = [numpy_helper.from_array(rng.integers(-128, 128, (k, n), dtype=np.int8), "w"),
             numpy_helper.from_array(s_w, "s_w"),
             numpy_helper.from_array(np.zeros(s_w.shape, np.int8), "zp_w"),
             numpy_helper.from_array(rng.integers(b_lo, b_hi + 1, n).astype(np.int8), "b")]
    for name, scale, zp in (("x", 0.02, zp_x), ("mid", s_mid, zp_mid), ("bias", s_b, zp_b),
                            ("out", s_out, zp_out)):
        inits += [numpy_helper.from_array(np.array(scale, np.float32), f"s_{name}"),
                  numpy_helper.from_array(np.array(zp, np.int8), f"zp_{name}")]
    add_in = ["bf", "mmf"] if bias_first else ["mmf", "bf"]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp_x"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"], axis=1),
             helper.make_node("MatMul", ["xf", "wf"], ["mm0" if gemm_bias else "mm"]),
             helper.make_node("QuantizeLinear", ["mm", "s_mid", "zp_mid"], ["mmq"]),
             helper.make_node("DequantizeLinear", ["mmq", "s_mid", "zp_mid"], ["mmf"]),
             helper.make_node("DequantizeLinear", ["b", "s_bias", "zp_bias"], ["bf"]),
             helper.make_node("Add", add_in, ["sum"]),
             helper.make_node("QuantizeLinear", ["sum", "s_out", "zp_out"], ["y"])]
    if gemm_bias:
        inits += [numpy_helper.from_array(rng.integers(-5000, 5000, n).astype(np.int32), "b32"),
                  numpy_helper.from_array((np.float32(0.02) * s_w).astype(np.float32), "s_b32")]
        nodes[3:3] = [helper.make_node("DequantizeLinear", ["b32", "s_b32"], ["b32f"], axis=0),
                      helper.make_node("Add", ["mm0", "b32f"], ["mm"])]
    graph = helper.make_graph(
        nodes, "matmul_add", [helper.make_tensor_value_info("x", TensorProto.INT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _cpu_ops(mod) -> list:
    """The operators ``main`` still runs on the CPU after partitioning."""
    parted = partition_for_aie(mod)
    return [b.value.op.name for block in parted["main"].body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)]


def _float_qdq(model, x):
    """The QDQ graph in float64, both roundings half to even, and for each element whether either
    rounding is within 1e-3 of a step of a tie: there float32 (onnxruntime) and fixed point (the
    array) may round differently, elsewhere both must give the float64 result."""
    c = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    mm = ((x - c["zp_x"]) * c["s_x"]) @ (c["w"] * c["s_w"])
    if "b32" in c:
        mm = mm + c["b32"] * c["s_b32"]
    v1 = mm / c["s_mid"]
    mid = np.clip(np.round(v1) + c["zp_mid"], -128, 127)
    v2 = ((mid - c["zp_mid"]) * c["s_mid"] + (c["b"] - c["zp_bias"]) * c["s_bias"]) / c["s_out"]
    y = np.clip(np.round(v2) + c["zp_out"], -128, 127)
    near = (np.abs(np.abs(v1 - np.floor(v1)) - 0.5) < 1e-3) | \
        (np.abs(np.abs(v2 - np.floor(v2)) - 0.5) < 1e-3)
    return y, near


@FAST
@given(st.integers(1, 24), st.integers(1, 96), st.integers(1, 48),
       st.floats(0.05, 1.0), st.floats(0.001, 0.5), st.floats(0.02, 1.0),
       st.tuples(*[st.integers(-128, 127)] * 4), st.integers(-128, 127), st.integers(0, 255),
       st.booleans(), st.booleans(), st.booleans(), st.integers(0, 1000))
def test_matmul_add_is_one_layer_and_bit_exact(m, k, n, s_mid, s_b, s_out, zps, b_lo, width,
                                               per_channel, bias_first, gemm_bias, seed):
    b_hi = min(127, b_lo + width)
    model = _qdq_matmul_add(m, k, n, s_mid, s_b, s_out, zps, b_lo, b_hi, per_channel, bias_first,
                            seed, gemm_bias)
    mod = tvm_aie.load_onnx(model)
    x = np.random.default_rng(seed).integers(-128, 128, (m, k), dtype=np.int8)
    assert "relax.add" not in _cpu_ops(mod)
    ex = tvm_aie.build(mod)
    (sub,) = tvm_aie.report(ex).subgraphs
    assert len(sub.layers) == 1
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    ort = zoo.run_onnxruntime(model, x)
    exact, near = _float_qdq(model, x.astype(np.float64))
    np.testing.assert_array_equal(ort[~near], exact[~near])  # the float64 model is onnxruntime's
    np.testing.assert_array_equal(y[~near], ort[~near])


def test_qdq_add_with_other_dequantize_stays_on_the_cpu(caplog):
    """The matmul's output dequantized with another scale than it was quantised with is not the
    requantised output: the add stays on the CPU, saying why, and the matmul alone is offloaded."""
    model = _qdq_matmul_add(4, 16, 8, 0.3, 0.01, 0.2, (0, 0, 0, 0), -20, 20, False, False, 0)
    dq = next(node for node in model.graph.node if node.output[0] == "mmf")
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "s_other"))
    dq.input[1] = "s_other"
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(tvm_aie.load_onnx(model))
    assert "relax.add stays on the CPU: bias add: the matmul's output is dequantised with " \
        "other parameters than it was quantised" in caplog.text
    (sub,) = tvm_aie.report(ex).subgraphs
    assert len(sub.layers) == 1
    x = np.random.default_rng(0).integers(-128, 128, (4, 16), dtype=np.int8)
    np.testing.assert_array_equal(_run(ex, x), zoo.run_onnxruntime(model, x))


@pytest.mark.parametrize("name, layers", [("jet_mlp_matmul", 4), ("autoencoder", 6)])
def test_matmul_add_zoo_models_are_one_program(name, layers):
    """Before: one program per layer with the bias adds on the CPU between them."""
    model = zoo.onnx_model(name, "int8", batch=8)
    mod = tvm_aie.load_onnx(model)
    ex = tvm_aie.build(mod)
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    assert len(sub.layers) == layers and rep.offloaded_share >= 0.95
    assert "relax.add" not in _cpu_ops(mod)
    assert len(sub.onchip_intermediates) == layers - 1
    x = zoo.sample_input(name, batch=8, seed=3)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    np.testing.assert_array_equal(y, zoo.run_onnxruntime(model, x))


def test_fp32_matmul_add_was_already_one_layer_per_dense():
    rep = tvm_aie.report(tvm_aie.build(tvm_aie.load_onnx(zoo.onnx_model("jet_mlp_matmul"))))
    (sub,) = rep.subgraphs
    assert len(sub.layers) == 4


def test_transformer_ffn_is_one_program(caplog):
    """int8 transformer: the FFN (dense, GELU table, dense) was three programs with its two bias
    adds on the CPU; the q/k/v/o projections' bias adds were on the CPU too. Now no add of a
    constant is left on the CPU, the FFN is one program (with the residual add after it) and the
    model has 4 programs, not 12 (test_transformer_onchip says which)."""
    model = zoo.onnx_model("transformer", "int8")
    mod = tvm_aie.load_onnx(model)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        ex = tvm_aie.build(mod)
    assert "relax.add stays on the CPU" not in caplog.text
    rep = tvm_aie.report(ex)
    assert len(rep.subgraphs) == 4
    kinds = [[layer["summary"].split()[0] if "summary" in layer else
              (layer["m"], layer["k"], layer["n"]) for layer in sub.layers]
             for sub in rep.subgraphs]
    assert [(16, 64, 128), "lut", (16, 128, 64), "add"] in kinds
    x = zoo.sample_input("transformer", seed=2)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    np.testing.assert_array_equal(y, zoo.run_onnxruntime(model, x))


def test_int16x8_matmul_add_is_one_layer(tmp_path):
    """onnxruntime's quantiser with int16 activations on MatMul + Add: the add's int16 QDQ is
    the int16xint8 layer's epilogue (requantize_add in int16)."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((24, 16)).astype(np.float32) * 0.3, rng.standard_normal(16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "matmul_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b.astype(np.float32), "b")])
    fp32 = tmp_path / "f.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), fp32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": rng.standard_normal((8, 24)).astype(np.float32)}
                              for _ in range(8)])

        def get_next(self):
            return next(self.data, None)

    quantize_static(str(fp32), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt16, weight_type=QuantType.QInt8)
    model = onnx.load(tmp_path / "q.onnx")
    mod = tvm_aie.load_onnx(model)
    assert "relax.add" not in _cpu_ops(mod)
    ex = tvm_aie.build(mod)
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [layer["precision"] for layer in sub.layers] == ["int16xint8"]
    x = rng.standard_normal((8, 24)).astype(np.float32)
    y = _run(ex, x)
    np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    np.testing.assert_array_equal(y, zoo.run_onnxruntime(model, x))


def test_tuning_measures_the_bias_add():
    """A dense layer with a QDQ bias add is its own tuning task, measured with the add's pass."""
    tasks = extract_tasks(tvm_aie.load_onnx(zoo.onnx_model("jet_mlp_matmul", "int8")), "ve2802")
    assert len(tasks) == 4 and all(t.key.endswith("/bias_add") for t in tasks)
    task = tasks[0]
    cfg = task.default_config().to_dict()
    with_add = measure(dict(task.workload.__dict__), cfg, task.device)
    without = measure({**task.workload.__dict__, "bias_add": False}, cfg, task.device)
    assert with_add["error"] is None and with_add["cycles"] > without["cycles"]
