"""Row-wise layers: :class:`RowLayer` (element- and row-wise ops over the last axis, and their
int8 lookup tables) and its reader."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...partition import const_value
from ...quant import product_multiplier, quantize_multiplier
from .common import scalar


@dataclass
class RowLayer:
    """An element- or row-wise layer on ``[rows, cols]`` (the last axis is ``cols``).

    ``op``: "gelu", "sigmoid", "tanh", "softmax", "layernorm" (fp32, with
    ``gamma``/``beta``/``eps``), "add" (of ``other``, a second tensor of the same shape; int8 and
    int16 through :func:`tvm_aie.quant.requantize_add` with ``add``), "mul" (by ``other``; int8
    and int16 through :func:`tvm_aie.quant.requantize_mul` with ``qdq``),
    "lut" (int8: ``y = lut[x + 128]``, the table being the layer's QDQ float function at every
    input) or, in int16, "gelu", "sigmoid", "tanh" and "scale" (by a scalar) as QDQ functions
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


def _lut(call, dq, quant) -> np.ndarray:
    """``q(f(dq(i)))`` for every int8 ``i``, computed as the QDQ graph does: float32 values,
    round half to even, saturate."""
    x = (np.arange(-128, 128, dtype=np.float32) - np.float32(scalar(dq.args[2]))) * \
        np.float32(scalar(dq.args[1]))
    name = call.op.name
    if name == "relax.multiply":
        y = x * np.float32(const_value(call.args[1]).reshape(()))
    else:
        f = {"relax.nn.gelu": _gelu, "relax.sigmoid": lambda v: 1 / (1 + np.exp(-v)),
             "relax.tanh": np.tanh}[name]
        y = f(x.astype(np.float64)).astype(np.float32)
    q = np.round(y / np.float32(scalar(quant.args[1]))) + scalar(quant.args[2])
    return np.clip(q, -128, 127).astype(np.int8)


# a one-input row-wise layer's Relax op -> its RowLayer.op (a scalar multiply only in int16)
_ROW_OPS = {"relax.nn.gelu": "gelu", "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid",
            "relax.tanh": "tanh", "relax.nn.layer_norm": "layernorm", "relax.multiply": "scale"}


def read_rowwise(func: relax.Function, call, name: str, sources: dict) -> RowLayer:
    x, *rest = func.params
    calls = [b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)]
    shape = tuple(int(d) for d in x.ty.shape)
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}

    def param_of(expr):  # the parameter an operand is, or dequantizes
        expr = bound.get(expr, expr)
        return expr.args[0] if isinstance(expr, relax.Call) else expr

    if len(calls) == 4:  # q(dq(a) + dq(b)) or q(dq(a) * dq(b)); operands in parameter order
        add, quant = calls[2], calls[3]  # (both ops commute)
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
        for dq in (bound.get(a, a), bound.get(b, b)):
            (mult,), (shift,) = quantize_multiplier(scalar(dq.args[1]) / out_scale)
            terms += [int(scalar(dq.args[2])), int(mult), int(shift)]
        return RowLayer(name, "add", str(x.ty.dtype), shape, sources[param_of(a)],
                        other=sources[param_of(b)], add=tuple(terms),
                        out_zp=int(scalar(quant.args[2])))
    if calls[-1].op.name == "relax.quantize" and str(x.ty.dtype) == "int16":
        dq, op, quant = calls
        qdq = {"in_scale": float(scalar(dq.args[1])), "in_zp": int(scalar(dq.args[2])),
               "out_scale": float(scalar(quant.args[1])), "out_zp": int(scalar(quant.args[2]))}
        kind = _ROW_OPS[op.op.name]
        if kind == "scale":
            qdq["scalar"] = float(const_value(op.args[1]).reshape(()))
        return RowLayer(name, kind, "int16", shape, sources[x], qdq=qdq)
    if calls[-1].op.name == "relax.quantize":
        dq, op, quant = calls
        return RowLayer(name, "lut", "int8", shape, sources[x], lut=_lut(op, dq, quant))
    (op,) = calls
    if op.op.name in ("relax.add", "relax.multiply"):  # of two tensors, in parameter order
        a, b = sorted((sources[arg] for arg in op.args), key=str)  # (both ops commute)
        return RowLayer(name, "add" if op.op.name == "relax.add" else "mul", "float32", shape, a,
                        other=b)
    kind = _ROW_OPS[op.op.name]
    layer = RowLayer(name, kind, "float32", shape, sources[x])
    if kind == "layernorm":
        layer.gamma, layer.beta = (const_value(a).astype(np.float32) for a in op.args[1:3])
        layer.eps = float(op.attrs.epsilon)
    return layer
