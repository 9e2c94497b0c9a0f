"""The TensorIR of one Relax operator, as ``LegalizeOps`` writes it: what each template schedules.

Relax's ``BlockBuilder`` keeps its scope on a class-wide stack, so two threads building at once
corrupt each other (the tuner measures in threads under Dask). Building goes through one lock.
"""

from __future__ import annotations

import threading

import tvm
from tvm import relax

_LOCK = threading.Lock()


def legalized_prim_func(params: list, make_op) -> tvm.tirx.PrimFunc:
    """The PrimFunc of ``make_op(*vars)`` for ``params`` given as ``[(name, shape, dtype)]``."""
    with _LOCK:
        bb = relax.BlockBuilder()
        args = [relax.Var(name, relax.TensorType(shape, dtype)) for name, shape, dtype in params]
        with bb.function("main", args):
            with bb.dataflow():
                y = bb.emit_output(bb.emit(make_op(*args)))
            bb.emit_func_output(y)
        mod = relax.transform.LegalizeOps()(bb.get())
    (func,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return func
