"""What the pattern checks of one partitioning share: :class:`PartitionContext` and small helpers.

A context holds the device being compiled for, why each rejected operator stays on the CPU (for
the log), and, between the fusion passes, which composites are already offloaded and what
``main``'s variables hold. One is made per :func:`~tvm_aie.partition.partition_for_aie` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.utils import has_leaking_intermediate_variables
from tvm.relax.dpl.pattern import is_const, is_op
from tvm.relax.transform import PatternCheckContext

from ..schedules.dense import TilingError


@dataclass
class PartitionContext:
    """The state of one partitioning (see the module docstring)."""

    device: object
    rejected: dict = field(default_factory=dict)  # bound variable name -> why it stays on the CPU
    offloaded: dict = field(default_factory=dict)  # composite / bound variable -> layer family
    bound: dict = field(default_factory=dict)  # main's variables (by name) -> their values

    def check(self, keys: tuple, *reasons, overrides: bool = False,
              leak: str | None = "an intermediate of the layer is used outside it"):
        """A pattern's check: ``leak`` if an intermediate of the match is read outside it (None:
        no such check), else the first reason ``reasons`` give (each ``reason(ctx, self)``;
        None: the pattern may match), recorded for the log against the variables bound to the
        annotated ``keys`` (first reason kept, unless ``overrides``: a later, more specific
        pattern's reason wins)."""
        def check(ctx: PatternCheckContext) -> bool:
            leaks = leak is not None and has_leaking_intermediate_variables(ctx)
            reason = leak if leaks else \
                next((r for r in (f(ctx, self) for f in reasons) if r is not None), None)
            if reason is not None:
                for key in keys:
                    expr = ctx.annotated_expr.get(key)
                    var = None if expr is None else ctx.value_to_bound_var.get(expr)
                    if var is None:
                        continue
                    if overrides:
                        self.rejected[var.name] = reason
                    else:
                        self.rejected.setdefault(var.name, reason)
            return reason is None
        return check

    def producer(self, ctx: PatternCheckContext) -> str | None:
        """The family of the offloaded layer whose output the match reads as ``x``, if the match
        is its only reader (else the merged region would have a second output), or None."""
        x = ctx.annotated_expr["x"]
        if not (isinstance(x, relax.Call) and isinstance(x.op, relax.GlobalVar)):
            return None
        var = ctx.value_to_bound_var.get(x)
        if var is None or len(ctx.var_usages.get(var, [])) != 1:
            return None
        return self.offloaded.get(x.op.name_hint)


def const_value(expr) -> np.ndarray:
    """The value of a Relax constant (TVM 0.27 imports them as ``GenericConst``)."""
    return expr.value.numpy()


def layer_precision(activation_dtype) -> str:
    """The precision of a layer whose activations are ``activation_dtype``: that dtype, except
    int16 (onnxruntime's ``QInt16`` activations, always with int8 weights here), which is the
    int16xint8 datapath."""
    return "int16xint8" if str(activation_dtype) == "int16" else str(activation_dtype)


def int16_reason(device) -> str | None:
    """Why int16 activations cannot run on ``device``, or None (AIE1's catalog has no int16 x
    int8 intrinsic)."""
    try:
        device.mmul_shape("int16xint8")
    except ValueError as err:
        return str(err)
    return None


def fit_reason(device, schedule, workload) -> str | None:
    """Why no configuration of ``schedule`` runs ``workload`` on ``device``, or None: a layer the
    array cannot hold stays on the CPU instead of failing the build."""
    try:
        schedule.default_config(workload, device)
    except TilingError as err:
        return f"does not fit the array: {err}"
    return None


def dq(data):
    """A dequantize of ``data`` by constant scale and zero point."""
    return is_op("relax.dequantize")(data, is_const(), is_const())


def quantized_root(ann: dict, out, int8: bool):
    """``(pattern, annotations)`` of a pattern ending in ``out``, through a quantize (annotated
    ``quant``) in its QDQ form."""
    if int8:
        out = ann["quant"] = is_op("relax.quantize")(out, is_const(), is_const())
    ann["root"] = out
    return out, ann


def static(ty, ndim: int) -> bool:
    """Whether ``ty`` has rank ``ndim`` and only static dimensions."""
    return len(ty.shape) == ndim and all(isinstance(d, tvm.tirx.IntImm | int) for d in ty.shape)


def ints(values) -> list:
    return [int(v) for v in values]
