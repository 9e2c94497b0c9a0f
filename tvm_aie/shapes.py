"""Input shapes: which of ``main``'s symbolic dimensions a compile binds, before partitioning.

``build(..., input_shapes={"x": [1, 3, 224, 224]})`` and the CLI's ``--input-shapes
"x:[1,3,224,224]"`` (tvmc's spelling) give an input's whole shape; its symbolic dimensions (a
dynamic batch ``N``) become those numbers everywhere in the module, so the partitioner sees the
static shapes the array needs. A dimension given as ``-1`` stays as it is (tvmc's "any"). An
input left symbolic still runs, on the CPU, and one log line per input says which to bind.
"""

from __future__ import annotations

import logging
import re

import tvm
from tvm import relax

log = logging.getLogger("tvm_aie")

# one ``name:[d0,d1,...]`` of tvmc's spelling (names may hold dots, slashes and colons)
_MAPPING = r"\s*((?:\w+/)?[:\w./-]+?)\s*:\s*\[\s*(-?\d+(?:\s*,\s*-?\d+)*)?\s*\]\s*"
_SPELLING = 'name:[d0,d1,...], several separated by commas or spaces, e.g. "x:[1,3,224,224]"'


def parse_input_shapes(text: str) -> dict:
    """``"x:[1,3,224,224] y:[1,8]"`` (or comma separated) -> ``{"x": [1, 3, 224, 224], ...}``;
    anything else raises a one-line :class:`ValueError` saying the spelling."""
    shapes, pos, text = {}, 0, text.strip()
    while pos < len(text):
        match = re.compile(_MAPPING).match(text, pos)
        if match is None:
            raise ValueError(f"--input-shapes {text!r}: cannot read {text[pos:]!r}; expected "
                             f"{_SPELLING}")
        name, dims = match.group(1), match.group(2) or ""
        if name in shapes:
            raise ValueError(f"--input-shapes {text!r}: {name!r} is given twice")
        shapes[name] = [int(d) for d in dims.split(",")] if dims else []
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
    if not shapes:
        raise ValueError(f"--input-shapes is empty; expected {_SPELLING}")
    return shapes


def _static(dim) -> bool:
    return isinstance(dim, tvm.tirx.IntImm | int)


def _spelled(shape) -> str:
    return "[" + ",".join(str(int(d)) if _static(d) else str(d) for d in shape) + "]"


def symbolic_inputs(mod: tvm.IRModule) -> list:
    """``(name, shape as tvmc spells it)`` of each input of ``main`` with a symbolic
    dimension."""
    return [(p.name, _spelled(p.ty.shape)) for p in mod["main"].params
            if any(not _static(d) for d in getattr(p.ty, "shape", None) or [])]


def bind_input_shapes(mod: tvm.IRModule, input_shapes: dict | None) -> tvm.IRModule:
    """``mod`` with the symbolic dimensions of ``main``'s inputs bound to ``input_shapes`` (input
    name -> full shape, ``-1`` keeping a dimension). A name ``main`` does not take, a shape of
    another rank, a static dimension given otherwise or one variable given two values raise a
    one-line :class:`ValueError`."""
    if not input_shapes:
        return mod
    params = {p.name: p for p in mod["main"].params}
    binding = {}
    for name, shape in input_shapes.items():
        if name not in params:
            raise ValueError(f"input_shapes names {name!r}, but the model's inputs are "
                             f"{', '.join(params)}")
        have = list(params[name].ty.shape)
        if len(shape) != len(have):
            raise ValueError(f"input_shapes gives {name} the shape {_spelled(shape)} of rank "
                             f"{len(shape)}, but it has rank {len(have)}: {_spelled(have)}")
        for dim, value in zip(have, shape):
            value = int(value)
            if value == -1:
                continue
            if value < 1:
                raise ValueError(f"input_shapes gives {name} the dimension {value}: "
                                 "dimensions are positive (or -1 to keep one symbolic)")
            if _static(dim):
                if int(dim) != value:
                    raise ValueError(f"input_shapes gives {name} the shape {_spelled(shape)}, "
                                     f"but its shape is {_spelled(have)}")
            elif not isinstance(dim, tvm.tirx.Var):
                raise ValueError(f"input {name} has the dimension {dim}, an expression: only "
                                 "a symbolic variable can be bound")
            elif binding.setdefault(dim.name, value) != value:
                raise ValueError(f"input_shapes gives {dim.name} two values: "
                                 f"{binding[dim.name]} and {value}")
    return relax.transform.BindSymbolicVars(binding)(mod) if binding else mod


def log_unbound_inputs(mod: tvm.IRModule) -> None:
    """One info line per input of ``main`` with a symbolic dimension: what depends on it runs on
    the CPU until the input's shape is given."""
    for name, shape in symbolic_inputs(mod):
        log.info("aie: input %s has the symbolic shape %s: what depends on it stays on the CPU; "
                 "bind it with build(..., input_shapes={%r: [...]}) or --input-shapes "
                 "\"%s:[...]\"", name, shape, name, name)
