"""Dense layers: ``y = act(x @ W + b)`` with a constant weight, fp32 or QDQ int8/int16xint8.

The patterns (MatMul and Gemm as TVM's ONNX importer writes them, with an optional QDQ bias add
after the layer's quantize) and the check that says why a match cannot run on the array.
``docs/design.md`` ("Partitioning") has the forms matched.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl.pattern import is_const, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import quantize_multiplier
from ..schedules import dense
from .context import (PartitionContext, const_value, dq, fit_reason, int16_reason, ints,
                      layer_precision, static)


def _dense_pattern(int8: bool, bias: bool, relu: bool, addq: bool = False):
    """One dense layer; ``int8`` gives its QDQ form, ``addq`` (int8) a constant added as a QDQ
    Add after the matmul's own quantize (onnxruntime's quantiser on MatMul + Add of a bias:
    ``q(dq(q(matmul)) + dq(b_q))``). Returns (pattern, annotations)."""
    x, w = wildcard(), is_const()
    ann = {"x": x, "w": w}
    lhs, rhs = x, w
    if int8:
        lhs, rhs = ann["lhs"], ann["rhs"] = dq(x), dq(w)
    matmul = is_op("relax.matmul")(lhs, rhs | is_op("relax.permute_dims")(rhs))
    out = ann["matmul"] = matmul
    if bias:
        b = is_const()
        ann["b"] = b
        out = is_op("relax.add")(out, (dq(b) | b) if int8 else b)
    if addq:
        ann["mid_q"] = is_op("relax.quantize")(out, is_const(), is_const())
        ann["mid_dq"], ann["addend"] = dq(ann["mid_q"]), is_const()
        ann["add_dq"] = dq(ann["addend"])
        out = ann["addq"] = is_op("relax.add")(ann["mid_dq"], ann["add_dq"]) | \
            is_op("relax.add")(ann["add_dq"], ann["mid_dq"])
    if relu:
        out = is_op("relax.nn.relu")(out)
    if int8:
        out = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the matched layer cannot run on the array, or None if it can."""
    x, w, mm = ctx.annotated_expr["x"], ctx.annotated_expr["w"], ctx.annotated_expr["matmul"]
    if not (len(x.ty.shape) >= 2 and static(x.ty, len(x.ty.shape)) and static(w.ty, 2)):
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
    if act == "int16" and (reason := int16_reason(part.device)):
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


def _fit(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why no configuration runs the matched dense layer on the device, or None."""
    x, mm = ctx.annotated_expr["x"], ctx.annotated_expr["matmul"]
    *rows, k = ints(x.ty.shape)
    return fit_reason(part.device, dense, dense.DenseWorkload(
        int(np.prod(rows)), k, int(mm.ty.shape[-1]), layer_precision(x.ty.dtype),
        bias_add="addq" in ctx.annotated_expr))


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of every dense variant."""
    check = part.check(("matmul", "addq"), _reason, _fit)
    out = []
    for int8 in (False, True):
        for bias in (False, True):
            for relu in (False, True):
                name = "aie.dense_" + ("int8" if int8 else "fp32") + ("_bias" if bias else "") + \
                    ("_relu" if relu else "")
                out.append((name, *_dense_pattern(int8, bias, relu), check))
                if int8 and not relu:  # onnxruntime folds a ReLU after the add into its quantize
                    out.append((name + "_addq", *_dense_pattern(int8, bias, relu, True), check))
    return out
