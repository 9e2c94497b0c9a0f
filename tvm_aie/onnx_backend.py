"""An ``onnx.backend`` backend for tvm-aie, so ONNX's own node tests run through it.

``prepare`` imports the model with :func:`tvm_aie.load_onnx` and compiles it with
:func:`tvm_aie.build` for target ``aie``: what the array runs goes to the simulator, the rest to the
CPU, exactly as for a user's model. ONNX's node tests feed every operand as a graph input, so an op
whose array pattern needs a constant weight (MatMul, Gemm, Conv) would never reach the array;
:class:`AieConstantWeightsBackend` therefore binds every input but the first as a constant (an
initializer) before compiling, which is how such ops appear in real models.

:func:`node_tests` picks ONNX's node tests of the operators tvm-aie claims (:data:`CLAIMED_OPS`)
and :func:`run_node_tests` runs them through ``onnx.backend.test``'s runner, for
``scripts/conformance.py`` and the tests.
"""

from __future__ import annotations

import re
import unittest

import numpy as np
import onnx
import tvm
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from .frontend import load_onnx
from .pipeline import build
from .report import report

# What tvm-aie claims to compile from ONNX: the operators of the models it targets (dense, conv,
# pooling, normalisation, activations, attention, QDQ) and the layout ops around them.
CLAIMED_OPS = ["MatMul", "Gemm", "Relu", "Add", "Mul", "Conv", "MaxPool", "AveragePool",
               "GlobalAveragePool", "Softmax", "LayerNormalization", "BatchNormalization", "Sigmoid",
               "Tanh", "Gelu", "Clip", "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice",
               "QuantizeLinear", "DequantizeLinear"]

# Why tests fail: (pattern searched in "test name: reason", explanation, whether the test is
# outside what tvm-aie claims). Each checked by hand, in TVM 0.27's ONNX importer or in tvm-aie.
CAUSES = [
    (r"e4m3fn|e5m2|float4e2m1|_u?int[24]:",
     "float8, float4, int4 or int2 quantisation: TVM 0.27's importer has none of these types. "
     "tvm-aie claims int8 QDQ (int16 and uint8 also pass on the CPU).", True),
    (r"blocked", "blocked quantisation (one scale per block of an axis): TVM 0.27's importer "
     "raises 'not supported yet'. tvm-aie claims per-tensor and per-axis scales.", True),
    (r"training_mode", "batch-norm in training mode (normalise with the batch's statistics): TVM "
     "0.27's importer ignores `training_mode` and normalises with the running statistics; "
     "tvm-aie compiles models for inference.", True),
    (r"with_argmax", "MaxPool's optional second output (the argmax Indices): TVM 0.27's importer "
     "converts only the pooled values.", False),
    (r"Reshape requires the input new shape|Dynamic Split", "the shape or split sizes are a graph "
     "input, known only at run time: TVM 0.27's importer needs them constant (they are in real "
     "models; with constant weights these tests pass).", False),
    (r"split_indices must be sorted", "a split into zero-size parts: TVM's split rejects the "
     "repeated split index.", False),
    (r"MatchCast", "Reshape with allowzero=1 and a 0 in the shape (an empty tensor): TVM 0.27's "
     "importer fails on the shape it cannot prove.", False),
]


def cause(name: str, reason: str):
    """The entry of :data:`CAUSES` that explains a failure, or None."""
    return next((c for c in CAUSES if re.search(c[0], f"{name}: {reason}")), None)


def outside_claim(name: str, run: dict) -> bool:
    """Whether ``run`` (a result of :func:`run_node_tests`) failed on a variant tvm-aie does not
    claim to compile."""
    found = cause(name, run["reason"]) if run["status"] != "pass" else None
    return found is not None and found[2]


def _numpy(value) -> list:
    """A VM result (tensor, or tuple of them) as a flat list of numpy arrays."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [a for v in value for a in _numpy(v)]


def _graph_inputs(model: onnx.ModelProto) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


class AieBackendRep(BackendRep):
    """A compiled model; ``offloaded`` says whether any of it runs on the array."""

    def __init__(self, ex):
        self.ex = ex
        self.offloaded = bool(report(ex).subgraphs)

    def run(self, inputs, **kwargs):  # pylint: disable=unused-argument
        vm = tvm.relax.VirtualMachine(self.ex, tvm.cpu())
        return tuple(_numpy(vm["main"](*[tvm.runtime.tensor(np.asarray(x)) for x in inputs])))


class _ConstantWeightsRep(BackendRep):
    """Compiles at the first ``run``, when the inputs to bind as constants are known."""

    def __init__(self, model: onnx.ModelProto, target):
        self.model, self.target, self.compiled = model, target, None

    def run(self, inputs, **kwargs):  # pylint: disable=unused-argument
        if self.compiled is None:
            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            names = _graph_inputs(model)
            for name, value in zip(names[1:], inputs[1:]):
                model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            keep = [i for i in model.graph.input if i.name not in names[1:]]
            del model.graph.input[:]
            model.graph.input.extend(keep)
            self.compiled = AieBackendRep(build(load_onnx(model), target=self.target))
        return self.compiled.run(inputs[:1])

    @property
    def offloaded(self) -> bool:
        return self.compiled is not None and self.compiled.offloaded


class AieBackend(Backend):
    """ONNX backend: :func:`tvm_aie.load_onnx` then :func:`tvm_aie.build` for ``target``."""

    target = "aie"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return AieBackendRep(build(load_onnx(model), target=cls.target))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"  # the host; the array is reached through the target


class AieConstantWeightsBackend(AieBackend):
    """As :class:`AieBackend`, with every input but the first bound as a constant."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs):
        Backend.prepare(model, device, **kwargs)
        return _ConstantWeightsRep(model, cls.target)


def node_tests(ops=CLAIMED_OPS) -> dict[str, list[str]]:
    """ONNX's node tests of each op in ``ops``: those whose model is that single node. The
    ``_expanded`` variants are left out: they run the op's function body (ReduceMean, Pow, ...),
    which tests those ops, not this one."""
    from onnx.backend.test.loader import load_model_tests  # pylint: disable=import-outside-toplevel

    tests = {op: [] for op in ops}
    for case in load_model_tests(kind="node"):
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].op_type in tests and "_expanded" not in case.name:
            tests[nodes[0].op_type].append(case.name)
    return tests


def _reason(err: BaseException) -> str:
    """One line saying why a test failed: the message's first line, and from numpy's mismatch
    report the worst error or the shapes that differ."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    detail = [line for line in lines if line.startswith(("Max absolute difference", "(shapes"))]
    return f"{type(err).__name__}: {'; '.join(lines[:1] + detail)}"[:240]


class _Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcomes = {}

    def addSuccess(self, test):  # noqa: N802  unittest's names
        self.outcomes[test._testMethodName] = ("pass", "")

    def addFailure(self, test, err):  # noqa: N802
        self.outcomes[test._testMethodName] = ("fail", _reason(err[1]))

    addError = addFailure


def run_node_tests(names: list[str], backend=AieBackend) -> dict[str, dict]:
    """Run the named node tests through ``onnx.backend.test.BackendTest`` with ``backend``.

    Returns name -> {"status": "pass" or "fail", "reason": one line, "offloaded": whether any of
    the model ran on the array}.
    """
    import onnx.backend.test  # pylint: disable=import-outside-toplevel

    reps = {}

    class Recording(backend):  # remembers what it compiled, to tell what ran on the array
        @classmethod
        def prepare(cls, model, device="CPU", **kwargs):
            reps[model.graph.name] = rep = super().prepare(model, device, **kwargs)
            return rep

    runner = onnx.backend.test.BackendTest(Recording, __name__)
    runner.include("^(" + "|".join(map(re.escape, names)) + ")_cpu$")
    result = _Result()
    runner.test_suite.run(result)
    out = {}
    for method, (status, reason) in result.outcomes.items():
        name = method[:-len("_cpu")]
        rep = reps.get(name)
        out[name] = {"status": status, "reason": reason,
                     "offloaded": bool(rep is not None and rep.offloaded)}
    return out
