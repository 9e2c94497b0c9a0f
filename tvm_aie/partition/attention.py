"""Attention: batched matmuls of two activations and the attention heads between them and dense
layers (reshape + transpose, done by the batched matmul's DMA patterns), and the graph passes'
rule that these and row-wise layers join the region whose output they alone read.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl.pattern import is_const, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import quantize_multiplier
from ..schedules import bmm
from .context import (PartitionContext, const_value, dq, fit_reason, ints, quantized_root,
                      static)


def _bmm_pattern(int8: bool, scale: bool):
    """``matmul`` of two activations (attention), optionally times a scalar constant (fp32)."""
    a, b = wildcard(), wildcard()
    ann = {"a": a, "b": b}
    lhs, rhs = (ann.setdefault("lhs", dq(a)), ann.setdefault("rhs", dq(b))) if int8 else (a, b)
    out = ann["matmul"] = is_op("relax.matmul")(lhs, rhs)
    if scale:
        ann["scale"] = is_const()
        out = is_op("relax.multiply")(out, ann["scale"])
    return quantized_root(ann, out, int8)


def _bmm_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    ann = ctx.annotated_expr
    a, b = ann["a"], ann["b"]
    if isinstance(a, tvm.ir.GenericConst) or isinstance(b, tvm.ir.GenericConst):
        return "one operand is a constant (a dense layer)"
    ra, rb = len(a.ty.shape), len(b.ty.shape)
    if ra < 3 or ra != rb or not (static(a.ty, ra) and static(b.ty, rb)):
        return f"needs static batched operands of one rank, got {a.ty.shape} x {b.ty.shape}"
    if ints(a.ty.shape)[:-2] != ints(b.ty.shape)[:-2]:
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


def _bmm_fit(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    a, b = ctx.annotated_expr["a"], ctx.annotated_expr["b"]
    *batch, m, k = ints(a.ty.shape)
    return fit_reason(part.device, bmm, bmm.BmmWorkload(int(np.prod(batch)), m, k,
                                                        ints(b.ty.shape)[-1], str(a.ty.dtype)))


# families whose layers form one program's DAG with seams in memory tiles (lower_net)
_GRAPH = ("dense", "bmm", "rowwise", "heads")


def _graph_producer(ctx: PatternCheckContext, part: PartitionContext) -> bool:
    """Whether an operand of the match (``x``, ``y``, ``a``, ``b``) is the output of an
    offloaded dense, batched matmul, row-wise or heads layer that the match alone reads (so the
    merged region has no second output)."""
    for key in ("x", "y", "a", "b"):
        arg = ctx.annotated_expr.get(key)
        if isinstance(arg, relax.Call) and isinstance(arg.op, relax.GlobalVar) and \
                part.offloaded.get(arg.op.name_hint) in _GRAPH:
            var = ctx.value_to_bound_var.get(arg)
            if var is not None and len(ctx.var_usages.get(var, [])) == 1:
                return True
    return False


def in_graph(pattern, part: PartitionContext):
    """``pattern`` (a batched matmul or a row-wise layer) for the graph passes: it joins the
    region when it reads an offloaded dense, batched matmul, row-wise or heads layer's output,
    so they share a program (the tensors between them in memory tiles, :mod:`~tvm_aie.codegen.
    lower_net`); otherwise the last pass makes it a program of its own."""

    def check(ctx: PatternCheckContext) -> bool:
        return _graph_producer(ctx, part) and pattern.check(ctx)

    return relax.transform.FusionPattern(pattern.name, pattern.pattern,
                                         pattern.annotation_patterns, check)


def _heads_pattern(split: bool, int8: bool):
    """Attention heads split from a ``[B, S, D]`` activation (``permute_dims(reshape(x))``) or
    merged back into one (``reshape(permute_dims(x))``), as ONNX Reshape + Transpose import; in
    int8 each between a dequantize and a quantize (onnxruntime's QDQ around both)."""
    x = wildcard()
    ann = {"x": x}
    out = ann["lhs"] = dq(x) if int8 else x
    for step, key in enumerate(("reshape", "perm") if split else ("perm", "reshape")):
        if step and int8:
            ann["mid_q"] = is_op("relax.quantize")(out, is_const(), is_const())
            out = ann["mid_dq"] = dq(ann["mid_q"])
        out = ann[key] = is_op("relax.reshape")(out, wildcard()) if key == "reshape" else \
            is_op("relax.permute_dims")(out)
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


_SPLITS = ((0, 2, 1, 3), (0, 2, 3, 1))  # queries and values; keys, transposed


def _reader(ctx: PatternCheckContext, part: PartitionContext):
    """The value of main's one binding that reads the match's result (past a dequantize of it),
    or None."""
    var = ctx.value_to_bound_var.get(ctx.annotated_expr["root"])
    while var is not None:
        users = ctx.var_usages.get(var, [])
        value = part.bound.get(users[0].name) if len(users) == 1 else None
        if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") ==
                "relax.dequantize"):
            return value
        var = users[0]
    return None


def _heads_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the reshape and transpose cannot join the array's program, or None: a split must cut
    an offloaded dense layer's ``[B, S, D]`` output into ``[B, H, S, D/H]`` heads (the keys
    transposed) for a batched matmul of two activations, a merge must join an offloaded batched
    matmul's ``[B, H, S, D/H]`` result into ``[B, S, D]`` for an offloaded dense layer. The
    batched matmul's DMA patterns then walk the dense side's matrix head by head. In int8 every
    quantize and dequantize has the input's one scale and zero point, so the int8 values move
    unchanged."""
    if part.device.memtile is None:  # the heads are patterns over a memory-tile seam
        return f"{part.device.name} has no memory tiles to hold the heads between two layers"
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
    if not (static(x.ty, len(x.ty.shape)) and static(root.ty, len(root.ty.shape))) or \
            perm.attrs.axes is None:
        return f"needs static shapes and axes, got {x.ty.shape} -> {root.ty.shape}"
    axes, shape = tuple(ints(perm.attrs.axes)), ints(x.ty.shape)
    family = part.producer(ctx)
    reader = _reader(ctx, part)
    if split:
        mid = ints(ann["reshape"].ty.shape)
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
            ints(root.ty.shape) != [shape[0], shape[2], shape[1] * shape[3]]:
        return f"{shape} -> axes {list(axes)} -> {ints(root.ty.shape)} is not a merge of " \
            "attention heads"
    if family != "bmm":
        return "its input is not the output of a batched matmul on the array (read only by it)"
    if not (isinstance(reader, relax.Call) and isinstance(reader.op, relax.GlobalVar) and
            part.offloaded.get(reader.op.name_hint) == "dense"):
        return "it is not read by a dense layer on the array alone"
    return None


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of the batched matmul and heads variants."""
    check_bmm = part.check(("matmul",), _bmm_reason, _bmm_fit)
    check_heads = part.check(("reshape", "perm"), _heads_reason, overrides=True,
                             leak="an intermediate of the reshape and transpose is used outside "
                                  "them")
    out = [("aie.bmm_" + ("int8" if int8 else "fp32") + ("_scale" if scale else ""),
            *_bmm_pattern(int8, scale), check_bmm)
           for int8 in (False, True) for scale in ((False,) if int8 else (False, True))]
    out += [(f"aie.heads_{'int8' if int8 else 'fp32'}_{'split' if split else 'merge'}",
             *_heads_pattern(split, int8), check_heads) for int8 in (False, True)
            for split in (True, False)]
    return out
