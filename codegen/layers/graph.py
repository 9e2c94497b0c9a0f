"""A partitioned function as a graph of layers: :func:`read_layer_graph` dispatches each composite
to its family's reader, :func:`read_program` folds slices and concats into their readers and
checks the DAG the lowering can build; also :func:`count_macs`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from tvm import relax

from .attention import HeadsLayer, read_bmm, read_heads
from .conv import ConvLayer, read_conv, read_pool
from .dense import read_dense
from .movement import ConcatLayer, SliceLayer, read_concat, read_flatten, read_slice
from .rowwise import read_rowwise

# composite name prefix -> the stem of its layers' names and its family's reader
_READERS = (("aie.rowwise", "row", read_rowwise), ("aie.flatten", "flatten", read_flatten),
            ("aie.concat", "concat", read_concat), ("aie.heads", "heads", read_heads),
            ("aie.slice", "slice", read_slice), ("aie.bmm", "bmm", read_bmm),
            ("aie.pool2d", "pool", read_pool), ("aie.conv2d", "conv", read_conv),
            ("aie.dense", "dense", read_dense))


@dataclass
class Param:
    name: str
    shape: tuple
    dtype: str


@dataclass
class LayerGraph:
    """The layers of one offloaded function, in dataflow order, and which one gives its result."""

    params: list[Param]
    layers: list  # DenseLayer | ConvLayer | ...
    output: str | tuple  # a layer's name, or several (a function returning a tuple)


def read_layer_graph(func: relax.Function) -> LayerGraph:
    """The layers of a ``Codegen="aie"`` function, with where each one's input comes from."""
    params = [Param(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype))
              for p in func.params]
    source = {p: i for i, p in enumerate(func.params)}
    composites, layers = {}, []
    for binding in (b for block in func.body.blocks for b in block.bindings):
        val = binding.value
        if isinstance(val, relax.Function):
            composites[binding.var] = val
        elif isinstance(val, relax.Call) and val.op in composites:
            comp = composites[val.op]
            kind = str(comp.attrs["Composite"])
            arg_sources = {p: source[a] for p, a in zip(comp.params, val.args)}
            stem, reader = next((stem, reader) for prefix, stem, reader in _READERS
                                if kind.startswith(prefix))
            name = f"{stem}{len(layers)}"
            layers.append(reader(comp, val, name, arg_sources))
            source[binding.var] = name
        elif isinstance(val, relax.Var) and val in source:  # an alias (a dataflow's output)
            source[binding.var] = source[val]
        else:
            raise ValueError(f"unexpected binding in an aie function: {binding.var.name} = {val}")
    out = func.body.body
    return LayerGraph(params, layers, tuple(source[f] for f in out.fields)
                      if isinstance(out, relax.Tuple) else source[out])


def sources(layer) -> list:
    """What ``layer`` reads (function parameter indices and layer names): its input (a concat's
    inputs in place of the concat), its residual and its second operand."""
    concat = getattr(layer, "in_concat", None)
    return (list(concat.inputs) if concat else [layer.input]) + \
        [s for s in (getattr(layer, "residual", None), getattr(layer, "other", None))
         if s is not None]


def read_program(func: relax.Function) -> tuple[list, tuple]:
    """The layers of a ``Codegen="aie"`` function in dataflow order, and the names of those whose
    outputs it returns (in its order). Conv and pooling layers may form a DAG (a layer read by
    several, a concat of several: what the conv lowering builds); any other layer reads program
    inputs or layers before it (dense, batched matmul, row-wise and heads layers form a DAG too:
    Q, K and V projections read one input, a residual add two tensors, and the function may
    return several of them, heads excepted), and a function with a conv layer and others returns
    its last layer's output. A slice becomes the ``in_slice`` of the conv or pooling layer
    reading it (its input pattern), a concat the ``in_concat`` of each reader, and an int8
    concat input's requantisation the ``rescale`` of its producer."""
    graph = read_layer_graph(func)
    folded = {x.name: x for x in graph.layers if isinstance(x, (SliceLayer, ConcatLayer))}
    rescale = {src: (*rs, cat.out_zp) for cat in folded.values() if isinstance(cat, ConcatLayer)
               for src, rs in zip(cat.inputs, cat.rescale) if rs is not None}
    layers, convs = [], set()
    for layer in graph.layers:
        if layer.name in folded:
            continue
        src = folded.get(layer.input)
        if src is not None and not isinstance(layer, ConvLayer):
            raise ValueError(f"{src.name} is read by {layer.name}, not a conv layer")
        if isinstance(src, SliceLayer):
            layer = dataclasses.replace(layer, in_slice=src, input=src.input)
        elif src is not None:
            layer = dataclasses.replace(layer, in_concat=src)
        if layer.name in rescale:
            layer = dataclasses.replace(layer, rescale=rescale[layer.name])
        if isinstance(layer, ConvLayer):
            joined = layer.in_concat.inputs if layer.in_concat else ()  # a concat joins layers
            wrong = [s for s in sources(layer)
                     if s not in convs and not (isinstance(s, int) and s not in joined)]
            if wrong:
                raise ValueError(f"aie function: {layer.name} reads {wrong[0]!r}, not a program "
                                 f"input or an earlier conv or pooling layer")
            convs.add(layer.name)
        elif any(not isinstance(s, int) and s not in {x.name for x in layers}
                 for s in sources(layer)):
            raise ValueError(f"aie function: {layer.name} reads {sources(layer)!r}, not program "
                             f"inputs or earlier layers")
        layers.append(layer)
    outputs = graph.output if isinstance(graph.output, tuple) else (graph.output,)
    if convs and (any(out not in convs | {layers[-1].name} for out in outputs) or
                  len(convs) < len(layers) and outputs != (layers[-1].name,)) or \
            any(isinstance(x, HeadsLayer) and x.name in outputs for x in layers):
        raise ValueError(f"aie function: its result {graph.output!r} is not the output of its "
                         f"last layer, of conv and pooling layers only, or of layers other than "
                         f"heads")
    for name in rescale:  # requantised for the concat: no other reader may see those values
        readers = [x for x in layers if name in sources(x)]
        if name in outputs or any(x.in_concat is None or name not in x.in_concat.inputs
                                  for x in readers):
            raise ValueError(f"aie function: {name} is requantised for a concat but read "
                             f"elsewhere too")
    return layers, tuple(outputs)


def read_layers(func: relax.Function) -> list:
    """The layers of a ``Codegen="aie"`` function (:func:`read_program` without the outputs)."""
    return read_program(func)[0]


def count_macs(mod) -> int:
    """Multiply-accumulates of every matmul and conv2d with static shapes in ``mod``, offloaded
    or not (a conv2d's output elements times its weight's ``C/groups * KH * KW``)."""
    total = 0

    def visit(expr):
        nonlocal total
        op = getattr(expr, "op", None) if isinstance(expr, relax.Call) else None
        name = getattr(op, "name", None)
        if name not in ("relax.matmul", "relax.nn.conv2d"):
            return
        inner = list(expr.args[0].ty.shape)[-1:] if name == "relax.matmul" else \
            list(expr.args[1].ty.shape)[1:]
        shapes = [expr.ty.shape, inner]
        if all(isinstance(d, int) or hasattr(d, "value") for s in shapes for d in s):
            total += int(np.prod([int(d) for s in shapes for d in s]))

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return total
