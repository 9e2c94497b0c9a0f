"""The PyTorch path (``torch.export`` -> ``from_exported_program`` -> ``tvm_aie.build``) gives what
the ONNX path gives, for every zoo model: same output, same share of MACs on the array."""

import numpy as np
import pytest
import tvm

import tvm_aie
from tvm_aie import zoo

torch = pytest.importorskip("torch")
zoo_torch = pytest.importorskip("tvm_aie.zoo_torch")


def _run(ex, x):
    return tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("name", zoo.names())
def test_torch_path_matches_onnx_path(name):
    x = zoo.sample_input(name, batch=2, seed=3)
    via_torch = tvm_aie.build(tvm_aie.load_torch(zoo_torch.torch_model(name), x), target="aie")
    via_onnx = tvm_aie.build(tvm_aie.load_onnx(zoo.onnx_model(name, batch=2)), target="aie")
    y, ref = _run(via_torch, x), _run(via_onnx, x)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert tvm_aie.report(via_torch).offloaded_share == tvm_aie.report(via_onnx).offloaded_share


def test_torch_module_matches_onnxruntime():
    """The PyTorch definitions are the ONNX models (so the test above compares like with like)."""
    for name in zoo.names():
        x = zoo.sample_input(name, batch=2)
        with torch.no_grad():
            y = zoo_torch.torch_model(name)(torch.from_numpy(x)).numpy()
        ref = zoo.run_onnxruntime(zoo.onnx_model(name, batch=2), x)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_batch_norm_in_training_mode_is_one_clear_line():
    x = np.zeros((1, 4, 3, 3), np.float32)
    with pytest.raises(tvm_aie.ModelLoadError, match="training mode.*eval"):
        tvm_aie.load_torch(torch.nn.BatchNorm2d(4).train(), x)
