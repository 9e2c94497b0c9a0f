"""Data movement that joins a conv region: a flatten (after a transpose) before a dense head, a
slice or split read by a conv, a concat along channels of conv outputs. None computes: the DMA
patterns of the layers around them do the work.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl.pattern import is_const, is_op, is_tuple, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import quantize_multiplier
from .context import PartitionContext, const_value, dq, ints, static


def _flatten_pattern(int8: bool, transpose: bool):
    """A flatten (``reshape``) of a tensor, after a ``permute_dims`` with ``transpose``; in int8
    each between a dequantize and a quantize (onnxruntime's QDQ around Transpose and Flatten)."""
    x = wildcard()
    ann = {"x": x}
    inp = ann["lhs"] = dq(x) if int8 else x
    if transpose:
        inp = ann["perm"] = is_op("relax.permute_dims")(inp)
        if int8:
            ann["perm_q"] = is_op("relax.quantize")(inp, is_const(), is_const())
            inp = ann["perm_dq"] = dq(ann["perm_q"])
    out = ann["reshape"] = is_op("relax.reshape")(inp, wildcard())
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _flatten_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the reshape cannot join the array's program, or None: it must flatten an offloaded
    conv or pooling layer's NCHW output to ``[N, C*H*W]`` (ONNX ``Flatten``), whose row-major
    order is the images', so the DMA patterns around it address the same bytes under the new
    shape (one row per image, the rows a dense head reads); a transpose before it (batch axis
    first) only changes the strides the conv's blocks are written with."""
    ann = ctx.annotated_expr
    x, out = ann["x"], ann["reshape"]
    if part.producer(ctx) not in ("conv", "pool"):
        return "its input is not the output of a conv or pooling layer on the array (read only " \
            "by the reshape)"
    if not (static(x.ty, 4) and static(out.ty, len(out.ty.shape))):
        return f"needs static shapes, got {x.ty.shape} -> {out.ty.shape}"
    shape = ints(x.ty.shape)
    if ints(out.ty.shape) != [shape[0], int(np.prod(shape[1:]))]:
        return f"{shape} -> {ints(out.ty.shape)} is not a flatten to [N, C*H*W]"
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


def _slice_pattern():
    """A ``strided_slice`` of one tensor (ONNX ``Slice``/``Split`` as imported; in QDQ models
    onnxruntime leaves it on the int8 values)."""
    x = wildcard()
    out = is_op("relax.strided_slice")(x, wildcard(), wildcard(), wildcard(), wildcard())
    return out, {"x": x, "slice": out, "root": out}


def _slice_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the slice cannot join the array's program, or None: it must read an NCHW map (static
    shape, batch untouched, positive steps) that is an offloaded conv or pooling layer's output
    (read by other layers too, as the parts of a split are) or comes from outside the array (then
    the program's input), and be read only by an offloaded conv or pooling layer, whose input DMA
    pattern then does the slicing (a slice ending the region would need a pattern on the
    program's output, which the codegen lacks)."""
    ann = ctx.annotated_expr
    x, out = ann["x"], ann["slice"]
    family = part.offloaded.get(x.op.name_hint) if isinstance(x, relax.Call) and \
        isinstance(x.op, relax.GlobalVar) else None
    if family not in (None, "conv", "pool"):
        return f"its input is the output of a {family} layer on the array, not a conv or pooling " \
            "layer"
    if not (static(x.ty, 4) and static(out.ty, 4)):
        return f"needs static NCHW shapes, got {x.ty.shape} -> {out.ty.shape}"
    axes, _, _, steps = ([int(f.value) for f in arg.fields] for arg in out.args[1:])
    if any(a in (0, -4) for a in axes) or any(s <= 0 for s in steps):
        return "only positive steps on C, H and W are sliced by the array"
    var = ctx.value_to_bound_var.get(out)
    users = ctx.var_usages.get(var, []) if var is not None else []
    if len(users) != 1 or part.offloaded.get(users[0].name) not in ("conv", "pool"):
        return "it is not read by one conv or pooling layer on the array"
    return None


CONCAT_INPUTS = 6


def _concat_pattern(int8: bool, n: int):
    """A ``concat`` of ``n`` tensors (ONNX ``Concat`` as imported); in int8 each input through
    its own dequantize and the result quantised, as onnxruntime's QDQ quantiser writes it (the
    inputs keep their producers' scales, the output has its own)."""
    ann = {f"x{i}": wildcard() for i in range(n)}
    fields = [ann.setdefault(f"dq{i}", dq(ann[f"x{i}"])) if int8 else ann[f"x{i}"]
              for i in range(n)]
    out = ann["concat"] = is_op("relax.concat")(is_tuple(fields))
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def _concat_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    """Why the concat cannot join the array's program, or None: it must join NCHW maps along
    channels, each the output of an offloaded conv or pooling layer, and be read only by
    offloaded conv or pooling layers, whose input images the producers' DMA then fills at each
    input's channel offset (no compute). In int8 an input quantised otherwise than the output is
    requantised by its producer's epilogue, so the concat must be that layer's only reader."""
    ann = ctx.annotated_expr
    cat = ann["concat"]
    xs = [ann[f"x{i}"] for i in range(sum(k.startswith("x") for k in ann))]
    if not all(static(t.ty, 4) for t in [*xs, cat]):
        return f"needs static NCHW maps, got {[list(x.ty.shape) for x in xs]}"
    if int(cat.attrs.axis) % 4 != 1:
        return f"concat on axis {int(cat.attrs.axis)} (the array joins channels, axis 1)"
    int8 = "quant" in ann
    want = "int8" if int8 else "float32"
    if any(x.ty.dtype != want for x in xs) or int8 and ann["quant"].attrs.out_dtype != want:
        return f"dtypes {[str(x.ty.dtype) for x in xs]} (supported: {want})"
    if any(not (isinstance(x, relax.Call) and isinstance(x.op, relax.GlobalVar)) or
           part.offloaded.get(x.op.name_hint) not in ("conv", "pool") for x in xs):
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
    if not users or any(part.offloaded.get(u.name) not in ("conv", "pool") for u in users):
        return "it is not read only by conv or pooling layers on the array"
    return None


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of the flatten, slice and concat variants."""
    check_flatten = part.check(("reshape",), _flatten_reason,
                               leak="an intermediate of the reshape is used outside it")
    check_slice = part.check(("slice",), _slice_reason, leak=None)
    check_concat = part.check(("concat",), _concat_reason,
                              leak="an intermediate of the concat is used outside it")
    out = [("aie.flatten_" + ("int8" if int8 else "fp32") + ("_transpose" if t else ""),
            *_flatten_pattern(int8, t), check_flatten) for int8 in (False, True)
           for t in (False, True)]
    out.append(("aie.slice", *_slice_pattern(), check_slice))
    out += [(f"aie.concat_{'int8' if int8 else 'fp32'}_{n}", *_concat_pattern(int8, n),
             check_concat) for int8 in (False, True) for n in range(2, CONCAT_INPUTS + 1)]
    return out
