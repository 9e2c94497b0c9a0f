"""ONNX's backend node tests through tvm-aie's ``onnx.backend`` backend (``scripts/conformance.py``
runs them all; this runs a fast subset, one or two tests per claimed op)."""

import pytest

from tvm_aie.onnx_backend import (CLAIMED_OPS, AieBackend, AieConstantWeightsBackend, cause,
                                  node_tests, run_node_tests)

SUBSET = ["test_matmul_2d", "test_matmul_3d", "test_gemm_default_no_bias",
          "test_gemm_all_attributes", "test_relu", "test_add_bcast", "test_mul",
          "test_basic_conv_with_padding", "test_conv_with_strides_padding", "test_maxpool_2d_default", "test_averagepool_2d_pads",
          "test_globalaveragepool", "test_softmax_axis_1", "test_batchnorm_example",
          "test_sigmoid", "test_tanh", "test_gelu_default_1", "test_clip", "test_flatten_axis1",
          "test_transpose_default", "test_concat_2d_axis_0", "test_split_equal_parts_2d",
          "test_slice", "test_reshape_reduced_dims", "test_quantizelinear_axis",
          "test_dequantizelinear", "test_layer_normalization_3d_axis1_epsilon"]


@pytest.fixture(scope="module")
def claimed():
    return node_tests()


def test_subset_covers_every_claimed_op(claimed):
    assert {op for op, names in claimed.items() if set(names) & set(SUBSET)} == set(CLAIMED_OPS)


def test_subset_passes_with_constant_weights_and_dense_runs_on_the_array():
    results = run_node_tests(SUBSET, AieConstantWeightsBackend)
    assert set(results) == set(SUBSET)
    failed = {n: r["reason"] for n, r in results.items() if r["status"] != "pass"}
    assert not failed
    dense = [n for n in SUBSET if n.startswith(("test_matmul_2d", "test_gemm"))]
    assert all(results[n]["offloaded"] for n in dense)


def test_subset_as_written():
    """As ONNX writes them (operands as graph inputs); Reshape's shape is then a run-time value,
    which TVM's importer cannot take."""
    names = [n for n in SUBSET if not n.startswith("test_reshape")]
    results = run_node_tests(names, AieBackend)
    assert {n: r["reason"] for n, r in results.items() if r["status"] != "pass"} == {}


@pytest.mark.slow
def test_every_failure_of_the_full_run_has_a_known_cause(claimed):
    """A new failure (or a new kind of one) must be fixed or explained in ``CAUSES``."""
    every = [n for names in claimed.values() for n in names]
    for backend in (AieBackend, AieConstantWeightsBackend):
        results = run_node_tests(every, backend)
        unexplained = {n: r["reason"] for n, r in results.items()
                       if r["status"] != "pass" and cause(n, r["reason"]) is None}
        assert unexplained == {}
