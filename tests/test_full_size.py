"""Full-size networks at 224 through the public path: ResNet-18 and MobileNetV2 in int8 QDQ built
for aie-ml/vek280, run on the simulator, bit-exact with the integer reference; ViT-Tiny's
functions the codegen cannot compile yet run on the CPU and the model still builds and runs."""

import logging

import numpy as np
import pytest
import tvm

import tvm_aie
from tvm_aie import zoo
from tvm_aie.reference import build_reference


def _run(ex, x):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("name, share", [("resnet18", 1.0), ("mobilenet_v2", 0.99)])
def test_int8_cnn_at_224_on_the_array_bit_exact(name, share):
    """ResNet-18: every conv on the array (its 3x3 convs past layer 2 stream their weights from
    DDR, projection shortcuts are memory-tile maps), the padded stem max-pool on the CPU; the
    report counts each program's configuration, as the model is several programs."""
    model = zoo.onnx_model(name, quant="int8")
    mod = tvm_aie.load_onnx(model)
    ex = tvm_aie.build(mod, target="aie-ml/vek280")
    rep = tvm_aie.report(ex)
    assert rep.offloaded_macs >= share * zoo.macs(model)
    assert rep.reconfigures and rep.latency_ns > sum(s.latency_ns for s in rep.subgraphs)
    x = zoo.sample_input(name)
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(mod), x))


def test_vit_tiny_functions_the_codegen_cannot_compile_run_on_the_cpu(caplog):
    model = zoo.onnx_model("vit_tiny", quant="int8")
    with caplog.at_level(logging.WARNING, logger="tvm_aie"):
        ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie-ml/vek280")
    assert "stays on the CPU: the array cannot run it as partitioned" in caplog.text
    assert tvm_aie.report(ex).offloaded_share > 0.5
    x = zoo.sample_input("vit_tiny")
    ort = zoo.run_onnxruntime(model, x)
    llvm = _run(tvm.compile(tvm_aie.load_onnx(model), target="llvm"), x)
    step = zoo.output_scale(model)  # no further from onnxruntime than TVM's llvm build, + 1 step
    assert np.abs(_run(ex, x) - ort).max() <= np.abs(llvm - ort).max() + step * 1.001
