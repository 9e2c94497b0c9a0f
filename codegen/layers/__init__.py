"""Reading a partitioned Relax function into plain layer descriptions (no TVM objects inside).

The only code that knows what the composites made by :mod:`tvm_aie.partition` look like: one
module per operator family holds its layer type and reader (:mod:`.dense`, :mod:`.conv`,
:mod:`.rowwise`, :mod:`.attention`, :mod:`.movement`); :mod:`.graph` reads a whole function into
layers in dataflow order. For int8 layers the readers also fix the integer arithmetic the array
does (``docs/design.md``, "Layers").
"""

from .attention import BmmLayer, HeadsLayer
from .common import ResidualAdd
from .conv import ConvLayer
from .dense import DenseLayer
from .graph import LayerGraph, Param, count_macs, read_layer_graph, read_layers, read_program, \
    sources
from .movement import ConcatLayer, FlattenLayer, SliceLayer
from .rowwise import RowLayer

__all__ = ["BmmLayer", "HeadsLayer", "ResidualAdd", "ConvLayer", "DenseLayer", "LayerGraph",
           "Param", "count_macs", "read_layer_graph", "read_layers", "read_program", "sources",
           "ConcatLayer", "FlattenLayer", "SliceLayer", "RowLayer"]
