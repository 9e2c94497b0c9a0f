"""The row-wise kernel: element- and row-wise ops, int8 lookup tables and int16 QDQ functions on
one block of whole rows in tile memory, registered as ``"rowwise"``.

Each op's arithmetic and measured error (erf polynomial, bf16 two-table exp, int16 QDQ in
float32) and the cycle model (vector passes at the catalog's lane rates; fp32 multiplies emulated
on AIE-ML) are in ``docs/design.md`` ("The simulator").
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..codegen.program import BFLOAT16
from ..quant import QMAX, QMIN, requantize_add, requantize_mul
from .kernels import CALL_OVERHEAD, KERNELS, check_standalone_call
from .memory import tile_key

PASSES = {"gelu": 14, "sigmoid": 8, "tanh": 10, "softmax": 12, "layernorm": 8, "lut": 1,
          "add": 2, "mul": 2, "scale": 1,
          # the element-wise activations: relu a max; leaky relu a multiply and a select; clip a
          # max and a min; hard sigmoid clip(a x + b): multiply, add, max, min; hard swish
          # x clip(x + b) / d: add, max, min, two multiplies (by 1/d, by x); SiLU x sigmoid(x):
          # sigmoid's passes and one multiply; tanh-form GELU 0.5 x (1 + tanh(k x (1 + c x^2))):
          # tanh's passes, five multiplies (x^2, c, x, k, 0.5 x) and two adds
          "relu": 1, "leakyrelu": 2, "clip": 2, "hardsigmoid": 4, "hardswish": 5, "silu": 9,
          "gelu_tanh": 17,
          # two tensors: subtract as add; divide as a multiply by the reciprocal, an estimate
          # refined by two Newton steps r (2 - y r) (the vector unit has no divide): estimate,
          # 2 x (two multiplies, one subtract), the product; log softmax: softmax's passes with
          # the final scale by 1 / sum replaced by subtracting log(sum) (one log per row)
          "sub": 2, "div": 8, "log_softmax": 12}
# of those, the multiplies: half of the polynomial and exp passes; softmax's and layer norm's
# reductions, max and subtractions are adds; layer norm squares, scales by 1/std and by gamma
MUL_PASSES = {"gelu": 7, "sigmoid": 4, "tanh": 5, "softmax": 5, "layernorm": 4, "lut": 0,
              "add": 0, "mul": 1, "scale": 1, "relu": 0, "leakyrelu": 1, "clip": 0,
              "hardsigmoid": 1, "hardswish": 2, "silu": 5, "gelu_tanh": 10, "sub": 0, "div": 5,
              "log_softmax": 4}
# an int16 QDQ function's float32 passes around ``f``: (multiplies, other passes) of the int16 to
# float32 conversion, ``- zp``, ``* s_in`` and of ``* (1 / s_out)``, round, saturate, convert
QDQ_PASSES = (2, 4)
# the element-wise functions of one input: int16 QDQ functions (int8: ``lut``) and fp32 layers
ELEMENTWISE = ("gelu", "sigmoid", "tanh", "relu", "leakyrelu", "clip", "hardsigmoid",
               "hardswish", "silu", "gelu_tanh")
QDQ_OPS = (*ELEMENTWISE, "scale")
BINARY = ("add", "mul", "sub", "div")  # of two tensors of one shape
LUT_LANES = 16  # parallel lookups per cycle (AIE-ML vector lookup, 8-bit entries)
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(z: np.ndarray, exp=np.exp) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 in float32; |error| <= 6e-7 (1.5e-7 polynomial + rounding) with
    numpy's ``exp``; ``exp``: the exponential used for ``exp(-z^2)`` (bf16: :func:`exp_lut`)."""
    z = z.astype(np.float32)
    a = np.abs(z)
    t = np.float32(1) / (np.float32(1) + np.float32(_AS_P) * a)
    poly = np.zeros_like(t)
    for coef in reversed(_AS_A):
        poly = (poly + np.float32(coef)) * t
    return np.sign(z) * (np.float32(1) - poly * exp(-a * a))


# exp of the integer part (-128..127) and of the fraction (0..255 / 256) of an 8.8 fixed-point
# argument, as bf16 table entries
with np.errstate(over="ignore"):  # exp(89..127) is past bf16's range: those entries are inf
    _EXP_INT = np.exp(np.arange(-128, 128, dtype=np.float64)).astype(BFLOAT16)
_EXP_FRAC = np.exp(np.arange(256, dtype=np.float64) / 256).astype(BFLOAT16)


def exp_lut(x: np.ndarray) -> np.ndarray:
    """``exp`` as AIE-ML bf16 kernels compute it: ``x`` to 8.8 fixed point (nearest, saturating
    to int16), ``exp(high byte) * exp(low byte / 256)`` from two bf16 tables, float32 product."""
    fixed = np.clip(np.rint(np.asarray(x, np.float32) * np.float32(256)), -32768, 32767)
    fixed = fixed.astype(np.int32)
    return _EXP_INT[(fixed >> 8) + 128].astype(np.float32) * \
        _EXP_FRAC[fixed & 0xFF].astype(np.float32)


def element_lanes(device, dtype: str) -> int:
    """Elements one integer or bf16 vector pass handles per cycle (see the module docstring)."""
    lanes = device.vector_load_bytes_per_cycle // np.dtype(dtype).itemsize
    if dtype == "bfloat16":
        lanes = min(lanes, device.peak_macs_per_cycle(dtype) // device.mmul_shape(dtype)[1])
    return lanes


def float32_vector(device) -> tuple[int, int]:
    """``(lanes, multiply cycles)``: the fp32 vector width (the catalog's fp32 add lanes) and the
    cycles one fp32 multiply pass over that many lanes takes: 1 on a native unit, else the bf16
    products of the emulation over the bf16 lanes they run on (see the module docstring)."""
    fp = device.float32_vector
    if fp is None:
        raise ValueError(f"{device.name} ({device.generation}) has no float32_vector fact")
    lanes = fp["add_lanes"]
    if "mul_lanes" in fp:
        return lanes, math.ceil(Fraction(lanes, fp["mul_lanes"]))
    return lanes, math.ceil(Fraction(lanes * fp["bf16_products_per_mul"],
                                     element_lanes(device, "bfloat16")))


def rowwise_cycles(device, op: str, precision: str, elems: int) -> int:
    """Cycles of one call on ``elems`` elements (without the call overhead)."""
    if op == "lut":
        return math.ceil(elems / LUT_LANES) * PASSES[op]
    if precision in ("int8", "int16") and op in ("add", "mul") or precision == "bfloat16":
        return math.ceil(elems / element_lanes(device, precision)) * PASSES[op]
    lanes, mul_cycles = float32_vector(device)  # float32, or an int16 QDQ function
    muls, others = MUL_PASSES[op], PASSES[op] - MUL_PASSES[op]
    if precision == "int16":
        muls, others = muls + QDQ_PASSES[0], others + QDQ_PASSES[1]
    return math.ceil(elems / lanes) * (others + muls * mul_cycles)


def apply(op: str, x: np.ndarray, exp=np.exp, scalar: float = 1.0,
          fn: dict | None = None) -> np.ndarray:
    """The float32 element-wise function ``op`` of ``x`` (one of :data:`ELEMENTWISE`, or
    ``scale``: the multiply by ``scalar``), with ``exp`` (bf16: :func:`exp_lut`) and the
    function's constants ``fn`` (``alpha``, ``beta``, ``lo``, ``hi``, ``div``); float64 ``x``
    gives the function in float64 (an int8 table's exact values)."""
    c = {k: np.float32(v) for k, v in (fn or {}).items()}
    one = np.float32(1)
    if op in ("sigmoid", "tanh"):  # exp(-x) past float32's range is inf: y = 0 or -1
        k = np.float32(1 if op == "sigmoid" else 2)
        with np.errstate(over="ignore"):
            return k / (one + exp(-k * x)) - (k - one)
    if op == "gelu":
        return np.float32(0.5) * x * (one + erf(x / np.float32(math.sqrt(2)), exp))
    if op == "gelu_tanh":  # as TVM writes it: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + c x^2)))
        z = np.float32(math.sqrt(2 / math.pi)) * x * (one + np.float32(0.044715) * x * x)
        return np.float32(0.5) * x * (one + apply("tanh", z, exp))
    if op == "silu":
        return x * apply("sigmoid", x, exp)
    if op == "scale":
        return x * np.float32(scalar)
    if op == "relu":
        return np.maximum(x, np.float32(0))
    if op == "leakyrelu":
        return np.where(x > 0, x, x * c["alpha"])
    if op == "clip":
        return np.clip(x, c["lo"], c["hi"])
    if op == "hardsigmoid":
        return np.clip(x * c["alpha"] + c["beta"], c["lo"], c["hi"])
    if op == "hardswish":
        return x * (np.clip(x + c["beta"], c["lo"], c["hi"]) * (one / c["div"]))
    raise ValueError(f"no element-wise function {op!r}")


def qdq_function(op: str, x: np.ndarray, qdq: dict, fn: dict | None = None) -> np.ndarray:
    """``q(f(dq(x)))`` of int16 ``x`` as the kernel computes it (see the module docstring);
    ``qdq``: ``in_scale``, ``in_zp``, ``out_scale``, ``out_zp`` and the ``scale`` op's
    ``scalar``; ``fn``: the function's constants (:func:`apply`)."""
    xf = (np.asarray(x).astype(np.float32) - np.float32(qdq["in_zp"])) * \
        np.float32(qdq["in_scale"])
    y = apply(op, xf, scalar=qdq.get("scalar", 1.0), fn=fn)
    q = np.rint(y * np.float32(1 / np.float32(qdq["out_scale"]))) + np.float32(qdq["out_zp"])
    return np.clip(q, QMIN["int16"], QMAX["int16"]).astype(np.int16)


class RowWise:
    name = "rowwise"
    # Estimated code bytes per op (see MatMul.CODE_BYTES): a few vector passes, with the erf or
    # exp polynomial and the row reductions of the larger ops.
    CODE_BYTES = 3072

    def __init__(self, call, tile, buffers: dict, device, link_in, link_out):
        p = call.params
        where = f"rowwise on tile {tile_key(tile)}"
        self.op, self.precision, self.eps = p["op"], p["precision"], float(p.get("eps", 1e-5))
        self.variant = (self.name, self.op, self.precision)
        self.add, self.out_zp = p.get("add"), int(p.get("out_zp", 0))  # int8/16 add requantisation
        self.qdq = p.get("qdq")  # an int16 QDQ function's or an integer mul's requantisation
        self.fn = p.get("fn")  # an element-wise function's constants (apply)
        need = {"x", "y"} | {"layernorm": {"gamma", "beta"}, "lut": {"lut"}}.get(self.op, set()) \
            | ({"x2"} if self.op in BINARY else set())
        if self.op not in PASSES:
            raise ValueError(f"{where}: unknown op {self.op!r}")
        integer = self.precision in ("int8", "int16")
        if (self.op in QDQ_OPS and self.precision == "int16" or self.op == "mul" and integer) \
                != (self.qdq is not None) or self.op == "scale" and self.qdq is None:
            raise ValueError(f"{where}: {self.op} in {self.precision} needs the QDQ parameters "
                             "exactly when it is an int16 QDQ function or an integer multiply")
        check_standalone_call(where, buffers, need, link_in, link_out)
        x, y = buffers["x"], buffers["y"]
        if list(x.shape) != list(y.shape) or len(x.shape) != 2:
            raise ValueError(f"{where}: x {x.shape} and y {y.shape} are not one [rows, cols]")
        self.buffers = {role: b.name for role, b in buffers.items()}
        self.macs = 0
        self.cycles = CALL_OVERHEAD + rowwise_cycles(device, self.op, self.precision,
                                                     x.shape[0] * x.shape[1])
        self.steps = (self.cycles,)

    def run(self, memories):
        yield self.cycles
        if memories is None:
            return
        view = memories.buffer_view
        x = view(self.buffers["x"])
        bf16 = self.precision == "bfloat16"  # bf16 in and out, float32 arithmetic between
        exp = exp_lut if bf16 else np.exp
        if bf16:
            x = x.astype(np.float32)
        if self.op == "lut":
            out = view(self.buffers["lut"])[x.astype(np.int16) + 128]
        elif self.op == "mul" and self.qdq is not None:
            q = self.qdq
            out = requantize_mul(x, q["in_zp"], view(self.buffers["x2"]), q["other_zp"],
                                 q["mult"], q["shift"], self.out_zp, self.precision)
        elif self.qdq is not None:
            out = qdq_function(self.op, x, self.qdq, self.fn)
        elif self.op in ("add", "sub") and self.precision in ("int8", "int16"):
            # a subtract is the add of the other operand's negated multiplier (layer.add)
            out = requantize_add(x, *self.add[:3], view(self.buffers["x2"]), *self.add[3:],
                                 self.out_zp, self.precision)
        elif self.op in BINARY:
            x2 = view(self.buffers["x2"]).astype(np.float32)
            out = x + x2 if self.op == "add" else x - x2 if self.op == "sub" else \
                x * x2 if self.op == "mul" else x * (np.float32(1) / x2)
        elif self.op in ELEMENTWISE:
            out = apply(self.op, x, exp, fn=self.fn)
        elif self.op in ("softmax", "log_softmax"):
            shifted = x - x.max(axis=1, keepdims=True)
            e = exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            out = e / total if self.op == "softmax" else shifted - np.log(total)
        else:
            mu = x.mean(axis=1, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
            out = (x - mu) / np.sqrt(var + np.float32(self.eps)) * view(self.buffers["gamma"]) + \
                view(self.buffers["beta"])
        view(self.buffers["y"])[...] = out


KERNELS[RowWise.name] = RowWise
