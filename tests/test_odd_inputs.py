"""Inputs the array cannot take give the right answer on the CPU, and models TVM cannot import give
one clear line: a symbolic batch, int64 and float64 inputs, an operator without a TVM converter."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper

import tvm_aie
from tvm_aie import zoo


def _run(ex, x):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("name, quant", [("jet_mlp", None), ("jet_mlp", "int8"),
                                         ("lenet", "int8"), ("transformer", None)])
def test_symbolic_batch_runs_any_batch(name, quant):
    """Built once with batch ``N``, run with two batch sizes; int8 stays within a step of ORT."""
    model = zoo.onnx_model(name, quant, batch="N")
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie")
    tol = zoo.output_scale(model) if quant else 1e-4
    for batch in (1, 3):
        x = zoo.sample_input(name, batch=batch, seed=batch)
        y, ref = _run(ex, x), zoo.run_onnxruntime(model, x)
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() <= tol * (1 if quant else np.abs(ref).max()) + 1e-6


def _dense_model(dtype):
    """``relu(x @ w + b)`` on [4, 16] -> [4, 8] with x, w, b of numpy ``dtype``."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        w, b = rng.integers(-3, 4, (16, 8)).astype(dtype), rng.integers(-3, 4, 8).astype(dtype)
    else:
        w, b = rng.standard_normal((16, 8)).astype(dtype), rng.standard_normal(8).astype(dtype)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["z"]), helper.make_node("Relu", ["z"], ["y"])]
    graph = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("x", elem, [4, 16])],
                              [helper.make_tensor_value_info("y", elem, [4, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, w, b


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_input_the_array_cannot_take_runs_on_the_cpu(dtype):
    model, w, b = _dense_model(dtype)
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie")
    assert tvm_aie.report(ex).subgraphs == []  # nothing offloaded: the array has no 64-bit types
    rng = np.random.default_rng(1)
    x = (rng.integers(-5, 6, (4, 16)) if dtype is np.int64 else rng.standard_normal((4, 16)))
    y = _run(ex, x.astype(dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, np.maximum(x.astype(dtype) @ w + b, 0), rtol=1e-12)


def test_operator_tvm_cannot_import_is_one_clear_line():
    node = helper.make_node("Celu", ["x"], ["y"], alpha=1.0)
    graph = helper.make_graph([node], "celu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(tvm_aie.ModelLoadError) as err:
        tvm_aie.load_onnx(model)
    assert "\n" not in str(err.value) and "Celu" in str(err.value)


@pytest.mark.parametrize("outputs", [["y", "mean", "inv_std"], ["y", "", "inv_std"], ["y"]])
def test_layernorm_statistics_outputs_are_computed(outputs):
    """TVM imports LayerNormalization's Mean/InvStdDev as placeholder scalars; load_onnx computes
    them instead, so a model using them gets onnxruntime's numbers."""
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], outputs, axis=1, epsilon=1e-3)
    shapes = {"y": [2, 3, 4], "mean": [2, 1, 1], "inv_std": [2, 1, 1]}
    graph = helper.make_graph(
        [node], "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs if o],
        [numpy_helper.from_array(np.linspace(0.5, 2, 12, dtype=np.float32).reshape(3, 4), "s"),
         numpy_helper.from_array(np.full((3, 4), 0.25, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie")
    got = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x))
    got = [got.numpy()] if hasattr(got, "numpy") else [t.numpy() for t in got]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for y, ref in zip(got, sess.run(None, {"x": x}), strict=True):
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_qoperator_model_names_the_ops_tvm_lacks(tmp_path):
    """onnxruntime's other quantised format (QLinear* operators instead of QDQ) does not import
    into TVM 0.27; the error names the operators, which tells the user to quantise to QDQ."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(zoo.onnx_model("jet_mlp_matmul"), src)
    quantize_static(str(src), str(dst), _Reader("jet_mlp_matmul"),
                    quant_format=QuantFormat.QOperator)
    with pytest.raises(tvm_aie.ModelLoadError) as err:
        tvm_aie.load_onnx(str(dst))
    assert "\n" not in str(err.value) and "QLinearMatMul" in str(err.value)


class _Reader:
    """onnxruntime's calibration-reader protocol over a few seeded inputs."""

    def __init__(self, name):
        self.feeds = iter([{zoo.INPUT: zoo.sample_input(name, seed=s)} for s in range(4)])

    def get_next(self):
        return next(self.feeds, None)
