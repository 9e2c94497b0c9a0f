"""Standalone element-wise layers on the array, as TVM's ONNX importer writes them: ReLU, leaky
ReLU, hard swish, hard sigmoid, SiLU (``x * sigmoid(x)``), Clip, tanh-form GELU and log softmax
of one input, Sub and Div of two tensors of one shape. Each runs on the array (the report's
layers say so) and matches TVM on the CPU: fp32 within 1e-5 of the largest output; int8 (a
256-entry table; Sub in integers) and int16 (float32 on the tile) bit-exact with
:mod:`tvm_aie.reference` and within one output step of onnxruntime."""

import numpy as np
import onnx
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import tvm_aie
from tvm_aie.reference import build_reference

# ONNX op -> (the report's op, opset, attributes)
UNARY = {"Relu": ("relu", 13, {}), "LeakyRelu": ("leakyrelu", 13, {"alpha": 0.1}),
         "HardSwish": ("hardswish", 14, {}),
         "HardSigmoid": ("hardsigmoid", 13, {"alpha": 0.3, "beta": 0.4}),
         "SiLU": ("silu", 13, {}), "Clip": ("clip", 13, {}),
         "Gelu": ("gelu_tanh", 20, {"approximate": "tanh"}),
         "LogSoftmax": ("log_softmax", 13, {"axis": -1})}
BINARY = {"Sub": "sub", "Div": "div"}
S_IN, S_OUT = {"int8": 0.05, "int16": 0.0004}, {"int8": 0.03, "int16": 0.0003}
QTYPE = {"int8": TensorProto.INT8, "int16": TensorProto.INT16}


def _qdq(nodes, inits, name, quant, scale, zp):
    """``name`` quantised and dequantised (onnxruntime's QDQ around an op's input or output)."""
    inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
              helper.make_tensor(f"{name}_z", QTYPE[quant], [], [zp])]
    nodes += [helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
              helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                               [f"{name}_dq"])]
    return f"{name}_dq"


def op_model(op: str, shape, quant=None) -> onnx.ModelProto:
    """``y = op(x[, x2])``, in fp32 or between QDQ pairs (``quant``: int8 or int16)."""
    names = ["x", "x2"] if op in BINARY else ["x"]
    nodes, inits = [], []
    ins = [_qdq(nodes, inits, n, quant, S_IN[quant] * (1 + i), 3 - 7 * i) if quant else n
           for i, n in enumerate(names)]
    out = "f" if quant else "y"
    _, opset, attrs = UNARY.get(op, (None, 21, {}))
    if op == "SiLU":
        nodes += [helper.make_node("Sigmoid", ins, ["sig"]),
                  helper.make_node("Mul", [ins[0], "sig"], [out])]
    elif op == "Clip":
        inits += [numpy_helper.from_array(np.array(v, np.float32), n)
                  for n, v in (("lo", -1.0), ("hi", 2.5))]
        nodes.append(helper.make_node("Clip", ins + ["lo", "hi"], [out]))
    else:
        nodes.append(helper.make_node(op, ins, [out], **attrs))
    if quant:
        nodes.append(helper.make_node("Identity", [_qdq(nodes, inits, out, quant, S_OUT[quant],
                                                        -5)], ["y"]))
    graph = helper.make_graph(
        nodes, op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 21))])


def _inputs(op, shape, seed, scale):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, scale, shape).astype(np.float32) for _ in range(2 if op in BINARY else 1)]
    if op == "Div":  # a divisor away from 0
        xs[1] = np.where(xs[1] < 0, xs[1] - 0.5, xs[1] + 0.5).astype(np.float32)
    return xs


def _run(ex, xs):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](
        *(tvm.runtime.tensor(x) for x in xs)).numpy()


def _onnxruntime(model, xs):
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(["x", "x2"], xs)))[0]


def _ops(ex) -> list:
    return [layer["op"] for s in tvm_aie.report(ex).subgraphs for layer in s.layers]


def check_op(op, shape, quant, seed, device="aie"):
    model = op_model(op, shape, quant)
    mod = tvm_aie.load_onnx(model)
    xs = _inputs(op, shape, seed, 3.0 if quant != "int16" else 0.03)
    ex = tvm_aie.build(mod, target=device)
    y = _run(ex, xs)
    kind = BINARY.get(op) or UNARY[op][0]
    assert _ops(ex) == ["lut" if quant == "int8" and op not in BINARY else kind]
    if quant:
        np.testing.assert_array_equal(y, _run(build_reference(mod, device=device), xs))
        assert np.abs(y - _onnxruntime(model, xs)).max() <= S_OUT[quant] * 1.001
    else:
        ref = _run(tvm.compile(mod, target="llvm"), xs)
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


@settings(max_examples=14, deadline=None)
@given(st.sampled_from(sorted(UNARY) + sorted(BINARY)),
       st.lists(st.integers(1, 9), min_size=1, max_size=3), st.integers(0, 20))
def test_fp32_activations_run_on_the_array(op, shape, seed):
    check_op(op, shape, None, seed)


@pytest.mark.parametrize("op", sorted(UNARY) + sorted(BINARY))
def test_every_fp32_op_runs_on_the_array(op):
    check_op(op, [3, 2, 7], None, 1)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(sorted(set(UNARY) - {"LogSoftmax"}) + ["Sub"]),
       st.lists(st.integers(1, 9), min_size=1, max_size=3), st.sampled_from(["int8", "int16"]),
       st.integers(0, 20))
def test_qdq_activations_run_on_the_array(op, shape, quant, seed):
    check_op(op, shape, quant, seed)


@pytest.mark.parametrize("op", ["Relu", "HardSwish", "Div"])
def test_cycles_follow_the_catalogs_vector_facts(op):
    """A block's cycles are the kernel's vector passes at the catalog's fp32 rates: AIE-ML adds
    on 16 lanes and emulates each multiply pass with 6 bf16 products (UG1603)."""
    from tvm_aie.sim.kernels import CALL_OVERHEAD  # pylint: disable=import-outside-toplevel
    from tvm_aie.sim.kernels_rows import MUL_PASSES, PASSES  # pylint: disable=C0415

    kind = BINARY.get(op) or UNARY[op][0]
    ex = tvm_aie.build(tvm_aie.load_onnx(op_model(op, [4, 40])), target="aie-ml/vek280")
    ((layer,),) = [s.layers for s in tvm_aie.report(ex).subgraphs]
    muls, others = MUL_PASSES[kind], PASSES[kind] - MUL_PASSES[kind]
    assert layer["kernel_cycles_per_block"] == \
        CALL_OVERHEAD + -(-layer["config"]["tr"] * 40 // 16) * (others + 6 * muls)


def test_per_channel_affine_clip_is_no_hard_sigmoid(caplog):
    """A batch norm's per-channel ``x * a + b`` then ReLU6 (MobileNetV2 after a conv left on the
    CPU) has the shape of HardSigmoid's chain but not its scalar constants: the partitioner
    rejects the chain (the codegen used to fail on it, falling back with a warning) and the clip
    alone runs on the array."""
    c = 6
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, c, 1, 1)).astype(np.float32), n)
             for n in ("a", "b")]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Add", ["m", "b"], ["s"]),
         helper.make_node("Clip", ["s", "lo", "hi"], ["y"])], "bn_relu6",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, c, 4, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, c, 4, 4))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(tvm_aie.load_onnx(model))
    assert "cannot run it as partitioned" not in caplog.text
    assert [layer["op"] for s in tvm_aie.report(ex).subgraphs for layer in s.layers] == ["clip"]
    x = rng.standard_normal((1, c, 4, 4)).astype(np.float32)
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    a, b = (onnx.numpy_helper.to_array(t) for t in inits[:2])
    np.testing.assert_allclose(y, np.clip(x * a + b, 0, 6), rtol=1e-6, atol=1e-6)
