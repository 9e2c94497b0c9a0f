"""Checks several test files share (imported as ``checks``: pytest puts tests/ on the path)."""

import numpy as np
import tvm

from tvm_aie import zoo
from tvm_aie.reference import build_reference


def assert_matches_onnxruntime(model, mod, y: np.ndarray, x: np.ndarray, quant: str | None):
    """``y``, what the AIE build of ``mod`` (imported from ``model``) gives for ``x``: int8
    bit-exact with the integer CPU reference and within one output step of onnxruntime; fp32
    within 1e-4 of onnxruntime's largest output."""
    ort = zoo.run_onnxruntime(model, x)
    if quant:
        ref = tvm.relax.VirtualMachine(build_reference(mod), tvm.cpu())["main"](
            tvm.runtime.tensor(x)).numpy()
        np.testing.assert_array_equal(y, ref)
        assert np.abs(y - ort).max() <= zoo.output_scale(model) * (1 + 1e-4)
    else:
        assert np.abs(y - ort).max() <= 1e-4 * np.abs(ort).max()
