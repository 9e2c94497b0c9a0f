"""``partition_for_aie``: group what the AIE array runs into ``Codegen="aie"`` functions.

One module per operator family holds its patterns and checks (:mod:`.dense`, :mod:`.conv`,
:mod:`.rowwise`, :mod:`.attention`, :mod:`.movement`); :mod:`.canonicalize` rewrites ``main``
first. This driver runs the fusion passes in the order that lets a layer's own epilogue win and
data movement join only what is already offloaded, then logs why each remaining op stays on the
CPU. Do not run ``FoldConstant`` before partitioning (it turns int8 layers into fp32 ones).
"""

from __future__ import annotations

import logging

import tvm
from tvm import relax

from ..target import get_device
from . import attention, conv, dense, movement, rowwise
from .attention import in_graph
from .canonicalize import canonicalize
from .context import PartitionContext, const_value, layer_precision

__all__ = ["partition_for_aie", "partition_with_reasons", "const_value", "layer_precision"]

log = logging.getLogger("tvm_aie")

# ops that some pattern offloads: left on the CPU, they were not part of a match that fits
_MATCHED_OPS = ("relax.matmul", "relax.nn.conv2d", "relax.nn.max_pool2d", "relax.nn.avg_pool2d",
                "relax.mean", "relax.nn.softmax", "relax.nn.layer_norm", "relax.nn.gelu",
                "relax.sigmoid", "relax.tanh", "relax.reshape", "relax.strided_slice",
                "relax.concat", "relax.nn.relu", "relax.nn.leakyrelu", "relax.clip",
                "relax.nn.gelu_tanh", "relax.nn.log_softmax", "relax.subtract", "relax.divide")


def _patterns(part: PartitionContext) -> list:
    """Every family's patterns as ``FusionPattern``s, in the order the passes try them: pooling
    and row-wise layers on their own last (a conv's fused max-pool, a layer's own epilogue
    first), then the longest patterns first."""
    out = dense.patterns(part) + conv.patterns(part) + attention.patterns(part) + \
        rowwise.patterns(part) + movement.patterns(part)
    first = ("aie.pool2d", "aie.rowwise")
    ordered = sorted(out, key=lambda p: (not p[0].startswith(first), p[0].count("_")))[::-1]
    return [relax.transform.FusionPattern(name, pattern, ann, check)
            for name, pattern, ann, check in ordered]


def _log_cpu_ops(mod: tvm.IRModule, part: PartitionContext) -> None:
    """One log line per operator ``main`` still runs on the CPU, saying why."""
    for binding in (b for block in mod["main"].body.blocks for b in block.bindings):
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
            continue
        op = call.op.name
        default = "not part of a supported pattern" if op in _MATCHED_OPS else \
            "no AIE pattern for this operator on its own"
        why = part.rejected.get(binding.var.name, default)
        log.info("aie: %s = %s stays on the CPU: %s", binding.var.name, op, why)


def _offloaded_outputs(mod: tvm.IRModule) -> dict:
    """The names of ``mod``'s ``aie.*`` composite functions -> the layer's family."""
    out = {}
    for gv, func in mod.functions.items():
        name = str(func.attrs.get("Composite", "")) if func.attrs is not None else ""
        if name.startswith("aie."):
            out[gv.name_hint] = name[4:].split("_")[0].replace("2d", "")
    return out


def _note_offloaded(mod: tvm.IRModule, part: PartitionContext) -> None:
    """Record in ``part`` the composites of ``mod`` and the variables main binds their calls to
    (a slice's reader is one, after the slice), and main's bindings, for the next pass's checks."""
    part.offloaded = _offloaded_outputs(mod)
    bindings = [b for block in mod["main"].body.blocks for b in block.bindings]
    part.offloaded.update({b.var.name: part.offloaded[b.value.op.name_hint] for b in bindings
                           if isinstance(b.value, relax.Call) and
                           isinstance(b.value.op, relax.GlobalVar) and
                           b.value.op.name_hint in part.offloaded})
    part.bound = {b.var.name: b.value for b in bindings}


def _match_cast_reason(mod: tvm.IRModule) -> str | None:
    """Why the model cannot be partitioned at all, or None: ``MergeCompositeFunctions`` takes
    only plain bindings, and a data-dependent shape (NonZero, Unique) binds a match_cast."""
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if isinstance(b, relax.MatchCast):
                return f"{b.var.name} has a data-dependent shape (a match_cast)"
    return None


def partition_for_aie(mod: tvm.IRModule, device=None) -> tvm.IRModule:
    """Group what the array of ``device`` (a catalog name or tag, a :class:`Device`; by default
    the catalog's default) runs into functions with ``Codegen="aie"``; the rest stays on the CPU
    (:func:`partition_with_reasons`)."""
    return partition_with_reasons(mod, device)[0]


def partition_with_reasons(mod: tvm.IRModule, device=None) -> tuple[tvm.IRModule, dict]:
    """:func:`partition_for_aie`'s module, and why each rejected match stays on the CPU (by the
    name of the variable main binds it to).

    Consecutive dense, conv2d and pooling layers (with slices and concats between them, conv
    and pooling layers also branching), a flatten between a conv part and a dense head, and the
    batched matmuls, row-wise layers and attention heads reading what is offloaded (a whole
    transformer encoder layer) merge into one function, so their intermediates stay on the
    array; other batched matmuls and row-wise layers become functions of their own, matched
    after the others so a layer's own epilogue wins.
    """
    part = PartitionContext(device if hasattr(device, "mmul_shape") else get_device(device))
    # Dead-code elimination (in canonicalize) also matters: unused bindings would count as uses
    # of a layer's intermediates, and ONNX BatchNormalization imports as ``batch_norm`` whose
    # mean/var outputs are bound but never read.
    mod = canonicalize(mod)
    if (reason := _match_cast_reason(mod)) is not None:
        log.info("aie: the whole model stays on the CPU: %s", reason)
        return mod, part.rejected
    patterns = _patterns(part)
    alone = [p for p in patterns if p.name.startswith(("aie.bmm", "aie.rowwise"))]
    flatten = [p for p in patterns if p.name.startswith(("aie.flatten", "aie.slice",
                                                          "aie.concat"))]
    heads = [p for p in patterns if p.name.startswith("aie.heads")]
    chained = [p for p in patterns if p not in alone and p not in flatten and p not in heads]
    mod = relax.transform.FuseOpsByPattern(chained, bind_constants=True,
                                           annotate_codegen=False)(mod)
    # These join the region only once the layer that feeds them is known to be offloaded.
    _note_offloaded(mod, part)
    # the second pass: flattens, slices, concats
    mod = relax.transform.FuseOpsByPattern(flatten, bind_constants=True,
                                           annotate_codegen=False)(mod)
    # the graph passes: heads, batched matmuls and row-wise layers reading what the last pass
    # offloaded, until none joins (dense -> heads -> bmm -> softmax -> bmm -> heads -> dense)
    graph = heads + [in_graph(p, part) for p in alone]
    while True:
        _note_offloaded(mod, part)
        count = len(_offloaded_outputs(mod))
        mod = relax.transform.FuseOpsByPattern(graph, bind_constants=True,
                                               annotate_codegen=False)(mod)
        if len(_offloaded_outputs(mod)) == count:
            break
    mod = relax.transform.MergeCompositeFunctions()(mod)
    mod = relax.transform.FuseOpsByPattern(alone, bind_constants=True, annotate_codegen=True)(mod)
    _log_cpu_ops(mod, part)
    return mod, part.rejected
