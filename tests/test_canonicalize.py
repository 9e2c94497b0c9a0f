"""The partitioner's canonicalisation of what TVM's ONNX importer writes (tvm_aie.partition):
rewrites must keep ONNX semantics, including in the corners."""

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie.partition import partition_for_aie


def _model(nodes, inits, shape, out="y"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _same_as_cpu(model, x):
    mod = from_onnx(model, keep_params_in_input=False)
    ex = tvm_aie.build(mod)
    y = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    ref = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())["main"](
        tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1, np.abs(ref).max()))
    return y


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (6.0, 0.0), (-1.0, 1.0)])
def test_clip_after_conv_keeps_onnx_semantics(lo, hi):
    """ReLU6 fuses into the conv; an empty range (ONNX: everything becomes max) or a negative
    lower bound does not, and runs as the importer's own ops (row-wise clips on the array)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
                   {"w": w, "lo": np.float32(lo), "hi": np.float32(hi)}, [1, 3, 6, 6])
    x = rng.normal(size=(1, 3, 6, 6)).astype(np.float32)
    y = _same_as_cpu(model, x)
    if lo > hi:
        assert np.all(y == hi)
    mod = partition_for_aie(from_onnx(model, keep_params_in_input=False))
    fused = [b.value.attrs["Composite"] for f in mod.functions.values()
             if isinstance(f, relax.Function) and f.attrs is not None and "Codegen" in f.attrs
             for block in f.body.blocks for b in block.bindings
             if isinstance(b.value, relax.Function)]
    assert fused and any(c.startswith("aie.conv2d") and "clip" in c for c in fused) == (lo == 0)


def test_one_argument_call_tir_is_left_alone():
    """``auto_pad=SAME`` imports a one-argument ``call_tir`` (pad); it is not a Clip."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER",
                                     strides=[2, 2])], {"w": w}, [1, 2, 5, 5])
    _same_as_cpu(model, rng.normal(size=(1, 2, 5, 5)).astype(np.float32))
