"""What the cost model sees of a candidate: the quantities that set its cycles on an AIE array.

Generic loop features (TVM's ``PerStoreFeature``) describe CPU/GPU memory hierarchies; a dense
layer on the array is instead bounded by per-tile compute (MACs per tile, intrinsic calls per row
block), by what streams in and out of each tile (A and C bytes per block, broadcast width), by
whether the FIFOs are double-buffered (DMA overlaps compute), by the cascade length (partial sums
pass tile to tile) and by padding. All are computed from the workload and config, which the
scheduled TIR carries in its ``aie.dense_config`` annotation, so the same vector is available to
MetaSchedule's feature extractor and to :mod:`tvm_aie.tune.search`.

:func:`estimate` folds them into a first-order cycle count (a row-block pipeline of kernel call,
A in and C out over the streams), which the search uses as the model's prior: XGBoost then learns
only how the simulator departs from it (stalls, routes, fills), so it ranks well from few samples.
"""

from __future__ import annotations

import math

import numpy as np

from ..schedules import dense

NAMES = ["log_tiles", "n_par", "cascade", "tm", "m_blocks", "log_kc", "log_nc",
         "a_bytes", "c_bytes", "w_bytes", "mem_used", "log_macs_tile", "log_macs_block",
         "calls_block", "intensity", "padding", "double_buffer_a", "double_buffer_c",
         "cascade_share", "io_kib", "log_kernel", "log_a_dma", "log_c_dma", "log_estimate"]


def _times(workload, config, device) -> tuple[int, float, float]:
    """Cycles per row block of the chain's last tile's kernel, of A in and of C out."""
    from ..sim import matmul_cycles  # pylint: disable=import-outside-toplevel

    _, k_pad, n_pad = dense.padded_shape(workload, config, device)
    kc, nc = k_pad // config.cascade, n_pad // config.n_par
    kernel = matmul_cycles(device, workload.precision, config.tm, kc, nc, workload.out_dtype,
                           False)
    a_in = config.tm * kc * np.dtype(workload.in_dtype).itemsize / device.stream_bytes_per_cycle
    c_out = config.tm * nc * np.dtype(workload.out_dtype).itemsize / device.stream_bytes_per_cycle
    return kernel, a_in, c_out


def estimate(workload: dense.DenseWorkload, config: dense.DenseConfig, device) -> float:
    """First-order cycles of one inference: fill the pipeline, then one row block per interval.

    A double-buffered FIFO overlaps its transfer with the kernel; a single-buffered one adds to it.
    The cascade stages compute at once and pass partial sums one intrinsic column group at a
    time, so each hop adds one group's transfer.
    """
    kernel, a_in, c_out = _times(workload, config, device)
    m_blocks = dense.padded_shape(workload, config, device)[0] // config.tm
    mn = device.mmul_shape(workload.precision)[2]
    hop = config.tm * mn * np.dtype(workload.acc_dtype).itemsize * 8 / device.cascade_bits
    interval = max(kernel + (0 if config.double_buffer_a else a_in) +
                   (0 if config.double_buffer_c else c_out), a_in, c_out)
    fill = a_in + kernel + (config.cascade - 1) * hop + c_out
    return fill + (m_blocks - 1) * interval


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
                     n_pad * np.dtype(workload.out_dtype).itemsize) / 1024,
            *(math.log2(1 + t) for t in _times(workload, config, device)),
            math.log2(estimate(workload, config, device))]


def feature_matrix(workload, configs: list, device) -> np.ndarray:
    return np.asarray([features(workload, c, device) for c in configs], dtype=np.float32)
