"""What several layer readers share: scalars of composites, the integer bias the array adds
(with the input's zero point folded in) and the two-step requantised add (:class:`ResidualAdd`)
of a conv's residual and a dense layer's QDQ bias add."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ...partition import const_value


@dataclass
class ResidualAdd:
    """int8 ``out = q(dq(conv_out) + dq(residual))`` as :func:`tvm_aie.quant.requantize_add` does
    it: the conv's output is first requantised to its own int8 (``conv_zp``; ``ConvLayer.mult``
    and ``shift`` are for that step), then each operand is scaled to the output's scale. A dense
    layer's QDQ bias add is the same two steps (``conv_*``: the matmul's requantised output,
    ``res_*``: the constant's integers, ``DenseLayer.addend``)."""

    conv_zp: int
    conv_mult: int
    conv_shift: int
    res_zp: int
    res_mult: int
    res_shift: int


def scalar(expr) -> float:
    return const_value(expr).reshape(()).item()


def int_bias(bias, acc_scale: np.ndarray, weight: np.ndarray, in_zp: int,
              acc_dtype: str = "int32") -> np.ndarray | None:
    """The bias at the accumulator's scale in ``acc_dtype``, with ``-zp_in * colsum(W)`` folded
    in (int64 for int16 inputs, whose zero point times a column sum can exceed int32)."""
    n = acc_scale.shape[0]
    b = np.zeros(n, np.int64)
    if isinstance(bias, relax.Call):  # dequantize(b_int32, s_b, zp_b), as onnxruntime writes it
        b_int = const_value(bias.args[0]).reshape(n).astype(np.int64) - \
            const_value(bias.args[2]).astype(np.int64)
        s_b = np.broadcast_to(const_value(bias.args[1]).astype(np.float64).reshape(-1), (n,))
        b = b_int if np.allclose(s_b, acc_scale, rtol=1e-6) else np.round(b_int * s_b / acc_scale)
    elif bias is not None:
        b = np.round(const_value(bias).reshape(n).astype(np.float64) / acc_scale)
    if bias is None and in_zp == 0:
        return None
    b = b.astype(np.int64) - in_zp * weight.astype(np.int64).sum(axis=0)
    if acc_dtype == "int32" and np.any(np.abs(b) >= 2**31):
        raise ValueError("int8 dense: bias does not fit in int32 at the accumulator's scale")
    return b.astype(acc_dtype)
