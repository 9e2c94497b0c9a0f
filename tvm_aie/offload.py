"""The Relax pass that hands partitioned functions to ``relax.ext.aie`` and calls them on the array.

Like TVM's ``RunCodegen``, but the result is data, not a runtime module: each function with
``Codegen="aie"`` becomes an AIE program (uint8 constant) and its call in ``main`` becomes
``call_dps_packed("aie.run", program, args...)`` (a function split into several programs becomes
one such call per program, each reading the function's parameters and earlier programs' outputs
its ``meta["reads"]`` names). A function ``aie_programs``
returning the manifest and every program is added, so the report can be made from any executable,
saved and loaded again. A function the codegen cannot compile (a layout the lowering does not
build, resources no split frees), or whose program would not load onto the device (routes the
stream switches cannot place), runs on the CPU instead, with a warning naming why.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .runtime import load_program
from .sim import check_loads

MANIFEST_FUNC = "aie_programs"
log = logging.getLogger("tvm_aie")


@mutator
class _CallRewriter(PyExprMutator):
    def __init__(self, mod, programs: dict):
        super().__init__(mod)
        self.programs = programs

    def visit_call_(self, call):  # pylint: disable=arguments-renamed
        call = super().visit_call_(call)
        if isinstance(call.op, relax.GlobalVar) and call.op.name_hint in self.programs:
            *first, last = self.programs[call.op.name_hint]
            tensors = dict(enumerate(call.args))  # parameters by index, handed-over by layer
            for const in first:  # the parts of a split function, in order, through DDR
                program = load_program(const.value)
                outs = [relax.TensorType(out.valid_shape or out.shape, out.dtype)
                        for out in program.outputs()]
                result = self.builder_.emit(relax.call_dps_packed(
                    "aie.run", [const, *(tensors[src] for src in program.meta["reads"])],
                    outs if len(outs) > 1 else outs[0]))
                for k, layer in enumerate(program.meta["writes"]):
                    tensors[layer] = self.builder_.emit(relax.TupleGetItem(result, k)) \
                        if len(outs) > 1 else result
            reads = load_program(last.value).meta["reads"] if first else range(len(call.args))
            # a function returning a tuple (conv branches): one destination tensor per field
            ty = list(call.ty.fields) if isinstance(call.ty, relax.TupleType) else call.ty
            return relax.call_dps_packed("aie.run", [last, *(tensors[src] for src in reads)], ty)
        return call


def _is_aie(func) -> bool:
    return isinstance(func, relax.Function) and func.attrs is not None and \
        func.attrs.get("Codegen") == "aie"


def offload_to_aie(options, model_macs: int) -> tvm.transform.Pass:
    """Compile every ``Codegen="aie"`` function with ``options`` (a
    :class:`~tvm_aie.options.CompileOptions`, handed to ``relax.ext.aie`` as JSON) and call it
    through ``aie.run``."""

    @tvm.transform.module_pass(opt_level=0, name="OffloadToAIE")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        # Short, stable names (the fused names list every op) in the order the functions appear.
        aie_funcs = [(gv, func) for gv, func in mod.functions.items() if _is_aie(func)]
        mod, programs = _compile(mod, aie_funcs, options.to_json())
        aie_funcs = [(gv, func) for gv, func in aie_funcs if gv.name_hint in programs]
        rewriter = _CallRewriter(mod, programs)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function) and not _is_aie(func):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        mod = rewriter.builder_.get()
        for name in programs:
            mod = _without(mod, name)
        consts = [c for gv, _ in aie_funcs for c in programs[gv.name_hint]]
        manifest = {"device": options.device, "model_macs": int(model_macs),
                    "programs": [load_program(c.value).name for c in consts]}
        blob = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        body = relax.Tuple([relax.const(blob)] + consts)
        mod[MANIFEST_FUNC] = relax.Function([], body, ret_ty=body.ty, is_pure=True).with_attr(
            "global_symbol", MANIFEST_FUNC)
        return mod

    return _pass


def _compile(mod: tvm.IRModule, aie_funcs: list, target_options: str):
    """``(mod, {function name: program constants})``: each function compiled by
    ``relax.ext.aie``; one it cannot compile becomes a CPU function of ``mod`` again."""
    codegen = tvm.get_global_func("relax.ext.aie")
    programs, fallen = {}, False
    for i, (gv, func) in enumerate(aie_funcs):
        try:
            blobs = list(codegen(func, f"aie_{i}", target_options))
            for blob in blobs:  # each loads onto the device (routes placed, memories fit)
                check_loads(load_program(blob))
            programs[gv.name_hint] = [relax.const(blob) for blob in blobs]
        except (ValueError, RuntimeError) as err:  # the codegen's errors are one line
            why = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            log.warning("aie: aie_%d (%s) stays on the CPU: the array cannot run it as "
                        "partitioned: %s", i, gv.name_hint[:60], why)
            mod[gv] = _Unfused(mod).visit_expr(func)
            fallen = True
    return (relax.transform.LambdaLift()(mod) if fallen else mod), programs


@mutator
class _Unfused(PyExprMutator):
    """A partitioned function as plain Relax for the CPU: no ``Codegen``, ``Composite`` or
    ``Primitive`` attributes (its composites become local functions, which ``LambdaLift``
    lifts)."""

    def visit_function_(self, func):  # pylint: disable=arguments-renamed
        func = super().visit_function_(func)
        for key in ("Codegen", "Composite", "Primitive"):
            if func.attrs is not None and key in func.attrs:
                func = func.without_attr(key)
        return func


def _without(mod: tvm.IRModule, name: str) -> tvm.IRModule:
    funcs = {gv: f for gv, f in mod.functions.items() if gv.name_hint != name}
    return tvm.IRModule(funcs, attrs=mod.attrs)
