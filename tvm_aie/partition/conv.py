"""The conv family: 2-D convolutions (with bias, folded BN, ReLU/ReLU6, a fused max-pool or a
residual add) and pooling layers on their own, fp32 or QDQ int8/int16xint8.

Each pattern's check says why a match cannot run on the array, including "does not fit" from the
conv schedule's default plan. ``docs/design.md`` ("Partitioning") has the forms matched.
"""

from __future__ import annotations

import numpy as np
from tvm.relax.dpl.pattern import is_const, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import quantize_multiplier
from ..schedules import conv2d
from .context import (PartitionContext, const_value, dq, fit_reason, int16_reason, ints,
                      layer_precision, quantized_root, static)


def _conv_pattern(int8: bool, bias: bool, bn: bool, act: str | None, pool: bool,
                  residual: bool = False, relu_after: bool = False):
    """One conv2d layer (see the module docstring); ``relu_after`` (fp32): a ReLU after the
    residual add, as a ResNet block ends (QDQ models fold it into the quantize). Returns
    (pattern, annotations)."""
    x, w = wildcard(), is_const()
    ann = {"x": x, "w": w}
    lhs, rhs = x, w
    if int8:
        lhs, rhs = ann["lhs"], ann["rhs"] = dq(x), dq(w)
    out = ann["conv"] = is_op("relax.nn.conv2d")(lhs, rhs)
    if bias:
        b = ann["b"] = dq(is_const()) if int8 else is_const()
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
            r = ann["res_in"] = dq(r)
        out = ann["res_add"] = is_op("relax.add")(out, r) | is_op("relax.add")(r, out)
        if int8:
            out = ann["res_q"] = is_op("relax.quantize")(out, is_const(), is_const())
        if relu_after:
            out = is_op("relax.nn.relu")(out)
    ann["root"] = out
    return out, ann


def _conv_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the matched conv2d layer cannot run on the array, or None if it can."""
    ann = ctx.annotated_expr
    x, w, conv = ann["x"], ann["w"], ann["conv"]
    if not (static(x.ty, 4) and static(w.ty, 4)):
        return f"needs static 4-D shapes, got input {x.ty.shape} and weight {w.ty.shape}"
    a = conv.attrs
    if (a.data_layout, a.kernel_layout, str(a.out_layout or "NCHW")) != ("NCHW", "OIHW", "NCHW"):
        return f"layouts {a.data_layout}/{a.kernel_layout} (supported: NCHW/OIHW)"
    if ints(a.dilation) != [1, 1]:
        return f"dilation {ints(a.dilation)} (supported: 1)"
    int8 = "lhs" in ann  # QDQ: int8 activations, or int16 ones (int16xint8)
    want = "int8" if int8 else "float32"
    act = "int16" if int8 and x.ty.dtype == "int16" else want
    if x.ty.dtype != act or w.ty.dtype != want or conv.ty.dtype != "float32":
        return f"dtypes {x.ty.dtype} x {w.ty.dtype} -> {conv.ty.dtype} (supported: {want}, " \
            "int16 x int8 in QDQ)"
    if act == "int16" and (reason := int16_reason(part.device)):
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
        if ints(p.pool_size) != ints(p.strides) or any(ints(p.padding)) or \
                ints(p.dilation) != [1, 1] or p.ceil_mode or p.layout != "NCHW":
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


def _conv_fit(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    ann = ctx.annotated_expr
    x, w, a = ann["x"], ann["w"], ann["conv"].attrs
    _, c, h, wd = ints(x.ty.shape)
    o, _, kh, kw = ints(w.ty.shape)
    pool = tuple(ints(ann["pool"].attrs.pool_size)) if "pool" in ann else (1, 1)
    return fit_reason(part.device, conv2d, conv2d.ConvWorkload(
        c, h, wd, o, kh, kw, tuple(ints(a.strides)), tuple(ints(a.padding)), int(a.groups),
        layer_precision(x.ty.dtype), pool, "residual" in ann))


def _pool_pattern(int8: bool, kind: str):
    """A pooling layer on its own: ``max_pool2d``, ``avg_pool2d`` or the ``mean`` over H and W
    that ONNX GlobalAveragePool imports as; in int8 between a dequantize and a quantize."""
    x = wildcard()
    ann = {"x": x}
    inp = ann["lhs"] = dq(x) if int8 else x
    op = "relax.mean" if kind == "mean" else f"relax.nn.{kind}_pool2d"
    out = ann["pool"] = is_op(op)(inp)
    return quantized_root(ann, out, int8)


def _pool_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    ann = ctx.annotated_expr
    x, pool = ann["x"], ann["pool"]
    if not static(x.ty, 4):
        return f"needs static NCHW images, got {x.ty.shape}"
    int8 = "quant" in ann  # QDQ: int8, or int16 activations (int16xint8)
    if x.ty.dtype not in (("int8", "int16") if int8 else ("float32",)):
        return f"dtype {x.ty.dtype}"
    if x.ty.dtype == "int16" and (reason := int16_reason(part.device)):
        return reason
    a = pool.attrs
    if pool.op.name == "relax.mean":
        if sorted(ints(a.axis)) != [2, 3] or not a.keepdims:
            return "mean is not a global average pool (axes 2, 3, keepdims)"
        window = [int(d) for d in list(x.ty.shape)[2:]]
    else:
        if any(ints(a.padding)) or ints(a.dilation) != [1, 1] or a.ceil_mode or \
                a.layout != "NCHW":
            return "pool with padding, dilation or ceil mode"
        window = ints(a.pool_size)
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


def _pool_fit(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    x, pool = ctx.annotated_expr["x"], ctx.annotated_expr["pool"]
    _, c, h, w = ints(x.ty.shape)
    if pool.op.name == "relax.mean":
        window, stride, kind = (h, w), (1, 1), "avgpool"
    else:
        window, stride = tuple(ints(pool.attrs.pool_size)), tuple(ints(pool.attrs.strides))
        kind = "maxpool" if pool.op.name == "relax.nn.max_pool2d" else "avgpool"
    return fit_reason(part.device, conv2d, conv2d.ConvWorkload(
        c, h, w, c, *window, stride, (0, 0, 0, 0), c, layer_precision(x.ty.dtype), kind=kind))


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of every conv2d and pooling variant."""
    check_conv = part.check(("conv",), _conv_reason, _conv_fit)
    check_pool = part.check(("pool",), _pool_reason, _pool_fit)
    out = []
    for int8 in (False, True):
        for bias in (False, True):
            for relu in (False, True):
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
                                    check_conv))
                        if res and not int8:
                            out.append((name + "_relu",
                                        *_conv_pattern(int8, bias, bn, act, pool, res, True),
                                        check_conv))
        for kind in ("max", "avg", "mean"):
            out.append((f"aie.pool2d_{kind}_" + ("int8" if int8 else "fp32"),
                        *_pool_pattern(int8, kind), check_pool))
    return out
