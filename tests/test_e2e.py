"""The foundation path end to end: ONNX -> partition -> schedule -> AIE program -> simulator -> VM.

Outputs are checked against TVM on the CPU: bit-exact for int8 (the integer reference of
:mod:`tvm_aie.reference`), relative 1e-5 for fp32.
"""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_aie
from tvm_aie import zoo
from tvm_aie.codegen.relax_ext import compile_function
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.report import subgraph_report
from tvm_aie.schedules.dense import DenseConfig
from tvm_aie.target import UnknownDeviceError, get_device


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _import(model):
    return from_onnx(model, keep_params_in_input=False)


@pytest.mark.parametrize("name, quant", [("jet_mlp", None), ("jet_mlp", "int8"),
                                         ("mlp_1024", "int8")])
def test_mlp_matches_cpu(name, quant):
    model = zoo.onnx_model(name, quant=quant)
    x = zoo.sample_input(name, batch=1)
    ex = tvm_aie.build(_import(model), target="aie-ml/vek280")
    y = _run(ex, x)
    if quant == "int8":
        np.testing.assert_array_equal(y, _run(build_reference(_import(model)), x))
    else:
        ref = _run(tvm.compile(_import(model), target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    rep = tvm_aie.report(ex)
    assert rep.offloaded_share == 1.0 and len(rep.subgraphs) == 1
    sub = rep.subgraphs[0]
    assert sub.cycles > 0 and 0 < sub.efficiency <= 1 and sub.tiles >= len(sub.layers)
    assert len(sub.onchip_intermediates) == len(sub.layers) - 1  # nothing goes back to DDR
    d = rep.to_dict()
    assert d["offloaded_share"] == 1.0 and d["subgraphs"][0]["cycles"] == sub.cycles
    assert f"{sub.cycles:,}" in str(rep)


def test_mlp_1024_spans_tiles_because_its_weights_do_not_fit_one():
    ex = tvm_aie.build(_import(zoo.onnx_model("mlp_1024", quant="int8")), target="aie")
    big = [layer for layer in tvm_aie.report(ex).subgraphs[0].layers if layer["k"] == 1024]
    assert big and len(big[0]["tiles"]) * 64 * 1024 > 1024 * 1024 > 64 * 1024


def test_unsupported_op_runs_on_cpu_between_offloaded_layers(caplog):
    model = zoo.onnx_model("mlp_sin")
    x = zoo.sample_input("mlp_sin", batch=1)
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(_import(model), target="aie")
    assert any("relax.sin stays on the CPU" in r.getMessage() for r in caplog.records)
    ref = _run(tvm.compile(_import(model), target="llvm"), x)
    np.testing.assert_allclose(_run(ex, x), ref, rtol=1e-5, atol=1e-6)
    assert len(tvm_aie.report(ex).subgraphs) == 2  # the dense layers either side of Sin


def test_64x64x64_int8_kernel_is_within_15_percent_of_published_1121_cycles():
    """AMD's 64x64x64 int8 matmul on one AIE-ML tile takes 1121 cycles with 16-bit (shift-round-
    saturated) output: UG1603 / Vitis AI Engine tutorial XD100 ("AIE-ML Programming")."""
    mod = partition_for_aie(_import(zoo.dense_layer(64, 64, 64)))
    (gv, func), = [(gv, f) for gv, f in mod.functions.items()
                   if f.attrs is not None and "Codegen" in f.attrs]
    program = compile_function(func, "aie_0", get_device("aie-ml/vek280"),
                               pinned={0: DenseConfig(tm=64, n_par=1, cascade=1)})
    layer, = subgraph_report("aie_0", program).layers
    assert len(layer["tiles"]) == 1 and layer["config"]["tm"] == 64
    assert abs(layer["kernel_cycles_per_block"] - 1121) / 1121 <= 0.15


def test_single_dense_int8_is_bit_exact():
    model = zoo.dense_layer(8, 96, 40)
    x = np.random.default_rng(1).integers(-128, 128, (8, 96), dtype=np.int8)
    ex = tvm_aie.build(_import(model), target="aie")
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(_import(model)), x))


def test_tvm_compile_with_the_aie_pipeline(tmp_path):
    model = zoo.onnx_model("jet_mlp", quant="int8")
    x = zoo.sample_input("jet_mlp", batch=1)
    ex = tvm.compile(_import(model), target="aie", relax_pipeline="aie")
    ref = _run(build_reference(_import(model)), x)
    np.testing.assert_array_equal(_run(ex, x), ref)
    # Exported as a shared library and loaded again, the programs travel inside it.
    lib = tmp_path / "jet.so"
    ex.export_library(str(lib))
    np.testing.assert_array_equal(_run(tvm.runtime.load_module(str(lib)), x), ref)


def test_executable_save_load_round_trip(tmp_path):
    model = zoo.onnx_model("jet_mlp")
    x = zoo.sample_input("jet_mlp", batch=1)
    ex = tvm_aie.build(_import(model), target="aie")
    path = tmp_path / "jet.aie.npz"
    tvm_aie.executable.save(ex, str(path))
    loaded = tvm_aie.executable.load(str(path))
    np.testing.assert_array_equal(_run(loaded, x), _run(ex, x))
    assert tvm_aie.report(loaded).to_dict() == tvm_aie.report(ex).to_dict()


def test_target_resolves_after_import_tvm_alone():
    code = ("import tvm; t = tvm.target.Target('aie'); u = tvm.target.Target('aie-ml/vek280');"
            "print(t.kind.name, list(t.keys), t.attrs['model'], u.attrs['model'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["llvm", "['aie',", "'cpu']", "ve2802", "ve2802"]


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg.strip(), msg
    return msg


def test_unknown_device_is_one_clear_line():
    with pytest.raises(UnknownDeviceError) as err:
        tvm_aie.build(_import(zoo.onnx_model("jet_mlp")), target="aie-ml/vek999")
    msg = _one_line(err)
    assert "aie-ml/vek999" in msg and "aie-ml/vek280" in msg


def test_onnx_file_that_does_not_parse_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf")
    with pytest.raises(ValueError) as err:
        tvm_aie.load_onnx(str(bad))
    msg = _one_line(err)
    assert "broken.onnx" in msg and "ONNX" in msg


def test_dense_too_big_for_the_array_falls_back_naming_the_buffer(caplog):
    """A 4096x4096 fp32 weight (64 MB) fits no plan: the partitioner leaves the layer on the CPU,
    and its log line names the buffer that does not fit (it stopped the build with a
    TilingError)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4096), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            w = relax.const(np.ones((4096, 4096), "float32"))
            y = bb.emit_output(bb.emit(relax.op.matmul(x, w)))
        bb.emit_func_output(y)
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(bb.get(), target="aie")
    assert "relax.matmul stays on the CPU: does not fit the array" in caplog.text and \
        "W does not fit" in caplog.text and "64,512 B of data memory" in caplog.text
    x_in = np.ones((1, 4096), np.float32)
    assert np.allclose(_run(ex, x_in), 4096.0)


def test_model_file_round_trip_through_onnx_load(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(zoo.onnx_model("jet_mlp"), str(path))
    ex = tvm_aie.build(_import(onnx.load(str(path))), target="aie", params=None)
    x = zoo.sample_input("jet_mlp", batch=1)
    assert _run(ex, x).shape == (1, 5)


@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 20), k=st.integers(1, 200), n=st.integers(1, 150))
def test_int8_dense_bit_exact_over_shapes(m, k, n):
    model = zoo.dense_layer(m, k, n)
    x = np.random.default_rng(m * k * n).integers(-128, 128, (m, k), dtype=np.int8)
    ex = tvm_aie.build(_import(model), target="aie")
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(_import(model)), x))
