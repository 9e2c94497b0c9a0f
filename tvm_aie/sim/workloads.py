"""Synthetic workloads: one dense layer built through the real codegen, with seeded weights.

The speed benchmark and the calibration need programs of a chosen shape and tile grid without a
model around them; this builds them the way ``relax.ext.aie`` does (schedule, tile layout, lowering),
so what is measured is what the compiler emits.
"""

from __future__ import annotations

import numpy as np

from ..codegen.layers import DenseLayer
from ..codegen.lower import lower_dense_chain
from ..schedules import dense
from ..target import get_device


def dense_layer(m: int, k: int, n: int, precision: str = "int8", seed: int = 0) -> DenseLayer:
    """``y = x @ w + b`` with seeded weights; int8 with a requantisation to int8."""
    rng = np.random.default_rng(seed)
    if precision == "int8":
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        bias = rng.integers(-1000, 1000, n).astype(np.int32)
        return DenseLayer("dense0", "int8", m, k, n, w, bias, relu=False, input=0, out_zp=0,
                          mult=np.full(n, 1 << 30, np.int64), shift=np.full(n, 38, np.int64))
    w = rng.standard_normal((k, n)).astype(np.float32)
    return DenseLayer("dense0", "float32", m, k, n, w, np.zeros(n, np.float32), relu=False,
                      input=0)


def dense_program(m: int, k: int, n: int, n_par: int, cascade: int, device="ve2802",
                  precision: str = "int8", tm: int | None = None, seed: int = 0):
    """The AIE program of one dense layer on ``n_par x cascade`` tiles (``tm``: default plan's)."""
    device = get_device(device) if isinstance(device, str) else device
    layer = dense_layer(m, k, n, precision, seed)
    wl = dense.DenseWorkload(m=m, k=k, n=n, precision=precision)
    cfg = dense.default_config(wl, device, tm=tm, n_par=n_par, cascade=cascade)
    layout = dense.tile_layout(dense.schedule(dense.dense_prim_func(wl), wl, cfg, device).mod)
    return lower_dense_chain(f"dense_{m}x{k}x{n}", [layer], [layout], device)
