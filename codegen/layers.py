"""Reading a partitioned Relax function into plain layer descriptions (no TVM objects inside).

This is the only module that knows what the composites made by :mod:`tvm_aie.partition` look like.
A function with ``Codegen="aie"`` (after ``MergeCompositeFunctions``) binds one local function per
layer (attribute ``Composite="aie.dense_*"`` or ``"aie.conv2d_*"``) and calls them in dataflow
order; a dense composite is ``matmul(x, permute_dims?(W))``, optionally ``+ b`` and ``relu``, a
conv2d composite ``conv2d(x, W)``, optionally ``+ reshape(b)``, ``batch_norm`` (folded here into W
and b), ``relu`` and a max-pool; in int8 both are wrapped in the ``dequantize ... quantize`` of
onnxruntime's QDQ format. An ``aie.flatten_*`` composite (a reshape) becomes a
:class:`FlattenLayer` between a conv part and a dense head, an ``aie.slice`` a
:class:`SliceLayer` and an ``aie.concat_*`` a :class:`ConcatLayer`, each folded into the conv or
pooling layers reading it (:func:`read_program`); conv and pooling layers may form a DAG. An
``aie.heads_*`` composite (reshape and transpose) becomes a :class:`HeadsLayer` between a dense
layer and a batched matmul (or back), which the program does with DMA patterns; dense, batched
matmul, row-wise and heads layers may form a DAG too (a transformer encoder layer).

For int8 layers this also fixes the integer arithmetic the array does (see :mod:`tvm_aie.quant`):
the kernel multiplies the raw int8 input, so the input zero point is folded into the int32 bias
(``bias -= zp_in * colsum(W)``), and ``s_in * s_w[n] / s_out`` becomes a multiplier and shift.
A dense, conv2d or pooling composite whose dequantized input is int16 (onnxruntime's ``QInt16``
activations) is the ``int16xint8`` precision: the same arithmetic with an int64 bias and
accumulator, int16 output.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass

import numpy as np
from tvm import relax

from ..partition import const_value, layer_precision
from ..quant import product_multiplier, quantize_multiplier
from ..schedules.dense import OPERANDS, accumulator_dtype


@dataclass
class DenseLayer:
    """``y = act(x @ weight + bias)``, in fp32, int8 (requantised to the output's int8) or
    int16xint8 (int16 activations in and out, int8 weights, int64 accumulator and bias)."""

    name: str
    precision: str  # "int8" | "int16xint8" | "float32"
    m: int
    k: int
    n: int
    weight: np.ndarray  # [k, n], int8 or float32
    bias: np.ndarray | None  # [n]: int32 (int16xint8: int64) with the input zero point folded
    # in, or float32
    relu: bool
    input: int | str  # index of the function parameter, or name of the layer that feeds it
    in_scale: float | None = None
    in_zp: int | None = None
    w_scale: np.ndarray | None = None  # [n] float32
    out_scale: float | None = None
    out_zp: int | None = None
    mult: np.ndarray | None = None  # [n] int64, in [2^30, 2^31)
    shift: np.ndarray | None = None  # [n] int64
    # A constant added as a QDQ Add after the layer's quantize (onnxruntime's MatMul + Add):
    # ``addend`` [n] its integers, ``add`` how the requantised output and it are added
    add: "ResidualAdd | None" = None
    addend: np.ndarray | None = None

    @property
    def in_dtype(self) -> str:
        return OPERANDS.get(self.precision, (self.precision,))[0]

    @property
    def epilogue_zp(self) -> int:
        """Zero point the requantised matmul output has (before the bias add, if any)."""
        return self.add.conv_zp if self.add else int(self.out_zp or 0)

    @property
    def out_dtype(self) -> str:
        return self.in_dtype


@dataclass
class ResidualAdd:
    """int8 ``out = q(dq(conv_out) + dq(residual))`` as :func:`tvm_aie.quant.requantize_add` does
    it: the conv's output is first requantised to its own int8 (``conv_zp``; ``ConvLayer.mult``
    and ``shift`` are for that step), then each operand is scaled to the output's scale. A dense
    layer's QDQ bias add is the same two steps (``conv_*``: the matmul's requantised output,
    ``res_*``: the constant's integers, ``DenseLayer.addend``)."""

    conv_zp: int
    conv_mult: int
    conv_shift: int
    res_zp: int
    res_mult: int
    res_shift: int


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


@dataclass
class BmmLayer:
    """``c[b] = scale * a[b] @ b[b]`` over the batch dimensions of two activations.

    int8: ``(a - a_zp) @ (b - b_zp)`` exactly in int32, then requantised to the output's int8
    with ``mult``/``shift`` (one per-tensor scale, repeated over the ``n`` columns).
    """

    name: str
    precision: str
    batch_shape: tuple  # the leading dimensions of both operands
    m: int
    k: int
    n: int
    input: int | str  # a
    other: int | str  # b
    scale: float = 1.0  # fp32: the scalar multiplied in after the matmul
    a_zp: int = 0
    b_zp: int = 0
    out_zp: int = 0
    mult: np.ndarray | None = None  # [n] int64
    shift: np.ndarray | None = None  # [n] int64
    bias = None  # no bias and no activation: the int8 epilogue is the requantisation alone
    relu = False

    @property
    def batch(self) -> int:
        return int(np.prod(self.batch_shape))

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def out_dtype(self) -> str:
        return self.precision


@dataclass
class RowLayer:
    """An element- or row-wise layer on ``[rows, cols]`` (the last axis is ``cols``).

    ``op``: "gelu", "sigmoid", "tanh", "softmax", "layernorm" (fp32, with
    ``gamma``/``beta``/``eps``), "add" (of ``other``, a second tensor of the same shape; int8 and
    int16 through :func:`tvm_aie.quant.requantize_add` with ``add``), "mul" (by ``other``; int8
    and int16 through :func:`tvm_aie.quant.requantize_mul` with ``qdq``),
    "lut" (int8: ``y = lut[x + 128]``, the table being the layer's QDQ float function at every
    input) or, in int16, "gelu", "sigmoid", "tanh" and "scale" (by a scalar) as QDQ functions
    computed in float32 on the tile with ``qdq`` (:func:`tvm_aie.sim.kernels_rows.qdq_function`:
    a table of every int16 input would not fit a tile).
    """

    name: str
    op: str
    precision: str
    shape: tuple
    input: int | str
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    eps: float = 1e-5
    lut: np.ndarray | None = None  # [256] int8
    other: int | str | None = None
    add: tuple | None = None  # int8: (x_zp, x_mult, x_shift, other_zp, other_mult, other_shift)
    out_zp: int = 0
    # int16 QDQ function: in_scale, in_zp, out_scale, out_zp (float32 values) and scale's scalar;
    # int8/int16 mul: in_zp, other_zp and the product's mult, shift (quant.product_multiplier)
    qdq: dict | None = None
    macs = 0  # no multiply-accumulates in the model's count

    @property
    def cols(self) -> int:
        return int(self.shape[-1])

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape)) // self.cols

    @property
    def out_dtype(self) -> str:
        return self.precision


@dataclass
class FlattenLayer:
    """A conv or pooling layer's ``[N, C, H, W]`` output seen as ``[N, C*H*W]``, one row per image
    (ONNX ``Flatten``). Row-major order is unchanged, so it moves no data: the program addresses the
    same bytes under the new shape (in int8 ``q(reshape(dq(x)))`` of one scale and zero point is
    the identity on the int8 values). ``perm``: a transpose before the flatten (ONNX
    ``Transpose``, batch axis first, e.g. to NHWC), which only changes the order the map is
    written in."""

    name: str
    precision: str
    in_shape: tuple  # (N, C, H, W)
    out_shape: tuple  # (N, C*H*W)
    input: int | str
    perm: tuple | None = None  # axes of permute_dims on (N, C, H, W), batch axis first
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision


@dataclass
class HeadsLayer:
    """Attention heads split from or merged into a ``[B, S, D]`` activation (ONNX Reshape and
    Transpose around a batched matmul). A split is ``permute_dims(reshape(x, [B, S, H, D/H]),
    perm)`` with ``perm`` ``(0, 2, 1, 3)`` (queries, values) or ``(0, 2, 3, 1)`` (keys,
    transposed); a merge is ``reshape(permute_dims(x, (0, 2, 1, 3)), [B, S, D])`` of the
    ``[B, H, S, D/H]`` result. It moves no data of its own: the batched matmul reading a split
    walks the ``[B*S, D]`` matrix with the strides of :meth:`strides`, and the one a merge reads
    writes its blocks there with them (:mod:`~tvm_aie.codegen.lower_net`)."""

    name: str
    precision: str
    batch: int
    seq: int
    heads: int
    width: int  # D
    perm: tuple  # axes of permute_dims (batch first)
    split: bool
    input: int | str
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    def strides(self, stride: int) -> list:
        """Strides, in elements, of the batched matmul's ``[B, H, rows, cols]`` operand (split) or
        result (merge) over the ``[B*S, D]`` matrix stored with rows ``stride`` apart."""
        seq_major = [self.seq * stride, stride, self.width // self.heads, 1]  # [B, S, H, D/H]
        if self.split:
            return [seq_major[axis] for axis in self.perm]
        out = [0] * 4
        for i, axis in enumerate(self.perm):
            out[axis] = seq_major[i]
        return out


def _read_heads(func: relax.Function, name: str, x, out, source) -> HeadsLayer:
    calls = [b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)]
    (perm,) = [tuple(int(a) for a in c.attrs.axes) for c in calls
               if c.op.name == "relax.permute_dims"]  # (int8: between QDQ pairs of one scale)
    split = [c.op.name for c in calls if c.op.name in ("relax.reshape", "relax.permute_dims")
             ][0] == "relax.reshape"
    batch, seq, width = (int(d) for d in (x if split else out).ty.shape)
    heads = int((out if split else x).ty.shape[1])
    return HeadsLayer(name, str(x.ty.dtype), batch, seq, heads, width, perm, split, source)


@dataclass
class SliceLayer:
    """A ``strided_slice`` of a conv or pooling layer's ``[N, C, H, W]`` output read by the next
    conv or pooling layer. It moves no data of its own: the reader's input DMA walks the source
    map with the offset, sizes and strides of :meth:`pattern` (ONNX ``Slice`` and ``Split``)."""

    name: str
    precision: str
    in_shape: tuple  # (N, C, H, W)
    out_shape: tuple  # (N, C', H', W')
    begin: tuple  # (c, h, w)
    steps: tuple  # (c, h, w)
    input: int | str
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    def pattern(self) -> tuple:
        """(offset, sizes, strides) of the slice's elements in the row-major source map."""
        _, c, h, w = self.in_shape
        unit = (h * w, w, 1)
        offset = sum(b * u for b, u in zip(self.begin, unit))
        return offset, list(self.out_shape[1:]), [s * u for s, u in zip(self.steps, unit)]


def _read_slice(call: relax.Call, name: str, source) -> SliceLayer:
    """The slice the composite's ``strided_slice`` ``call`` takes (begins clamped as ONNX does)."""
    x = call.args[0]
    shape = tuple(int(d) for d in x.ty.shape)
    begin, steps = [0, 0, 0, 0], [1, 1, 1, 1]
    axes, starts, _, strides = ([int(f.value) for f in arg.fields] for arg in call.args[1:])
    for axis, start, step in zip(axes, starts, strides):
        axis %= 4
        begin[axis] = min(max(start + shape[axis] if start < 0 else start, 0), shape[axis])
        steps[axis] = step
    return SliceLayer(name, str(x.ty.dtype), shape, tuple(int(d) for d in call.ty.shape),
                      tuple(begin[1:]), tuple(steps[1:]), source)


@dataclass
class ConcatLayer:
    """A ``concat`` along channels of conv or pooling layers' ``[N, C_i, H, W]`` outputs, read by
    conv or pooling layers. It moves no data of its own: each input's producer writes its blocks
    straight into every reader's input image at the input's channel offset. int8: ``rescale``
    holds, per input, None (quantised as the output) or (zero point, multiplier, shift) to the
    output's scale, which the producer's epilogue applies (:func:`tvm_aie.quant.rescale`)."""

    name: str
    precision: str
    inputs: tuple  # sources, in channel order
    channels: tuple  # C_i of each input
    out_shape: tuple  # (N, C, H, W)
    rescale: tuple
    out_zp: int = 0
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    @property
    def offsets(self) -> list:
        """The first output channel of each input."""
        return [int(sum(self.channels[:i])) for i in range(len(self.channels))]


def _read_concat(func: relax.Function, name: str, sources: dict) -> ConcatLayer:
    """The concat composite: ``concat(x...)``, in int8 ``quantize(concat(dequantize(x)...))``."""
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values() if isinstance(v, relax.Call)}
    cat = calls["relax.concat"]
    fields = [bound.get(f, f) for f in bound.get(cat.args[0], cat.args[0]).fields]
    quant = calls.get("relax.quantize")
    xs = [f.args[0] if quant is not None else f for f in fields]
    layer = ConcatLayer(name, str(xs[0].ty.dtype), tuple(sources[x] for x in xs),
                        tuple(int(x.ty.shape[1]) for x in xs),
                        tuple(int(d) for d in cat.ty.shape), tuple(None for _ in xs))
    if quant is not None:
        s_out, layer.out_zp = _scalar(quant.args[1]), int(_scalar(quant.args[2]))
        rescale = []
        for dq in fields:
            s_in, zp_in = _scalar(dq.args[1]), int(_scalar(dq.args[2]))
            (mult,), (shift,) = quantize_multiplier(np.float64(s_in) / s_out)
            rescale.append(None if (s_in, zp_in) == (s_out, layer.out_zp) else
                           (zp_in, int(mult), int(shift)))
        layer.rescale = tuple(rescale)
    return layer


@dataclass
class Param:
    name: str
    shape: tuple
    dtype: str


@dataclass
class LayerGraph:
    """The layers of one offloaded function, in dataflow order, and which one gives its result."""

    params: list[Param]
    layers: list  # DenseLayer | ConvLayer | ...
    output: str | tuple  # a layer's name, or several (a function returning a tuple)


def _scalar(expr) -> float:
    return const_value(expr).reshape(()).item()


def _read_composite(func: relax.Function, name: str, m: int, source) -> DenseLayer:
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values() if isinstance(v, relax.Call)}

    def value(expr):
        return bound.get(expr, expr)

    matmul = calls["relax.matmul"]
    lhs, rhs = value(matmul.args[0]), value(matmul.args[1])
    transposed = isinstance(rhs, relax.Call) and rhs.op.name == "relax.permute_dims"
    if transposed:
        rhs = value(rhs.args[0])
    int8 = isinstance(rhs, relax.Call)  # dequantize(W_int8, scale, zp)
    weight = const_value(rhs.args[0] if int8 else rhs)
    weight = np.ascontiguousarray(weight.T if transposed else weight)
    k, n = weight.shape
    ops = [v for v in bound.values() if isinstance(v, relax.Call)]  # in dataflow order
    bias, addq = None, None
    for add in (op for op in ops if op.op.name == "relax.add"):
        if value(add.args[0]).same_as(matmul) or value(add.args[1]).same_as(matmul):
            bias = value(add.args[1] if value(add.args[0]).same_as(matmul) else add.args[0])
        else:  # q(dq(q(matmul)) + dq(c)): the QDQ add of a constant after the matmul's quantize
            addq = [value(a) for a in add.args]
    precision = "float32"
    if int8:  # int16 activations (onnxruntime's QInt16) with int8 weights: int16xint8
        precision = layer_precision(lhs.args[0].ty.dtype)
    layer = DenseLayer(name, precision, m, k, n, weight, None, "relax.nn.relu" in calls, source)
    if not int8:
        layer.bias = None if bias is None else const_value(bias).reshape(n).astype(np.float32)
        return layer
    quants = [op for op in ops if op.op.name == "relax.quantize"]
    mid, quant = quants[0], quants[-1]  # the matmul's, the layer's (one unless a bias add)
    layer.in_scale, layer.in_zp = _scalar(lhs.args[1]), int(_scalar(lhs.args[2]))
    layer.out_scale, layer.out_zp = _scalar(quant.args[1]), int(_scalar(quant.args[2]))
    layer.w_scale = np.broadcast_to(const_value(rhs.args[1]).reshape(-1), (n,)).astype(np.float32)
    acc_scale = np.float64(layer.in_scale) * layer.w_scale.astype(np.float64)
    layer.mult, layer.shift = quantize_multiplier(acc_scale / _scalar(mid.args[1]))
    layer.bias = _int_bias(bias, acc_scale, weight, layer.in_zp,
                           "int64" if precision == "int16xint8" else "int32")
    if addq:  # the constant's dequantize is the operand that does not read ``mid``
        c = next(a for a in addq if not value(a.args[0]).same_as(mid))
        layer.addend = np.broadcast_to(const_value(c.args[0]).reshape(-1), (n,)).copy()
        (mm,), (ms,) = quantize_multiplier(_scalar(mid.args[1]) / layer.out_scale)
        (cm,), (cs,) = quantize_multiplier(_scalar(c.args[1]) / layer.out_scale)
        layer.add = ResidualAdd(int(_scalar(mid.args[2])), int(mm), int(ms),
                                int(_scalar(c.args[2])), int(cm), int(cs))
    return layer


def _int_bias(bias, acc_scale: np.ndarray, weight: np.ndarray, in_zp: int,
              acc_dtype: str = "int32") -> np.ndarray | None:
    """The bias at the accumulator's scale in ``acc_dtype``, with ``-zp_in * colsum(W)`` folded
    in (int64 for int16 inputs, whose zero point times a column sum can exceed int32)."""
    n = acc_scale.shape[0]
    b = np.zeros(n, np.int64)
    if isinstance(bias, relax.Call):  # dequantize(b_int32, s_b, zp_b), as onnxruntime writes it
        b_int = const_value(bias.args[0]).reshape(n).astype(np.int64) - \
            const_value(bias.args[2]).astype(np.int64)
        s_b = np.broadcast_to(const_value(bias.args[1]).astype(np.float64).reshape(-1), (n,))
        b = b_int if np.allclose(s_b, acc_scale, rtol=1e-6) else np.round(b_int * s_b / acc_scale)
    elif bias is not None:
        b = np.round(const_value(bias).reshape(n).astype(np.float64) / acc_scale)
    if bias is None and in_zp == 0:
        return None
    b = b.astype(np.int64) - in_zp * weight.astype(np.int64).sum(axis=0)
    if acc_dtype == "int32" and np.any(np.abs(b) >= 2**31):
        raise ValueError("int8 dense: bias does not fit in int32 at the accumulator's scale")
    return b.astype(acc_dtype)


def _read_conv(func: relax.Function, name: str, sources: dict) -> ConvLayer:
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
    quants = [op for op in ops if op.op.name == "relax.quantize"]
    for op in ops[names.index("relax.nn.conv2d") + 1:]:
        other = op.args[1] if len(op.args) > 1 else None
        if op.op.name == "relax.add" and any(param_of(a) is not None for a in op.args):
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
                      int(a.groups), "relax.nn.relu" in names or clip_max is not None,
                      None if pool is None else tuple(int(v) for v in pool.attrs.pool_size),
                      sources[x], clip_max=None if clip_max is None or np.isinf(clip_max) else
                      clip_max, residual=None if residual is None else sources[param_of(residual)],
                      batch=int(x.ty.shape[0]))
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
    layer.in_scale, layer.in_zp = _scalar(lhs.args[1]), int(_scalar(lhs.args[2]))
    conv_scale, conv_zp = _scalar(quants[0].args[1]), int(_scalar(quants[0].args[2]))
    layer.out_scale, layer.out_zp = _scalar(quants[-1].args[1]), int(_scalar(quants[-1].args[2]))
    layer.w_scale = np.broadcast_to(const_value(rhs.args[1]).reshape(-1),
                                    (cout,)).astype(np.float32)
    acc_scale = np.float64(layer.in_scale) * layer.w_scale.astype(np.float64)
    layer.mult, layer.shift = quantize_multiplier(acc_scale / conv_scale)
    layer.bias = _int_bias(bias, acc_scale, weight.reshape(cout, -1).T, layer.in_zp,
                           accumulator_dtype(layer.precision))
    if residual is not None:  # residual = dequantize(r, s_r, zp_r)
        (cm,), (cs,) = quantize_multiplier(conv_scale / layer.out_scale)
        (rm,), (rs,) = quantize_multiplier(_scalar(residual.args[1]) / layer.out_scale)
        layer.add = ResidualAdd(conv_zp, int(cm), int(cs), int(_scalar(residual.args[2])),
                                int(rm), int(rs))
    return layer


def _read_pool(func: relax.Function, name: str, sources: dict) -> ConvLayer:
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
        layer.in_scale, layer.in_zp = _scalar(dq.args[1]), int(_scalar(dq.args[2]))
        layer.out_scale, layer.out_zp = _scalar(quant.args[1]), int(_scalar(quant.args[2]))
        layer.w_scale = np.full(c, 1 / count, np.float32)
        acc_scale = np.float64(layer.in_scale) / count * np.ones(c)
        layer.mult, layer.shift = quantize_multiplier(acc_scale / layer.out_scale)
        layer.bias = _int_bias(None, acc_scale, weight.reshape(c, -1).T, layer.in_zp,
                               accumulator_dtype(layer.precision))
    return layer


def _read_bmm(func: relax.Function, name: str, sources: dict) -> BmmLayer:
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values()
             if isinstance(v, relax.Call) and hasattr(v.op, "name")}
    mm = calls["relax.matmul"]
    lhs, rhs = (bound.get(a, a) for a in mm.args)
    int8 = "relax.quantize" in calls
    a, b = (lhs.args[0], rhs.args[0]) if int8 else (lhs, rhs)
    *batch, m, k = (int(d) for d in a.ty.shape)
    n = int(b.ty.shape[-1])
    layer = BmmLayer(name, "int8" if int8 else "float32", tuple(batch), m, k, n,
                     sources[a], sources[b])
    if "relax.multiply" in calls:
        layer.scale = float(const_value(calls["relax.multiply"].args[1]))
    if int8:
        quant = calls["relax.quantize"]
        layer.a_zp, layer.b_zp = int(_scalar(lhs.args[2])), int(_scalar(rhs.args[2]))
        layer.out_zp = int(_scalar(quant.args[2]))
        ratio = np.float64(_scalar(lhs.args[1])) * _scalar(rhs.args[1]) / _scalar(quant.args[1])
        mult, shift = quantize_multiplier(ratio)
        layer.mult, layer.shift = np.repeat(mult, n), np.repeat(shift, n)
    return layer


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float64."""
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def _lut(call, dq, quant) -> np.ndarray:
    """``q(f(dq(i)))`` for every int8 ``i``, computed as the QDQ graph does: float32 values,
    round half to even, saturate."""
    x = (np.arange(-128, 128, dtype=np.float32) - np.float32(_scalar(dq.args[2]))) * \
        np.float32(_scalar(dq.args[1]))
    name = call.op.name
    if name == "relax.multiply":
        y = x * np.float32(const_value(call.args[1]).reshape(()))
    else:
        f = {"relax.nn.gelu": _gelu, "relax.sigmoid": lambda v: 1 / (1 + np.exp(-v)),
             "relax.tanh": np.tanh}[name]
        y = f(x.astype(np.float64)).astype(np.float32)
    q = np.round(y / np.float32(_scalar(quant.args[1]))) + _scalar(quant.args[2])
    return np.clip(q, -128, 127).astype(np.int8)


# a one-input row-wise layer's Relax op -> its RowLayer.op (a scalar multiply only in int16)
_ROW_OPS = {"relax.nn.gelu": "gelu", "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid",
            "relax.tanh": "tanh", "relax.nn.layer_norm": "layernorm", "relax.multiply": "scale"}


def _read_rowwise(func: relax.Function, name: str, sources: dict) -> RowLayer:
    x, *rest = func.params
    calls = [b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)]
    shape = tuple(int(d) for d in x.ty.shape)
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}

    def param_of(expr):  # the parameter an operand is, or dequantizes
        expr = bound.get(expr, expr)
        return expr.args[0] if isinstance(expr, relax.Call) else expr

    if len(calls) == 4:  # q(dq(a) + dq(b)) or q(dq(a) * dq(b)); operands in parameter order
        add, quant = calls[2], calls[3]  # (both ops commute)
        a, b = sorted(add.args, key=lambda arg: str(sources[param_of(arg)]))
        out_scale = _scalar(quant.args[1])
        if add.op.name == "relax.multiply":
            (sa, za), (sb, zb) = ((_scalar(dq.args[1]), int(_scalar(dq.args[2])))
                                  for dq in (bound.get(a, a), bound.get(b, b)))
            mult, shift = product_multiplier(sa * sb / out_scale, str(x.ty.dtype))
            return RowLayer(name, "mul", str(x.ty.dtype), shape, sources[param_of(a)],
                            other=sources[param_of(b)], out_zp=int(_scalar(quant.args[2])),
                            qdq={"in_zp": za, "other_zp": zb, "mult": mult, "shift": shift})
        terms = []
        for dq in (bound.get(a, a), bound.get(b, b)):
            (mult,), (shift,) = quantize_multiplier(_scalar(dq.args[1]) / out_scale)
            terms += [int(_scalar(dq.args[2])), int(mult), int(shift)]
        return RowLayer(name, "add", str(x.ty.dtype), shape, sources[param_of(a)],
                        other=sources[param_of(b)], add=tuple(terms),
                        out_zp=int(_scalar(quant.args[2])))
    if calls[-1].op.name == "relax.quantize" and str(x.ty.dtype) == "int16":
        dq, op, quant = calls
        qdq = {"in_scale": float(_scalar(dq.args[1])), "in_zp": int(_scalar(dq.args[2])),
               "out_scale": float(_scalar(quant.args[1])), "out_zp": int(_scalar(quant.args[2]))}
        kind = _ROW_OPS[op.op.name]
        if kind == "scale":
            qdq["scalar"] = float(const_value(op.args[1]).reshape(()))
        return RowLayer(name, kind, "int16", shape, sources[x], qdq=qdq)
    if calls[-1].op.name == "relax.quantize":
        dq, op, quant = calls
        return RowLayer(name, "lut", "int8", shape, sources[x], lut=_lut(op, dq, quant))
    (op,) = calls
    if op.op.name in ("relax.add", "relax.multiply"):  # of two tensors, in parameter order
        a, b = sorted((sources[arg] for arg in op.args), key=str)  # (both ops commute)
        return RowLayer(name, "add" if op.op.name == "relax.add" else "mul", "float32", shape, a,
                        other=b)
    kind = _ROW_OPS[op.op.name]
    layer = RowLayer(name, kind, "float32", shape, sources[x])
    if kind == "layernorm":
        layer.gamma, layer.beta = (const_value(a).astype(np.float32) for a in op.args[1:3])
        layer.eps = float(op.attrs.epsilon)
    return layer


def read_layer_graph(func: relax.Function) -> LayerGraph:
    """The layers of a ``Codegen="aie"`` function, with where each one's input comes from."""
    params = [Param(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype))
              for p in func.params]
    source = {p: i for i, p in enumerate(func.params)}
    composites, layers = {}, []
    for binding in (b for block in func.body.blocks for b in block.bindings):
        val = binding.value
        if isinstance(val, relax.Function):
            composites[binding.var] = val
        elif isinstance(val, relax.Call) and val.op in composites:
            x, comp = val.args[0], composites[val.op]
            kind = str(comp.attrs["Composite"])
            arg_sources = {p: source[a] for p, a in zip(comp.params, val.args)}
            if kind.startswith("aie.rowwise"):
                name = f"row{len(layers)}"
                layers.append(_read_rowwise(comp, name, arg_sources))
            elif kind.startswith("aie.flatten"):
                name = f"flatten{len(layers)}"
                perm = [b.value.attrs.axes for block in comp.body.blocks for b in block.bindings
                        if isinstance(b.value, relax.Call) and
                        getattr(b.value.op, "name", "") == "relax.permute_dims"]
                layers.append(FlattenLayer(name, str(x.ty.dtype),
                                           tuple(int(d) for d in x.ty.shape),
                                           tuple(int(d) for d in val.ty.shape), source[x],
                                           tuple(int(a) for a in perm[0]) if perm else None))
            elif kind.startswith("aie.concat"):
                name = f"concat{len(layers)}"
                layers.append(_read_concat(comp, name, arg_sources))
            elif kind.startswith("aie.heads"):
                name = f"heads{len(layers)}"
                layers.append(_read_heads(comp, name, x, val, source[x]))
            elif kind == "aie.slice":
                name = f"slice{len(layers)}"
                (inner,) = [b.value for block in comp.body.blocks for b in block.bindings]
                layers.append(_read_slice(inner, name, source[x]))
            elif kind.startswith("aie.bmm"):
                name = f"bmm{len(layers)}"
                layers.append(_read_bmm(comp, name, arg_sources))
            elif kind.startswith(("aie.conv2d", "aie.pool2d")):
                if kind.startswith("aie.pool2d"):
                    name = f"pool{len(layers)}"
                    layers.append(_read_pool(comp, name, arg_sources))
                else:
                    name = f"conv{len(layers)}"
                    layers.append(_read_conv(comp, name, arg_sources))
            else:
                name = f"dense{len(layers)}"
                # leading dimensions are rows: [B, S, K] is the [B*S, K] matrix in DDR
                rows = int(np.prod([int(d) for d in list(x.ty.shape)[:-1]]))
                layers.append(_read_composite(comp, name, rows, source[x]))
            source[binding.var] = name
        elif isinstance(val, relax.Var) and val in source:  # an alias, e.g. the output of a dataflow
            source[binding.var] = source[val]
        else:
            raise ValueError(f"unexpected binding in an aie function: {binding.var.name} = {val}")
    out = func.body.body
    return LayerGraph(params, layers, tuple(source[f] for f in out.fields)
                      if isinstance(out, relax.Tuple) else source[out])


def sources(layer) -> list:
    """What ``layer`` reads (function parameter indices and layer names): its input (a concat's
    inputs in place of the concat), its residual and its second operand."""
    concat = getattr(layer, "in_concat", None)
    return (list(concat.inputs) if concat else [layer.input]) + \
        [s for s in (getattr(layer, "residual", None), getattr(layer, "other", None))
         if s is not None]


def read_program(func: relax.Function) -> tuple[list, tuple]:
    """The layers of a ``Codegen="aie"`` function in dataflow order, and the names of those whose
    outputs it returns (in its order). Conv and pooling layers may form a DAG (a layer read by
    several, a concat of several: what the conv lowering builds); any other layer reads program
    inputs or layers before it (dense, batched matmul, row-wise and heads layers form a DAG too:
    Q, K and V projections read one input, a residual add two tensors, and the function may
    return several of them, heads excepted), and a function with a conv layer and others returns
    its last layer's output. A slice becomes the ``in_slice`` of the conv or pooling layer reading it (its input pattern), a
    concat the ``in_concat`` of each reader, and an int8 concat input's requantisation the
    ``rescale`` of its producer."""
    graph = read_layer_graph(func)
    folded = {x.name: x for x in graph.layers if isinstance(x, (SliceLayer, ConcatLayer))}
    rescale = {src: (*rs, cat.out_zp) for cat in folded.values() if isinstance(cat, ConcatLayer)
               for src, rs in zip(cat.inputs, cat.rescale) if rs is not None}
    layers, convs = [], set()
    for layer in graph.layers:
        if layer.name in folded:
            continue
        src = folded.get(layer.input)
        if src is not None and not isinstance(layer, ConvLayer):
            raise ValueError(f"{src.name} is read by {layer.name}, not a conv layer")
        if isinstance(src, SliceLayer):
            layer = dataclasses.replace(layer, in_slice=src, input=src.input)
        elif src is not None:
            layer = dataclasses.replace(layer, in_concat=src)
        if layer.name in rescale:
            layer = dataclasses.replace(layer, rescale=rescale[layer.name])
        if isinstance(layer, ConvLayer):
            joined = layer.in_concat.inputs if layer.in_concat else ()  # a concat joins layers
            wrong = [s for s in sources(layer)
                     if s not in convs and not (isinstance(s, int) and s not in joined)]
            if wrong:
                raise ValueError(f"aie function: {layer.name} reads {wrong[0]!r}, not a program "
                                 f"input or an earlier conv or pooling layer")
            convs.add(layer.name)
        elif any(not isinstance(s, int) and s not in {x.name for x in layers}
                 for s in sources(layer)):
            raise ValueError(f"aie function: {layer.name} reads {sources(layer)!r}, not program "
                             f"inputs or earlier layers")
        layers.append(layer)
    outputs = graph.output if isinstance(graph.output, tuple) else (graph.output,)
    if convs and (any(out not in convs | {layers[-1].name} for out in outputs) or
                  len(convs) < len(layers) and outputs != (layers[-1].name,)) or \
            any(isinstance(x, HeadsLayer) and x.name in outputs for x in layers):
        raise ValueError(f"aie function: its result {graph.output!r} is not the output of its "
                         f"last layer, of conv and pooling layers only, or of layers other than "
                         f"heads")
    for name in rescale:  # requantised for the concat: no other reader may see those values
        readers = [x for x in layers if name in sources(x)]
        if name in outputs or any(x.in_concat is None or name not in x.in_concat.inputs
                                  for x in readers):
            raise ValueError(f"aie function: {name} is requantised for a concat but read "
                             f"elsewhere too")
    return layers, tuple(outputs)


def read_layers(func: relax.Function) -> list:
    """The layers of a ``Codegen="aie"`` function (:func:`read_program` without the outputs)."""
    return read_program(func)[0]


def count_macs(mod) -> int:
    """Multiply-accumulates of every matmul and conv2d with static shapes in ``mod``, offloaded
    or not (a conv2d's output elements times its weight's ``C/groups * KH * KW``)."""
    total = 0

    def visit(expr):
        nonlocal total
        op = getattr(expr, "op", None) if isinstance(expr, relax.Call) else None
        name = getattr(op, "name", None)
        if name not in ("relax.matmul", "relax.nn.conv2d"):
            return
        inner = list(expr.args[0].ty.shape)[-1:] if name == "relax.matmul" else \
            list(expr.args[1].ty.shape)[1:]
        shapes = [expr.ty.shape, inner]
        if all(isinstance(d, int) or hasattr(d, "value") for s in shapes for d in s):
            total += int(np.prod([int(d) for s in shapes for d in s]))

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return total
