"""Tuning tasks: one per distinct dense workload of a model's offloaded subgraphs, and its space.

A task is plain data (workload, device name), so it crosses process and machine boundaries as is
and keys the database (:attr:`Task.key`). Its space is the dense template's legal configs; the
illegal ones (memory, padding, placement, tile count) are rejected before anything is measured and
counted by reason, which :func:`extract_tasks`' callers print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import relax

from ..codegen.layers import DenseLayer, read_layers
from ..codegen.relax_ext import workload_of
from ..partition import partition_for_aie
from ..schedules import dense
from ..target import get_device


@dataclass(frozen=True)
class Task:
    """One dense workload on one device; ``layers`` names where the model uses it (for tables)."""

    workload: dense.DenseWorkload
    device: str
    layers: tuple = field(default=(), compare=False)

    @property
    def key(self) -> str:
        wl = self.workload
        return f"{self.device}/dense/{wl.m}x{wl.k}x{wl.n}/{wl.precision}"

    def space(self) -> dense.Space:
        """The legal configs (a fixed order, so seeded searches are reproducible) and rejections."""
        return dense.space(self.workload, get_device(self.device))

    def default_config(self) -> dense.DenseConfig:
        return dense.default_config(self.workload, get_device(self.device))

    def __str__(self) -> str:
        return str(self.workload)


def offloaded_chains(mod: tvm.IRModule) -> dict:
    """``{function name: [DenseWorkload per layer]}`` of every dense chain the array would run
    (other operator families have no tuning space yet and keep their default configs)."""
    chains = {}
    for gv, func in partition_for_aie(mod).functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and \
                func.attrs.get("Codegen") == "aie":
            layers = read_layers(func)
            if all(isinstance(layer, DenseLayer) for layer in layers):
                chains[gv.name_hint] = [workload_of(layer) for layer in layers]
    return chains


def extract_tasks(mod: tvm.IRModule, device) -> list[Task]:
    """One task per distinct workload of ``mod``'s offloaded subgraphs, in first-use order."""
    device = device if hasattr(device, "mmul_shape") else get_device(device)
    uses: dict = {}
    for fname, workloads in offloaded_chains(mod).items():
        for i, wl in enumerate(workloads):
            uses.setdefault(wl, []).append(f"{fname}[{i}]")
    return [Task(wl, device.name, tuple(names)) for wl, names in uses.items()]
