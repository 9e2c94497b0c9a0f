"""``relax.ext.aie``: the codegen entry for one partitioned Relax function, with the build's
:class:`~tvm_aie.options.CompileOptions` as JSON.

Reads the function's layers, plans their configurations (pinned, tuned or default), schedules each
layer's TensorIR, reads the tile layouts back and lowers them to AIE programs (serialised as
uint8 constants): one family per program or parts of several (:mod:`~tvm_aie.codegen.lower_net`),
split into several programs handing tensors over in DDR when the array cannot hold them at once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import tvm

from ..options import CompileOptions, check_precision
from ..schedules import bmm, conv2d, dense, rowwise
from ..schedules.dense import TilingError
from ..target import get_device
from .layers import (BmmLayer, ConvLayer, DenseLayer, FlattenLayer, HeadsLayer, RowLayer,
                     read_layers, read_program, sources)
from .lower import lower_dense_chain
from .lower_bmm import lower_bmm
from .lower_net import PART_KINDS, lower_net
from .lower_conv import lower_conv_chain
from .lower_rows import lower_rowwise
from .place import PlacementError
from .program import BFLOAT16
from .plan import plan_chain
from .resources import ResourceError

log = logging.getLogger("tvm_aie")


def _in_precision(layer, device, precision: str):
    """``layer`` as it runs under ``precision``. Under ``"bf16"`` every fp32 layer becomes
    bfloat16: dense and conv layers with bf16 weights (float32 bias), batched matmuls with bf16
    operands, row-wise layers with bf16 tensors in and out (layer norm's ``gamma`` and ``beta``
    stay float32, like a bias); each accumulates in float32 and writes bf16. A device without a
    bf16 datapath (AIE's VC1902) keeps the layer in fp32, with a log line."""
    if precision != "bf16" or getattr(layer, "precision", None) != "float32" or \
            not isinstance(layer, (DenseLayer, ConvLayer, BmmLayer, RowLayer)):
        return layer
    if "bfloat16" not in device.macs_per_cycle:
        log.info("aie: %s stays float32: %s has no bfloat16 datapath", layer.name, device.name)
        return layer
    if isinstance(layer, (DenseLayer, ConvLayer)):
        return replace(layer, precision="bfloat16", weight=layer.weight.astype(BFLOAT16))
    return replace(layer, precision="bfloat16")


def as_compiled(layers: list, device, precision: str = "fp32") -> list:
    """``layers`` as the array runs them under ``precision`` (``"fp32"`` or ``"bf16"``): what is
    lowered, and what tuning tasks and tuned configs are keyed by (a bf16 build tunes and
    applies bf16 layers)."""
    check_precision(precision)
    return [_in_precision(layer, device, precision) for layer in layers]


def workload_of(layer) -> dense.DenseWorkload:
    return dense.DenseWorkload(m=layer.m, k=layer.k, n=layer.n, precision=layer.precision,
                               bias_add=layer.add is not None)


def conv_workload_of(layer: ConvLayer) -> conv2d.ConvWorkload:
    c, h, w = layer.in_shape
    o, _, kh, kw = layer.weight.shape
    return conv2d.ConvWorkload(c, h, w, o, kh, kw, layer.stride, layer.padding, layer.groups,
                               layer.precision, layer.pool or (1, 1), layer.residual is not None,
                               layer.kind)


def _conv_layouts(layers: list, name: str, device, pinned: dict) -> list:
    layouts = []
    for i, layer in enumerate(layers):
        wl = conv_workload_of(layer)
        cfg = pinned.get(i) or conv2d.default_config(wl, device)
        sch = conv2d.schedule(conv2d.conv_prim_func(wl), wl, cfg, device)
        layouts.append(conv2d.tile_layout(sch.mod, wl))
        log.info("aie: %s %s -> %s", name, layer.name, cfg)
    return layouts


def _dense_layouts(layers: list, name: str, device, pinned: dict | None,
                   plans: dict | None = None) -> list:
    """The chain's tile layouts; ``plans`` remembers :func:`plan_chain`'s configs by workloads
    and pins across calls (:func:`compile_programs` tries many splits over the same chains)."""
    workloads = [workload_of(layer) for layer in layers]
    key = (tuple(workloads), tuple(sorted((pinned or {}).items())))
    configs = plans.get(key) if plans is not None else None
    if configs is None:
        configs = plan_chain(workloads, device, pinned)
        if plans is not None:
            plans[key] = configs
    layouts = []
    for layer, wl, cfg in zip(layers, workloads, configs):
        sch = dense.schedule(dense.dense_prim_func(wl), wl, cfg, device)
        layouts.append(dense.tile_layout(sch.mod))
        log.info("aie: %s %s -> %s", name, layer.name, cfg)
    return layouts


def _row_config(layer, name: str, device, pinned: dict, max_tiles: int | None = None):
    wl = rowwise.RowWorkload(layer.op, layer.rows, layer.cols, layer.precision)
    cfg = pinned.get(0) or rowwise.default_config(wl, device, max_tiles)
    rowwise.check(wl, cfg, device)
    log.info("aie: %s %s -> %s", name, layer.name, cfg)
    return cfg


def _parts(layers: list, outputs: tuple = ()) -> list:
    """``[(kind, first index, layers)]``: runs of conv layers (a DAG, perhaps ending in a
    flatten), chains of dense layers (each reading the one before, which nothing else reads and
    the program does not return), and each batched matmul, row-wise or heads layer on its own."""
    reads = [s for layer in layers for s in sources(layer)]
    parts = []
    for i, layer in enumerate(layers):
        kind = PART_KINDS.get(_family(layer))
        prev = parts[-1][2][-1] if parts else None
        if parts and parts[-1][0] == kind == "conv" or parts and parts[-1][0] == kind == "dense" \
                and layer.input == prev.name and reads.count(prev.name) == 1 and \
                prev.name not in outputs:
            parts[-1][2].append(layer)
        else:
            parts.append((kind, i, [layer]))
    return parts


def _bmm_config(layer, name: str, device, pinned: dict, max_tiles: int | None = None):
    """The batched matmul's config: the default one (or the pinned), with at most ``max_tiles``
    tiles, and a divisor of the heads when its operands are heads of several images (a tile
    takes every ``tiles``-th head of each image: :class:`~tvm_aie.codegen.lower_bmm.BatchView`)."""
    wl = bmm.BmmWorkload(layer.batch, layer.m, layer.k, layer.n, layer.precision)
    cfg = pinned.get(0) or bmm.default_config(wl, device)
    if not pinned.get(0):
        tiles = min(cfg.tiles, max_tiles or cfg.tiles)
        if len(layer.batch_shape) == 2 and layer.batch_shape[0] > 1:
            tiles = max(d for d in range(1, tiles + 1) if layer.batch_shape[1] % d == 0)
        cfg = replace(cfg, tiles=tiles)
    bmm.check(wl, cfg, device)
    log.info("aie: %s %s -> %s", name, layer.name, cfg)
    return cfg


def _memtile_tiles(device, layer, readers: dict) -> int | None:
    """How many tiles a row-wise layer or batched matmul between memory tiles may have: each
    takes one DMA channel of the memory tile its operands are in (shared fairly among the parts
    reading one tensor; DDR inputs come through shims) and of the one it writes, and the tiles
    of its column send their results down through the bottom one's south stream ports."""
    if device.memtile is None:
        return None
    share = max([readers[src] for src in sources(layer) if not isinstance(src, int)] or [1])
    return max(1, min(device.memtile["mm2s"] // share, device.memtile["s2mm"],
                      device.stream_switch_ports["compute"]["master"]["south"]))


def _compile_parts(parts: list, name: str, device, pinned: dict, outputs: tuple | None = None,
                   plans: dict | None = None):
    """The program of several parts (:func:`~tvm_aie.codegen.lower_net.lower_net`)."""
    lowered = []
    readers = {}  # tensor -> the parts reading it
    for _, _, layers in parts:
        for src in sources(layers[0]):
            readers[src] = readers.get(src, 0) + 1
    for kind, start, layers in parts:
        sub = {i - start: cfg for i, cfg in pinned.items() if start <= i < start + len(layers)}
        if kind == "conv":
            convs = [layer for layer in layers if isinstance(layer, ConvLayer)]
            layouts = _conv_layouts(convs, name, device, sub)
        elif kind == "dense":
            layouts = _dense_layouts(layers, name, device, sub, plans)
        elif kind == "row":
            layouts = [_row_config(layers[0], name, device, sub,
                                   _memtile_tiles(device, layers[0], readers))]
        elif kind == "bmm":
            layouts = [_bmm_config(layers[0], name, device, sub,
                                   _memtile_tiles(device, layers[0], readers))]
        else:  # heads: data movement of the batched matmul next to them
            layouts = None
        lowered.append((kind, layers, layouts))
    return lower_net(name, lowered, device, outputs)


def compile_function(func, name: str, device, pinned: dict | None = None, *, io: str = "ddr",
                     precision: str = "fp32"):
    """The AIE program of one partitioned function; ``pinned``: layer index -> config."""
    layers, outputs = read_program(func)
    return compile_chain(as_compiled(layers, device, precision), name, device, pinned, outputs,
                         io=io)


def compile_chain(layers: list, name: str, device, pinned: dict | None = None,
                  outputs: tuple | None = None, *, io: str = "ddr", plans: dict | None = None):
    """The AIE program of ``layers`` (as compiled: :func:`as_compiled`): one family, or parts of
    several (:mod:`~tvm_aie.codegen.lower_net`); it returns ``outputs`` (conv layers: by default
    those no other layer reads; else the last layer's). ``io`` is a dense chain's way in and out
    (``"ddr"`` or ``"pl"``); ``plans`` as in :func:`_dense_layouts`."""
    families = {type(layer).__name__ for layer in layers}
    graph = "ConvLayer" not in families
    parts = _parts(layers, outputs or () if graph else ())
    if len(parts) > 1 or graph and outputs not in (None, (layers[-1].name,)):
        return _compile_parts(parts, name, device, pinned or {}, outputs if graph else None,
                              plans)
    if families == {"RowLayer"}:
        (layer,) = layers
        return lower_rowwise(name, layer, _row_config(layer, name, device, pinned or {}), device)
    if families == {"BmmLayer"}:
        (layer,) = layers
        return lower_bmm(name, layer, _bmm_config(layer, name, device, pinned or {}), device)
    if "ConvLayer" in families:  # conv layers, perhaps ending in a flatten
        convs = [layer for layer in layers if isinstance(layer, ConvLayer)]
        return lower_conv_chain(name, convs, _conv_layouts(convs, name, device, pinned or {}),
                                device, *((layers[-1], None) if len(convs) < len(layers)
                                          else (None, outputs)))
    if families != {"DenseLayer"}:
        raise ValueError(f"{name}: one AIE program holds one family, got {sorted(families)}")
    return lower_dense_chain(name, layers, _dense_layouts(layers, name, device, pinned, plans),
                             device, io)


def _family(layer) -> str:
    return type(layer).__name__


# the families one program's DAG of parts holds together (:mod:`~tvm_aie.codegen.lower_net`)
_GRAPH = {"DenseLayer", "RowLayer", "BmmLayer", "HeadsLayer"}


def _joins(prev, layer) -> bool:
    """Whether ``layer`` may go on the program of ``prev``, the layer before it: conv layers, a
    conv part's flatten and the dense head after it, or dense, batched matmul, row-wise and
    heads layers in any order (a transformer encoder layer)."""
    pair = (_family(prev), _family(layer))
    return pair in (("ConvLayer", "ConvLayer"), ("ConvLayer", "FlattenLayer"),
                    ("FlattenLayer", "DenseLayer")) or set(pair) <= _GRAPH


def _heads_together(layers: list, start: int, end: int) -> bool:
    """Whether every heads layer is in the same program as the layer it reads and the layers
    reading it (heads are patterns on the memory-tile buffers between them)."""
    inside = {layer.name for layer in layers[start:end]}
    for heads in (layer for layer in layers if isinstance(layer, HeadsLayer)):
        group = [heads.name, *([heads.input] if isinstance(heads.input, str) else []),
                 *(layer.name for layer in layers if heads.name in sources(layer))]
        if len({name in inside for name in group}) > 1:
            return False
    return True


def _may_end(layers: list, outputs: tuple, start: int, end: int) -> bool:
    """Whether a program may end after ``layers[end - 1]``: the function returns none of its
    layers' outputs (the last program does), no flatten or heads layer is parted from its
    neighbours, and with conv layers in the function, the one tensor of ``layers[start:end]``
    read after it is that layer's output (the next program's input, through DDR) and no concat
    after it reads it (a concat's inputs are its own program's layers): a conv chain can be cut
    anywhere, a DAG between its branches. Other layers hand over as many tensors as cross."""
    if end == len(layers):
        return True
    inside = {layer.name for layer in layers[start:end]}
    if inside & set(outputs) or isinstance(layers[end], FlattenLayer) or \
            not _heads_together(layers, start, end):
        return False
    if not any(isinstance(layer, ConvLayer) for layer in layers):
        return True
    handover = layers[end - 1].name
    return all(src not in inside or src == handover and
               src not in getattr(getattr(layer, "in_concat", None), "inputs", ())
               for layer in layers[end:] for src in sources(layer))


def _handover(layers: list, outputs: tuple, start: int, end: int) -> tuple[list, list]:
    """``(reads, writes)`` of the program of ``layers[start:end]``: what it reads from outside
    (the function's parameters, then earlier programs' tensors, in the order first read) and
    what it gives (the tensors later programs read, or the function's outputs)."""
    inside = {layer.name for layer in layers[start:end]}
    reads = list(dict.fromkeys(src for layer in layers[start:end] for src in sources(layer)
                               if src not in inside))
    reads = sorted(src for src in reads if isinstance(src, int)) + \
        [src for src in reads if not isinstance(src, int)]
    if end == len(layers):
        return reads, list(outputs)
    later = {src for layer in layers[end:] for src in sources(layer)}
    return reads, [layer.name for layer in layers[start:end] if layer.name in later]


def _handed_over(layer, index: dict):
    """``layer`` in a program whose input ``k`` is ``src`` for each ``src: k`` of ``index`` (a
    function parameter or an earlier program's tensor)."""
    fields = {f: index[getattr(layer, f)] for f in ("input", "other", "residual")
              if getattr(layer, f, None) is not None and getattr(layer, f) in index}
    return replace(layer, **fields) if fields else layer


def _as_needed(layers: list, outputs: tuple) -> list:
    """``layers`` in the order a depth-first walk from the outputs needs them, each right after
    what it reads (a transformer's V projection after the scores' softmax), so that a program
    cut after a prefix hands few tensors on."""
    by_name, order = {layer.name: layer for layer in layers}, {}

    def visit(name):
        if name in by_name and name not in order:
            order[name] = None  # before its sources: a DAG has no cycle back to it
            for src in sources(by_name[name]):
                visit(src)
            del order[name]
            order[name] = by_name[name]

    for out in outputs:
        visit(out)
    return list(order.values())


def compile_programs(func, name: str, device, pinned: dict | None = None, *, io: str = "ddr",
                     precision: str = "fp32") -> list:
    """The programs of one partitioned function: one if the array holds all its layers, else
    the layers split greedily into the longest prefixes that fit (:func:`_may_end`), run one
    after another with the tensors they hand over in DDR. Each part's ``meta["split"]`` says why
    it ends where it does, ``meta["reads"]`` and ``meta["writes"]`` what it takes (function
    parameters by index, tensors of earlier parts by layer name) and gives.
    """
    (layers, outputs), pinned = read_program(func), pinned or {}
    layers = as_compiled(layers, device, precision)
    if not any(isinstance(layer, ConvLayer) for layer in layers):  # a conv DAG keeps its order
        order = {layer.name: k for k, layer in enumerate(_as_needed(layers, outputs))}
        pinned = {order[layers[i].name]: cfg for i, cfg in pinned.items()}
        layers = sorted(layers, key=lambda layer: order[layer.name])
    programs, start, plans = [], 0, {}
    while start < len(layers):
        start = _compile_next(layers, outputs, start, programs, name, device, pinned, io, plans)
    return programs


def _compile_next(layers: list, outputs: tuple, start: int, programs: list, name: str, device,
                  pinned: dict, io: str, plans: dict) -> int:
    """Append the longest program from ``layers[start]`` that fits to ``programs``; returns
    where the next one starts."""
    why = None
    stop = start + 1
    while stop < len(layers) and _joins(layers[stop - 1], layers[stop]):
        stop += 1
    ends = [end for end in range(stop, start, -1) if _may_end(layers, outputs, start, end)]
    if not ends:
        raise ValueError(f"{name}: {layers[start].name}..{layers[stop - 1].name} cannot be "
                         f"split into programs that hand their tensors on")
    for end in ends:
        part = f"{name}.{len(programs)}" if programs or end < len(layers) else name
        reads, writes = _handover(layers, outputs, start, end)
        index = {src: k for k, src in enumerate(reads)}
        sub = {i - start: cfg for i, cfg in pinned.items() if start <= i < end}
        conv = any(isinstance(layer, ConvLayer) for layer in layers[start:end])
        try:
            program = compile_chain([_handed_over(layer, index) for layer in layers[start:end]],
                                    part, device, sub, outputs if end == len(layers) else
                                    None if conv else tuple(writes), io=io, plans=plans)
            break
        except (PlacementError, ResourceError, TilingError) as err:
            if end == ends[-1]:
                raise
            why = f"{layers[start].name}..{layers[end - 1].name} do not fit: {err}"
    if end < len(layers) and not why:
        why = f"{layers[end].name} is of another family ({_family(layers[end])})"
    if why:
        log.info("aie: %s split after %s: %s", name, layers[end - 1].name, why)
        program.meta["split"] = why
    program.meta.update(reads=reads, writes=writes)
    programs.append(program)
    return end


@tvm.register_global_func("relax.ext.aie", override=True)
def aie_codegen(func, name: str, options: str):
    """Partitioned function -> its AIE programs, each as a uint8 tensor (one unless it is split).

    ``options``: the build's :class:`~tvm_aie.options.CompileOptions` as JSON (data, as
    ``RunCodegen``'s ``target_options`` are)."""
    opts = CompileOptions.from_json(str(options))
    device = get_device(opts.device)
    pinned = opts.pinned or None
    if pinned is None and opts.tuning_db is not None:
        from ..tune.apply import TunedConfigs  # pylint: disable=import-outside-toplevel

        pick = TunedConfigs(opts.tuning_db)
        pinned = pick(as_compiled(read_layers(func), device, opts.precision), device)
    return [tvm.runtime.tensor(np.frombuffer(p.to_bytes(), dtype=np.uint8))
            for p in compile_programs(func, str(name), device, pinned, io=opts.io,
                                      precision=opts.precision)]
