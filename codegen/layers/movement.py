"""Data movement between conv layers: :class:`FlattenLayer`, :class:`SliceLayer` and
:class:`ConcatLayer`, which the conv lowering folds into DMA patterns, and their readers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...quant import quantize_multiplier
from .common import scalar


@dataclass
class FlattenLayer:
    """A conv or pooling layer's ``[N, C, H, W]`` output seen as ``[N, C*H*W]``, one row per image
    (ONNX ``Flatten``). Row-major order is unchanged, so it moves no data: the program addresses the
    same bytes under the new shape (in int8 ``q(reshape(dq(x)))`` of one scale and zero point is
    the identity on the int8 values). ``perm``: a transpose before the flatten (ONNX
    ``Transpose``, batch axis first, e.g. to NHWC), which only changes the order the map is
    written in."""

    name: str
    precision: str
    in_shape: tuple  # (N, C, H, W)
    out_shape: tuple  # (N, C*H*W)
    input: int | str
    perm: tuple | None = None  # axes of permute_dims on (N, C, H, W), batch axis first
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision


@dataclass
class SliceLayer:
    """A ``strided_slice`` of a conv or pooling layer's ``[N, C, H, W]`` output read by the next
    conv or pooling layer. It moves no data of its own: the reader's input DMA walks the source
    map with the offset, sizes and strides of :meth:`pattern` (ONNX ``Slice`` and ``Split``)."""

    name: str
    precision: str
    in_shape: tuple  # (N, C, H, W)
    out_shape: tuple  # (N, C', H', W')
    begin: tuple  # (c, h, w)
    steps: tuple  # (c, h, w)
    input: int | str
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    def pattern(self) -> tuple:
        """(offset, sizes, strides) of the slice's elements in the row-major source map."""
        _, c, h, w = self.in_shape
        unit = (h * w, w, 1)
        offset = sum(b * u for b, u in zip(self.begin, unit))
        return offset, list(self.out_shape[1:]), [s * u for s, u in zip(self.steps, unit)]


def read_slice(func: relax.Function, call, name: str, sources: dict) -> SliceLayer:
    """The slice the composite's ``strided_slice`` takes (begins clamped as ONNX does)."""
    (call,) = [b.value for block in func.body.blocks for b in block.bindings]
    source = sources[func.params[0]]
    x = call.args[0]
    shape = tuple(int(d) for d in x.ty.shape)
    begin, steps = [0, 0, 0, 0], [1, 1, 1, 1]
    axes, starts, _, strides = ([int(f.value) for f in arg.fields] for arg in call.args[1:])
    for axis, start, step in zip(axes, starts, strides):
        axis %= 4
        begin[axis] = min(max(start + shape[axis] if start < 0 else start, 0), shape[axis])
        steps[axis] = step
    return SliceLayer(name, str(x.ty.dtype), shape, tuple(int(d) for d in call.ty.shape),
                      tuple(begin[1:]), tuple(steps[1:]), source)


@dataclass
class ConcatLayer:
    """A ``concat`` along channels of conv or pooling layers' ``[N, C_i, H, W]`` outputs, read by
    conv or pooling layers. It moves no data of its own: each input's producer writes its blocks
    straight into every reader's input image at the input's channel offset. int8: ``rescale``
    holds, per input, None (quantised as the output) or (zero point, multiplier, shift) to the
    output's scale, which the producer's epilogue applies (:func:`tvm_aie.quant.rescale`)."""

    name: str
    precision: str
    inputs: tuple  # sources, in channel order
    channels: tuple  # C_i of each input
    out_shape: tuple  # (N, C, H, W)
    rescale: tuple
    out_zp: int = 0
    macs = 0

    @property
    def out_dtype(self) -> str:
        return self.precision

    @property
    def offsets(self) -> list:
        """The first output channel of each input."""
        return [int(sum(self.channels[:i])) for i in range(len(self.channels))]


def read_concat(func: relax.Function, call, name: str, sources: dict) -> ConcatLayer:
    """The concat composite: ``concat(x...)``, in int8 ``quantize(concat(dequantize(x)...))``."""
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    calls = {v.op.name: v for v in bound.values() if isinstance(v, relax.Call)}
    cat = calls["relax.concat"]
    fields = [bound.get(f, f) for f in bound.get(cat.args[0], cat.args[0]).fields]
    quant = calls.get("relax.quantize")
    xs = [f.args[0] if quant is not None else f for f in fields]
    layer = ConcatLayer(name, str(xs[0].ty.dtype), tuple(sources[x] for x in xs),
                        tuple(int(x.ty.shape[1]) for x in xs),
                        tuple(int(d) for d in cat.ty.shape), tuple(None for _ in xs))
    if quant is not None:
        s_out, layer.out_zp = scalar(quant.args[1]), int(scalar(quant.args[2]))
        rescale = []
        for dq in fields:
            s_in, zp_in = scalar(dq.args[1]), int(scalar(dq.args[2]))
            (mult,), (shift,) = quantize_multiplier(np.float64(s_in) / s_out)
            rescale.append(None if (s_in, zp_in) == (s_out, layer.out_zp) else
                           (zp_in, int(mult), int(shift)))
        layer.rescale = tuple(rescale)
    return layer


def read_flatten(func: relax.Function, call, name: str, sources: dict) -> FlattenLayer:
    """The flatten composite (a reshape, after a transpose perhaps) of ``call``'s input."""
    x = call.args[0]
    perm = [b.value.attrs.axes for block in func.body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and
            getattr(b.value.op, "name", "") == "relax.permute_dims"]
    return FlattenLayer(name, str(x.ty.dtype), tuple(int(d) for d in x.ty.shape),
                        tuple(int(d) for d in call.ty.shape), sources[func.params[0]],
                        tuple(int(a) for a in perm[0]) if perm else None)
