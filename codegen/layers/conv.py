"""The conv family: :class:`ConvLayer` (conv2d, or a pooling window) with its epilogue
(:class:`ResidualAdd`), and the readers of conv and pooling composites."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...partition import const_value, layer_precision
from ...quant import quantize_multiplier
from ...schedules.dense import OPERANDS, accumulator_dtype
from .common import ResidualAdd, int_bias, scalar
from .movement import ConcatLayer, SliceLayer


@dataclass
class ConvLayer:
    """``y = maxpool?(act(conv2d(x, weight, stride, padding, groups) + bias))`` on each NCHW image
    of a batch of ``batch`` (the program loops over them, the weights stay resident).

    int8 as :class:`DenseLayer`: raw int8 operands, int32 bias with ``-zp_in * sum(W[o])`` folded
    in, which is exact at the borders too because the array pads the input with ``in_zp``;
    int16xint8 the same with int16 activations (in, out and residual), an int64 bias and
    accumulator.
    """

    name: str
    precision: str
    in_shape: tuple  # (C, H, W)
    weight: np.ndarray  # [O, C/groups, KH, KW]
    bias: np.ndarray | None  # [O]
    stride: tuple  # (sh, sw)
    padding: tuple  # (top, left, bottom, right)
    groups: int
    relu: bool
    pool: tuple | None  # (ph, pw): non-overlapping max-pool after the activation
    input: int | str
    clip_max: float | None = None  # fp32 ReLU6-style activation: clip(0, clip_max) (relu is set)
    residual: int | str | None = None  # where a tensor added to the output comes from
    relu_after: bool = False  # fp32: a ReLU after the residual add (a ResNet block's output)
    add: "ResidualAdd | None" = None  # int8: how the conv's output and the residual are added
    # "conv", or a pooling layer as a depthwise window: "avgpool" (weights 1/K in fp32; in int8
    # weights 1 at scale 1/K, so requantisation divides) or "maxpool" (the weights are unused)
    kind: str = "conv"
    # the slice of the previous layer's (or the program input's) map this layer reads
    in_slice: "SliceLayer | None" = None
    # the concat this layer reads (``input`` is its name): its inputs fill the layer's image
    in_concat: "ConcatLayer | None" = None
    # int8 output read by a concat at another scale: (zp, mult, shift, the concat's zp), applied
    # after everything else (:func:`tvm_aie.quant.rescale`)
    rescale: tuple | None = None
    in_scale: float | None = None
    in_zp: int | None = None
    w_scale: np.ndarray | None = None
    out_scale: float | None = None
    out_zp: int | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    batch: int = 1  # images, each of ``in_shape``

    @property
    def in_dtype(self) -> str:
        return OPERANDS.get(self.precision, (self.precision,))[0]

    @property
    def out_dtype(self) -> str:
        return self.in_dtype

    @property
    def epilogue_zp(self) -> int:
        """Zero point the requantised conv output has (before a residual add, if any)."""
        return self.add.conv_zp if self.add else int(self.out_zp or 0)

    @property
    def conv_shape(self) -> tuple:
        """(O, Ho, Wo) of the convolution, before the pool."""
        _, h, w = self.in_shape
        (sh, sw), (pt, pl, pb, pr) = self.stride, self.padding
        kh, kw = self.weight.shape[2:]
        return (self.weight.shape[0], (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)

    @property
    def out_shape(self) -> tuple:
        o, ho, wo = self.conv_shape
        return (o, ho // self.pool[0], wo // self.pool[1]) if self.pool else (o, ho, wo)

    @property
    def macs(self) -> int:
        """Multiply-accumulates over the batch (none for pooling, as the model's MAC count has
        none there)."""
        o, ho, wo = self.conv_shape
        return self.batch * o * ho * wo * int(np.prod(self.weight.shape[1:])) \
            if self.kind == "conv" else 0


def read_conv(func: relax.Function, call, name: str, sources: dict) -> ConvLayer:
    """A conv2d composite, its ops read in dataflow order: conv, bias add, the batch norm's
    multiply and add (folded into the weight and bias), relu/clip, quantize, max-pool, residual
    add (and its quantize). ``sources`` maps the composite's parameters to where they come from."""
    ops = [b.value for block in func.body.blocks for b in block.bindings
           if isinstance(b.value, relax.Call) and hasattr(b.value.op, "name")]
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}

    def value(expr):
        return bound.get(expr, expr)

    def param_of(expr):
        """The composite parameter ``expr`` is, or dequantizes; None for anything else."""
        expr = value(expr)
        if isinstance(expr, relax.Call) and expr.op.name == "relax.dequantize":
            expr = value(expr.args[0])
        return expr if expr in sources else None

    names = [op.op.name for op in ops]
    conv = ops[names.index("relax.nn.conv2d")]
    x, rhs = param_of(conv.args[0]), value(conv.args[1])
    int8 = isinstance(rhs, relax.Call)  # QDQ: int8 or, with int16 activations, int16xint8
    weight = const_value(rhs.args[0] if int8 else rhs)
    cout = weight.shape[0]
    bias, scale, shift, clip_max, residual = None, None, None, None, None
    relu, relu_after = False, False
    quants = [op for op in ops if op.op.name == "relax.quantize"]
    for op in ops[names.index("relax.nn.conv2d") + 1:]:
        other = op.args[1] if len(op.args) > 1 else None
        if op.op.name == "relax.nn.relu":
            relu_after, relu = residual is not None, relu or residual is None
        elif op.op.name == "relax.add" and any(param_of(a) is not None for a in op.args):
            residual = next(value(a) for a in op.args if param_of(a) is not None)
        elif op.op.name == "relax.add" and scale is None:
            bias = value(other)
            if isinstance(bias, relax.Call) and bias.op.name == "relax.reshape":
                bias = value(bias.args[0])
        elif op.op.name == "relax.multiply":
            scale = const_value(other).reshape(-1)
        elif op.op.name == "relax.add":
            shift = const_value(other).reshape(-1)
        elif op.op.name == "relax.clip":
            clip_max = float(op.args[2].value)
    a = conv.attrs
    pool = ops[names.index("relax.nn.max_pool2d")] if "relax.nn.max_pool2d" in names else None
    layer = ConvLayer(name, layer_precision(x.ty.dtype),
                      tuple(int(d) for d in list(x.ty.shape)[1:]), weight, None,
                      tuple(int(v) for v in a.strides), tuple(int(v) for v in a.padding),
                      int(a.groups), relu or clip_max is not None,
                      None if pool is None else tuple(int(v) for v in pool.attrs.pool_size),
                      sources[x], clip_max=None if clip_max is None or np.isinf(clip_max) else
                      clip_max, residual=None if residual is None else sources[param_of(residual)],
                      relu_after=relu_after, batch=int(x.ty.shape[0]))
    if not int8:
        b = np.zeros(cout, np.float64) if bias is None else \
            const_value(bias).reshape(cout).astype(np.float64)
        if scale is not None:
            layer.weight = (weight * np.broadcast_to(scale, (cout,)).reshape(-1, 1, 1, 1)
                            ).astype(np.float32)
            b = b * scale + shift
        layer.bias = None if bias is None and scale is None else b.astype(np.float32)
        return layer
    lhs = value(conv.args[0])
    layer.in_scale, layer.in_zp = scalar(lhs.args[1]), int(scalar(lhs.args[2]))
    conv_scale, conv_zp = scalar(quants[0].args[1]), int(scalar(quants[0].args[2]))
    layer.out_scale, layer.out_zp = scalar(quants[-1].args[1]), int(scalar(quants[-1].args[2]))
    layer.w_scale = np.broadcast_to(const_value(rhs.args[1]).reshape(-1),
                                    (cout,)).astype(np.float32)
    acc_scale = np.float64(layer.in_scale) * layer.w_scale.astype(np.float64)
    layer.mult, layer.shift = quantize_multiplier(acc_scale / conv_scale)
    layer.bias = int_bias(bias, acc_scale, weight.reshape(cout, -1).T, layer.in_zp,
                           accumulator_dtype(layer.precision))
    if residual is not None:  # residual = dequantize(r, s_r, zp_r)
        (cm,), (cs,) = quantize_multiplier(conv_scale / layer.out_scale)
        (rm,), (rs,) = quantize_multiplier(scalar(residual.args[1]) / layer.out_scale)
        layer.add = ResidualAdd(conv_zp, int(cm), int(cs), int(scalar(residual.args[2])),
                                int(rm), int(rs))
    return layer


def read_pool(func: relax.Function, call, name: str, sources: dict) -> ConvLayer:
    """A pooling composite as a depthwise-window layer (see :class:`ConvLayer` ``kind``)."""
    (x,) = func.params
    calls = {b.value.op.name: b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)}
    c, h, w = (int(d) for d in list(x.ty.shape)[1:])
    if "relax.mean" in calls:  # global average pool
        kind, window, stride = "avgpool", (h, w), (1, 1)
    else:
        pool = calls.get("relax.nn.max_pool2d", calls.get("relax.nn.avg_pool2d"))
        kind = "maxpool" if pool.op.name == "relax.nn.max_pool2d" else "avgpool"
        window = tuple(int(v) for v in pool.attrs.pool_size)
        stride = tuple(int(v) for v in pool.attrs.strides)
    int8 = "relax.quantize" in calls  # QDQ: int8, or int16xint8 on int16 activations
    count = window[0] * window[1]
    weight = np.full((c, 1, *window), 1 if int8 else 1 / count,
                     np.int8 if int8 else np.float32)
    layer = ConvLayer(name, layer_precision(x.ty.dtype), (c, h, w), weight, None, stride,
                      (0, 0, 0, 0), c, False, None, sources[x], kind=kind,
                      batch=int(x.ty.shape[0]))
    if int8:
        dq, quant = calls["relax.dequantize"], calls["relax.quantize"]
        layer.in_scale, layer.in_zp = scalar(dq.args[1]), int(scalar(dq.args[2]))
        layer.out_scale, layer.out_zp = scalar(quant.args[1]), int(scalar(quant.args[2]))
        layer.w_scale = np.full(c, 1 / count, np.float32)
        acc_scale = np.float64(layer.in_scale) / count * np.ones(c)
        layer.mult, layer.shift = quantize_multiplier(acc_scale / layer.out_scale)
        layer.bias = int_bias(None, acc_scale, weight.reshape(c, -1).T, layer.in_zp,
                               accumulator_dtype(layer.precision))
    return layer
