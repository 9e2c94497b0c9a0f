"""The bundled models, generated from code so the package needs no downloads and no model files.

* ``jet_mlp``: the hls4ml jet-tagging MLP (16-64-32-32-5, ReLU after each hidden layer), written
  as ONNX ``Gemm(transB=1)`` the way the Keras/hls4ml exporters write it;
* ``jet_mlp_matmul``: the same network as ``MatMul`` + ``Add`` (PyTorch-style export), so both
  import forms of a dense layer are covered;
* ``mlp_1024``: 16-1024-1024-8 with ReLU; its 1024x1024 int8 weight (1 MiB) is larger than a
  tile's 64 KB data memory, so it has to be split over many tiles;
* ``mlp_sin``: dense, ``Sin``, dense: the array does not run ``Sin``, so it splits the model into
  two offloaded regions with the CPU in between.

Weights are seeded random (He-scaled); the batch dimension is fixed (a string makes it symbolic,
which the partitioner must refuse). ``quant="int8"`` makes the QDQ model with onnxruntime's static
quantiser (int8 activations and weights, weights per channel or per tensor) calibrated on seeded
random inputs. :func:`run_onnxruntime` runs a model as written, for comparisons.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# name -> (layer widths, the op between the first two layers or None, dense form)
_MODELS = {
    "jet_mlp": ([16, 64, 32, 32, 5], None, "gemm"),
    "jet_mlp_matmul": ([16, 64, 32, 32, 5], None, "matmul"),
    "mlp_1024": ([16, 1024, 1024, 8], None, "gemm"),
    "mlp_sin": ([16, 32, 8], "Sin", "gemm"),
}
INPUT = "x"
OUTPUT = "y"


def names() -> list[str]:
    """The names :func:`onnx_model` accepts."""
    return list(_MODELS)


def _dense(nodes, inits, rng, i, x, k, n, form):
    """One dense layer ``x @ W + b`` in ONNX form ``form``; returns its output name."""
    w = (rng.standard_normal((k, n)) * np.sqrt(2.0 / k)).astype(np.float32)
    b = (rng.standard_normal(n) * 0.1).astype(np.float32)
    y = f"dense{i}"
    inits.append(numpy_helper.from_array(b, f"b{i}"))
    if form == "gemm":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"))
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y], transB=1, name=y))
    else:
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [y], name=y))
    return y


def float_model(name: str, batch: int | str = 1) -> onnx.ModelProto:
    """The fp32 ONNX model ``name`` with input ``x`` [batch, in] and output ``y`` [batch, out]."""
    widths, middle, form = _MODELS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    nodes, inits, x = [], [], INPUT
    last = len(widths) - 2
    for i, (k, n) in enumerate(zip(widths, widths[1:])):
        x = _dense(nodes, inits, rng, i, x, k, n, form)
        if i == 0 and middle:
            nodes.append(helper.make_node(middle, [x], [f"{middle.lower()}{i}"], name=middle))
            x = f"{middle.lower()}{i}"
        elif i < last and not middle:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
    nodes[-1].output[0] = OUTPUT
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, widths[0]])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch, widths[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sample_input(name: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A seeded float32 input [batch, in] for model ``name``."""
    k = _MODELS[name][0][0]
    return np.random.default_rng(seed).standard_normal((batch, k)).astype(np.float32)


class _Calibration:
    """onnxruntime's ``CalibrationDataReader`` protocol over seeded random inputs.

    The same 64 rows for every batch size (in batch-sized chunks), so the scales do not depend on
    the batch. A symbolic batch is calibrated one row at a time.
    """

    def __init__(self, name: str, batch: int | str):
        b = batch if isinstance(batch, int) else 1
        rows = sample_input(name, max(64, b), seed=1000)
        self.feeds = iter([{INPUT: rows[i:i + b]} for i in range(0, len(rows) - b + 1, b)])

    def get_next(self):
        return next(self.feeds, None)


def quantize(model: onnx.ModelProto, name: str, per_channel: bool = True,
             batch: int | str = 1) -> onnx.ModelProto:
    """The int8 QDQ form of ``model`` as onnxruntime's static quantiser writes it."""
    from onnxruntime.quantization import (  # pylint: disable=import-outside-toplevel
        QuantFormat, QuantType, quantize_static)

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process models, printed on every call
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = pathlib.Path(tmp, "f.onnx"), pathlib.Path(tmp, "q.onnx")
            onnx.save(model, src)
            quantize_static(str(src), str(dst), _Calibration(name, batch),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            return onnx.load(dst)
    finally:
        logging.disable(previous)


def onnx_model(name: str, quant: str | None = None, per_channel: bool = True,
               batch: int | str = 1) -> onnx.ModelProto:
    """Bundled model ``name`` in fp32 (``quant=None``) or int8 QDQ (``quant="int8"``).

    ``per_channel`` chooses per-output-channel or per-tensor weight scales; a string ``batch``
    (e.g. ``"N"``) makes the batch dimension symbolic.
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; bundled: {', '.join(_MODELS)}")
    model = float_model(name, batch)
    if quant is None:
        return model
    if quant != "int8":
        raise ValueError(f"quant must be None or 'int8', got {quant!r}")
    return quantize(model, name, per_channel, batch)


def output_scale(model: onnx.ModelProto) -> float:
    """Scale of the QDQ model's output (one quantisation step), from its last DequantizeLinear."""
    node = next(n for n in model.graph.node if n.output[0] == OUTPUT)
    if node.op_type != "DequantizeLinear":
        raise ValueError(f"the output of {model.graph.name} is not dequantised: {node.op_type}")
    inits = {t.name: t for t in model.graph.initializer}
    return float(numpy_helper.to_array(inits[node.input[1]]))


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """``model`` on onnxruntime as written: QDQ as dequantize -> fp32 op -> quantize.

    Graph optimisations are off because with them onnxruntime fuses QDQ into its own int8 kernels,
    which on x86 CPUs without VNNI saturate 16-bit intermediate sums (u8 x s8 pairs) unless
    weights are 7-bit (``reduce_range``): on such a machine the per-channel ``jet_mlp`` moves by up
    to 16 quantisation steps. Unoptimised, the result does not depend on the machine.
    """
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {INPUT: x})[0]
