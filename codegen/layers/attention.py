"""Attention: :class:`BmmLayer` (a batched matmul of two activations) and :class:`HeadsLayer`
(heads split or merged by DMA patterns), and their readers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...partition import const_value
from ...quant import quantize_multiplier
from .common import scalar


@dataclass
class BmmLayer:
    """``c[b] = scale * a[b] @ b[b]`` over the batch dimensions of two activations.

    int8: ``(a - a_zp) @ (b - b_zp)`` exactly in int32, then requantised to the output's int8
    with ``mult``/``shift`` (one per-tensor scale, repeated over the ``n`` columns).
    """

    name: str
    precision: str
    batch_shape: tuple  # the leading dimensions of both operands
    m: int
    k: int
    n: int
    input: int | str  # a
    other: int | str  # b
    scale: float = 1.0  # fp32: the scalar multiplied in after the matmul
    a_zp: int = 0
    b_zp: int = 0
    out_zp: int = 0
    mult: np.ndarray | None = None  # [n] int64
    shift: np.ndarray | None = None  # [n] int64
    bias = None  # no bias and no activation: the int8 epilogue is the requantisation alone
    relu = False

    @property
    def batch(self) -> int:
        return int(np.prod(self.batch_shape))

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def out_dtype(self) -> str:
        return self.precision


@dataclass
class HeadsLayer:
    """Attention heads split from or merged into a ``[B, S, D]`` activation (ONNX Reshape and
    Transpose around a batched matmul). A split is ``permute_dims(reshape(x, [B, S, H, D/H]),
    perm)`` with ``perm`` ``(0, 2, 1, 3)`` (queries, values) or ``(0, 2, 3, 1)`` (keys,
    transposed); a merge is ``reshape(permute_dims(x, (0, 2, 1, 3)), [B, S, D])`` of the
    ``[B, H, S, D/H]`` result. It moves no data of its own: the batched matmul reading a split
    walks the ``[B*S, D]`` matrix with the strides of :meth:`strides`, and the one a merge reads
    writes its blocks there with them (:mod:`~tvm_aie.codegen.lower_net`)."""

    name: str
    precision: str
    batch: int
    seq: int
    heads: int
    width: int  # D
    perm: tuple  # axes of permute_dims (batch first)
    split: bool
    input: int | str
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    def strides(self, stride: int) -> list:
        """Strides, in elements, of the batched matmul's ``[B, H, rows, cols]`` operand (split) or
        result (merge) over the ``[B*S, D]`` matrix stored with rows ``stride`` apart."""
        seq_major = [self.seq * stride, stride, self.width // self.heads, 1]  # [B, S, H, D/H]
        if self.split:
            return [seq_major[axis] for axis in self.perm]
        out = [0] * 4
        for i, axis in enumerate(self.perm):
            out[axis] = seq_major[i]
        return out


def read_heads(func: relax.Function, call, name: str, sources: dict) -> HeadsLayer:
    x, out, source = call.args[0], call, sources[func.params[0]]
    calls = [b.value for block in func.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call)]
    (perm,) = [tuple(int(a) for a in c.attrs.axes) for c in calls
               if c.op.name == "relax.permute_dims"]  # (int8: between QDQ pairs of one scale)
    split = [c.op.name for c in calls if c.op.name in ("relax.reshape", "relax.permute_dims")
             ][0] == "relax.reshape"
    batch, seq, width = (int(d) for d in (x if split else out).ty.shape)
    heads = int((out if split else x).ty.shape[1])
    return HeadsLayer(name, str(x.ty.dtype), batch, seq, heads, width, perm, split, source)


def read_bmm(func: relax.Function, call, name: str, sources: dict) -> BmmLayer:
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values()
             if isinstance(v, relax.Call) and hasattr(v.op, "name")}
    mm = calls["relax.matmul"]
    lhs, rhs = (bound.get(a, a) for a in mm.args)
    int8 = "relax.quantize" in calls
    a, b = (lhs.args[0], rhs.args[0]) if int8 else (lhs, rhs)
    *batch, m, k = (int(d) for d in a.ty.shape)
    n = int(b.ty.shape[-1])
    layer = BmmLayer(name, "int8" if int8 else "float32", tuple(batch), m, k, n,
                     sources[a], sources[b])
    if "relax.multiply" in calls:
        layer.scale = float(const_value(calls["relax.multiply"].args[1]))
    if int8:
        quant = calls["relax.quantize"]
        layer.a_zp, layer.b_zp = int(scalar(lhs.args[2])), int(scalar(rhs.args[2]))
        layer.out_zp = int(scalar(quant.args[2]))
        ratio = np.float64(scalar(lhs.args[1])) * scalar(rhs.args[1]) / scalar(quant.args[1])
        mult, shift = quantize_multiplier(ratio)
        layer.mult, layer.shift = np.repeat(mult, n), np.repeat(shift, n)
    return layer
