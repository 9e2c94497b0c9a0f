"""The bundled models, generated from code so the package needs no downloads and no model files.

Dense networks (input ``x`` [batch, features]):

* ``jet_mlp``: the hls4ml jet-tagging MLP (16-64-32-32-5, ReLU after each hidden layer), written
  as ONNX ``Gemm(transB=1)`` the way the Keras/hls4ml exporters write it;
* ``jet_mlp_matmul``: the same network as ``MatMul`` + ``Add`` (PyTorch-style export), so both
  import forms of a dense layer are covered;
* ``autoencoder``: the MLPerf Tiny anomaly-detection autoencoder shape, 128-64-32-8-32-64-128
  with ReLU;
* ``mlp_1024``: 16-1024-1024-8 with ReLU; its 1024x1024 int8 weight (1 MiB) is larger than a
  tile's 64 KB data memory, so it has to be split over many tiles;
* ``mlp_sin``: dense, ``Sin``, dense: the array does not run ``Sin``, so it splits the model into
  two offloaded regions with the CPU in between.

Others:

* ``lenet``: LeNet-5 on [batch, 1, 28, 28]: (conv 5x5, ReLU, max-pool 2) x2, then 256-120-84-10;
* ``mobilenet_block``: a MobileNetV2 inverted residual on [batch, 16, 16, 16]: pointwise conv to
  32 channels, batch-norm, ReLU6, depthwise 3x3, batch-norm, ReLU6, pointwise back to 16,
  batch-norm, residual add;
* ``transformer``: a post-norm transformer encoder layer on [batch, 16, 64] (4 heads, FFN 128 with
  exact GELU), as ``torch.nn.TransformerEncoderLayer(64, 4, 128, activation="gelu")`` computes it;
* ``squeezenet_fire``: a small SqueezeNet on [batch, 3, 32, 32]: a 3x3 stem conv (16) and a
  max-pool, two fire modules (a 1x1 squeeze conv read by a 1x1 and a 3x3 expand conv, their
  outputs concatenated on channels: 8 -> 16 + 16, then 8 -> 24 + 24) with a max-pool between, a
  1x1 conv classifier (10), global average pool and flatten; ReLU after every conv. Its branches
  and concats are what a chain of layers cannot express.

Full-size networks (:data:`LARGE`, built by :mod:`tvm_aie.zoo_nets`; ``names(large=True)``):
ResNet-18, ResNet-50, MobileNetV2, EfficientNet-B0, ViT-Tiny/16 and DeiT-Small/16 on
[batch, 3, 224, 224], and the BERT-base encoder on embedded sequences [batch, 128, 768]. Their
batch norms' running statistics are measured on seeded random inputs, so activations stay in range;
their QDQ models are calibrated on :data:`LARGE_CALIBRATION` inputs.

Weights are seeded random (He-scaled) and made once by :func:`weights`; the ONNX graphs here and
the PyTorch modules in :mod:`tvm_aie.zoo_torch` are both built from them, so the two frontends see
the same model. The batch dimension is fixed unless it is a string (e.g. ``"N"``), which makes it
symbolic. ``quant="int8"`` makes the QDQ model with onnxruntime's static quantiser (int8
activations and weights, weights per channel or per tensor) calibrated on seeded random inputs;
``quant="int16"`` the same with int16 activations (the int16xint8 datapath),
from the fp32 model with batch-norm folded into the convolutions as exporters and onnxruntime's
pre-processing do. :func:`run_onnxruntime` runs a model as written, for comparisons.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from . import zoo_nets

# dense networks: name -> (layer widths, the op between the first two layers or None, dense form)
MLPS = {
    "jet_mlp": ([16, 64, 32, 32, 5], None, "gemm"),
    "jet_mlp_matmul": ([16, 64, 32, 32, 5], None, "matmul"),
    "autoencoder": ([128, 64, 32, 8, 32, 64, 128], None, "matmul"),
    "mlp_1024": ([16, 1024, 1024, 8], None, "gemm"),
    "mlp_sin": ([16, 32, 8], "Sin", "gemm"),
}
# the other models: name -> input shape without the batch dimension
_SHAPES = {"lenet": (1, 28, 28), "mobilenet_block": (16, 16, 16), "transformer": (16, 64),
           "squeezenet_fire": (3, 32, 32)}
# squeezenet_fire's convs: name -> (out channels, in channels, kernel); "f{i}.s" squeezes,
# "f{i}.e1" and "f{i}.e3" expand
SQUEEZENET = {"stem": (16, 3, 3), "f0.s": (8, 16, 1), "f0.e1": (16, 8, 1), "f0.e3": (16, 8, 3),
              "f1.s": (8, 32, 1), "f1.e1": (24, 8, 1), "f1.e3": (24, 8, 3), "cls": (10, 48, 1)}
# transformer sizes: heads, FFN width; layer-norm epsilon; batch-norm epsilon (1e-5)
HEADS, FFN, LN_EPS = 4, 128, 1e-5
BN_EPS = zoo_nets.BN_EPS
INPUT = "x"
OUTPUT = "y"
# the full-size networks, which loops over the zoo leave out unless they ask for them
LARGE = tuple(zoo_nets.SHAPES)
# random inputs the full-size networks' QDQ models are calibrated on (and batch norms measured on)
LARGE_CALIBRATION = 4


def names(large: bool = False) -> list[str]:
    """The names :func:`onnx_model` accepts; the full-size networks (:data:`LARGE`) if ``large``."""
    return [*MLPS, *_SHAPES, *(LARGE if large else ())]


def input_shape(name: str, batch: int | str = 1) -> tuple:
    """The shape of model ``name``'s input ``x``."""
    if name in MLPS:
        return (batch, MLPS[name][0][0])
    return (batch, *(_SHAPES[name] if name in _SHAPES else zoo_nets.SHAPES[name]))


def _he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _bias(rng, n):
    return (rng.standard_normal(n) * 0.1).astype(np.float32)


def _bn(rng, c):
    """Batch-norm parameters (scale, shift, running mean, running variance) of ``c`` channels."""
    return [(1 + 0.1 * rng.standard_normal(c)).astype(np.float32), _bias(rng, c),
            _bias(rng, c), rng.uniform(0.5, 1.5, c).astype(np.float32)]


def weights(name: str) -> dict[str, np.ndarray]:
    """The seeded weights of model ``name``. Dense weights are [in, out] (``x @ w``); convolution
    weights are [out, in/groups, kh, kw] as in ONNX and PyTorch."""
    rng = np.random.default_rng(sum(map(ord, name)))
    w = {}
    if name in LARGE:
        w = _measure_batchnorms(name, zoo_nets.weights(name))
    elif name in MLPS:
        widths = MLPS[name][0]
        for i, (k, n) in enumerate(zip(widths, widths[1:])):
            w[f"w{i}"], w[f"b{i}"] = _he(rng, (k, n), k), _bias(rng, n)
    elif name == "lenet":
        w["c0.w"], w["c0.b"] = _he(rng, (6, 1, 5, 5), 25), _bias(rng, 6)
        w["c1.w"], w["c1.b"] = _he(rng, (16, 6, 5, 5), 150), _bias(rng, 16)
        for i, (k, n) in enumerate([(256, 120), (120, 84), (84, 10)]):
            w[f"w{i}"], w[f"b{i}"] = _he(rng, (k, n), k), _bias(rng, n)
    elif name == "mobilenet_block":
        for i, (cout, cin, kernel) in enumerate([(32, 16, 1), (32, 1, 3), (16, 32, 1)]):
            w[f"c{i}.w"] = _he(rng, (cout, cin, kernel, kernel), cin * kernel * kernel)
            w[f"bn{i}.scale"], w[f"bn{i}.shift"], w[f"bn{i}.mean"], w[f"bn{i}.var"] = _bn(rng, cout)
    elif name == "squeezenet_fire":
        for key, (cout, cin, k) in SQUEEZENET.items():
            w[f"{key}.w"], w[f"{key}.b"] = _he(rng, (cout, cin, k, k), cin * k * k), _bias(rng, cout)
    elif name == "transformer":
        d = _SHAPES[name][1]
        for p in ("q", "k", "v", "o"):
            w[f"{p}.w"], w[f"{p}.b"] = _he(rng, (d, d), d), _bias(rng, d)
        w["ff0.w"], w["ff0.b"] = _he(rng, (d, FFN), d), _bias(rng, FFN)
        w["ff1.w"], w["ff1.b"] = _he(rng, (FFN, d), FFN), _bias(rng, d)
        for i in (0, 1):
            w[f"ln{i}.scale"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
            w[f"ln{i}.shift"] = _bias(rng, d)
    else:
        raise KeyError(f"unknown model {name!r}; bundled: {', '.join(names(large=True))}")
    return w


def _measure_batchnorms(name: str, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``w`` with each batch norm's running mean and variance those of its input over
    :data:`LARGE_CALIBRATION` seeded random inputs, as training leaves them (rounded to float16,
    so the last bits of onnxruntime's sums do not change the model)."""
    if not zoo_nets.batchnorms(w):
        return w
    g = _Graph()
    o = zoo_nets.Onnx(g, w, calibrate=True)
    zoo_nets.forward(o, INPUT, name)
    stats = [s for pair in o.stats.values() for s in pair]
    shape = (LARGE_CALIBRATION, *zoo_nets.SHAPES[name])
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(s, TensorProto.FLOAT, None) for s in stats], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(1000).standard_normal(shape).astype(np.float32)
    measured = dict(zip(stats, run_onnxruntime(model, x, outputs=stats)))
    w = dict(w)
    for key, (mean, var) in o.stats.items():
        for p, value in (("mean", measured[mean]), ("var", measured[var])):
            w[f"{key}.{p}"] = value.reshape(-1).astype(np.float16).astype(np.float32)
    return w


def fold_batchnorm(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``w`` with each convolution followed by a batch-norm folded into the convolution's weight
    and bias (the inference form exporters write): ``c{i}`` by ``bn{i}``, and in the full-size
    networks ``{key}`` by ``{key}.bn``."""
    w = dict(w)
    pairs = [(key, f"{key}.bn") for key in zoo_nets.batchnorms(w)] or \
        [(f"c{i}", f"bn{i}") for i in range(len([k for k in w if k.endswith(".var")]))]
    for conv, bn in pairs:
        scale = w.pop(f"{bn}.scale") / np.sqrt(w.pop(f"{bn}.var") + BN_EPS)
        w[f"{conv}.b"] = (w.pop(f"{bn}.shift") - w.pop(f"{bn}.mean") * scale).astype(np.float32)
        w[f"{conv}.w"] = (w[f"{conv}.w"] * scale[:, None, None, None]).astype(np.float32)
    return w


class _Graph:
    """A small ONNX graph builder: nodes get unique names, constants become initializers."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = f"{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def dense(self, x, w, b, i, form="matmul"):
        """``x @ w + b``: ONNX ``Gemm(transB=1)`` (weight stored [out, in]) or ``MatMul`` + ``Add``."""
        if form == "gemm":
            return self.op("Gemm", [x, self.const(f"w{i}", np.ascontiguousarray(w.T)),
                                    self.const(f"b{i}", b)], transB=1)
        mm = self.op("MatMul", [x, self.const(f"w{i}", w)])
        return self.op("Add", [mm, self.const(f"b{i}", b)])


def _mlp(g, w, name):
    widths, middle, form = MLPS[name]
    x, last = INPUT, len(widths) - 2
    for i in range(last + 1):
        x = g.dense(x, w[f"w{i}"], w[f"b{i}"], i, form)
        if i == 0 and middle:
            x = g.op(middle, [x])
        elif i < last and not middle:
            x = g.op("Relu", [x])
    return x


def _lenet(g, w, name):
    x = INPUT
    for i in (0, 1):
        x = g.op("Conv", [x, g.const(f"c{i}.w", w[f"c{i}.w"]), g.const(f"c{i}.b", w[f"c{i}.b"])],
                 kernel_shape=[5, 5])
        x = g.op("MaxPool", [g.op("Relu", [x])], kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Flatten", [x], axis=1)
    for i in (0, 1, 2):
        x = g.dense(x, w[f"w{i}"], w[f"b{i}"], i, "gemm")
        x = g.op("Relu", [x]) if i < 2 else x
    return x


def _mobilenet_block(g, w, name):
    """Batch-norm as ``BatchNormalization`` nodes, unless ``w`` has it folded (conv biases)."""
    x, lo, hi = INPUT, g.const("zero", np.float32(0)), g.const("six", np.float32(6))
    for i, group in enumerate([1, 32, 1]):
        kernel = w[f"c{i}.w"].shape[-1]
        bias = [g.const(f"c{i}.b", w[f"c{i}.b"])] if f"c{i}.b" in w else []
        x = g.op("Conv", [x, g.const(f"c{i}.w", w[f"c{i}.w"]), *bias],
                 kernel_shape=[kernel] * 2, pads=[kernel // 2] * 4, group=group)
        if not bias:
            x = g.op("BatchNormalization", [x] + [g.const(f"bn{i}.{p}", w[f"bn{i}.{p}"])
                                                  for p in ("scale", "shift", "mean", "var")],
                     epsilon=BN_EPS)
        x = g.op("Clip", [x, lo, hi]) if i < 2 else x
    return g.op("Add", [x, INPUT])


def _transformer(g, w, name):
    seq, d = _SHAPES[name]
    hd = d // HEADS
    split = g.const("split_heads", np.array([-1, seq, HEADS, hd], np.int64))
    merge = g.const("merge_heads", np.array([-1, seq, d], np.int64))
    heads = {}
    for p, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        y = g.dense(INPUT, w[f"{p}.w"], w[f"{p}.b"], p)
        heads[p] = g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)
    scores = g.op("Mul", [g.op("MatMul", [heads["q"], heads["k"]]),
                          g.const("inv_sqrt_hd", np.float32(1 / np.sqrt(hd)))])
    ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), heads["v"]])
    ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])
    h = g.op("Add", [INPUT, g.dense(ctx, w["o.w"], w["o.b"], "o")])
    h = g.op("LayerNormalization", [h, g.const("ln0.scale", w["ln0.scale"]),
                                    g.const("ln0.shift", w["ln0.shift"])], axis=-1, epsilon=LN_EPS)
    f = g.op("Gelu", [g.dense(h, w["ff0.w"], w["ff0.b"], "ff0")])
    f = g.op("Add", [h, g.dense(f, w["ff1.w"], w["ff1.b"], "ff1")])
    return g.op("LayerNormalization", [f, g.const("ln1.scale", w["ln1.scale"]),
                                       g.const("ln1.shift", w["ln1.shift"])],
                axis=-1, epsilon=LN_EPS)


def _squeezenet_fire(g, w, name):
    def conv(x, key):  # same padding, ReLU
        k = w[f"{key}.w"].shape[-1]
        return g.op("Relu", [g.op("Conv", [x, g.const(f"{key}.w", w[f"{key}.w"]),
                                           g.const(f"{key}.b", w[f"{key}.b"])],
                                  kernel_shape=[k, k], pads=[k // 2] * 4)])

    x = g.op("MaxPool", [conv(INPUT, "stem")], kernel_shape=[2, 2], strides=[2, 2])
    for i in (0, 1):
        squeeze = conv(x, f"f{i}.s")
        x = g.op("Concat", [conv(squeeze, f"f{i}.e1"), conv(squeeze, f"f{i}.e3")], axis=1)
        if i == 0:
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    return g.op("Flatten", [g.op("GlobalAveragePool", [conv(x, "cls")])], axis=1)


_BUILDERS = {"lenet": _lenet, "mobilenet_block": _mobilenet_block, "transformer": _transformer,
             "squeezenet_fire": _squeezenet_fire}


def output_shape(name: str, batch: int | str = 1) -> tuple:
    """The shape of model ``name``'s output ``y``."""
    if name in MLPS:
        return (batch, MLPS[name][0][-1])
    if name in LARGE:
        return zoo_nets.output_shape(name, batch)
    return (batch, 10) if name in ("lenet", "squeezenet_fire") else input_shape(name, batch)


def float_model(name: str, batch: int | str = 1, fold_bn: bool = False) -> onnx.ModelProto:
    """The fp32 ONNX model ``name`` with input ``x`` and output ``y``; ``fold_bn`` writes
    batch-norm folded into the convolutions."""
    w, g = weights(name), _Graph()
    w = fold_batchnorm(w) if fold_bn else w
    if name in LARGE:
        zoo_nets.forward(zoo_nets.Onnx(g, w), INPUT, name)
    else:
        _BUILDERS.get(name, _mlp)(g, w, name)
    g.nodes[-1].output[0] = g.nodes[-1].name = OUTPUT
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, input_shape(name, batch))],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, output_shape(name, batch))],
        g.inits)
    # Gelu is an ONNX operator from opset 20; the other models keep the opset they were written in
    opset = 20 if name in ("transformer", *zoo_nets.TRANSFORMERS) else 17
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset == 17 else 9
    onnx.checker.check_model(model, full_check=True)
    return model


def sample_input(name: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A seeded float32 input for model ``name`` (standard normal)."""
    shape = input_shape(name, batch)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class _Calibration:
    """onnxruntime's ``CalibrationDataReader`` protocol over seeded random inputs of ``shape``
    (batch first; standard normal, as :func:`sample_input`).

    The same ``rows`` (64) rows for every batch size (in batch-sized chunks), so the scales do not
    depend on the batch. A symbolic batch is calibrated one row at a time.
    """

    def __init__(self, shape: tuple, rows: int = 64):
        b = shape[0] if isinstance(shape[0], int) else 1
        rows = np.random.default_rng(1000).standard_normal(
            (max(rows, b), *shape[1:])).astype(np.float32)
        self.feeds = iter([{INPUT: rows[i:i + b]} for i in range(0, len(rows) - b + 1, b)])

    def get_next(self):
        return next(self.feeds, None)


# the activation widths of onnx_model(quant=...); weights are int8 in both
QUANTS = ("int8", "int16")


def quantize(model: onnx.ModelProto, shape: tuple, per_channel: bool = True,
             quant: str = "int8", rows: int = 64) -> onnx.ModelProto:
    """The QDQ form of ``model`` (fp32, input ``x`` of ``shape``) as onnxruntime's static quantiser
    writes it, calibrated on ``rows`` seeded random inputs: int8 weights, and int8 or int16
    activations (``quant``). int16 models are converted to opset 21 first, the first whose
    QuantizeLinear takes int16 (older opsets need onnxruntime's contrib operators)."""
    from onnxruntime.quantization import (  # pylint: disable=import-outside-toplevel
        QuantFormat, QuantType, quantize_static)

    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    if quant == "int16" and model.opset_import[0].version < 21:
        model = version_converter.convert_version(model, 21)
    activations = QuantType.QInt16 if quant == "int16" else QuantType.QInt8
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process models, printed on every call
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = pathlib.Path(tmp, "f.onnx"), pathlib.Path(tmp, "q.onnx")
            onnx.save(model, src)
            quantize_static(str(src), str(dst), _Calibration(tuple(shape), rows),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=activations, weight_type=QuantType.QInt8)
            return onnx.load(dst)
    finally:
        logging.disable(previous)


def onnx_model(name: str, quant: str | None = None, per_channel: bool = True,
               batch: int | str = 1) -> onnx.ModelProto:
    """Bundled model ``name`` in fp32 (``quant=None``) or QDQ: int8 (``quant="int8"``) or int16
    activations with int8 weights (``quant="int16"``, onnxruntime's QInt16 x QInt8, opset 21).

    ``per_channel`` chooses per-output-channel or per-tensor weight scales; a string ``batch``
    (e.g. ``"N"``) makes the batch dimension symbolic.
    """
    if name not in names(large=True):
        raise KeyError(f"unknown model {name!r}; bundled: {', '.join(names(large=True))}")
    if quant is None:
        return float_model(name, batch)
    if quant not in QUANTS:
        raise ValueError(f"quant must be None or one of {', '.join(QUANTS)}, got {quant!r}")
    return quantize(float_model(name, batch, fold_bn=True), input_shape(name, batch), per_channel,
                    quant, LARGE_CALIBRATION if name in LARGE else 64)


# ---- single layers: what kernel calibration, benchmarks and tests measure ----

def dense_layer(m: int, k: int, n: int, precision: str = "int8", seed: int = 0):
    """One dense layer ``[m, k] @ [k, n]`` as ONNX, for kernel measurements and tests: int8 QDQ as onnxruntime's quantiser writes it
    (DQ -> MatMul -> Q), or plain fp32. The weights are seeded random; cycles do not depend on them."""
    rng = np.random.default_rng(seed)
    if precision == "float32":
        w = rng.standard_normal((k, n)).astype(np.float32)
        inits = [helper.make_tensor("w", TensorProto.FLOAT, (k, n), w.tobytes(), raw=True)]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        elem = TensorProto.FLOAT
    elif precision in ("int8", "int16xint8"):  # int16xint8: int16 activations, int8 weights
        elem = TensorProto.INT16 if precision == "int16xint8" else TensorProto.INT8
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        inits = [helper.make_tensor("w", TensorProto.INT8, (k, n), w.tobytes(), raw=True),
                 helper.make_tensor("s_x", TensorProto.FLOAT, (), [0.05]),
                 helper.make_tensor("s_w", TensorProto.FLOAT, (), [0.01]),
                 helper.make_tensor("s_y", TensorProto.FLOAT, (), [2.0]),
                 helper.make_tensor("zp", elem, (), [0]),
                 helper.make_tensor("zp_w", TensorProto.INT8, (), [0])]
        nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp"], ["xf"]),
                 helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"]),
                 helper.make_node("MatMul", ["xf", "wf"], ["yf"]),
                 helper.make_node("QuantizeLinear", ["yf", "s_y", "zp"], ["y"])]
    else:
        raise ValueError(f"no ONNX form for {precision} dense layers")
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", elem, (m, k))],
                              [helper.make_tensor_value_info("y", elem, (m, n))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_layer(h: int, w: int, cin: int, cout: int, ksize: int = 3, seed: int = 0,
               precision: str = "int8"):
    """One QDQ 2-D convolution (NCHW, stride 1, same padding) as onnxruntime writes it: int8, or
    int16xint8 (int16 activations, int8 weights; opset 21, where QDQ takes int16)."""
    if precision not in ("int8", "int16xint8"):
        raise ValueError(f"no ONNX form for {precision} conv layers")
    elem = TensorProto.INT16 if precision == "int16xint8" else TensorProto.INT8
    rng = np.random.default_rng(seed)
    wt = rng.integers(-128, 128, (cout, cin, ksize, ksize), dtype=np.int8)
    inits = [helper.make_tensor("w", TensorProto.INT8, wt.shape, wt.tobytes(), raw=True),
             helper.make_tensor("s_x", TensorProto.FLOAT, (), [0.05]),
             helper.make_tensor("s_w", TensorProto.FLOAT, (), [0.01]),
             helper.make_tensor("s_y", TensorProto.FLOAT, (), [2.0]),
             helper.make_tensor("zp", elem, (), [0]),
             helper.make_tensor("zp_w", TensorProto.INT8, (), [0])]
    pad = ksize // 2
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_x", "zp"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"]),
             helper.make_node("Conv", ["xf", "wf"], ["yf"], pads=[pad] * 4),
             helper.make_node("QuantizeLinear", ["yf", "s_y", "zp"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", elem, (1, cin, h, w))],
        [helper.make_tensor_value_info("y", elem, (1, cout, h, w))], inits)
    opset = 21 if precision == "int16xint8" else 17
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def output_scale(model: onnx.ModelProto) -> float:
    """Scale of the QDQ model's output (one quantisation step), from its last DequantizeLinear."""
    node = next(n for n in model.graph.node if n.output[0] == OUTPUT)
    if node.op_type != "DequantizeLinear":
        raise ValueError(f"the output of {model.graph.name} is not dequantised: {node.op_type}")
    inits = {t.name: t for t in model.graph.initializer}
    return float(numpy_helper.to_array(inits[node.input[1]]))


def macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of ``model``'s ``MatMul``, ``Gemm`` and ``Conv`` nodes, from ONNX shape
    inference: a count independent of TVM's, to check the share of MACs the report claims."""
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.input, *graph.output]}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    total = 0
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            a = shapes[node.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += int(np.prod(shapes[node.output[0]])) * (a[-2] if trans_a else a[-1])
        elif node.op_type == "Conv":  # each output element: in-channels/groups x kernel MACs
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(shapes[node.input[1]][1:]))
    return total


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray, outputs: list | None = None):
    """``model`` on onnxruntime as written: QDQ as dequantize -> fp32 op -> quantize. Its first
    output, or the list of the values named in ``outputs``.

    Graph optimisations are off because with them onnxruntime fuses QDQ into its own int8 kernels,
    which on x86 CPUs without VNNI saturate 16-bit intermediate sums (u8 x s8 pairs) unless
    weights are 7-bit (``reduce_range``): on such a machine the per-channel ``jet_mlp`` moves by up
    to 16 quantisation steps. Unoptimised, the result does not depend on the machine.
    """
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(outputs, {INPUT: x}) if outputs else sess.run(None, {INPUT: x})[0]
