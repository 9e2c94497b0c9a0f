"""Row-wise layers: element- and row-wise ops over the last axis (activations, softmax, log
softmax, layer norm, the add, subtract, multiply or divide of two tensors) in fp32, and their QDQ
int8/int16 forms; which of the importer's op chains are one element-wise function.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl.pattern import is_const, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from ..quant import product_multiplier, quantize_multiplier
from ..schedules import rowwise
from .context import PartitionContext, const_value, dq, fit_reason, ints, static


_UNARY = {"gelu": "relax.nn.gelu", "sigmoid": "relax.sigmoid", "tanh": "relax.tanh",
          "relu": "relax.nn.relu", "leakyrelu": "relax.nn.leakyrelu",
          "gelu_tanh": "relax.nn.gelu_tanh"}
# element-wise functions of several ops (as TVM's ONNX importer writes HardSigmoid, HardSwish
# and a SiLU's ``x * sigmoid(x)``) and clip: tried before the ops they are made of
_CHAINS = ("clip", "hardsigmoid", "hardswish", "silu")
_BINARY = {"add": "relax.add", "mul": "relax.multiply", "sub": "relax.subtract",
           "div": "relax.divide"}


def _either(op: str, a, b):
    """``op(a, b)`` or ``op(b, a)``."""
    return is_op(op)(a, b) | is_op(op)(b, a)


def _function(kind: str, inp):
    """The pattern of the element-wise function ``kind`` of ``inp()`` (called per use: a QDQ
    input's dequantize is copied for each reader)."""
    if kind in _UNARY:
        return is_op(_UNARY[kind])(inp())
    if kind == "clip":
        return is_op("relax.clip")(inp(), wildcard(), wildcard())
    if kind == "hardsigmoid":  # clip(a x + b, lo, hi)
        affine = is_op("relax.add")(_either("relax.multiply", inp(), is_const()), is_const())
        return is_op("relax.clip")(affine, wildcard(), wildcard())
    if kind == "hardswish":  # x clip(x + b, lo, hi) / d
        gate = is_op("relax.clip")(is_op("relax.add")(inp(), is_const()), wildcard(), wildcard())
        return _either("relax.multiply", inp(), is_op("relax.divide")(gate, is_const()))
    assert kind == "silu"
    return _either("relax.multiply", inp(), is_op("relax.sigmoid")(inp()))


def _first_then_copies(inp, x):
    """``inp`` (the annotated dequantize) for a function's first use of its input, a copy
    ``dq(x)`` for every later one."""
    uses = []

    def use():
        uses.append(inp if not uses else dq(x))
        return uses[-1]
    return use


def _function_reason(expr, x, bound: dict) -> str | None:
    """Why the element-wise function ``expr`` of ``x`` is not one the kernel computes: its
    constants must be scalars and its clip bounds numbers (``bound``: the match's variables ->
    their values, as the function's ops are bound to variables of ``main``)."""
    expr = bound.get(expr, expr)
    if expr.same_as(x) or not isinstance(expr, relax.Call) or \
            expr.op.name in ("relax.dequantize", "relax.quantize"):
        return None
    for arg in expr.args:
        if isinstance(arg, tvm.ir.GenericConst) and const_value(arg).size != 1:
            return f"{expr.op.name} by a constant of shape {const_value(arg).shape}, not a scalar"
        if expr.op.name == "relax.clip" and not isinstance(arg, relax.Expr) and \
                not isinstance(arg, tvm.tirx.IntImm | tvm.tirx.FloatImm):
            return f"clip with a bound {arg} that is not a number"
        if (reason := _function_reason(arg, x, bound)) is not None:
            return reason
    return None


def _rowwise_pattern(kind: str):
    """Element- and row-wise layers: fp32 GELU (erf and tanh forms), sigmoid, tanh, ReLU, leaky
    ReLU, clip, hard sigmoid, hard swish, SiLU, softmax and log softmax and layer norm over the
    last axis, the add (``"add"``), subtract, multiply or divide of two tensors; int8
    (``kind="lut"``) any of those element-wise functions or a scalar multiply between a
    dequantize and a quantize, which a 256-entry table maps exactly; the same with int16
    activations (onnxruntime's ``QInt16``), computed in float32 between the two on the tile, and
    the QDQ add (``"addq"``), subtract (``"subq"``) or multiply (``"mulq"``) of two int8 or two
    int16 tensors."""
    x = wildcard()
    ann = {"x": x}
    if kind == "lut":
        inp = ann["lhs"] = dq(x)
        ann["scale"] = is_const()
        ops = [is_op("relax.multiply")(inp, ann["scale"])] + \
            [_function(k, _first_then_copies(inp, x)) for k in (*_CHAINS[::-1], *_UNARY)]
        op = ops[0]
        for alt in ops[1:]:
            op = op | alt
        ann["op"] = op
        out = ann["quant"] = is_op("relax.quantize")(op, is_const(), is_const())
    elif kind == "layernorm":
        out = ann["op"] = is_op("relax.nn.layer_norm")(x, is_const(), is_const())
    elif kind.rstrip("q") in _BINARY:  # two activations of one shape (a residual, a gate)
        y = ann["y"] = wildcard()
        quant = kind.endswith("q")
        a, b = (ann.setdefault("lhs", dq(x)), ann.setdefault("rhs", dq(y))) if quant \
            else (x, y)
        out = ann["op"] = is_op(_BINARY[kind.rstrip("q")])(a, b)
        if quant:
            out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    elif kind in _UNARY or kind in _CHAINS:
        out = ann["op"] = _function(kind, lambda: x)
    else:
        out = ann["op"] = is_op(f"relax.nn.{kind}")(x)
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
        if "y" not in ann and \
                (reason := _function_reason(op, x, ctx.matched_bindings)) is not None:
            return reason
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
    if op.op.name in ("relax.nn.softmax", "relax.nn.log_softmax") and \
            int(op.attrs.axis) not in (-1, rank - 1):
        return f"{op.op.name[8:]} not over the last axis"
    if "y" not in ann and op.op.name != "relax.nn.layer_norm" and \
            (reason := _function_reason(op, x, ctx.matched_bindings)) is not None:
        return reason
    if op.op.name == "relax.nn.layer_norm" and \
            [int(a) % rank for a in op.attrs.axes] != [rank - 1]:
        return "layer norm not over the last axis"
    return None


def _rowwise_fit(ctx: PatternCheckContext, part: PartitionContext, kind: str) -> str | None:
    ann = ctx.annotated_expr
    shape = ints(ann["x"].ty.shape)
    dtype = str(ann["x"].ty.dtype)
    op = "qdq" if kind == "lut" and dtype == "int16" else kind.rstrip("q")
    return fit_reason(part.device, rowwise, rowwise.RowWorkload(
        op, int(np.prod(shape)) // shape[-1], shape[-1], dtype))


# the fp32 kinds in the order the partitioner tries them reversed (a chain of ops before the ops
# it is made of: equal names sort last-first, see partition_with_reasons)
_FP32 = ("gelu", "sigmoid", "tanh", "softmax", "layernorm", "add", "mul", "relu", "leakyrelu",
         "gelu_tanh", "log_softmax", "sub", "div", *_CHAINS)


def patterns(part: PartitionContext) -> list:
    """``(name, pattern, annotations, check)`` of every row-wise variant."""
    def check(kind):
        return part.check(("op",), _rowwise_reason,
                          lambda ctx, part: _rowwise_fit(ctx, part, kind))

    # (composite names keep two underscores: the partitioner orders patterns by their count)
    return [(f"aie.rowwise_{kind.replace('_', '')}_fp32", *_rowwise_pattern(kind), check(kind))
            for kind in _FP32] + \
        [(f"aie.rowwise_{kind}_int8", *_rowwise_pattern(kind), check(kind))
         for kind in ("lut", "addq", "mulq", "subq")]
