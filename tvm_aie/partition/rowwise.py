"""Row-wise layers: element- and row-wise ops over the last axis (GELU, sigmoid, tanh, softmax,
layer norm, the add or multiply of two tensors) in fp32, and their QDQ int8/int16 forms.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.relax.backend.utils import has_leaking_intermediate_variables
from tvm.relax.dpl.pattern import is_const, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import product_multiplier, quantize_multiplier
from ..schedules import rowwise
from .context import PartitionContext, const_value, dq, fit_reason, ints, static


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
        inp = ann["lhs"] = dq(x)
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
        a, b = (ann.setdefault("lhs", dq(x)), ann.setdefault("rhs", dq(y))) if quant \
            else (x, y)
        out = ann["op"] = is_op("relax.add" if kind.startswith("add") else "relax.multiply")(a, b)
        if quant:
            out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    else:
        out = ann["op"] = is_op(_UNARY.get(kind, f"relax.nn.{kind}"))(x)
    ann["root"] = out
    return out, ann


def _int16_rowwise_reason(dev) -> str | None:
    """Why the device's vector unit cannot run an int16 row-wise layer, from the catalog: it
    needs the int16 datapath (an int16 ``macs_per_cycle``) for the add and the conversions, and
    the fp32 vector facts (``float32_vector``) for a QDQ function's middle. No int16 x int8
    intrinsic is needed, so AIE1 runs them."""

    if "int16" not in dev.macs_per_cycle or dev.float32_vector is None:
        return f"{dev.name} ({dev.generation}) has no int16 vector datapath in the catalog"
    return None


def _rowwise_reason(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    if has_leaking_intermediate_variables(ctx):
        return "an intermediate of the layer is used outside it"
    ann = ctx.annotated_expr
    x, op = ann["x"], ann["op"]
    rank = len(x.ty.shape)
    if rank < 1 or not static(x.ty, rank):
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
        if x.ty.dtype == "int16" and (reason := _int16_rowwise_reason(part.device)):
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


def _rowwise_fit(ctx: PatternCheckContext, part: PartitionContext) -> str | None:
    ann = ctx.annotated_expr
    shape = ints(ann["x"].ty.shape)
    name = ann["op"].op.name
    op = ("mul" if name == "relax.multiply" else "add") if "y" in ann else \
        "lut" if "quant" in ann and ann["x"].ty.dtype == "int8" else \
        {"relax.nn.gelu": "gelu", "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid",
         "relax.tanh": "tanh", "relax.multiply": "scale"}.get(name, "layernorm")
    return fit_reason(part.device, rowwise, rowwise.RowWorkload(
        op, int(np.prod(shape)) // shape[-1], shape[-1], str(ann["x"].ty.dtype)))


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of every row-wise variant."""
    check = part.check(("op",), _rowwise_reason, _rowwise_fit)
    return [(f"aie.rowwise_{kind}_fp32", *_rowwise_pattern(kind), check)
            for kind in ("gelu", "sigmoid", "tanh", "softmax", "layernorm", "add", "mul")] + \
        [(f"aie.rowwise_{kind}_int8", *_rowwise_pattern(kind), check)
         for kind in ("lut", "addq", "mulq")]
