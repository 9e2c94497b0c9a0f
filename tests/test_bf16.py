"""``tvm_aie.build(..., precision="bf16")``: fp32 dense and conv layers run on the bf16 datapath
(bf16 weights and activations, float32 accumulation and bias). Stated tolerance against fp32 on
the CPU: 2e-2 of the largest output (bf16 keeps 8 significant bits; the bundled models measure
0.3-0.6%)."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.target import get_device

BF16_TOL = 2e-2


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("name", ["jet_mlp", "lenet"])
def test_bf16_build_is_close_to_fp32(name, tmp_path):
    model = zoo.onnx_model(name)
    x = zoo.sample_input(name)
    mod = from_onnx(model, keep_params_in_input=False)
    ex = tvm_aie.build(mod, precision="bf16")
    y, ref = _run(ex, x), _run(tvm.compile(mod, target="llvm"), x)
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() <= BF16_TOL * np.abs(ref).max()
    assert not np.array_equal(y, _run(tvm_aie.build(mod), x))  # it did run in bf16
    rep = tvm_aie.report(ex)
    dev = get_device()
    for sub in rep.subgraphs:
        assert {layer["precision"] for layer in sub.layers} == {"bfloat16"}
        assert sub.peak_macs_per_cycle == sub.tiles * dev.peak_macs_per_cycle("bfloat16")
    # bf16 constants survive saving and loading the executable
    tvm_aie.save(ex, tmp_path / "m.npz")
    np.testing.assert_array_equal(_run(tvm_aie.load(tmp_path / "m.npz"), x), y)


def test_bf16_leaves_int8_layers_alone():
    model = zoo.onnx_model("jet_mlp", quant="int8")
    ex = tvm_aie.build(from_onnx(model, keep_params_in_input=False), precision="bf16")
    rep = tvm_aie.report(ex)
    assert {layer["precision"] for s in rep.subgraphs for layer in s.layers} == {"int8"}


def test_unknown_precision_is_one_clear_line():
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        tvm_aie.build(from_onnx(zoo.onnx_model("jet_mlp"), keep_params_in_input=False),
                      precision="fp8")
