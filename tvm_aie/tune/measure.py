"""Measuring candidates on the simulator (timing mode), one by one or in parallel.

A candidate is built exactly as ``tvm_aie.build`` builds it: schedule the layer's TensorIR with the
config, read the tile layout back from the scheduled TIR, lower to an AIE program, then simulate one
inference counting cycles. The layer's weights are seeded random (timing does not depend on values).

Parallelism is any :class:`concurrent.futures.Executor`: a local process pool by default, or a Dask
``distributed`` client's executor (``client.get_executor()``) for a cluster. The work shipped is a
top-level function on plain dicts, so it pickles everywhere; results come back in submission order,
so a seeded run writes the same database whatever the executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import os
import signal
import time

import numpy as np

from ..codegen.layers import DenseLayer, ResidualAdd
from ..codegen.lower import lower_dense_chain
from ..codegen.program import BFLOAT16
from ..schedules import dense
from ..target import get_device


def _layer(name: str, wl: dense.DenseWorkload, seed: int = 0) -> DenseLayer:
    """A layer of this workload's precision with seeded random weights: int8 and int16xint8
    (int8 weights, int16 activations) with unit requantisation, bfloat16 with bf16 weights, so
    each candidate is measured on the kernel ``build`` would run."""
    rng = np.random.default_rng(seed)
    if wl.precision in ("int8", "int16xint8"):  # a QDQ bias add at unit scales if it has one
        return DenseLayer(name, wl.precision, wl.m, wl.k, wl.n,
                          rng.integers(-128, 128, (wl.k, wl.n), dtype=np.int8), None, False, 0,
                          mult=np.full(wl.n, 2**30, np.int64), shift=np.full(wl.n, 8, np.int64),
                          out_zp=0, add=ResidualAdd(0, 2**30, 30, 0, 2**30, 30) if wl.bias_add
                          else None,
                          addend=np.zeros(wl.n, wl.in_dtype) if wl.bias_add else None)
    weight = rng.standard_normal((wl.k, wl.n)).astype(np.float32)
    if wl.precision == "bfloat16":
        weight = weight.astype(BFLOAT16)
    return DenseLayer(name, wl.precision, wl.m, wl.k, wl.n, weight, None, False, 0)


def chain_program(workloads: list, configs: list, device, name: str = "chain"):
    """The AIE program of a chain of dense layers with these configs (via the scheduled TIR)."""
    layers, layouts = [], []
    for i, (wl, cfg) in enumerate(zip(workloads, configs)):
        layer = _layer(f"dense{i}", wl, seed=i)
        layer.input = f"dense{i - 1}" if i else 0
        layers.append(layer)
        layouts.append(dense.tile_layout(dense.schedule(dense.dense_prim_func(wl), wl, cfg,
                                                        device).mod))
    return lower_dense_chain(name, layers, layouts, device)


def simulate_cycles(program) -> int:
    """Cycles of one inference of ``program`` on the simulator in timing mode."""
    from ..sim import simulate  # pylint: disable=import-outside-toplevel

    return int(simulate(program, None, mode="timing").report.cycles)


def measure(workload: dict, config: dict, device: str) -> dict:
    """Measure one candidate; plain dicts in and out (what executors ship).

    Returns ``{"cycles", "error", "seconds"}``; a candidate that fails to build or simulate is a
    result with ``error`` set, not an exception, so one bad point does not stop a run.
    """
    t0 = time.perf_counter()
    wl, cfg = dense.DenseWorkload(**workload), dense.DenseConfig.from_dict(config)
    try:
        cycles, error = simulate_cycles(chain_program([wl], [cfg], get_device(device))), None
    except Exception as e:  # pylint: disable=broad-except  # reported in the record
        cycles, error = None, f"{type(e).__name__}: {e}"
    return {"cycles": cycles, "error": error, "seconds": round(time.perf_counter() - t0, 4)}


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: the kernel kills the worker when its parent dies, so a tuner
    killed with ``kill -9`` leaves no worker (nor, once they are gone, the resource tracker they
    kept open) behind. Elsewhere than Linux it does nothing."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)  # pylint: disable=protected-access


@contextlib.contextmanager
def executor(workers: int | None = None, dask: str | None = None):
    """The executor measurements run on, shut down on exit; None means in this process.

    Default: a local process pool of ``workers`` (the CPUs this process may use), spawned, not
    forked, as the parent may hold TVM and XGBoost (OpenMP) threads, and killed with it
    (:func:`_die_with_parent`); ``workers=1``: no pool.
    ``dask``: a Dask ``distributed`` scheduler address, or ``"local"`` for a local cluster in this
    process (threads), whose client's ``get_executor()`` is the executor.
    """
    if dask:
        from distributed import Client, LocalCluster  # pylint: disable=import-outside-toplevel

        cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=workers or 2,
                               dashboard_address=None) if dask == "local" else None
        with Client(cluster or dask) as client:
            yield client.get_executor()
        if cluster is not None:
            cluster.close()
        return
    workers = workers or len(os.sched_getaffinity(0))
    if workers == 1:
        yield None
        return
    with cf.ProcessPoolExecutor(max_workers=workers,
                                mp_context=multiprocessing.get_context("spawn"),
                                initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def measure_batch(task, configs: list, executor: cf.Executor | None = None) -> list[dict]:
    """Measure ``configs`` of ``task``, in parallel when an executor is given, in input order."""
    calls = [task.measure_args(cfg) for cfg in configs]
    if executor is None:
        return [fn(*a) for fn, a in calls]
    futures = [executor.submit(fn, *a) for fn, a in calls]
    return [f.result() for f in futures]
