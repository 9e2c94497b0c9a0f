"""Conv tuning tasks: one per distinct conv2d / pooling workload, its space, measurement, features.

A layer's knobs are its own; the chain constraint (memory-tile channels shared with neighbours)
is checked by lowering and simulating the whole chain. A candidate is measured as ``build``
builds it; a residual layer behind a fixed 1x1 "carrier" conv. ``docs/design.md`` ("Tuning").
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..codegen.layers import ConvLayer, ResidualAdd
from ..codegen.lower_conv import lower_conv_chain
from ..codegen.program import BFLOAT16
from ..codegen.relax_ext import conv_workload_of
from ..schedules import conv2d
from ..schedules.dense import Space, TilingError, _nbytes
from ..target import get_device

NAMES = ["n_par", "th", "bands", "log_macs_tile", "log_macs_band", "a_kib", "c_kib", "w_kib",
         "mem_used", "band_rows", "halo_share", "double_buffer_a", "double_buffer_c",
         "log_kernel", "log_a_dma", "log_c_dma", "log_estimate"]


@dataclass(frozen=True)
class ConvTask:
    """One conv workload on one device; ``layers`` names where the model uses it (for tables)."""

    workload: conv2d.ConvWorkload
    device: str
    layers: tuple = field(default=(), compare=False)
    config_type = conv2d.ConvConfig

    @property
    def key(self) -> str:
        wl = self.workload
        pool = f"/pool{wl.pool[0]}x{wl.pool[1]}" if wl.pool != (1, 1) else ""
        return (f"{self.device}/{'conv2d' if wl.kind == 'conv' else wl.kind}/{wl.c}x{wl.h}x{wl.w}"
                f"-{wl.o}k{wl.kh}x{wl.kw}s{wl.stride[0]}x{wl.stride[1]}"
                f"p{'.'.join(map(str, wl.padding))}g{wl.groups}{pool}"
                f"{'/residual' if wl.residual else ''}/{wl.precision}")

    def space(self) -> Space:
        """The legal configs (the template's candidate order) and the rejections by reason."""
        device, rejected, configs = get_device(self.device), Counter(), []
        for cfg in conv2d.candidates(self.workload, device):
            try:
                conv2d.check(self.workload, cfg, device)
                configs.append(cfg)
            except TilingError as e:
                rejected[e.reason] += 1
        return Space(configs, dict(rejected))

    def default_config(self) -> conv2d.ConvConfig:
        return conv2d.default_config(self.workload, get_device(self.device))

    def feature_matrix(self, configs: list) -> np.ndarray:
        device = get_device(self.device)
        return np.asarray([features(self.workload, c, device) for c in configs], np.float32)

    def estimates(self, configs: list) -> list:
        device = get_device(self.device)
        return [estimate(self.workload, c, device) for c in configs]

    def measure_args(self, cfg) -> tuple:
        return measure, (self.workload, cfg.to_dict(), self.device)

    def __str__(self) -> str:
        return str(self.workload)


def _times(wl: conv2d.ConvWorkload, cfg: conv2d.ConvConfig, device) -> tuple:
    """Cycles per band of one tile's kernel call, of the band in and of its output block out."""
    from ..sim.kernels_conv import conv2d_cycles  # pylint: disable=import-outside-toplevel

    op = wl.o // cfg.n_par
    groups = max(1, wl.groups // cfg.n_par)
    kernel = conv2d_cycles(device, wl.precision, groups, op // groups, wl.cin_g, wl.kh, wl.kw,
                           cfg.th, wl.wo, wl.in_dtype, wl.pool, wl.residual)
    a_in = wl.c * conv2d.band_rows(wl, cfg.th) * wl.w_read * _nbytes(wl.in_dtype)
    c_out = op * (cfg.th // wl.pool[0]) * (wl.wo // wl.pool[1]) * _nbytes(wl.in_dtype)
    return kernel, a_in / device.stream_bytes_per_cycle, c_out / device.stream_bytes_per_cycle


def estimate(wl: conv2d.ConvWorkload, cfg: conv2d.ConvConfig, device) -> float:
    """First-order cycles: the image in, then one band per interval (kernel, band in, block out,
    overlapped where the FIFO is double-buffered), as :func:`tvm_aie.tune.features.estimate`."""
    kernel, a_in, c_out = _times(wl, cfg, device)
    image = wl.c * wl.h * wl.w * _nbytes(wl.in_dtype) / device.stream_bytes_per_cycle
    interval = max(kernel + (0 if cfg.double_buffer_a else a_in) +
                   (0 if cfg.double_buffer_c else c_out), a_in, c_out)
    return image + a_in + kernel + c_out + (wl.ho // cfg.th - 1) * interval


def features(wl: conv2d.ConvWorkload, cfg: conv2d.ConvConfig, device) -> list:
    """The feature vector (order: :data:`NAMES`); bytes in KiB."""
    bufs = {name: size * count for name, size, count in conv2d.tile_buffers(wl, cfg)}
    op, bands = wl.o // cfg.n_par, wl.ho // cfg.th
    macs_band = op * cfg.th * wl.wo * wl.cin_g * wl.kh * wl.kw
    rows = conv2d.band_rows(wl, cfg.th)
    return [cfg.n_par, cfg.th, bands, math.log2(1 + macs_band * bands), math.log2(1 + macs_band),
            bufs["input band A"] / 1024, bufs["output block C"] / 1024,
            bufs.get("weights W", 0) / 1024, sum(bufs.values()) / device.usable_data_memory_bytes,
            rows, rows * bands / wl.hp, float(cfg.double_buffer_a), float(cfg.double_buffer_c),
            *(math.log2(1 + t) for t in _times(wl, cfg, device)),
            math.log2(estimate(wl, cfg, device))]


def conv_layer(name: str, wl: conv2d.ConvWorkload, source, seed: int = 0,
               residual=None) -> ConvLayer:
    """A layer of this workload with seeded random weights (int8, or int16xint8: int8 weights and
    a fixed requantisation; bfloat16: bf16 weights)."""
    rng = np.random.default_rng(seed)
    o, cin_g = wl.o, wl.cin_g
    int8 = wl.integer
    weight = rng.integers(-8, 8, (o, cin_g, wl.kh, wl.kw), dtype=np.int8) if int8 else \
        rng.standard_normal((o, cin_g, wl.kh, wl.kw)).astype(np.float32)
    if wl.precision == "bfloat16":
        weight = weight.astype(BFLOAT16)
    q = {"in_zp": 0, "out_zp": 0, "mult": np.full(o, 2**30, np.int64),
         "shift": np.full(o, 8, np.int64)} if int8 else {}
    return ConvLayer(name, wl.precision, (wl.c, wl.h, wl.w), weight, None, wl.stride, wl.padding,
                     wl.groups, False, None if wl.pool == (1, 1) else wl.pool, source,
                     residual=residual, kind=wl.kind,
                     add=ResidualAdd(0, 2**30, 1, 0, 2**30, 1) if int8 and residual is not None
                     else None, **q)


def conv_program(wl: conv2d.ConvWorkload, cfg: conv2d.ConvConfig, device):
    """The AIE program measuring one candidate (behind the carrier if ``wl`` adds a residual)."""
    layers, configs = [], []
    if wl.residual:
        if (wl.ho, wl.wo) != (wl.h, wl.w) or wl.pool != (1, 1):
            raise ValueError(f"{wl}: a residual layer must keep its input's height and width")
        carrier = conv2d.ConvWorkload(wl.o, wl.ho, wl.wo, wl.c, 1, 1, (1, 1), (0, 0, 0, 0), 1,
                                      wl.precision)
        layers.append(conv_layer("carrier", carrier, 0, seed=1))
        configs.append(conv2d.default_config(carrier, device))
    layers.append(conv_layer("conv", wl, layers[0].name if layers else 0,
                             residual=0 if wl.residual else None))
    configs.append(cfg)
    layouts = []
    for layer, c in zip(layers, configs):
        w = conv_workload_of(layer)
        layouts.append(conv2d.tile_layout(conv2d.schedule(conv2d.conv_prim_func(w), w, c,
                                                          device).mod, w))
    return lower_conv_chain("conv", layers, layouts, device)


def measure(workload: conv2d.ConvWorkload, config: dict, device: str) -> dict:
    """Measure one candidate as :func:`tvm_aie.tune.measure.measure` does a dense one."""
    from .measure import simulate_cycles  # pylint: disable=import-outside-toplevel

    t0 = time.perf_counter()
    try:
        cycles = simulate_cycles(conv_program(workload, conv2d.ConvConfig.from_dict(config),
                                              get_device(device)))
        error = None
    except Exception as e:  # pylint: disable=broad-except  # reported in the record
        cycles, error = None, f"{type(e).__name__}: {e}"
    return {"cycles": cycles, "error": error, "seconds": round(time.perf_counter() - t0, 4)}
