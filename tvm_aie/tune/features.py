"""What the cost model sees of a candidate: the quantities that set its cycles on an AIE array.

Generic loop features (TVM's ``PerStoreFeature``) describe CPU/GPU memory hierarchies; a dense
layer on the array is instead bounded by per-tile compute (MACs per tile, intrinsic calls per row
block), by what streams in and out of each tile (A and C bytes per block, broadcast width), by
whether the FIFOs are double-buffered (DMA overlaps compute), by the cascade length (partial sums
pass tile to tile) and by padding. All are computed from the workload and config, which the
scheduled TIR carries in its ``aie.dense_config`` annotation, so the same vector is available to
MetaSchedule's feature extractor and to :mod:`tvm_aie.tune.search`.
"""

from __future__ import annotations

import math

import numpy as np

from ..schedules import dense

NAMES = ["log_tiles", "n_par", "cascade", "tm", "m_blocks", "log_kc", "log_nc",
         "a_bytes", "c_bytes", "w_bytes", "mem_used", "log_macs_tile", "log_macs_block",
         "calls_block", "intensity", "padding", "double_buffer_a", "double_buffer_c",
         "cascade_share", "io_kib"]


def features(workload: dense.DenseWorkload, config: dense.DenseConfig, device) -> list[float]:
    """The feature vector (order: :data:`NAMES`) of one candidate; bytes are in KiB."""
    mm, mk, mn = device.mmul_shape(workload.precision)
    m_pad, k_pad, n_pad = dense.padded_shape(workload, config, device)
    kc, nc = k_pad // config.cascade, n_pad // config.n_par
    buf = dense.buffer_bytes(workload, config, device)
    tiles = config.n_par * config.cascade
    macs_block = config.tm * kc * nc
    io_bytes = buf["A"] / (1 + config.double_buffer_a) + buf["C"] / (1 + config.double_buffer_c)
    return [math.log2(tiles), config.n_par, config.cascade, config.tm, m_pad // config.tm,
            math.log2(kc), math.log2(nc), buf["A"] / 1024, buf["C"] / 1024, buf["W"] / 1024,
            sum(buf.values()) / device.usable_data_memory_bytes,
            math.log2(macs_block * (m_pad // config.tm)), math.log2(macs_block),
            (config.tm // mm) * (kc // mk) * (nc // mn), macs_block / io_bytes,
            m_pad * k_pad * n_pad / (workload.m * workload.k * workload.n),
            float(config.double_buffer_a), float(config.double_buffer_c),
            1.0 / config.cascade,
            m_pad * (k_pad * np.dtype(workload.in_dtype).itemsize +
                     n_pad * np.dtype(workload.out_dtype).itemsize) / 1024]


def feature_matrix(workload, configs: list, device) -> np.ndarray:
    return np.asarray([features(workload, c, device) for c in configs], dtype=np.float32)
