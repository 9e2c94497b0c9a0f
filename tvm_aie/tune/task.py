"""Tuning tasks: one per distinct dense or conv workload of a model's offloaded subgraphs.

A task is plain data (workload, device name), so it crosses process and machine boundaries as is
and keys the database (:attr:`Task.key`). Its space is the dense template's legal configs; the
illegal ones (memory, padding, placement, tile count) are rejected before anything is measured and
counted by reason, which :func:`extract_tasks`' callers print. Conv layers' tasks are
:class:`~tvm_aie.tune.conv.ConvTask`; both kinds give the search the same methods (space, default,
features, analytical estimates, what to ship to measure one config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import relax

from ..codegen.layers import ConvLayer, DenseLayer, read_layers
from ..codegen.relax_ext import as_compiled, conv_workload_of, workload_of
from ..partition import partition_for_aie
from ..schedules import dense
from ..target import get_device
from .conv import ConvTask
from .features import estimate, feature_matrix
from .measure import measure


@dataclass(frozen=True)
class Task:
    """One dense workload on one device; ``layers`` names where the model uses it (for tables)."""

    workload: dense.DenseWorkload
    device: str
    layers: tuple = field(default=(), compare=False)
    config_type = dense.DenseConfig

    @property
    def key(self) -> str:
        wl = self.workload
        return f"{self.device}/dense/{wl.m}x{wl.k}x{wl.n}/{wl.precision}" + \
            ("/bias_add" if wl.bias_add else "")

    def space(self) -> dense.Space:
        """The legal configs (a fixed order, so seeded searches are reproducible) and rejections."""
        return dense.space(self.workload, get_device(self.device))

    def default_config(self) -> dense.DenseConfig:
        return dense.default_config(self.workload, get_device(self.device))

    def feature_matrix(self, configs: list):
        return feature_matrix(self.workload, configs, get_device(self.device))

    def estimates(self, configs: list) -> list:
        device = get_device(self.device)
        return [estimate(self.workload, c, device) for c in configs]

    def measure_args(self, cfg) -> tuple:
        """``(function, args)`` measuring ``cfg`` in a worker (plain, picklable data)."""
        return measure, (dict(self.workload.__dict__), cfg.to_dict(), self.device)

    def __str__(self) -> str:
        return str(self.workload)


def _aie_functions(mod: tvm.IRModule, device=None, precision: str = "fp32"):
    """``(name, layers)`` of every function the partitioner offloads to ``device``'s array, its
    layers in the precision they compile to (``precision="bf16"``: fp32 layers in bf16)."""
    device = device if hasattr(device, "mmul_shape") else get_device(device)
    for gv, func in partition_for_aie(mod, device).functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and \
                func.attrs.get("Codegen") == "aie":
            yield gv.name_hint, as_compiled(read_layers(func), device, precision)


def conv_chains(mod: tvm.IRModule, device=None, precision: str = "fp32") -> dict:
    """``{function name: layers}`` of every offloaded function with conv layers (a conv chain,
    perhaps with a flatten and a dense head: the conv layers are tuned, the head keeps its plan)."""
    return {name: layers for name, layers in _aie_functions(mod, device, precision)
            if any(isinstance(layer, ConvLayer) for layer in layers)}


def offloaded_chains(mod: tvm.IRModule, device=None, precision: str = "fp32") -> dict:
    """``{function name: [DenseWorkload per layer]}`` of every dense chain the array would run
    (conv layers: :func:`conv_chains`; other families have no tuning space yet)."""
    return {name: [workload_of(layer) for layer in layers]
            for name, layers in _aie_functions(mod, device, precision)
            if all(isinstance(layer, DenseLayer) for layer in layers)}


def extract_tasks(mod: tvm.IRModule, device, precision: str = "fp32") -> list[Task]:
    """One task per distinct workload of ``mod``'s offloaded subgraphs (dense chains, then conv
    layers) as compiled in ``precision``, in first-use order."""
    device = device if hasattr(device, "mmul_shape") else get_device(device)
    uses: dict = {}
    for fname, workloads in offloaded_chains(mod, device, precision).items():
        for i, wl in enumerate(workloads):
            uses.setdefault((Task, wl), []).append(f"{fname}[{i}]")
    for fname, layers in conv_chains(mod, device, precision).items():
        for i, layer in enumerate(layers):
            if isinstance(layer, ConvLayer):
                uses.setdefault((ConvTask, conv_workload_of(layer)), []).append(f"{fname}[{i}]")
    return [kind(wl, device.name, tuple(names)) for (kind, wl), names in uses.items()]
