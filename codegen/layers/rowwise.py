"""Row-wise layers: :class:`RowLayer` (element- and row-wise ops over the last axis, and their
int8 lookup tables) and its reader."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from ...partition import const_value
from ...quant import product_multiplier, quantize_multiplier
from .common import scalar


@dataclass
class RowLayer:
    """An element- or row-wise layer on ``[rows, cols]`` (the last axis is ``cols``).

    ``op``: an element-wise function (:data:`tvm_aie.sim.kernels_rows.ELEMENTWISE`, its
    constants in ``fn``), "softmax", "log_softmax", "layernorm" (fp32, with
    ``gamma``/``beta``/``eps``), "add" or "sub" (of ``other``, a second tensor of the same shape;
    int8 and int16 through :func:`tvm_aie.quant.requantize_add` with ``add``, a subtract's second
    multiplier negated), "mul" (by ``other``; int8 and int16 through
    :func:`tvm_aie.quant.requantize_mul` with ``qdq``), "div" (fp32),
    "lut" (int8: ``y = lut[x + 128]``, the table being the layer's QDQ float function at every
    input) or, in int16, an element-wise function or "scale" (by a scalar) as QDQ functions
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
    fn: dict | None = None  # an element-wise function's constants (alpha, beta, lo, hi, div)
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


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float64."""
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def _lut(calls: list, dq, quant) -> np.ndarray:
    """``q(f(dq(i)))`` for every int8 ``i``, computed as the QDQ graph does: float32 values,
    round half to even, saturate; ``f`` (the ``calls`` between) in float64, rounded to float32."""
    x = (np.arange(-128, 128, dtype=np.float32) - np.float32(scalar(dq.args[2]))) * \
        np.float32(scalar(dq.args[1]))
    kind, fn = element_function(calls)
    if kind == "scale":
        y = x * np.float32(fn["scalar"])
    else:
        y = _EXACT[kind](x.astype(np.float64), fn).astype(np.float32)
    q = np.round(y / np.float32(scalar(quant.args[1]))) + scalar(quant.args[2])
    return np.clip(q, -128, 127).astype(np.int8)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


# each element-wise function in float64, of ``v`` and its constants ``f``
_EXACT = {"gelu": lambda v, f: _gelu(v), "sigmoid": lambda v, f: _sigmoid(v),
          "tanh": lambda v, f: np.tanh(v), "relu": lambda v, f: np.maximum(v, 0),
          "leakyrelu": lambda v, f: np.where(v > 0, v, v * f["alpha"]),
          "clip": lambda v, f: np.clip(v, f["lo"], f["hi"]),
          "hardsigmoid": lambda v, f: np.clip(v * f["alpha"] + f["beta"], f["lo"], f["hi"]),
          "hardswish": lambda v, f: v * np.clip(v + f["beta"], f["lo"], f["hi"]) / f["div"],
          "silu": lambda v, f: v * _sigmoid(v),
          "gelu_tanh": lambda v, f: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                                           (v + 0.044715 * v ** 3)))}
# a one-op row-wise layer's Relax op -> its RowLayer.op (a scalar multiply only in int16), and
# the chains of several ops that are one element-wise function (partition.rowwise matches them)
_ROW_OPS = {"relax.nn.gelu": "gelu", "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid",
            "relax.tanh": "tanh", "relax.nn.layer_norm": "layernorm", "relax.multiply": "scale",
            "relax.nn.relu": "relu", "relax.nn.leakyrelu": "leakyrelu", "relax.clip": "clip",
            "relax.nn.gelu_tanh": "gelu_tanh", "relax.nn.log_softmax": "log_softmax"}
_CHAINS = {("relax.multiply", "relax.add", "relax.clip"): "hardsigmoid",
           ("relax.add", "relax.clip", "relax.divide", "relax.multiply"): "hardswish",
           ("relax.sigmoid", "relax.multiply"): "silu"}
_BINARY = {"relax.add": "add", "relax.multiply": "mul", "relax.subtract": "sub",
           "relax.divide": "div"}


def element_function(calls: list) -> tuple[str, dict]:
    """The ``RowLayer.op`` the one-input ``calls`` (in dataflow order, without a QDQ's
    dequantizes and quantize) compute, and the function's constants ``fn``."""
    names = tuple(c.op.name for c in calls)
    kind = _CHAINS.get(names) or _ROW_OPS[names[0]]
    fn = {}
    for call in calls:
        if call.op.name == "relax.clip":
            fn["lo"], fn["hi"] = (float(b.value) for b in call.args[1:3])
        elif call.op.name == "relax.nn.leakyrelu":
            fn["alpha"] = float(call.attrs.alpha)
    if kind in ("scale", "hardsigmoid", "hardswish"):  # their constants are scalars
        consts = [scalar(a) for c in calls for a in c.args
                  if isinstance(a, tvm.ir.GenericConst)]
        fn.update(zip({"scale": ("scalar",), "hardsigmoid": ("alpha", "beta"),
                       "hardswish": ("beta", "div")}[kind], consts))
    return kind, fn


def _requantised_pair(x, add, quant, name, shape, bound, sources, param_of) -> RowLayer:
    """``q(dq(a) op dq(b))`` of two int8 or int16 tensors; a commuting op's operands in
    parameter order."""
    a, b = add.args
    if add.op.name != "relax.subtract":  # (both ops commute)
        a, b = sorted(add.args, key=lambda arg: str(sources[param_of(arg)]))
    out_scale = scalar(quant.args[1])
    if add.op.name == "relax.multiply":
        (sa, za), (sb, zb) = ((scalar(dq.args[1]), int(scalar(dq.args[2])))
                              for dq in (bound.get(a, a), bound.get(b, b)))
        mult, shift = product_multiplier(sa * sb / out_scale, str(x.ty.dtype))
        return RowLayer(name, "mul", str(x.ty.dtype), shape, sources[param_of(a)],
                        other=sources[param_of(b)], out_zp=int(scalar(quant.args[2])),
                        qdq={"in_zp": za, "other_zp": zb, "mult": mult, "shift": shift})
    terms = []
    for sign, dq in ((1, bound.get(a, a)), (-1 if add.op.name == "relax.subtract" else 1,
                                             bound.get(b, b))):
        (mult,), (shift,) = quantize_multiplier(scalar(dq.args[1]) / out_scale)
        terms += [int(scalar(dq.args[2])), sign * int(mult), int(shift)]
    return RowLayer(name, _BINARY[add.op.name], str(x.ty.dtype), shape, sources[param_of(a)],
                    other=sources[param_of(b)], add=tuple(terms),
                    out_zp=int(scalar(quant.args[2])))


def read_rowwise(func: relax.Function, call, name: str, sources: dict) -> RowLayer:
    x = func.params[0]
    calls = [b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)]
    shape = tuple(int(d) for d in x.ty.shape)
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}

    def param_of(expr):  # the parameter an operand is, or dequantizes
        expr = bound.get(expr, expr)
        return expr.args[0] if isinstance(expr, relax.Call) and \
            expr.op.name == "relax.dequantize" else expr

    op = calls[-2] if calls[-1].op.name == "relax.quantize" else calls[-1]
    if op.op.name in _BINARY and all(param_of(a) in func.params for a in op.args):  # two tensors
        if calls[-1].op.name == "relax.quantize":
            return _requantised_pair(x, op, calls[-1], name, shape, bound, sources, param_of)
        a, b = (sources[arg] for arg in op.args)
        if op.op.name in ("relax.add", "relax.multiply"):  # in parameter order (they commute)
            a, b = sorted((a, b), key=str)
        return RowLayer(name, _BINARY[op.op.name], "float32", shape, a, other=b)
    if calls[-1].op.name == "relax.quantize":
        dq, quant = calls[0], calls[-1]
        middle = [c for c in calls[1:-1] if c.op.name != "relax.dequantize"]
        if str(x.ty.dtype) == "int8":
            return RowLayer(name, "lut", "int8", shape, sources[x], lut=_lut(middle, dq, quant))
        qdq = {"in_scale": float(scalar(dq.args[1])), "in_zp": int(scalar(dq.args[2])),
               "out_scale": float(scalar(quant.args[1])), "out_zp": int(scalar(quant.args[2]))}
        kind, fn = element_function(middle)
        if kind == "scale":
            qdq["scalar"] = fn.pop("scalar")
        return RowLayer(name, kind, "int16", shape, sources[x], qdq=qdq, fn=fn or None)
    kind, fn = element_function(calls)
    layer = RowLayer(name, kind, "float32", shape, sources[x], fn=fn or None)
    if kind == "layernorm":
        op, = calls
        layer.gamma, layer.beta = (const_value(a).astype(np.float32) for a in op.args[1:3])
        layer.eps = float(op.attrs.epsilon)
    return layer
