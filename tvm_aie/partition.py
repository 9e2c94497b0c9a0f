"""Relax patterns for what the AIE array runs, and :func:`partition_for_aie`.

The families: dense layers, conv2d and pooling layers, batched matmuls (below). The array runs
dense layers ``y = act(x @ W + b)`` with a constant weight, in fp32 or in int8 as onnxruntime's
QDQ quantiser writes them (as TVM's ONNX importer gives them)::

    dequantize(x_int8) -> matmul(., permute_dims?(dequantize(W_int8)))
        -> add(., dequantize(b_int32))? -> relu? -> quantize -> int8
        [-> dequantize -> add(., dequantize(c_int8)) -> quantize -> int8]?

where the last line is a bias written as a QDQ Add of its own (onnxruntime's quantiser on MatMul +
Add of a constant): the layer's epilogue keeps its intermediate int8 rounding and adds the
constant in fixed point as a residual add does (``_addq_reason`` says what it needs),
so an offloaded int8 region takes and returns int8 tensors, and consecutive layers hand int8 to each
other on the array. The same graph with int16 activations (onnxruntime's ``QInt16`` activations with
``QInt8`` weights) is the int16xint8 precision: int16 in and out, on devices whose catalog has its
intrinsic (not AIE1). ONNX ``Gemm(transB=1)`` imports with ``permute_dims`` on the weight, ``MatMul``
without, so both are matched. Each check rejects what the codegen cannot do (the layer then stays on
the CPU, with the reason logged): non-constant weights, symbolic shapes, other than
``[..., K] x [K, N]`` (leading input dimensions are rows: a transformer's ``[B, S, D]``
activations are the ``[B*S, D]`` matrix), dtypes other than float32/int8, weight zero points
other than 0, per-channel scales on another axis than N, requantisation scales outside the
multiplier-and-shift range, and intermediates used outside the layer.

The array also runs 2-D convolutions (NCHW, any static batch: the program loops over the images
with its layers as a pipeline; dilation 1; standard, grouped, depthwise and pointwise; any
stride and padding) with a constant OIHW weight, in fp32 or QDQ int8 as above::

    dequantize(x) -> conv2d(., dequantize(W)) -> add(., reshape(dequantize(b)))? -> relu?
        -> quantize [-> dequantize -> max_pool2d -> quantize]?

with a non-overlapping max-pool (pool size = stride, no padding) or a residual add (a skip
connection of the output's shape, requantised in int8) after either, and, as for dense layers,
the same QDQ graph with int16 activations as the int16xint8 precision (pooling layers and
residual adds in int16 too; not on AIE1), and in fp32 also an inference
batch norm after the conv (folded into its weight and bias) and ReLU6 / ``clip(0, hi)``. In QDQ
models onnxruntime folds ReLU/Clip into the output zero point and BN is folded by its
pre-processing, so the int8 pattern needs neither.

Pooling on its own (max, average, global average as ONNX's ``mean`` over H and W; no padding) is
a layer of the conv family too: the codegen runs it as a depthwise window over the same bands.

A flatten (``reshape`` to ``[N, C*H*W]``, in int8 between a dequantize and a quantize of one
scale) of a conv or pooling layer's output joins the region too, after a transpose that keeps the
batch axis first as well: it moves no data on the array (row-major order is unchanged; a
transpose changes the strides the map is written with), so a CNN's conv part and its dense head
become one program. It is matched in a second pass, once the layer feeding it is known to be
offloaded.

A ``strided_slice`` of a conv or pooling layer's output, or of a map from outside the array (any
begin and positive step on C, H and W; on int8 or fp32 values, no compute) joins the region the
same way when an offloaded conv or pooling layer reads it: the layer's input DMA reads the slice
with an offset n-D pattern (from the producer's memory tile, or from DDR). ``split`` is matched
as the slices it makes, and in int8 a slice between a dequantize and a quantize of one scale
(onnxruntime's QDQ around Slice and Split) as the slice of the int8 values.

A ``concat`` along channels of offloaded conv or pooling layers' outputs, read only by offloaded
conv or pooling layers (a SqueezeNet fire module's expand branches, an Inception module), joins
the region too: each producer writes its blocks straight into its readers' input images at its
channel offset (no compute). In int8 (a dequantize per input, a quantize after) an input
quantised otherwise than the output is requantised by its producer's epilogue.

Batched matmuls of two activations (attention's QKᵀ and P·V: ``matmul(a, b)`` of one rank >= 3
and the same batch dimensions, in fp32 optionally times a scalar, or between QDQ pairs) are a
family of their own. Attention heads (``permute_dims(reshape(x))`` splitting a dense layer's
``[B, S, D]`` output into ``[B, H, S, D/H]``, keys transposed, for a batched matmul, and
``reshape(permute_dims(x))`` merging its result back for a dense layer; in int8 between QDQ pairs
of one scale) move no data of their own: the batched matmul's DMA patterns do them.

Batched matmuls, heads and row-wise layers are matched in graph passes, repeated until none
joins: each joins the region when it reads an offloaded dense, batched matmul, row-wise or heads
layer's output that it alone reads, so a whole transformer encoder layer becomes one function
(:mod:`~tvm_aie.codegen.lower_net`); a batched matmul or row-wise layer that joins nothing is a
program of its own, matched in the last pass. Row-wise layers: fp32 GELU, sigmoid, tanh,
softmax and layer norm over the last axis and the add or multiply of two tensors of one shape
(residual connections, gates); in int8 QDQ the add of two tensors (requantised) and any GELU,
sigmoid, tanh or scalar multiply, as a 256-entry lookup table (exact for per-tensor int8).
A bias or scale (a constant add or multiply) is offloaded only inside the layer it follows: on
its own it would cost a round trip through DDR for one operation per element.

Before matching, :class:`_Canonicalize` rewrites what TVM's ONNX importer writes into one form:
``batch_norm(...)[0]`` into a per-channel multiply-add, Clip's ``call_tir(maximum/minimum)`` into
``clip``, and a dequantize read by several ops (a block input that also feeds a residual add) into
one copy per reader.

Do not run ``FoldConstant`` before partitioning: it folds ``dequantize(W_int8)`` into a float
constant and the int8 layer becomes an fp32 one.
"""

from __future__ import annotations

import logging

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.pattern_registry import get_patterns_with_prefix, register_patterns
from tvm.relax.backend.utils import has_leaking_intermediate_variables
from tvm.relax.expr_functor import PyExprMutator, mutator
from tvm.relax.dpl.pattern import is_const, is_op, is_tuple, wildcard
from tvm.relax.transform import PatternCheckContext

from .quant import product_multiplier, quantize_multiplier
from .schedules import bmm, conv2d, rowwise
from .schedules.dense import TilingError
from .target import UnknownDeviceError, device_of_target, get_device

log = logging.getLogger("tvm_aie")

# Why each matmul (by its bound variable's name) was rejected, for the log after partitioning.
_rejected: dict[str, str] = {}
# Composite functions of an offloaded layer (by name) and the variables main binds their calls to
# -> its family ("conv", "pool", "dense"), set between the two fusion passes of partition_for_aie
# for the flatten and slice checks.
_offloaded: dict = {}


def _checker(keys: tuple, *reasons, overrides: bool = False):
    """A pattern's check: the first reason ``reasons`` give (None: the pattern may match) is
    recorded for the log against the variables bound to the annotated ``keys`` (first reason
    kept, unless ``overrides``: a later, more specific pattern's reason wins)."""
    def check(ctx: PatternCheckContext) -> bool:
        reason = next((r for r in (f(ctx) for f in reasons) if r is not None), None)
        if reason is not None:
            for key in keys:
                expr = ctx.annotated_expr.get(key)
                var = None if expr is None else ctx.value_to_bound_var.get(expr)
                if var is None:
                    continue
                if overrides:
                    _rejected[var.name] = reason
                else:
                    _rejected.setdefault(var.name, reason)
        return reason is None
    return check


def const_value(expr) -> np.ndarray:
    """The value of a Relax constant (TVM 0.27 imports them as ``GenericConst``)."""
    return expr.value.numpy()


def layer_precision(activation_dtype) -> str:
    """The precision of a layer whose activations are ``activation_dtype``: that dtype, except
    int16 (onnxruntime's ``QInt16`` activations, always with int8 weights here), which is the
    int16xint8 datapath."""
    return "int16xint8" if str(activation_dtype) == "int16" else str(activation_dtype)


def _int16_reason() -> str | None:
    """Why int16 activations cannot run on the device, or None (AIE1's catalog has no int16 x
    int8 intrinsic)."""
    try:
        _device().mmul_shape("int16xint8")
    except ValueError as err:
        return str(err)
    return None


def _dq(data):
    return is_op("relax.dequantize")(data, is_const(), is_const())


def _dense_pattern(int8: bool, bias: bool, relu: bool, addq: bool = False):
    """One dense layer; ``int8`` gives its QDQ form, ``addq`` (int8) a constant added as a QDQ
    Add after the matmul's own quantize (onnxruntime's quantiser on MatMul + Add of a bias:
    ``q(dq(q(matmul)) + dq(b_q))``). Returns (pattern, annotations)."""
    x, w = wildcard(), is_const()
    ann = {"x": x, "w": w}
    lhs, rhs = x, w
    if int8:
        lhs, rhs = ann["lhs"], ann["rhs"] = _dq(x), _dq(w)
    matmul = is_op("relax.matmul")(lhs, rhs | is_op("relax.permute_dims")(rhs))
    out = ann["matmul"] = matmul
    if bias:
        b = is_const()
        ann["b"] = b
        out = is_op("relax.add")(out, (_dq(b) | b) if int8 else b)
    if addq:
        ann["mid_q"] = is_op("relax.quantize")(out, is_const(), is_const())
        ann["mid_dq"], ann["addend"] = _dq(ann["mid_q"]), is_const()
        ann["add_dq"] = _dq(ann["addend"])
        out = ann["addq"] = is_op("relax.add")(ann["mid_dq"], ann["add_dq"]) | \
            is_op("relax.add")(ann["add_dq"], ann["mid_dq"])
    if relu:
        out = is_op("relax.nn.relu")(out)
    if int8:
        out = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _static(ty, ndim: int) -> bool:
    return len(ty.shape) == ndim and all(isinstance(d, tvm.tirx.IntImm | int) for d in ty.shape)


def _reason(ctx: PatternCheckContext) -> str | None:
    """Why the matched layer cannot run on the array, or None if it can."""
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    x, w, mm = ctx.annotated_expr["x"], ctx.annotated_expr["w"], ctx.annotated_expr["matmul"]
    if not (len(x.ty.shape) >= 2 and _static(x.ty, len(x.ty.shape)) and _static(w.ty, 2)):
        return f"needs static shapes [..., K] x [K, N], got {x.ty.shape} and {w.ty.shape}"
    w_op = ctx.matched_bindings.get(mm.args[1], mm.args[1])
    transposed = isinstance(w_op, relax.Call) and w_op.op.name == "relax.permute_dims"
    if transposed and w_op.attrs.axes is not None and [int(a) for a in w_op.attrs.axes] != [1, 0]:
        return "weight permutation is not a transpose"
    int8 = "lhs" in ctx.annotated_expr
    want = "int8" if int8 else "float32"
    act = "int16" if int8 and x.ty.dtype == "int16" else want  # int16 activations x int8 weights
    if x.ty.dtype != act or w.ty.dtype != want or mm.ty.dtype != "float32":
        return f"dtypes {x.ty.dtype} x {w.ty.dtype} -> {mm.ty.dtype} (supported: {want}, " \
            "int16 x int8 in QDQ)"
    if act == "int16" and (reason := _int16_reason()):
        return reason
    n = int(mm.ty.shape[-1])
    b = ctx.annotated_expr.get("b")
    if b is not None and const_value(b).size != n:
        return f"bias of shape {b.ty.shape} is not one value per output channel"
    if not int8:
        return None if b is None or b.ty.dtype == "float32" else f"bias dtype {b.ty.dtype}"
    lhs, rhs, root = (ctx.annotated_expr[k] for k in ("lhs", "rhs", "root"))
    mid = ctx.annotated_expr.get("mid_q", root)  # what the accumulator is requantised to
    for call in (mid, root):
        if call.attrs.out_dtype != act:
            return f"{act} input quantised to {call.attrs.out_dtype} at the output"
    for name, call in (("input", lhs), ("output", root), ("matmul output", mid)):
        if const_value(call.args[1]).size != 1 or const_value(call.args[2]).size != 1:
            return f"{name} quantisation is not per tensor"
    if mid is not root and (reason := _addq_reason(ctx.annotated_expr, n, act)) is not None:
        return f"bias add: {reason}"
    w_scale, w_zp = const_value(rhs.args[1]), const_value(rhs.args[2])
    if np.any(w_zp != 0):
        return "weight zero point is not 0"
    n_axis = 0 if transposed else 1  # N is axis 0 of a weight stored transposed
    if w_scale.size != 1 and (w_scale.size != n or int(rhs.attrs.axis) % 2 != n_axis):
        return "weight scales are not per tensor or per output channel"
    try:  # the requantisation scale must be a multiplier and shift the array can apply
        quantize_multiplier(const_value(lhs.args[1]).astype(np.float64) * w_scale /
                            const_value(mid.args[1]))
    except ValueError as err:
        return str(err)
    return None


def _addq_reason(ann: dict, n: int, act: str) -> str | None:
    """Why the QDQ add of a constant after a dense layer's quantize cannot be its epilogue's
    second stage (:func:`tvm_aie.quant.requantize_add` of the requantised output and the
    constant's integers, one per output channel or one for all), or None if it can."""
    mid_q, mid_dq, add_dq = ann["mid_q"], ann["mid_dq"], ann["add_dq"]
    if any(not np.array_equal(const_value(mid_q.args[i]), const_value(mid_dq.args[i]))
           for i in (1, 2)):
        return "the matmul's output is dequantised with other parameters than it was quantised"
    addend = ann["addend"]
    shape = [int(d) for d in addend.ty.shape]
    if shape and (shape[-1] not in (1, n) or any(d != 1 for d in shape[:-1])):
        return f"the constant {shape} is not one value per output channel"
    # centred, widened and times a multiplier, the add's terms must stay inside int64
    widths = ("int8", "uint8") + (("int16", "uint16") if act == "int16" else ())
    if addend.ty.dtype not in widths:
        return f"the constant is {addend.ty.dtype} (supported: {', '.join(widths)})"
    if const_value(add_dq.args[1]).size != 1 or const_value(add_dq.args[2]).size != 1:
        return "the constant's quantisation is not per tensor"
    s_out = const_value(ann["root"].args[1]).astype(np.float64)
    try:
        for call in (mid_dq, add_dq):
            quantize_multiplier(const_value(call.args[1]).astype(np.float64) / s_out)
    except ValueError as err:
        return str(err)
    return None


# the matmul may still be offloaded by a shorter pattern: then the add's log says why
_check_dense = _checker(("matmul", "addq"), _reason)


def _conv_pattern(int8: bool, bias: bool, bn: bool, act: str | None, pool: bool,
                  residual: bool = False):
    """One conv2d layer (see the module docstring). Returns (pattern, annotations)."""
    x, w = wildcard(), is_const()
    ann = {"x": x, "w": w}
    lhs, rhs = x, w
    if int8:
        lhs, rhs = ann["lhs"], ann["rhs"] = _dq(x), _dq(w)
    out = ann["conv"] = is_op("relax.nn.conv2d")(lhs, rhs)
    if bias:
        b = ann["b"] = _dq(is_const()) if int8 else is_const()
        out = is_op("relax.add")(out, is_op("relax.reshape")(b, wildcard()) | b)
    if bn:  # inference batch norm, as _Canonicalize rewrites it: x * scale + shift per channel
        ann["bn_scale"], ann["bn_shift"] = is_const(), is_const()
        out = is_op("relax.add")(is_op("relax.multiply")(out, ann["bn_scale"]), ann["bn_shift"])
    if act == "relu":
        out = is_op("relax.nn.relu")(out)
    elif act == "clip":
        out = ann["clip"] = is_op("relax.clip")(out, wildcard(), wildcard())
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    if pool:
        if int8:
            out = ann["pool_dq"] = is_op("relax.dequantize")(out, is_const(), is_const())
        out = ann["pool"] = is_op("relax.nn.max_pool2d")(out)
        if int8:
            out = is_op("relax.quantize")(out, is_const(), is_const())
    if residual:  # + a tensor of the output's shape (a skip connection), requantised in int8
        r = ann["residual"] = wildcard()
        if int8:
            out = ann["res_dq"] = is_op("relax.dequantize")(out, is_const(), is_const())
            r = ann["res_in"] = _dq(r)
        out = ann["res_add"] = is_op("relax.add")(out, r) | is_op("relax.add")(r, out)
        if int8:
            out = ann["res_q"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _ints(values) -> list:
    return [int(v) for v in values]


def _conv_reason(ctx: PatternCheckContext) -> str | None:
    """Why the matched conv2d layer cannot run on the array, or None if it can."""
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    ann = ctx.annotated_expr
    x, w, conv = ann["x"], ann["w"], ann["conv"]
    if not (_static(x.ty, 4) and _static(w.ty, 4)):
        return f"needs static 4-D shapes, got input {x.ty.shape} and weight {w.ty.shape}"
    a = conv.attrs
    if (a.data_layout, a.kernel_layout, str(a.out_layout or "NCHW")) != ("NCHW", "OIHW", "NCHW"):
        return f"layouts {a.data_layout}/{a.kernel_layout} (supported: NCHW/OIHW)"
    if _ints(a.dilation) != [1, 1]:
        return f"dilation {_ints(a.dilation)} (supported: 1)"
    int8 = "lhs" in ann  # QDQ: int8 activations, or int16 ones (int16xint8)
    want = "int8" if int8 else "float32"
    act = "int16" if int8 and x.ty.dtype == "int16" else want
    if x.ty.dtype != act or w.ty.dtype != want or conv.ty.dtype != "float32":
        return f"dtypes {x.ty.dtype} x {w.ty.dtype} -> {conv.ty.dtype} (supported: {want}, " \
            "int16 x int8 in QDQ)"
    if act == "int16" and (reason := _int16_reason()):
        return reason
    cout = int(w.ty.shape[0])
    if "b" in ann:
        b = ann["b"].args[0] if int8 else ann["b"]
        if const_value(b).size != cout:
            return f"bias of shape {b.ty.shape} is not one value per output channel"
    for key in ("bn_scale", "bn_shift"):
        if key in ann and (const_value(ann[key]).size != cout or
                           list(ann[key].ty.shape)[-2:] != [1, 1]):
            return "the scale/shift after the conv is not one value per output channel"
    if "clip" in ann and float(ann["clip"].args[1].value) != 0:
        return "clip with a lower bound other than 0"
    if "residual" in ann:
        r = ann["residual"]
        if r.same_as(x):  # its image would be read for the bands and the residual at once
            return "the residual is the layer's own input"
        if list(r.ty.shape) != list(ann["res_add"].ty.shape) or r.ty.dtype != x.ty.dtype:
            return f"residual {r.ty.shape} {r.ty.dtype} is not the output's shape and type"
    if "pool" in ann:
        p = ann["pool"].attrs
        if _ints(p.pool_size) != _ints(p.strides) or any(_ints(p.padding)) or \
                _ints(p.dilation) != [1, 1] or p.ceil_mode or p.layout != "NCHW":
            return "max-pool is not non-overlapping (pool size = stride, no padding, floor)"
    if not int8:
        return None
    lhs, rhs, quant, root = ann["lhs"], ann["rhs"], ann["quant"], ann["root"]
    if root.attrs.out_dtype != act or quant.attrs.out_dtype != act:
        return f"{act} input quantised to {root.attrs.out_dtype} at the output"
    for name, call in (("input", lhs), ("output", quant)):
        if const_value(call.args[1]).size != 1 or const_value(call.args[2]).size != 1:
            return f"{name} quantisation is not per tensor"
    if "res_q" in ann:
        for name, call in (("residual", ann["res_in"]), ("sum", ann["res_q"])):
            if const_value(call.args[1]).size != 1 or const_value(call.args[2]).size != 1:
                return f"{name} quantisation is not per tensor"
        if any(not np.array_equal(const_value(ann["res_dq"].args[i]), const_value(quant.args[i]))
               for i in (1, 2)):
            return "the conv's output is dequantised with other parameters than it was quantised"
        s_out = const_value(ann["res_q"].args[1]).astype(np.float64)
        try:
            for call in (ann["res_dq"], ann["res_in"]):
                quantize_multiplier(const_value(call.args[1]).astype(np.float64) / s_out)
        except ValueError as err:
            return f"residual add: {err}"
    if "pool_dq" in ann:
        pairs = [(const_value(c.args[1]), const_value(c.args[2]))
                 for c in (quant, ann["pool_dq"], root)]
        if any(not (np.array_equal(s, pairs[0][0]) and np.array_equal(z, pairs[0][1]))
               for s, z in pairs[1:]):
            return "max-pool changes the quantisation parameters"
    w_scale, w_zp = const_value(rhs.args[1]), const_value(rhs.args[2])
    if np.any(w_zp != 0):
        return "weight zero point is not 0"
    if w_scale.size != 1 and (w_scale.size != cout or int(rhs.attrs.axis) != 0):
        return "weight scales are not per tensor or per output channel"
    try:
        quantize_multiplier(const_value(lhs.args[1]).astype(np.float64) * w_scale /
                            const_value(quant.args[1]))
    except ValueError as err:
        return str(err)
    return None


def _device():
    """The AIE device being compiled for (the default one outside an AIE target)."""
    try:
        return device_of_target(tvm.target.Target.current(allow_none=True))
    except UnknownDeviceError:
        return get_device()


def _fit_reason(schedule, workload) -> str | None:
    """Why no configuration of ``schedule`` runs ``workload`` on the device, or None: a layer
    the array cannot hold stays on the CPU instead of failing the build."""
    try:
        schedule.default_config(workload, _device())
    except TilingError as err:
        return f"does not fit the array: {err}"
    return None


def _conv_fit(ctx: PatternCheckContext) -> str | None:
    ann = ctx.annotated_expr
    x, w, a = ann["x"], ann["w"], ann["conv"].attrs
    _, c, h, wd = _ints(x.ty.shape)
    o, _, kh, kw = _ints(w.ty.shape)
    pool = tuple(_ints(ann["pool"].attrs.pool_size)) if "pool" in ann else (1, 1)
    return _fit_reason(conv2d, conv2d.ConvWorkload(
        c, h, wd, o, kh, kw, tuple(_ints(a.strides)), tuple(_ints(a.padding)), int(a.groups),
        layer_precision(x.ty.dtype), pool, "residual" in ann))


_check_conv = _checker(("conv",), _conv_reason, _conv_fit)


def _pool_pattern(int8: bool, kind: str):
    """A pooling layer on its own: ``max_pool2d``, ``avg_pool2d`` or the ``mean`` over H and W
    that ONNX GlobalAveragePool imports as; in int8 between a dequantize and a quantize."""
    x = wildcard()
    ann = {"x": x}
    inp = ann["lhs"] = _dq(x) if int8 else x
    op = "relax.mean" if kind == "mean" else f"relax.nn.{kind}_pool2d"
    out = ann["pool"] = is_op(op)(inp)
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _pool_reason(ctx: PatternCheckContext) -> str | None:
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    ann = ctx.annotated_expr
    x, pool = ann["x"], ann["pool"]
    if not _static(x.ty, 4):
        return f"needs static NCHW images, got {x.ty.shape}"
    int8 = "quant" in ann  # QDQ: int8, or int16 activations (int16xint8)
    if x.ty.dtype not in (("int8", "int16") if int8 else ("float32",)):
        return f"dtype {x.ty.dtype}"
    if x.ty.dtype == "int16" and (reason := _int16_reason()):
        return reason
    a = pool.attrs
    if pool.op.name == "relax.mean":
        if sorted(_ints(a.axis)) != [2, 3] or not a.keepdims:
            return "mean is not a global average pool (axes 2, 3, keepdims)"
        window = [int(d) for d in list(x.ty.shape)[2:]]
    else:
        if any(_ints(a.padding)) or _ints(a.dilation) != [1, 1] or a.ceil_mode or \
                a.layout != "NCHW":
            return "pool with padding, dilation or ceil mode"
        window = _ints(a.pool_size)
    if not int8:
        return None
    lhs, quant = ann["lhs"], ann["quant"]
    if quant.attrs.out_dtype != x.ty.dtype:
        return f"{x.ty.dtype} input quantised to {quant.attrs.out_dtype} at the output"
    (s_in, zp_in), (s_out, zp_out) = ((const_value(c.args[1]), const_value(c.args[2]))
                                      for c in (lhs, quant))
    if s_in.size != 1 or s_out.size != 1:
        return "quantisation is not per tensor"
    if pool.op.name == "relax.nn.max_pool2d":
        return None if (s_in, zp_in) == (s_out, zp_out) else \
            "max-pool changes the quantisation parameters"
    try:
        quantize_multiplier(s_in.astype(np.float64) / (s_out * window[0] * window[1]))
    except ValueError as err:
        return str(err)
    return None


def _pool_fit(ctx: PatternCheckContext) -> str | None:
    x, pool = ctx.annotated_expr["x"], ctx.annotated_expr["pool"]
    _, c, h, w = _ints(x.ty.shape)
    if pool.op.name == "relax.mean":
        window, stride, kind = (h, w), (1, 1), "avgpool"
    else:
        window, stride = tuple(_ints(pool.attrs.pool_size)), tuple(_ints(pool.attrs.strides))
        kind = "maxpool" if pool.op.name == "relax.nn.max_pool2d" else "avgpool"
    return _fit_reason(conv2d, conv2d.ConvWorkload(c, h, w, c, *window, stride, (0, 0, 0, 0), c,
                                                   layer_precision(x.ty.dtype), kind=kind))


_check_pool = _checker(("pool",), _pool_reason, _pool_fit)


def _bmm_pattern(int8: bool, scale: bool):
    """``matmul`` of two activations (attention), optionally times a scalar constant (fp32)."""
    a, b = wildcard(), wildcard()
    ann = {"a": a, "b": b}
    lhs, rhs = (ann.setdefault("lhs", _dq(a)), ann.setdefault("rhs", _dq(b))) if int8 else (a, b)
    out = ann["matmul"] = is_op("relax.matmul")(lhs, rhs)
    if scale:
        ann["scale"] = is_const()
        out = is_op("relax.multiply")(out, ann["scale"])
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _bmm_reason(ctx: PatternCheckContext) -> str | None:
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    ann = ctx.annotated_expr
    a, b = ann["a"], ann["b"]
    if isinstance(a, tvm.ir.GenericConst) or isinstance(b, tvm.ir.GenericConst):
        return "one operand is a constant (a dense layer)"
    ra, rb = len(a.ty.shape), len(b.ty.shape)
    if ra < 3 or ra != rb or not (_static(a.ty, ra) and _static(b.ty, rb)):
        return f"needs static batched operands of one rank, got {a.ty.shape} x {b.ty.shape}"
    if _ints(a.ty.shape)[:-2] != _ints(b.ty.shape)[:-2]:
        return "batch dimensions differ (broadcast)"
    int8 = "quant" in ann
    if a.ty.dtype != b.ty.dtype or a.ty.dtype != ("int8" if int8 else "float32"):
        return f"dtypes {a.ty.dtype} x {b.ty.dtype}"
    if "scale" in ann and const_value(ann["scale"]).size != 1:
        return "the scale after the matmul is not a scalar"
    if not int8:
        return None
    calls = (ann["lhs"], ann["rhs"], ann["quant"])
    if any(const_value(c.args[i]).size != 1 for c in calls for i in (1, 2)):
        return "quantisation is not per tensor"
    if ann["quant"].attrs.out_dtype != "int8":
        return f"output quantised to {ann['quant'].attrs.out_dtype}"
    s_a, s_b, s_o = (const_value(c.args[1]).astype(np.float64) for c in calls)
    try:
        quantize_multiplier(s_a * s_b / s_o)
    except ValueError as err:
        return str(err)
    return None


def _bmm_fit(ctx: PatternCheckContext) -> str | None:
    a, b = ctx.annotated_expr["a"], ctx.annotated_expr["b"]
    *batch, m, k = _ints(a.ty.shape)
    return _fit_reason(bmm, bmm.BmmWorkload(int(np.prod(batch)), m, k, _ints(b.ty.shape)[-1],
                                            str(a.ty.dtype)))


_check_bmm = _checker(("matmul",), _bmm_reason, _bmm_fit)


def _flatten_pattern(int8: bool, transpose: bool):
    """A flatten (``reshape``) of a tensor, after a ``permute_dims`` with ``transpose``; in int8
    each between a dequantize and a quantize (onnxruntime's QDQ around Transpose and Flatten)."""
    x = wildcard()
    ann = {"x": x}
    inp = ann["lhs"] = _dq(x) if int8 else x
    if transpose:
        inp = ann["perm"] = is_op("relax.permute_dims")(inp)
        if int8:
            ann["perm_q"] = is_op("relax.quantize")(inp, is_const(), is_const())
            inp = ann["perm_dq"] = _dq(ann["perm_q"])
    out = ann["reshape"] = is_op("relax.reshape")(inp, wildcard())
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _producer(ctx: PatternCheckContext) -> str | None:
    """The family of the offloaded layer whose output the match reads as ``x``, if the match is
    its only reader (else the merged region would have a second output), or None."""
    x = ctx.annotated_expr["x"]
    if not (isinstance(x, relax.Call) and isinstance(x.op, relax.GlobalVar)):
        return None
    var = ctx.value_to_bound_var.get(x)
    if var is None or len(ctx.var_usages.get(var, [])) != 1:
        return None
    return _offloaded.get(x.op.name_hint)


def _flatten_reason(ctx: PatternCheckContext) -> str | None:
    """Why the reshape cannot join the array's program, or None: it must flatten an offloaded
    conv or pooling layer's NCHW output to ``[N, C*H*W]`` (ONNX ``Flatten``), whose row-major
    order is the images', so the DMA patterns around it address the same bytes under the new
    shape (one row per image, the rows a dense head reads); a transpose before it (batch axis
    first) only changes the strides the conv's blocks are written with."""
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the reshape is used outside it"
    ann = ctx.annotated_expr
    x, out = ann["x"], ann["reshape"]
    if _producer(ctx) not in ("conv", "pool"):
        return "its input is not the output of a conv or pooling layer on the array (read only " \
            "by the reshape)"
    if not (_static(x.ty, 4) and _static(out.ty, len(out.ty.shape))):
        return f"needs static shapes, got {x.ty.shape} -> {out.ty.shape}"
    shape = _ints(x.ty.shape)
    if _ints(out.ty.shape) != [shape[0], int(np.prod(shape[1:]))]:
        return f"{shape} -> {_ints(out.ty.shape)} is not a flatten to [N, C*H*W]"
    if "perm" in ann and (ann["perm"].attrs.axes is None or
                          int(ann["perm"].attrs.axes[0]) != 0):
        return "the transpose before the flatten moves the batch axis"
    if "quant" in ann:
        lhs, quant = ann["lhs"], ann["quant"]
        qdq = [quant] + [ann[k] for k in ("perm_q", "perm_dq") if k in ann]
        if quant.attrs.out_dtype != x.ty.dtype or any(
                not np.array_equal(const_value(lhs.args[i]), const_value(c.args[i]))
                for c in qdq for i in (1, 2)):
            return "the flatten changes the quantisation parameters"
    return None


_check_flatten = _checker(("reshape",), _flatten_reason)


def _slice_pattern():
    """A ``strided_slice`` of one tensor (ONNX ``Slice``/``Split`` as imported; in QDQ models
    onnxruntime leaves it on the int8 values)."""
    x = wildcard()
    out = is_op("relax.strided_slice")(x, wildcard(), wildcard(), wildcard(), wildcard())
    return out, {"x": x, "slice": out, "root": out}


def _slice_reason(ctx: PatternCheckContext) -> str | None:
    """Why the slice cannot join the array's program, or None: it must read an NCHW map (static
    shape, batch untouched, positive steps) that is an offloaded conv or pooling layer's output
    (read by other layers too, as the parts of a split are) or comes from outside the array (then
    the program's input), and be read only by an offloaded conv or pooling layer, whose input DMA
    pattern then does the slicing (a slice ending the region would need a pattern on the
    program's output, which the codegen lacks)."""
    ann = ctx.annotated_expr
    x, out = ann["x"], ann["slice"]
    family = _offloaded.get(x.op.name_hint) if isinstance(x, relax.Call) and \
        isinstance(x.op, relax.GlobalVar) else None
    if family not in (None, "conv", "pool"):
        return f"its input is the output of a {family} layer on the array, not a conv or pooling " \
            "layer"
    if not (_static(x.ty, 4) and _static(out.ty, 4)):
        return f"needs static NCHW shapes, got {x.ty.shape} -> {out.ty.shape}"
    axes, _, _, steps = ([int(f.value) for f in arg.fields] for arg in out.args[1:])
    if any(a in (0, -4) for a in axes) or any(s <= 0 for s in steps):
        return "only positive steps on C, H and W are sliced by the array"
    var = ctx.value_to_bound_var.get(out)
    users = ctx.var_usages.get(var, []) if var is not None else []
    if len(users) != 1 or _offloaded.get(users[0].name) not in ("conv", "pool"):
        return "it is not read by one conv or pooling layer on the array"
    return None


_check_slice = _checker(("slice",), _slice_reason)


# the most inputs a concat pattern takes (Inception's modules join four branches)
CONCAT_INPUTS = 6


def _concat_pattern(int8: bool, n: int):
    """A ``concat`` of ``n`` tensors (ONNX ``Concat`` as imported); in int8 each input through
    its own dequantize and the result quantised, as onnxruntime's QDQ quantiser writes it (the
    inputs keep their producers' scales, the output has its own)."""
    ann = {f"x{i}": wildcard() for i in range(n)}
    fields = [ann.setdefault(f"dq{i}", _dq(ann[f"x{i}"])) if int8 else ann[f"x{i}"]
              for i in range(n)]
    out = ann["concat"] = is_op("relax.concat")(is_tuple(fields))
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _concat_reason(ctx: PatternCheckContext) -> str | None:
    """Why the concat cannot join the array's program, or None: it must join NCHW maps along
    channels, each the output of an offloaded conv or pooling layer, and be read only by
    offloaded conv or pooling layers, whose input images the producers' DMA then fills at each
    input's channel offset (no compute). In int8 an input quantised otherwise than the output is
    requantised by its producer's epilogue, so the concat must be that layer's only reader."""
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the concat is used outside it"
    ann = ctx.annotated_expr
    cat = ann["concat"]
    xs = [ann[f"x{i}"] for i in range(sum(k.startswith("x") for k in ann))]
    if not all(_static(t.ty, 4) for t in [*xs, cat]):
        return f"needs static NCHW maps, got {[list(x.ty.shape) for x in xs]}"
    if int(cat.attrs.axis) % 4 != 1:
        return f"concat on axis {int(cat.attrs.axis)} (the array joins channels, axis 1)"
    int8 = "quant" in ann
    want = "int8" if int8 else "float32"
    if any(x.ty.dtype != want for x in xs) or int8 and ann["quant"].attrs.out_dtype != want:
        return f"dtypes {[str(x.ty.dtype) for x in xs]} (supported: {want})"
    if any(not (isinstance(x, relax.Call) and isinstance(x.op, relax.GlobalVar)) or
           _offloaded.get(x.op.name_hint) not in ("conv", "pool") for x in xs):
        return "an input is not the output of a conv or pooling layer on the array"
    if int8:
        quant = ann["quant"]
        calls = [quant] + [ann[f"dq{i}"] for i in range(len(xs))]
        if any(const_value(c.args[i]).size != 1 for c in calls for i in (1, 2)):
            return "quantisation is not per tensor"
        for i, x in enumerate(xs):
            dq = ann[f"dq{i}"]
            if all(np.array_equal(const_value(dq.args[k]), const_value(quant.args[k]))
                   for k in (1, 2)):
                continue  # the same int8 values: data movement only
            var = ctx.value_to_bound_var.get(x)
            if var is None or len(ctx.var_usages.get(var, [])) != 1:
                return "an input quantised otherwise than the output is read elsewhere too"
            try:
                quantize_multiplier(const_value(dq.args[1]).astype(np.float64) /
                                    const_value(quant.args[1]))
            except ValueError as err:
                return f"requantising an input: {err}"
    var = ctx.value_to_bound_var.get(ann["root"])
    users = ctx.var_usages.get(var, []) if var is not None else []
    if not users or any(_offloaded.get(u.name) not in ("conv", "pool") for u in users):
        return "it is not read only by conv or pooling layers on the array"
    return None


_check_concat = _checker(("concat",), _concat_reason)


_UNARY = {"gelu": "relax.nn.gelu", "sigmoid": "relax.sigmoid", "tanh": "relax.tanh"}


def _rowwise_pattern(kind: str):
    """Element- and row-wise layers: fp32 ``gelu``, ``sigmoid``, ``tanh``, ``softmax`` and
    ``layer_norm`` over the last axis, the add (``"add"``) or multiply (``"mul"``) of two tensors;
    int8 (``kind="lut"``) any of GELU / sigmoid / tanh / a scalar multiply between a dequantize
    and a quantize, which a 256-entry table maps exactly; the same with int16 activations
    (onnxruntime's ``QInt16``), computed in float32 between the two on the tile, and the QDQ add
    (``"addq"``) or multiply (``"mulq"``) of two int8 or two int16 tensors."""
    x = wildcard()
    ann = {"x": x}
    if kind == "lut":
        inp = ann["lhs"] = _dq(x)
        ann["scale"] = is_const()
        ops = [is_op(op)(inp) for op in _UNARY.values()] + \
            [is_op("relax.multiply")(inp, ann["scale"])]
        op = ops[0]
        for alt in ops[1:]:
            op = op | alt
        ann["op"] = op
        out = ann["quant"] = is_op("relax.quantize")(op, is_const(), is_const())
    elif kind == "layernorm":
        out = ann["op"] = is_op("relax.nn.layer_norm")(x, is_const(), is_const())
    elif kind in ("add", "addq", "mul", "mulq"):  # two activations of one shape (a residual, a
        # gate)
        y = ann["y"] = wildcard()
        quant = kind.endswith("q")
        a, b = (ann.setdefault("lhs", _dq(x)), ann.setdefault("rhs", _dq(y))) if quant \
            else (x, y)
        out = ann["op"] = is_op("relax.add" if kind.startswith("add") else "relax.multiply")(a, b)
        if quant:
            out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    else:
        out = ann["op"] = is_op(_UNARY.get(kind, f"relax.nn.{kind}"))(x)
    ann["root"] = out
    return out, ann


def _int16_rowwise_reason() -> str | None:
    """Why the device's vector unit cannot run an int16 row-wise layer, from the catalog: it
    needs the int16 datapath (an int16 ``macs_per_cycle``) for the add and the conversions, and
    the fp32 vector facts (``float32_vector``) for a QDQ function's middle. No int16 x int8
    intrinsic is needed, so AIE1 runs them."""
    dev = _device()
    if "int16" not in dev.macs_per_cycle or dev.float32_vector is None:
        return f"{dev.name} ({dev.generation}) has no int16 vector datapath in the catalog"
    return None


def _rowwise_reason(ctx: PatternCheckContext) -> str | None:
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    ann = ctx.annotated_expr
    x, op = ann["x"], ann["op"]
    rank = len(x.ty.shape)
    if rank < 1 or not _static(x.ty, rank):
        return f"needs a static shape, got {x.ty.shape}"
    if "y" in ann:
        y = ann["y"]
        if isinstance(y, tvm.ir.GenericConst) or list(y.ty.shape) != list(x.ty.shape):
            return f"the operands of the {op.op.name} are not two tensors of one shape"
    if "quant" in ann:  # int8 or int16 in and out
        if x.ty.dtype not in ("int8", "int16") or ann["quant"].attrs.out_dtype != x.ty.dtype:
            return f"dtypes {x.ty.dtype} -> {ann['quant'].attrs.out_dtype} (supported: int8 or " \
                "int16 in and out)"
        if "y" in ann and ann["y"].ty.dtype != x.ty.dtype:
            return f"dtypes {x.ty.dtype} + {ann['y'].ty.dtype}"
        if x.ty.dtype == "int16" and (reason := _int16_rowwise_reason()):
            return reason
        if any(const_value(c.args[i]).size != 1
               for c in (ann["lhs"], ann.get("rhs", ann["lhs"]), ann["quant"]) for i in (1, 2)):
            return "quantisation is not per tensor"
        if "y" not in ann and op.op.name == "relax.multiply" and \
                const_value(op.args[1]).size != 1:
            return "multiply by more than a scalar"
        if "y" in ann:  # the requantisation of the sum's terms or of the product
            s_out = const_value(ann["quant"].args[1]).astype(np.float64)
            s_a, s_b = (const_value(dq.args[1]).astype(np.float64).item()
                        for dq in (ann["lhs"], ann["rhs"]))
            try:
                if op.op.name == "relax.multiply":
                    product_multiplier(s_a * s_b / s_out, str(x.ty.dtype))
                else:
                    quantize_multiplier(s_a / s_out)
                    quantize_multiplier(s_b / s_out)
            except ValueError as err:
                return str(err)
        return None
    if x.ty.dtype != "float32" or "y" in ann and ann["y"].ty.dtype != "float32":
        return f"dtype {x.ty.dtype}"
    if op.op.name == "relax.nn.softmax" and int(op.attrs.axis) not in (-1, rank - 1):
        return "softmax not over the last axis"
    if op.op.name == "relax.nn.layer_norm" and \
            [int(a) % rank for a in op.attrs.axes] != [rank - 1]:
        return "layer norm not over the last axis"
    return None


def _rowwise_fit(ctx: PatternCheckContext) -> str | None:
    ann = ctx.annotated_expr
    shape = _ints(ann["x"].ty.shape)
    name = ann["op"].op.name
    op = ("mul" if name == "relax.multiply" else "add") if "y" in ann else \
        "lut" if "quant" in ann and ann["x"].ty.dtype == "int8" else \
        {"relax.nn.gelu": "gelu", "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid",
         "relax.tanh": "tanh", "relax.multiply": "scale"}.get(name, "layernorm")
    return _fit_reason(rowwise, rowwise.RowWorkload(
        op, int(np.prod(shape)) // shape[-1], shape[-1], str(ann["x"].ty.dtype)))


_check_rowwise = _checker(("op",), _rowwise_reason, _rowwise_fit)


# families whose layers form one program's DAG with seams in memory tiles (lower_net)
_GRAPH = ("dense", "bmm", "rowwise", "heads")
# the variables of main (by name) -> their values, set before each graph pass (for the heads'
# reader)
_bound: dict = {}


def _graph_producer(ctx: PatternCheckContext) -> bool:
    """Whether an operand of the match (``x``, ``y``, ``a``, ``b``) is the output of an
    offloaded dense, batched matmul, row-wise or heads layer that the match alone reads (so the
    merged region has no second output)."""
    for key in ("x", "y", "a", "b"):
        arg = ctx.annotated_expr.get(key)
        if isinstance(arg, relax.Call) and isinstance(arg.op, relax.GlobalVar) and \
                _offloaded.get(arg.op.name_hint) in _GRAPH:
            var = ctx.value_to_bound_var.get(arg)
            if var is not None and len(ctx.var_usages.get(var, [])) == 1:
                return True
    return False


def _in_graph(pattern):
    """``pattern`` (a batched matmul or a row-wise layer) for the graph passes: it joins the
    region when it reads an offloaded dense, batched matmul, row-wise or heads layer's output,
    so they share a program (the tensors between them in memory tiles, :mod:`~tvm_aie.codegen.
    lower_net`); otherwise the last pass makes it a program of its own."""

    def check(ctx: PatternCheckContext) -> bool:
        return _graph_producer(ctx) and pattern.check(ctx)

    return relax.transform.FusionPattern(pattern.name, pattern.pattern,
                                         pattern.annotation_patterns, check)


def _heads_pattern(split: bool, int8: bool):
    """Attention heads split from a ``[B, S, D]`` activation (``permute_dims(reshape(x))``) or
    merged back into one (``reshape(permute_dims(x))``), as ONNX Reshape + Transpose import; in
    int8 each between a dequantize and a quantize (onnxruntime's QDQ around both)."""
    x = wildcard()
    ann = {"x": x}
    out = ann["lhs"] = _dq(x) if int8 else x
    for step, key in enumerate(("reshape", "perm") if split else ("perm", "reshape")):
        if step and int8:
            ann["mid_q"] = is_op("relax.quantize")(out, is_const(), is_const())
            out = ann["mid_dq"] = _dq(ann["mid_q"])
        out = ann[key] = is_op("relax.reshape")(out, wildcard()) if key == "reshape" else \
            is_op("relax.permute_dims")(out)
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


_SPLITS = ((0, 2, 1, 3), (0, 2, 3, 1))  # queries and values; keys, transposed


def _reader(ctx: PatternCheckContext):
    """The value of main's one binding that reads the match's result (past a dequantize of it),
    or None."""
    var = ctx.value_to_bound_var.get(ctx.annotated_expr["root"])
    while var is not None:
        users = ctx.var_usages.get(var, [])
        value = _bound.get(users[0].name) if len(users) == 1 else None
        if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") ==
                "relax.dequantize"):
            return value
        var = users[0]
    return None


def _heads_reason(ctx: PatternCheckContext) -> str | None:
    """Why the reshape and transpose cannot join the array's program, or None: a split must cut
    an offloaded dense layer's ``[B, S, D]`` output into ``[B, H, S, D/H]`` heads (the keys
    transposed) for a batched matmul of two activations, a merge must join an offloaded batched
    matmul's ``[B, H, S, D/H]`` result into ``[B, S, D]`` for an offloaded dense layer. The
    batched matmul's DMA patterns then walk the dense side's matrix head by head. In int8 every
    quantize and dequantize has the input's one scale and zero point, so the int8 values move
    unchanged."""
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the reshape and transpose is used outside them"
    if _device().memtile is None:  # the heads are patterns over a memory-tile seam
        return f"{_device().name} has no memory tiles to hold the heads between two layers"
    ann = ctx.annotated_expr
    x, root, perm = ann["x"], ann["root"], ann["perm"]
    split = len(ann["reshape"].ty.shape) == 4  # to [B, S, H, D/H]; a merge's is [B, S, D]
    if x.ty.dtype != ("int8" if "quant" in ann else "float32"):
        return f"heads of a {x.ty.dtype} tensor"
    if "quant" in ann and (ann["quant"].attrs.out_dtype != "int8" or any(
            const_value(c.args[i]).size != 1 or
            not np.array_equal(const_value(ann["lhs"].args[i]), const_value(c.args[i]))
            for c in (ann["mid_q"], ann["mid_dq"], ann["quant"]) for i in (1, 2))):
        return "the heads change the quantisation parameters"
    if not (_static(x.ty, len(x.ty.shape)) and _static(root.ty, len(root.ty.shape))) or \
            perm.attrs.axes is None:
        return f"needs static shapes and axes, got {x.ty.shape} -> {root.ty.shape}"
    axes, shape = tuple(_ints(perm.attrs.axes)), _ints(x.ty.shape)
    family = _producer(ctx)
    reader = _reader(ctx)
    if split:
        mid = _ints(ann["reshape"].ty.shape)
        if len(shape) != 3 or len(mid) != 4 or mid[:2] != shape[:2] or \
                mid[2] * mid[3] != shape[2] or axes not in _SPLITS:
            return f"{shape} -> {mid} -> axes {list(axes)} is not a split into attention heads"
        if family != "dense":
            return "its input is not the output of a dense layer on the array (read only by it)"
        if not (isinstance(reader, relax.Call) and getattr(reader.op, "name", "") ==
                "relax.matmul" and not any(isinstance(a, tvm.ir.GenericConst)
                                           for a in reader.args)):
            return "it is not read by a batched matmul of two activations alone"
        return None
    if len(shape) != 4 or axes != (0, 2, 1, 3) or \
            _ints(root.ty.shape) != [shape[0], shape[2], shape[1] * shape[3]]:
        return f"{shape} -> axes {list(axes)} -> {_ints(root.ty.shape)} is not a merge of " \
            "attention heads"
    if family != "bmm":
        return "its input is not the output of a batched matmul on the array (read only by it)"
    if not (isinstance(reader, relax.Call) and isinstance(reader.op, relax.GlobalVar) and
            _offloaded.get(reader.op.name_hint) == "dense"):
        return "it is not read by a dense layer on the array alone"
    return None


_check_heads = _checker(("reshape", "perm"), _heads_reason, overrides=True)


def _patterns():
    """All dense, conv2d and pooling variants, shortest first (later registered = tried first);
    pooling on its own goes first, so a max-pool after a conv is fused into the conv."""
    out = []
    for int8 in (False, True):
        for bias in (False, True):
            for relu in (False, True):
                name = "aie.dense_" + ("int8" if int8 else "fp32") + ("_bias" if bias else "") + \
                    ("_relu" if relu else "")
                out.append((name, *_dense_pattern(int8, bias, relu), _check_dense))
                if int8 and not relu:  # onnxruntime folds a ReLU after the add into its quantize
                    out.append((name + "_addq", *_dense_pattern(int8, bias, relu, True),
                                _check_dense))
                # fp32 also takes a folded batch norm and ReLU6 (clip); QDQ models fold both
                acts = ("relu", "clip") if relu else (None,)
                for bn, act in [(False, "relu" if relu else None)] if int8 else \
                        [(bn, a) for bn in (False, True) for a in acts]:
                    for pool, res in ((False, False), (True, False), (False, True)):
                        name = "aie.conv2d_" + ("int8" if int8 else "fp32") + "".join(
                            f"_{k}" for k in ("bias" if bias else "", "bn" if bn else "",
                                              act or "", "pool" if pool else "",
                                              "residual" if res else "") if k)
                        out.append((name, *_conv_pattern(int8, bias, bn, act, pool, res),
                                    _check_conv))
        for kind in ("max", "avg", "mean"):
            out.append((f"aie.pool2d_{kind}_" + ("int8" if int8 else "fp32"),
                        *_pool_pattern(int8, kind), _check_pool))
        for scale in (False,) if int8 else (False, True):
            out.append(("aie.bmm_" + ("int8" if int8 else "fp32") + ("_scale" if scale else ""),
                        *_bmm_pattern(int8, scale), _check_bmm))
    out += [(f"aie.rowwise_{kind}_fp32", *_rowwise_pattern(kind), _check_rowwise)
            for kind in ("gelu", "sigmoid", "tanh", "softmax", "layernorm", "add", "mul")]
    out += [(f"aie.rowwise_{kind}_int8", *_rowwise_pattern(kind), _check_rowwise)
            for kind in ("lut", "addq", "mulq")]
    out += [("aie.flatten_" + ("int8" if int8 else "fp32") + ("_transpose" if t else ""),
             *_flatten_pattern(int8, t), _check_flatten) for int8 in (False, True)
            for t in (False, True)]
    out += [(f"aie.heads_{'int8' if int8 else 'fp32'}_{'split' if split else 'merge'}",
             *_heads_pattern(split, int8), _check_heads) for int8 in (False, True)
            for split in (True, False)]
    out.append(("aie.slice", *_slice_pattern(), _check_slice))
    out += [(f"aie.concat_{'int8' if int8 else 'fp32'}_{n}", *_concat_pattern(int8, n),
             _check_concat) for int8 in (False, True) for n in range(2, CONCAT_INPUTS + 1)]
    first = ("aie.pool2d", "aie.rowwise")  # tried last: a conv's own epilogue goes first
    return sorted(out, key=lambda p: (not p[0].startswith(first), p[0].count("_")))


register_patterns(_patterns())


def _clip_bound(value) -> float | None:
    """The constant of ``where(isnan(c), ±inf, c)``, how TVM's ONNX importer writes Clip bounds."""
    if isinstance(value, relax.Call) and value.op.name == "relax.where" and \
            isinstance(value.args[2], tvm.ir.GenericConst):
        return float(const_value(value.args[2]))
    return None


@mutator
class _Canonicalize(PyExprMutator):
    """Rewrites of ``main`` so the patterns see one form of each idea:

    * inference ``batch_norm(x)[0]`` becomes ``x * scale + shift`` with per-channel constants
      (a batch norm after a conv or dense then folds into its weight and bias);
    * a ``dequantize`` read by several ops is copied for each reader (as onnxruntime's own
      QDQ handling does): a layer's input dequantize is then its own, even when the same tensor
      also feeds a residual add;
    * ``call_tir(maximum/minimum, x, where(isnan(c), ±inf, c))`` (ONNX Clip as imported) becomes
      ``clip(x, lo, hi)``, merging a max-then-min pair, so ReLU6 is one op;
    * each part of a ``split`` becomes the ``strided_slice`` it is (with its steps, as a slice
      without them gets too), and ``quantize(slice(dequantize(x)))`` of one scale and zero point
      the slice of the int8 ``x``.
    """

    def __init__(self, mod, bound: dict, uses: dict):
        super().__init__(mod)
        self.bound, self.uses, self.copies = bound, uses, 0

    def _slice_of(self, value):
        """``(x, axes, begin, end, strides)`` if ``value`` is a ``strided_slice`` of x or a part
        of a ``split`` of x (the slice it is), else None."""
        if isinstance(value, relax.TupleGetItem):
            split = self.bound.get(value.tuple_value)
            if not (isinstance(split, relax.Call) and
                    getattr(split.op, "name", "") == "relax.split"):
                return None
            axis = int(split.attrs.axis)
            sizes = [f.shape[axis] for f in split.ty.fields]
            if not all(isinstance(n, tvm.tirx.IntImm | int) for n in sizes):
                return None
            begin = sum(int(n) for n in sizes[:value.index])
            return split.args[0], [axis], [begin], [begin + int(sizes[value.index])], [1]
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") == \
                "relax.strided_slice" and all(isinstance(a, relax.Tuple) for a in value.args[1:]):
            axes, *rest = ([int(f.value) for f in a.fields] for a in value.args[1:])
            return value.args[0], axes, *rest, *([[1] * len(axes)] if len(rest) == 2 else [])
        return None

    def _int8_slice(self, call):
        """``quantize(slice(dequantize(x)))`` of one per-tensor scale and zero point (ONNX Slice
        and Split between onnxruntime's QDQ pairs) as the slice of the int8 ``x``, or None."""
        sliced = self._slice_of(self.bound.get(call.args[0]))
        dq = self.bound.get(sliced[0]) if sliced else None
        if not (isinstance(dq, relax.Call) and getattr(dq.op, "name", "") == "relax.dequantize"
                and str(dq.args[0].ty.dtype) == str(call.attrs.out_dtype)):
            return None
        params = [(dq.args[i], call.args[i]) for i in (1, 2)]
        if not all(isinstance(a, tvm.ir.GenericConst) and isinstance(b, tvm.ir.GenericConst) and
                   const_value(a).size == 1 and np.array_equal(const_value(a), const_value(b))
                   for a, b in params):
            return None
        return relax.op.strided_slice(self.visit_expr(dq.args[0]), *sliced[1:])

    def visit_tuple_getitem_(self, op):  # pylint: disable=arguments-renamed
        part = self._slice_of(op)
        if part is not None:  # a part of a split: the slice it is (one pattern for both)
            return relax.op.strided_slice(self.visit_expr(part[0]), *part[1:])
        bn = self.bound.get(op.tuple_value)
        if op.index != 0 or not isinstance(bn, relax.Call) or bn.op.name != "relax.nn.batch_norm" \
                or bn.attrs.training or \
                not all(isinstance(a, tvm.ir.GenericConst) for a in bn.args[1:]):
            return super().visit_tuple_getitem_(op)
        gamma, beta, mean, var = (const_value(a).astype(np.float64) for a in bn.args[1:5])
        scale = gamma / np.sqrt(var + float(bn.attrs.epsilon))
        shape = [1] * len(bn.args[0].ty.shape)
        shape[int(bn.attrs.axis)] = -1
        x = self.visit_expr(bn.args[0])
        return relax.op.add(
            relax.op.multiply(x, relax.const(scale.reshape(shape).astype(np.float32))),
            relax.const((beta - mean * scale).reshape(shape).astype(np.float32)))

    def _own_dequantize(self, arg):
        value = self.bound.get(arg)
        if isinstance(value, relax.Call) and value.op.name == "relax.dequantize" and \
                self.uses.get(arg, 0) > 1:
            # A new Call object per copy (visit_expr memoises and would bind one object to every
            # copy, which the pattern checks then take for one variable) and a name of its own.
            dq = self.visit_expr(value)
            self.copies += 1
            return self.builder_.emit(relax.Call(dq.op, dq.args, dq.attrs, dq.ty_args),
                                      f"{arg.name}_dq{self.copies}")
        return self.visit_expr(arg)

    def _as_clip(self, call):
        """(x, lo, hi) if ``call`` is an imported Clip bound, else None."""
        if not (call.op.name == "relax.call_tir" and isinstance(call.args[1], relax.Tuple)
                and len(call.args[1].fields) == 2):
            return None
        name = call.args[0].name_hint
        x, bound = call.args[1].fields
        c = _clip_bound(self.bound.get(bound))
        if c is None or not name.startswith(("maximum", "minimum")):
            return None
        inner = self.bound.get(x)
        lo, hi = (c, float("inf")) if name.startswith("maximum") else (float("-inf"), c)
        if isinstance(inner, relax.Call) and (prev := self._as_clip(inner)) is not None:
            if max(lo, prev[1]) > min(hi, prev[2]):  # ONNX gives max there, clip would give min
                return None
            x, lo, hi = prev[0], max(lo, prev[1]), min(hi, prev[2])
        return x, lo, hi

    def visit_call_(self, call):  # pylint: disable=arguments-renamed
        if isinstance(call.op, tvm.ir.Op) and (clip := self._as_clip(call)) is not None:
            x, lo, hi = clip
            return relax.op.clip(self.visit_expr(x), tvm.tirx.FloatImm("float32", lo),
                                 tvm.tirx.FloatImm("float32", hi))
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.quantize" and \
                (sliced := self._int8_slice(call)) is not None:
            return sliced
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.strided_slice" and \
                len(call.args) == 4 and (sliced := self._slice_of(call)) is not None:
            return relax.op.strided_slice(self._own_dequantize(sliced[0]), *sliced[1:])
        if isinstance(call.op, tvm.ir.Op) and call.op.name != "relax.dequantize":
            return relax.Call(call.op, [self._own_dequantize(a) for a in call.args], call.attrs,
                              call.ty_args)
        return super().visit_call_(call)


def _canonicalize(mod: tvm.IRModule) -> tvm.IRModule:
    func = mod["main"]
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    uses: dict = {}

    def count(expr):
        if isinstance(expr, relax.Call):
            for arg in expr.args:
                if isinstance(arg, relax.Var):
                    uses[arg] = uses.get(arg, 0) + 1

    relax.analysis.post_order_visit(func, count)
    rewriter = _Canonicalize(mod, bound, uses)
    rewriter.builder_.update_func(mod.get_global_var("main"), rewriter.visit_expr(func))
    # The Clip bounds and replaced dequantizes are now unused.
    return relax.transform.DeadCodeElimination()(rewriter.builder_.get())


def _log_cpu_ops(mod: tvm.IRModule) -> None:
    """One log line per operator ``main`` still runs on the CPU, saying why."""
    for binding in (b for block in mod["main"].body.blocks for b in block.bindings):
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
            continue
        op = call.op.name
        if op in ("relax.matmul", "relax.nn.conv2d", "relax.nn.max_pool2d", "relax.nn.avg_pool2d",
                  "relax.mean", "relax.nn.softmax", "relax.nn.layer_norm", "relax.nn.gelu",
                  "relax.sigmoid", "relax.tanh", "relax.reshape", "relax.strided_slice",
                  "relax.concat"):
            why = _rejected.get(binding.var.name, "not part of a supported pattern")
        else:
            why = _rejected.get(binding.var.name, "no AIE pattern for this operator on its own")
        log.info("aie: %s = %s stays on the CPU: %s", binding.var.name, op, why)


def _offloaded_outputs(mod: tvm.IRModule) -> dict:
    """The names of ``mod``'s ``aie.*`` composite functions -> the layer's family."""
    out = {}
    for gv, func in mod.functions.items():
        name = str(func.attrs.get("Composite", "")) if func.attrs is not None else ""
        if name.startswith("aie."):
            out[gv.name_hint] = name[4:].split("_")[0].replace("2d", "")
    return out


def _note_offloaded(mod: tvm.IRModule) -> None:
    """Set :data:`_offloaded` (the composites of ``mod`` and the variables main binds their calls
    to: a slice's reader is one, after the slice) and :data:`_bound` for the next pass's checks."""
    _offloaded.clear()
    _offloaded.update(_offloaded_outputs(mod))
    bindings = [b for block in mod["main"].body.blocks for b in block.bindings]
    _offloaded.update({b.var.name: _offloaded[b.value.op.name_hint] for b in bindings
                       if isinstance(b.value, relax.Call) and
                       isinstance(b.value.op, relax.GlobalVar) and
                       b.value.op.name_hint in _offloaded})
    _bound.clear()
    _bound.update({b.var.name: b.value for b in bindings})


def partition_for_aie(mod: tvm.IRModule) -> tvm.IRModule:
    """Group what the array runs into functions with ``Codegen="aie"``, the rest stays on the CPU.

    Consecutive dense, conv2d and pooling layers (with slices and concats between them, conv
    and pooling layers also branching), a flatten between a conv part and a dense head, and the
    batched matmuls, row-wise layers and attention heads (split and merge) reading what is
    offloaded (a whole transformer encoder layer) merge into one function, so their
    intermediates stay on the array; other batched matmuls and row-wise layers become functions
    of their own (their operands come and go through DDR), matched after the others so a
    layer's own epilogue wins.
    """
    _rejected.clear()
    # Dead-code elimination (in _canonicalize) also matters: unused bindings would count as uses
    # of a layer's intermediates, and ONNX BatchNormalization imports as ``batch_norm`` whose
    # mean/var outputs are bound but never read.
    mod = _canonicalize(mod)
    patterns = get_patterns_with_prefix("aie")
    alone = [p for p in patterns if p.name.startswith(("aie.bmm", "aie.rowwise"))]
    flatten = [p for p in patterns if p.name.startswith(("aie.flatten", "aie.slice",
                                                          "aie.concat"))]
    heads = [p for p in patterns if p.name.startswith("aie.heads")]
    chained = [p for p in patterns if p not in alone and p not in flatten and p not in heads]
    mod = relax.transform.FuseOpsByPattern(chained, bind_constants=True,
                                           annotate_codegen=False)(mod)
    # These join the region only once the layer that feeds them is known to be offloaded.
    _note_offloaded(mod)
    # the second pass: flattens, slices, concats
    mod = relax.transform.FuseOpsByPattern(flatten, bind_constants=True,
                                           annotate_codegen=False)(mod)
    # the graph passes: heads, batched matmuls and row-wise layers reading what the last pass
    # offloaded, until none joins (dense -> heads -> bmm -> softmax -> bmm -> heads -> dense)
    graph = heads + [_in_graph(p) for p in alone]
    while True:
        _note_offloaded(mod)
        count = len(_offloaded_outputs(mod))
        mod = relax.transform.FuseOpsByPattern(graph, bind_constants=True,
                                               annotate_codegen=False)(mod)
        if len(_offloaded_outputs(mod)) == count:
            break
    mod = relax.transform.MergeCompositeFunctions()(mod)
    mod = relax.transform.FuseOpsByPattern(alone, bind_constants=True, annotate_codegen=True)(mod)
    _log_cpu_ops(mod)
    return mod
