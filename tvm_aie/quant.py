"""Integer requantisation as the AIE vector unit does it (shift-round-saturate, "SRS").

A quantised dense layer accumulates ``int8 x int8`` products in int32 and must turn the accumulator
into the output's int8 with a real-valued scale ``s = s_in * s_w[n] / s_out``. The array has no
floating point in that path: ``s`` is written as an int32 multiplier ``m`` in [2^30, 2^31) and a
right shift, and the result is ``round_half_up(acc * m / 2^shift) + zp_out``, saturated to int8.
This module is the one definition of that arithmetic: the simulator's kernels and the CPU integer
reference (:mod:`tvm_aie.reference`) both follow it, which is what makes bit-exact comparison meaningful.
"""

from __future__ import annotations

import numpy as np

MULT_BITS = 31
QMIN = {"int8": -128, "int16": -32768}
QMAX = {"int8": 127, "int16": 32767}


def quantize_multiplier(scale) -> tuple[np.ndarray, np.ndarray]:
    """Write each positive real ``scale`` as ``mult * 2^-shift`` with ``mult`` in [2^30, 2^31).

    Works for any scale value (not only powers of two). Returns int64 arrays (mult, shift).
    """
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
        raise ValueError(f"requantisation scales must be positive and finite, got {scale}")
    mant, exp = np.frexp(scale)  # scale = mant * 2^exp, mant in [0.5, 1)
    mult = np.round(mant * (1 << MULT_BITS)).astype(np.int64)
    carry = mult == (1 << MULT_BITS)
    mult[carry] >>= 1
    exp = exp + carry
    shift = (MULT_BITS - exp).astype(np.int64)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(f"requantisation scale out of the SRS range: {scale}")
    return mult, shift


def requantize(acc, mult, shift, zero_point: int, relu: bool, out_dtype: str = "int8"):
    """int32 accumulators -> ``out_dtype`` with per-channel (last axis) multiplier and shift."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    rounded = (acc * mult + (np.int64(1) << (shift - 1))) >> shift
    y = rounded + zero_point
    lo = max(QMIN[out_dtype], zero_point) if relu else QMIN[out_dtype]
    return np.clip(y, lo, QMAX[out_dtype]).astype(out_dtype)


# Headroom bits of the integer add per output dtype (TFLite's quantised add uses the same): rounding
# errors stay below 2^-shift of a step, while a centred input (9 or 17 bits) shifted left and
# times a 31-bit multiplier stays inside int64 (int16: 17 + 15 + 31 = 63 bits).
ADD_LEFT_SHIFT = {"int8": 20, "int16": 15}


def requantize_add(a, a_zp: int, a_mult, a_shift, b, b_zp: int, b_mult, b_shift,
                   out_zp: int, out_dtype: str = "int8"):
    """``a`` and ``b`` (``out_dtype``, int8 or int16, at their own scales) added at the output's
    scale.

    Each input is centred, widened by ``ADD_LEFT_SHIFT[out_dtype]`` bits and scaled by its ratio
    ``s_in / s_out`` as a multiplier and shift (:func:`quantize_multiplier`, round half up); the
    sum is shifted back with rounding half up, offset by the output zero point and saturated
    (the scheme of TFLite's quantised add, which the AIE's shift-round-saturate does the same way).
    """
    left = ADD_LEFT_SHIFT[out_dtype]

    def scaled(x, zp, mult, shift):
        x = (np.asarray(x, np.int64) - zp) << left
        shift = np.int64(shift)
        return (x * np.int64(mult) + (np.int64(1) << (shift - 1))) >> shift

    total = scaled(a, a_zp, a_mult, a_shift) + scaled(b, b_zp, b_mult, b_shift)
    y = ((total + (1 << (left - 1))) >> left) + out_zp
    return np.clip(y, QMIN[out_dtype], QMAX[out_dtype]).astype(out_dtype)


def rescale(x, zp: int, mult, shift, out_zp: int, out_dtype: str = "int8"):
    """``x`` (``out_dtype`` at its own scale and zero point ``zp``) at another scale, ``mult`` and
    ``shift`` being ``s_in / s_out`` (an int8 concat's input quantised otherwise than its output).

    It is :func:`requantize_add` with nothing added: a zero second operand contributes exactly 0
    (``(0 + 2^0) >> 1``), so the input is requantised with the add's arithmetic, one definition
    shared by the array and the reference."""
    return requantize_add(x, zp, mult, shift, 0, 0, 1 << 30, 1, out_zp, out_dtype)


# Bits dropped from the multiplier of a product of two centred inputs: int16's reach 2^32, and
# 2^32 times a 31-bit multiplier would overflow int64, so its multiplier keeps 29 bits (a
# relative error of 2^-29, under 2^-13 of a step at int16's largest output); int8's (2^16) keep 31.
PRODUCT_DROP_BITS = {"int8": 0, "int16": 2}


def product_multiplier(scale, out_dtype: str) -> tuple[int, int]:
    """``scale`` (``s_a * s_b / s_out``) as the multiplier and shift of :func:`requantize_mul`."""
    (mult,), (shift,) = quantize_multiplier(scale)
    drop = PRODUCT_DROP_BITS[out_dtype]
    if shift - drop < 1:
        raise ValueError(f"requantisation scale out of the SRS range: {scale}")
    return int((mult + (1 << drop >> 1)) >> drop), int(shift - drop)


def requantize_mul(a, a_zp: int, b, b_zp: int, mult: int, shift: int, out_zp: int,
                   out_dtype: str = "int8"):
    """``a * b`` of two ``out_dtype`` (int8 or int16) tensors at their own scales, at the
    output's: the centred product in int64 times the multiplier, rounded half up by the shift
    (:func:`requantize`), offset and saturated (what a QDQ Mul computes in float, in integers)."""
    acc = (np.asarray(a, np.int64) - a_zp) * (np.asarray(b, np.int64) - b_zp)
    return requantize(acc, mult, shift, out_zp, False, out_dtype)
