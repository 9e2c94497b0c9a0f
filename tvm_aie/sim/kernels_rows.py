"""The row-wise kernel: GELU, softmax, layer norm, an add (fp32 or int8) or an int8 lookup table
on one block of whole rows in tile memory. Registered into :data:`tvm_aie.sim.kernels.KERNELS`
as ``"rowwise"``.

How the transcendental parts are computed, and their error:

* GELU: ``0.5 x (1 + erf(x / sqrt 2))`` with erf from the Abramowitz-Stegun 7.1.26 polynomial
  (1.5e-7), evaluated in float32: |erf error| <= 6e-7 absolute over the reals (measured), so
  |GELU error| <= 3e-7 |x| — the kind of polynomial an AIE kernel uses, as the cores have no erf;
* softmax: ``exp(x - max)`` in float32 (numpy's exp, correctly rounded to float32), sum, divide;
* layer norm: mean and variance over the row in float32, ``1/sqrt(var + eps)``, scale and shift;
* the add of two tensors in float32, or in int8 with :func:`tvm_aie.quant.requantize_add`;
* int8 ``lut``: ``y = lut[x + 128]``, exact by construction (the table holds the layer's QDQ
  function at all 256 inputs), as AIE-ML's vector lookup does it.

Cycle model: vector passes over the block. ``PASSES`` below are this kernel's estimate of vector
operations per vector of elements for each op (polynomial terms, exp, reductions), not catalog
facts; lanes are the catalog's vector load width over the element size (16 lanes for the lookup).
"""

from __future__ import annotations

import math

import numpy as np

from ..quant import requantize_add
from .kernels import CALL_OVERHEAD, KERNELS, check_standalone_call
from .memory import tile_key

PASSES = {"gelu": 14, "softmax": 12, "layernorm": 8, "lut": 1, "add": 2}
LUT_LANES = 16  # parallel lookups per cycle (AIE-ML vector lookup, 8-bit entries)
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(z: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 in float32; |error| <= 6e-7 (1.5e-7 polynomial + rounding)."""
    z = z.astype(np.float32)
    a = np.abs(z)
    t = np.float32(1) / (np.float32(1) + np.float32(_AS_P) * a)
    poly = np.zeros_like(t)
    for coef in reversed(_AS_A):
        poly = (poly + np.float32(coef)) * t
    return np.sign(z) * (np.float32(1) - poly * np.exp(-a * a))


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
        self.add, self.out_zp = p.get("add"), int(p.get("out_zp", 0))  # int8 add requantisation
        need = {"x", "y"} | {"layernorm": {"gamma", "beta"}, "lut": {"lut"},
                             "add": {"x2"}}.get(self.op, set())
        if self.op not in PASSES:
            raise ValueError(f"{where}: unknown op {self.op!r}")
        check_standalone_call(where, buffers, need, link_in, link_out)
        x, y = buffers["x"], buffers["y"]
        if list(x.shape) != list(y.shape) or len(x.shape) != 2:
            raise ValueError(f"{where}: x {x.shape} and y {y.shape} are not one [rows, cols]")
        self.buffers = {role: b.name for role, b in buffers.items()}
        self.macs = 0
        elems = x.shape[0] * x.shape[1]
        lanes = LUT_LANES if self.op == "lut" else \
            device.vector_load_bytes_per_cycle // np.dtype(x.dtype).itemsize
        self.cycles = CALL_OVERHEAD + math.ceil(elems / lanes) * PASSES[self.op]
        self.steps = (self.cycles,)

    def run(self, memories):
        yield self.cycles
        if memories is None:
            return
        view = memories.buffer_view
        x = view(self.buffers["x"])
        if self.op == "lut":
            out = view(self.buffers["lut"])[x.astype(np.int16) + 128]
        elif self.op == "add" and self.precision == "int8":
            out = requantize_add(x, *self.add[:3], view(self.buffers["x2"]), *self.add[3:],
                                 self.out_zp)
        elif self.op == "add":
            out = x + view(self.buffers["x2"])
        elif self.op == "gelu":
            out = np.float32(0.5) * x * (np.float32(1) + erf(x / np.float32(math.sqrt(2))))
        elif self.op == "softmax":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        else:
            mu = x.mean(axis=1, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
            out = (x - mu) / np.sqrt(var + np.float32(self.eps)) * view(self.buffers["gamma"]) + \
                view(self.buffers["beta"])
        view(self.buffers["y"])[...] = out


KERNELS[RowWise.name] = RowWise
