"""The integer CPU reference: the model through TVM on the CPU, with the array's arithmetic.

The model is partitioned exactly as for the array; each offloaded function is then rebuilt from its
layers (:mod:`tvm_aie.codegen.layers`) as plain Relax: int8 layers (dense and conv2d, the latter
padded with the input zero point) as the integer ops the array runs (:mod:`tvm_aie.quant`: int32
accumulation of raw int8 operands, int32 bias with the input zero point folded in, int64 multiply
by the multiplier, round half up by adding ``2^(shift-1)``, right shift, output zero point, clip,
int8; int16xint8 dense and conv2d layers the same with int16 activations, int64 accumulator and
bias, and int16 output; int8 and int16 row-wise adds, multiplies and tables), fp32 layers as
matmul/conv2d + bias + relu (+ max-pool). Everything else is the model's own Relax. The
simulator's int8 output is therefore comparable bit for bit, while the reference is checked
against numpy and onnxruntime independently of the array.
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import tvm
from tvm import relax

from .codegen.layers import (BmmLayer, ConcatLayer, ConvLayer, DenseLayer, FlattenLayer,
                             HeadsLayer, LayerGraph, RowLayer, SliceLayer, read_layer_graph)
from .partition import partition_for_aie
from .quant import ADD_LEFT_SHIFT, QMAX, QMIN
from .schedules.dense import accumulator_dtype
from .sim.kernels_rows import qdq_function


def _const(a, dtype) -> relax.Expr:
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def _rounding_shift(bb, x, mult, shift):
    """``(x * mult + 2^(shift-1)) >> shift`` in int64 (``mult``/``shift`` int64 constants)."""
    x = bb.emit(relax.op.add(relax.op.multiply(x, mult),
                             relax.op.left_shift(_const(1, "int64"),
                                                 relax.op.subtract(shift, _const(1, "int64")))))
    return bb.emit(relax.op.right_shift(x, shift))


def _clip_int8(bb, y, lo=QMIN["int8"], dtype="int8"):
    y = bb.emit(relax.op.minimum(relax.op.maximum(y, _const(lo, "int64")),
                                 _const(QMAX[dtype], "int64")))
    return bb.emit(relax.op.astype(y, dtype))


def _int8_add(bb: relax.BlockBuilder, y, r, terms, out_zp: int, dtype: str = "int8"):
    """:func:`tvm_aie.quant.requantize_add` of two ``dtype`` (int8 or int16) tensors; ``terms``
    are each one's (zero point, multiplier, shift) to the output's scale, one after the other."""
    left = _const(ADD_LEFT_SHIFT[dtype], "int64")

    def scaled(x, zp, mult, shift):
        x = bb.emit(relax.op.left_shift(relax.op.subtract(relax.op.astype(x, "int64"),
                                                          _const(zp, "int64")), left))
        return _rounding_shift(bb, x, _const(mult, "int64"), _const(shift, "int64"))

    total = bb.emit(relax.op.add(scaled(y, *terms[:3]), scaled(r, *terms[3:])))
    total = _rounding_shift(bb, total, _const(1, "int64"), left)
    return _clip_int8(bb, bb.emit(relax.op.add(total, _const(out_zp, "int64"))), QMIN[dtype],
                      dtype)


def _int8_epilogue(bb: relax.BlockBuilder, acc, layer, chan_shape, zero_point: int):
    """Bias, multiplier, round half up, shift, zero point, clip: per channel (``chan_shape``)."""
    def per_channel(a, dtype):
        return _const(np.asarray(a).reshape(chan_shape), dtype)

    dtype = layer.out_dtype  # int8, or int16 (int16xint8 dense)
    if layer.bias is not None:
        acc = bb.emit(relax.op.add(acc, per_channel(layer.bias, str(layer.bias.dtype))))
    acc = bb.emit(relax.op.astype(acc, "int64"))
    acc = _rounding_shift(bb, acc, per_channel(layer.mult, "int64"),
                          per_channel(layer.shift, "int64"))
    y = bb.emit(relax.op.add(acc, _const(zero_point, "int64")))
    return _clip_int8(bb, y, max(QMIN[dtype], zero_point) if layer.relu else QMIN[dtype], dtype)


def _int8_dense(bb: relax.BlockBuilder, x, layer: DenseLayer):
    """int8 (int32 accumulator) or int16xint8 (int16 activations, int64 accumulator) dense; a
    QDQ bias add after it adds its constant to the requantised output as a residual add does."""
    acc = bb.emit(relax.op.matmul(x, _const(layer.weight, "int8"),
                                  out_dtype=accumulator_dtype(layer.precision)))
    y = _int8_epilogue(bb, acc, layer, (-1,), layer.epilogue_zp)
    if layer.add is None:
        return y
    return _int8_add(bb, y, _const(layer.addend, "int64"), astuple(layer.add), layer.out_zp,
                     layer.out_dtype)


def _concat(bb: relax.BlockBuilder, xs: list, layer: ConcatLayer):
    """The concat along channels; in int8 each input quantised otherwise than the output first
    requantised as its producer's epilogue does it (:func:`tvm_aie.quant.rescale`: the add's
    arithmetic with a zero second operand)."""
    xs = [x if rs is None else
          _int8_add(bb, x, _const(0, "int8"), (*rs, 0, 1 << 30, 1), layer.out_zp)
          for x, rs in zip(xs, layer.rescale)]
    return bb.emit(relax.op.concat(xs, axis=1))


def _fp32_dense(bb: relax.BlockBuilder, x, layer: DenseLayer):
    y = bb.emit(relax.op.matmul(x, _const(layer.weight, "float32")))
    if layer.bias is not None:
        y = bb.emit(relax.op.add(y, _const(layer.bias, "float32")))
    return bb.emit(relax.op.nn.relu(y)) if layer.relu else y


def _conv(bb: relax.BlockBuilder, x, layer: ConvLayer, residual=None):
    """The conv as the array computes it: int8 pads with the input zero point (the memory tile's
    border) and accumulates raw int8 in int32 (int16xint8: raw int16 x int8 in int64, requantised
    to int16); the pool or residual add comes after the epilogue. An average pool is the depthwise
    conv of its constant weights; a max-pool is a max-pool."""
    chan = (1, -1, 1, 1)
    if layer.kind == "maxpool":
        return bb.emit(relax.op.nn.max_pool2d(x, pool_size=layer.weight.shape[2:],
                                              strides=layer.stride))
    if layer.precision in ("int8", "int16xint8"):
        pt, pl, pb, pr = layer.padding
        x = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, pt, pb, pl, pr],
                                    pad_value=float(layer.in_zp)))
        acc = bb.emit(relax.op.nn.conv2d(x, _const(layer.weight, "int8"), strides=layer.stride,
                                         groups=layer.groups,
                                         out_dtype=accumulator_dtype(layer.precision)))
        y = _int8_epilogue(bb, acc, layer, chan, layer.epilogue_zp)
        if residual is not None:
            y = _int8_add(bb, y, residual, astuple(layer.add), layer.out_zp, layer.out_dtype)
    else:
        y = bb.emit(relax.op.nn.conv2d(x, _const(layer.weight, "float32"), strides=layer.stride,
                                       padding=layer.padding, groups=layer.groups))
        if layer.bias is not None:
            y = bb.emit(relax.op.add(y, _const(layer.bias.reshape(chan), "float32")))
        if layer.clip_max is not None:
            y = bb.emit(relax.op.clip(y, 0.0, layer.clip_max))
        elif layer.relu:
            y = bb.emit(relax.op.nn.relu(y))
        if residual is not None:
            y = bb.emit(relax.op.add(y, residual))
            if layer.relu_after:
                y = bb.emit(relax.op.nn.relu(y))
    if layer.pool:
        y = bb.emit(relax.op.nn.max_pool2d(y, pool_size=layer.pool, strides=layer.pool))
    return y


def _bmm(bb: relax.BlockBuilder, a, b, layer: BmmLayer):
    """Batched matmul as the array does it: int8 centred on the zero points, int32 accumulation,
    per-tensor requantisation; fp32 matmul times the scale."""
    if layer.precision == "float32":
        y = bb.emit(relax.op.matmul(a, b))
        return bb.emit(relax.op.multiply(y, _const(layer.scale, "float32"))) \
            if layer.scale != 1.0 else y
    a, b = (bb.emit(relax.op.subtract(relax.op.astype(t, "int32"), _const(zp, "int32")))
            for t, zp in ((a, layer.a_zp), (b, layer.b_zp)))
    acc = bb.emit(relax.op.matmul(a, b, out_dtype="int32"))
    return _int8_epilogue(bb, acc, layer, (-1,), layer.out_zp)


def _clip(x, lo, hi):
    return relax.op.clip(x, tvm.tirx.FloatImm("float32", lo), tvm.tirx.FloatImm("float32", hi))


# the fp32 element-wise functions as TVM's ops (as the ONNX importer writes them), of ``x`` and
# the function's constants ``f``
_FUNCTIONS = {
    "gelu": lambda x, f: relax.op.nn.gelu(x), "sigmoid": lambda x, f: relax.op.sigmoid(x),
    "tanh": lambda x, f: relax.op.tanh(x), "relu": lambda x, f: relax.op.nn.relu(x),
    "gelu_tanh": lambda x, f: relax.op.nn.gelu_tanh(x),
    "leakyrelu": lambda x, f: relax.op.nn.leakyrelu(x, f["alpha"]),
    "clip": lambda x, f: _clip(x, f["lo"], f["hi"]),
    "hardsigmoid": lambda x, f: _clip(relax.op.add(relax.op.multiply(x, _const(f["alpha"],
                                                                              "float32")),
                                                   _const(f["beta"], "float32")),
                                      f["lo"], f["hi"]),
    "hardswish": lambda x, f: relax.op.multiply(x, relax.op.divide(
        _clip(relax.op.add(x, _const(f["beta"], "float32")), f["lo"], f["hi"]),
        _const(f["div"], "float32"))),
    "silu": lambda x, f: relax.op.multiply(x, relax.op.sigmoid(x)),
}


def _rowwise(bb: relax.BlockBuilder, x, layer: RowLayer, other=None):
    """int8 and int16 adds and multiplies in integers; int8 tables as the array applies them; an
    int16 QDQ function as the table of what the array's float32 arithmetic gives at each of the
    65536 inputs (the CPU holds the 128 KB a tile cannot); fp32 row-wise layers as TVM's own ops
    (the array's GELU polynomial and exp differ from them by their stated error only)."""
    if layer.op == "mul" and layer.precision in ("int8", "int16"):  # quant.requantize_mul
        q = layer.qdq
        a, b = (bb.emit(relax.op.subtract(relax.op.astype(t, "int64"), _const(zp, "int64")))
                for t, zp in ((x, q["in_zp"]), (other, q["other_zp"])))
        acc = _rounding_shift(bb, bb.emit(relax.op.multiply(a, b)), _const(q["mult"], "int64"),
                              _const(q["shift"], "int64"))
        y = bb.emit(relax.op.add(acc, _const(layer.out_zp, "int64")))
        return _clip_int8(bb, y, QMIN[layer.precision], layer.precision)
    if layer.op == "lut" or layer.qdq is not None:
        low, dtype = (-128, "int8") if layer.op == "lut" else (QMIN["int16"], "int16")
        table = layer.lut if layer.op == "lut" else \
            qdq_function(layer.op, np.arange(low, -low, dtype=np.int16), layer.qdq, layer.fn)
        index = bb.emit(relax.op.add(relax.op.astype(x, "int32"), _const(-low, "int32")))
        return bb.emit(relax.op.take(_const(table, dtype), index, axis=0, mode="clip"))
    if layer.op in ("add", "sub") and layer.precision in ("int8", "int16"):
        return _int8_add(bb, x, other, layer.add, layer.out_zp, layer.precision)  # sub: negated
    binary = {"add": relax.op.add, "mul": relax.op.multiply, "sub": relax.op.subtract,
              "div": relax.op.divide}
    if layer.op in binary:
        return bb.emit(binary[layer.op](x, other))
    if layer.op in _FUNCTIONS:
        return bb.emit(_FUNCTIONS[layer.op](x, layer.fn or {}))
    if layer.op in ("softmax", "log_softmax"):
        return bb.emit(getattr(relax.op.nn, layer.op)(x, axis=-1))
    return bb.emit(relax.op.nn.layer_norm(x, _const(layer.gamma, "float32"),
                                          _const(layer.beta, "float32"), axes=[-1],
                                          epsilon=layer.eps))


def reference_function(graph: LayerGraph) -> relax.Function:
    """A plain Relax function computing the layers of an offloaded function as the array does."""
    bb = relax.BlockBuilder()
    params = [relax.Var(p.name, relax.TensorType(p.shape, p.dtype)) for p in graph.params]
    with bb.function("reference", params, private=True):
        with bb.dataflow():
            values = {}
            for layer in graph.layers:
                if isinstance(layer, ConcatLayer):
                    values[layer.name] = _concat(bb, [values[s] for s in layer.inputs], layer)
                    continue
                x = params[layer.input] if isinstance(layer.input, int) else values[layer.input]
                if isinstance(layer, RowLayer):
                    o = layer.other
                    o = None if o is None else params[o] if isinstance(o, int) else values[o]
                    values[layer.name] = _rowwise(bb, x, layer, o)
                elif isinstance(layer, BmmLayer):
                    o = layer.other
                    values[layer.name] = _bmm(bb, x, params[o] if isinstance(o, int) else
                                              values[o], layer)
                elif isinstance(layer, FlattenLayer):
                    if layer.perm:
                        x = bb.emit(relax.op.permute_dims(x, layer.perm))
                    values[layer.name] = bb.emit(relax.op.reshape(x, layer.out_shape))
                elif isinstance(layer, HeadsLayer):  # moves the values (int8: unchanged)
                    hd = layer.width // layer.heads
                    heads = [layer.batch, layer.seq, layer.heads, hd]
                    if layer.split:
                        x = bb.emit(relax.op.reshape(x, heads))
                    x = bb.emit(relax.op.permute_dims(x, list(layer.perm)))
                    values[layer.name] = x if layer.split else bb.emit(relax.op.reshape(
                        x, [layer.batch, layer.seq, layer.width]))
                elif isinstance(layer, SliceLayer):
                    ends = [b + (n - 1) * s + 1 for b, n, s in
                            zip(layer.begin, layer.out_shape[1:], layer.steps)]
                    values[layer.name] = bb.emit(relax.op.strided_slice(
                        x, [1, 2, 3], list(layer.begin), ends, list(layer.steps)))
                elif isinstance(layer, ConvLayer):
                    r = layer.residual
                    r = None if r is None else params[r] if isinstance(r, int) else values[r]
                    values[layer.name] = _conv(bb, x, layer, r)
                else:
                    dense = _int8_dense if layer.precision in ("int8", "int16xint8") \
                        else _fp32_dense
                    values[layer.name] = dense(bb, x, layer)
            out = bb.emit_output(relax.Tuple([values[o] for o in graph.output])
                                 if isinstance(graph.output, tuple) else values[graph.output])
        bb.emit_func_output(out)
    return bb.get()["reference"]


def reference_module(mod: tvm.IRModule, params: dict | None = None,
                     device=None) -> tvm.IRModule:
    """``mod`` partitioned for the array of ``device`` (by default the catalog's default), each
    offloaded function replaced by its reference."""
    if params:
        mod = relax.transform.BindParams("main", params)(mod)
    mod = partition_for_aie(mod, device)
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function) and func.attrs is not None and \
                func.attrs.get("Codegen") == "aie":
            mod[gv] = reference_function(read_layer_graph(func))
    return mod


def build_reference(mod: tvm.IRModule, params: dict | None = None, device=None):
    """The reference as a Relax VM executable for the host CPU (target ``llvm``)."""
    return tvm.compile(reference_module(mod, params, device), target="llvm")
