"""The zoo's full-size networks (``zoo.LARGE``): the ONNX model computes what the PyTorch module
computes, the module exports to Relax, their sizes are the published architectures', and their
int8 QDQ models import into TVM. The other zoo loops leave them out."""

import numpy as np
import pytest

import tvm_aie
from tvm_aie import zoo

torch = pytest.importorskip("torch")
zoo_torch = pytest.importorskip("tvm_aie.zoo_torch")

# published parameter counts (torchvision, timm, BERT-base without embeddings and pooler)
PARAMS = {"resnet18": 11.69e6, "resnet50": 25.56e6, "mobilenet_v2": 3.50e6,
          "efficientnet_b0": 5.29e6, "vit_tiny": 5.7e6, "deit_small": 22.1e6, "bert_base": 85e6}
# published multiply-accumulates, in G
GMACS = {"resnet18": 1.82, "resnet50": 4.1, "mobilenet_v2": 0.30, "efficientnet_b0": 0.39,
         "vit_tiny": 1.26, "deit_small": 4.6}
# int8 quantisation taking over 20 s on 2 cores
SLOW_INT8 = {"bert_base"}


def test_large_models_are_left_out_of_the_zoo_loops():
    assert set(zoo.LARGE) == set(PARAMS)
    assert not set(zoo.names()) & set(zoo.LARGE)
    assert zoo.names(large=True) == [*zoo.names(), *zoo.LARGE]


@pytest.mark.parametrize("name", zoo.LARGE)
def test_onnx_model_matches_torch_module(name):
    x = zoo.sample_input(name, seed=5)
    ref = zoo.run_onnxruntime(zoo.onnx_model(name), x)
    with torch.no_grad():
        y = zoo_torch.torch_model(name)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert 0.5 < ref.std() < 5 and np.abs(ref).max() < 20  # the batch norms keep them in range


@pytest.mark.parametrize("name", zoo.LARGE)
def test_torch_module_exports_to_relax(name):
    mod = tvm_aie.load_torch(zoo_torch.torch_model(name), zoo.sample_input(name))
    assert "R.matmul" in mod.script()


@pytest.mark.parametrize("name", zoo.LARGE)
def test_parameter_count_is_published(name):
    count = sum(p.numel() for p in zoo_torch.torch_model(name).parameters())
    assert count == pytest.approx(PARAMS[name], rel=0.01)


@pytest.mark.parametrize("name", GMACS)
def test_macs_are_published(name):
    assert zoo.macs(zoo.onnx_model(name)) / 1e9 == pytest.approx(GMACS[name], rel=0.05)


def test_batchnorm_statistics_are_the_same_on_every_call():
    a, b = zoo.weights("mobilenet_v2"), zoo.weights("mobilenet_v2")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_INT8
                                  else n for n in zoo.LARGE])
def test_int8_model_imports_into_tvm(name):
    model = zoo.onnx_model(name, "int8")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "BatchNormalization" not in ops
    assert "R.quantize" in tvm_aie.load_onnx(model).script()
