"""Rewrites of ``main`` before matching, so the patterns see one form of each idea (what TVM's
ONNX importer writes for batch norm, Clip, Split and shared dequantizes: :class:`_Canonicalize`).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .context import const_value


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


def canonicalize(mod: tvm.IRModule) -> tvm.IRModule:
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
