"""Every device of the catalog builds and runs the jet-tagging MLP (fp32 and int8) and an int8
dense 512x512x512, against TVM on the CPU (fp32) and the integer reference (int8, bit-exact)."""

import logging
import pathlib
import tempfile

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.offload import MANIFEST_FUNC
from tvm_aie.reference import build_reference
from tvm_aie.runtime import load_program
from tvm_aie.sim import simulate
from tvm_aie.sim.workloads import dense_program
from tvm_aie.target import device_tags, get_device

TAGS = sorted(set(device_tags()) - {"aie"})


def _run(ex, x: np.ndarray) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _dense_int8(m: int, k: int, n: int) -> tuple[onnx.ModelProto, np.ndarray]:
    """One dense layer ``x @ w + b`` quantised to int8 QDQ by onnxruntime, and an input."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(512)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    b = (rng.standard_normal(n) * 0.1).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["y"])]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [m, k])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    class Reader:
        feeds = iter([{"x": rng.standard_normal((m, k)).astype(np.float32)}])

        def get_next(self):
            return next(self.feeds, None)

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = pathlib.Path(tmp, "f.onnx"), pathlib.Path(tmp, "q.onnx")
            onnx.save(model, src)
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8)
            qmodel = onnx.load(dst)
    finally:
        logging.disable(previous)
    return qmodel, rng.standard_normal((m, k)).astype(np.float32)


def _check(model: onnx.ModelProto, x: np.ndarray, tag: str, int8: bool, io: str = "ddr"):
    ex = tvm_aie.build(from_onnx(model, keep_params_in_input=False), target=tag, io=io)
    y = _run(ex, x)
    if int8:
        ref = _run(build_reference(from_onnx(model, keep_params_in_input=False)), x)
        np.testing.assert_array_equal(y, ref)
    else:
        ref = _run(tvm.compile(from_onnx(model, keep_params_in_input=False), target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(ref)))
    rep = tvm_aie.report(ex)
    assert rep.device == get_device(tag).name
    assert rep.offloaded_share == 1.0
    return rep, ex


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("quant", [None, "int8"])
def test_jet_mlp_runs_on_every_device(tag, quant):
    _check(zoo.onnx_model("jet_mlp", quant=quant), zoo.sample_input("jet_mlp"), tag,
           quant == "int8")


@pytest.mark.parametrize("tag", TAGS)
def test_int8_dense_512_runs_on_every_device(tag):
    """AIE (VCK190) through its PL streams: its shim DMA BD is linear, and the K slices of the
    cascade read 512 rows apart, more BDs than a channel has (a ResourceError from DDR)."""
    model, x = _dense_int8(512, 512, 512)
    rep, _ = _check(model, x, tag, True, io="pl" if tag == "aie/vck190" else "ddr")
    assert sum(s.macs for s in rep.subgraphs) == 512 ** 3


def test_int8_dense_through_pl_streams_is_bit_exact():
    """``build(..., io="pl")``: the layer's input and output cross the shims' PL stream ports
    instead of DMA from DDR, with outputs bit-exact against the integer reference; the DDR-fed
    and PL-fed programs of the layer compute the same bytes."""
    model, x = _dense_int8(64, 512, 256)
    rep, ex = _check(model, x, "aie-ml/vek280", True, io="pl")
    assert sum(s.macs for s in rep.subgraphs) == 64 * 512 * 256
    programs = list(tvm.relax.VirtualMachine(ex, tvm.cpu())[MANIFEST_FUNC]())[1:]
    assert {t.io for blob in programs for t in load_program(blob).ddr} == {"pl"}
    ddr, pl = (dense_program(64, 512, 256, 2, 4, tm=16, io=io) for io in ("ddr", "pl"))
    assert {t.io for t in pl.ddr} == {"pl"} and pl.meta["io"] == "pl"
    x8 = {"input": np.random.default_rng(1).integers(-128, 128, (64, 512), dtype=np.int8)}
    np.testing.assert_array_equal(simulate(pl, x8).outputs["output"],
                                  simulate(ddr, x8).outputs["output"])
    with pytest.raises(ValueError, match="npu1 has no PL interface"):
        tvm_aie.build(from_onnx(model, keep_params_in_input=False), target="aie-ml/npu1", io="pl")
