"""Dense layers: :class:`DenseLayer` and its reader (the fp32 or QDQ composite, its weight, bias
and integer requantisation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...partition import const_value, layer_precision
from ...quant import quantize_multiplier
from ...schedules.dense import OPERANDS
from .common import ResidualAdd, int_bias, scalar


@dataclass
class DenseLayer:
    """``y = act(x @ weight + bias)``, in fp32, int8 (requantised to the output's int8) or
    int16xint8 (int16 activations in and out, int8 weights, int64 accumulator and bias)."""

    name: str
    precision: str  # "int8" | "int16xint8" | "float32"
    m: int
    k: int
    n: int
    weight: np.ndarray  # [k, n], int8 or float32
    bias: np.ndarray | None  # [n]: int32 (int16xint8: int64) with the input zero point folded
    # in, or float32
    relu: bool
    input: int | str  # index of the function parameter, or name of the layer that feeds it
    in_scale: float | None = None
    in_zp: int | None = None
    w_scale: np.ndarray | None = None  # [n] float32
    out_scale: float | None = None
    out_zp: int | None = None
    mult: np.ndarray | None = None  # [n] int64, in [2^30, 2^31)
    shift: np.ndarray | None = None  # [n] int64
    # A constant added as a QDQ Add after the layer's quantize (onnxruntime's MatMul + Add):
    # ``addend`` [n] its integers, ``add`` how the requantised output and it are added
    add: "ResidualAdd | None" = None
    addend: np.ndarray | None = None

    @property
    def in_dtype(self) -> str:
        return OPERANDS.get(self.precision, (self.precision,))[0]

    @property
    def epilogue_zp(self) -> int:
        """Zero point the requantised matmul output has (before the bias add, if any)."""
        return self.add.conv_zp if self.add else int(self.out_zp or 0)

    @property
    def out_dtype(self) -> str:
        return self.in_dtype


def read_dense(func: relax.Function, call, name: str, sources: dict) -> DenseLayer:
    """A dense composite; leading input dimensions are rows (``[B, S, K]`` is the ``[B*S, K]``
    matrix in DDR)."""
    m = int(np.prod([int(d) for d in list(call.args[0].ty.shape)[:-1]]))
    source = sources[func.params[0]]
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values() if isinstance(v, relax.Call)}

    def value(expr):
        return bound.get(expr, expr)

    matmul = calls["relax.matmul"]
    lhs, rhs = value(matmul.args[0]), value(matmul.args[1])
    transposed = isinstance(rhs, relax.Call) and rhs.op.name == "relax.permute_dims"
    if transposed:
        rhs = value(rhs.args[0])
    int8 = isinstance(rhs, relax.Call)  # dequantize(W_int8, scale, zp)
    weight = const_value(rhs.args[0] if int8 else rhs)
    weight = np.ascontiguousarray(weight.T if transposed else weight)
    k, n = weight.shape
    ops = [v for v in bound.values() if isinstance(v, relax.Call)]  # in dataflow order
    bias, addq = None, None
    for add in (op for op in ops if op.op.name == "relax.add"):
        if value(add.args[0]).same_as(matmul) or value(add.args[1]).same_as(matmul):
            bias = value(add.args[1] if value(add.args[0]).same_as(matmul) else add.args[0])
        else:  # q(dq(q(matmul)) + dq(c)): the QDQ add of a constant after the matmul's quantize
            addq = [value(a) for a in add.args]
    precision = "float32"
    if int8:  # int16 activations (onnxruntime's QInt16) with int8 weights: int16xint8
        precision = layer_precision(lhs.args[0].ty.dtype)
    layer = DenseLayer(name, precision, m, k, n, weight, None, "relax.nn.relu" in calls, source)
    if not int8:
        layer.bias = None if bias is None else const_value(bias).reshape(n).astype(np.float32)
        return layer
    quants = [op for op in ops if op.op.name == "relax.quantize"]
    mid, quant = quants[0], quants[-1]  # the matmul's, the layer's (one unless a bias add)
    layer.in_scale, layer.in_zp = scalar(lhs.args[1]), int(scalar(lhs.args[2]))
    layer.out_scale, layer.out_zp = scalar(quant.args[1]), int(scalar(quant.args[2]))
    layer.w_scale = np.broadcast_to(const_value(rhs.args[1]).reshape(-1), (n,)).astype(np.float32)
    acc_scale = np.float64(layer.in_scale) * layer.w_scale.astype(np.float64)
    layer.mult, layer.shift = quantize_multiplier(acc_scale / scalar(mid.args[1]))
    layer.bias = int_bias(bias, acc_scale, weight, layer.in_zp,
                           "int64" if precision == "int16xint8" else "int32")
    if addq:  # the constant's dequantize is the operand that does not read ``mid``
        c = next(a for a in addq if not value(a.args[0]).same_as(mid))
        layer.addend = np.broadcast_to(const_value(c.args[0]).reshape(-1), (n,)).copy()
        (mm,), (ms,) = quantize_multiplier(scalar(mid.args[1]) / layer.out_scale)
        (cm,), (cs,) = quantize_multiplier(scalar(c.args[1]) / layer.out_scale)
        layer.add = ResidualAdd(int(scalar(mid.args[2])), int(mm), int(ms),
                                int(scalar(c.args[2])), int(cm), int(cs))
    return layer
