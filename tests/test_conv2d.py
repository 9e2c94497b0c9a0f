"""The conv2d family end to end: Relax model -> partition -> schedule -> AIE program -> simulator.

Models are built here in Relax directly (fast, and the shapes are drawn by Hypothesis): fp32 as
TVM's ONNX importer writes a Conv (+ bias, batch norm, ReLU/ReLU6, MaxPool), int8 in
onnxruntime's QDQ form. int8 must be bit-exact with the integer CPU reference (and within one
quantisation step of TVM running the QDQ graph in float); fp32 within 1e-5 of the largest output
(the array sums in another order than TVM's CPU kernels).
"""

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tvm import relax

import tvm_aie
from tvm.relax.frontend.onnx import from_onnx
from tvm_aie import zoo
from tvm_aie.codegen.relax_ext import conv_workload_of
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.runtime import load_program
from tvm_aie.schedules import conv2d
from tvm_aie.schedules.dense import DenseConfig
from tvm_aie.target import get_device
from tvm_aie.tune.measure import simulate_cycles

FP32_RTOL = 1e-5


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


def _out_hw(h, w, k, s, p):
    return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def conv_model(shape, layers, int8: bool, seed=0, head=None, head_pool=True, head_perm=None,
               batch=1):
    """``x[batch, *shape]`` through ``layers`` (dicts: o, k, s, p, groups, bias, bn, act, pool and
    optionally residual: add the model's input to the layer's output, and slice: a
    ``strided_slice`` of its output), then with ``head=n`` a
    global average pool (unless not ``head_pool``), a transpose by ``head_perm`` if given, a
    flatten and a dense layer to ``n`` outputs."""
    rng = np.random.default_rng(seed)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, *shape), "float32"))
    s_in, zp = 0.05, 3
    with bb.function("main", [x]):
        with bb.dataflow():
            y, c = x, shape[0]
            if int8:
                y = bb.emit(relax.op.quantize(y, _c(s_in), _c(zp, "int8"), out_dtype="int8"))
            block_in, s_block, zp_block = y, s_in, zp
            for spec in layers:
                o, k, g = spec["o"], spec["k"], spec["groups"]
                w = rng.normal(0, 1 / np.sqrt(c // g * k * k), (o, c // g, k, k)).astype(np.float32)
                b = rng.normal(0, 0.3, o).astype(np.float32)
                conv_kw = dict(strides=spec["s"], padding=spec["p"], groups=g)
                if int8:
                    s_w = np.abs(w).reshape(o, -1).max(axis=1) / 127
                    w_q = np.round(w / s_w.reshape(-1, 1, 1, 1)).astype(np.int8)
                    xf = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")))
                    wf = bb.emit(relax.op.dequantize(_c(w_q, "int8"), _c(s_w),
                                                     _c(np.zeros(o), "int8"), axis=0))
                    y = bb.emit(relax.op.nn.conv2d(xf, wf, **conv_kw))
                    if spec["bias"]:
                        b_q = np.round(b / (s_in * s_w)).astype(np.int32)
                        bf = bb.emit(relax.op.dequantize(_c(b_q, "int32"), _c(s_in * s_w),
                                                         _c(np.zeros(o), "int32"), axis=0))
                        y = bb.emit(relax.op.add(y, relax.op.reshape(bf, (1, o, 1, 1))))
                    if spec["act"] == "relu":
                        y = bb.emit(relax.op.nn.relu(y))
                    s_out, zp_out = 4 * s_in / np.sqrt(2), int(rng.integers(-20, 20))
                    y = bb.emit(relax.op.quantize(y, _c(s_out), _c(zp_out, "int8"),
                                                  out_dtype="int8"))
                    if spec.get("residual"):
                        yf = bb.emit(relax.op.dequantize(y, _c(s_out), _c(zp_out, "int8")))
                        rf = bb.emit(relax.op.dequantize(block_in, _c(s_block),
                                                         _c(zp_block, "int8")))
                        s_out, zp_out = 1.5 * s_out, int(rng.integers(-20, 20))
                        y = bb.emit(relax.op.quantize(relax.op.add(yf, rf), _c(s_out),
                                                      _c(zp_out, "int8"), out_dtype="int8"))
                    if spec["pool"]:
                        yf = bb.emit(relax.op.dequantize(y, _c(s_out), _c(zp_out, "int8")))
                        yf = bb.emit(relax.op.nn.max_pool2d(yf, 2, 2))
                        y = bb.emit(relax.op.quantize(yf, _c(s_out), _c(zp_out, "int8"),
                                                      out_dtype="int8"))
                    s_in, zp = s_out, zp_out
                else:
                    y = bb.emit(relax.op.nn.conv2d(y, _c(w), **conv_kw))
                    if spec["bias"]:
                        y = bb.emit(relax.op.add(y, relax.op.reshape(_c(b), (1, o, 1, 1))))
                    if spec["bn"]:
                        gamma, beta = rng.uniform(0.5, 1.5, o), rng.normal(0, 0.2, o)
                        mean, var = rng.normal(0, 0.2, o), rng.uniform(0.5, 1.5, o)
                        bn = bb.emit(relax.op.nn.batch_norm(y, _c(gamma), _c(beta), _c(mean),
                                                            _c(var), axis=1, training=False))
                        y = bb.emit(relax.TupleGetItem(bn, 0))
                    if spec["act"] == "relu":
                        y = bb.emit(relax.op.nn.relu(y))
                    elif spec["act"] == "clip":
                        y = bb.emit(relax.op.clip(y, 0.0, 6.0))
                    if spec["pool"]:
                        y = bb.emit(relax.op.nn.max_pool2d(y, 2, 2))
                    if spec.get("residual"):
                        y = bb.emit(relax.op.add(y, block_in))
                if spec.get("slice"):  # (axes, begin, end, steps) of a strided_slice after it
                    y = bb.emit(relax.op.strided_slice(y, *spec["slice"]))
                    o = int(y.ty.shape[1])
                c = o
            if head:
                if head_pool:
                    if int8:
                        y = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")))
                    y = bb.emit(relax.op.mean(y, [2, 3], keepdims=True))
                    if int8:
                        s_in, zp = s_in / 2, zp // 2
                        y = bb.emit(relax.op.quantize(y, _c(s_in), _c(zp, "int8"),
                                                      out_dtype="int8"))
                c = int(np.prod([int(d) for d in list(y.ty.shape)[1:]]))
                if head_perm:  # in int8 in its own QDQ pair, as onnxruntime writes Transpose
                    if int8:
                        y = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")))
                    y = bb.emit(relax.op.permute_dims(y, head_perm))
                    if int8:
                        y = bb.emit(relax.op.quantize(y, _c(s_in), _c(zp, "int8"),
                                                      out_dtype="int8"))
                if int8:  # onnxruntime's QDQ around a Flatten: one scale in and out
                    y = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")))
                y = bb.emit(relax.op.reshape(y, (batch, c)))
                if int8:
                    y = bb.emit(relax.op.quantize(y, _c(s_in), _c(zp, "int8"), out_dtype="int8"))
                w_fc = rng.normal(0, 1 / np.sqrt(c), (c, head)).astype(np.float32)
                if int8:
                    s_w = np.abs(w_fc).max() / 127
                    wf = relax.op.dequantize(_c(np.round(w_fc / s_w), "int8"), _c(s_w),
                                             _c(0, "int8"))
                    y = bb.emit(relax.op.matmul(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")),
                                                wf))
                    s_in, zp = s_in * 2, 0
                    y = bb.emit(relax.op.quantize(y, _c(s_in), _c(zp, "int8"), out_dtype="int8"))
                else:
                    y = bb.emit(relax.op.matmul(y, _c(w_fc)))
            if int8:
                y = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp, "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), s_in


def _aie_funcs(mod):
    return [f for f in mod.functions.values() if isinstance(f, relax.Function) and
            f.attrs is not None and f.attrs.get("Codegen") == "aie"]


def check_model(shape, layers, int8, configs=None, seed=0, head=None, head_pool=True,
                head_perm=None, batch=1):
    """Build for the array (``configs``: index -> ConvConfig pinned), run, compare; return the
    report."""
    mod, out_scale = conv_model(shape, layers, int8, seed, head, head_pool, head_perm, batch)
    x = np.random.default_rng(seed + 1).normal(0, 1, (batch, *shape)).astype(np.float32)
    ex = tvm_aie.build(mod, configs=configs)
    y = _run(ex, x)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
        # the integer reference is itself within a step of TVM running the QDQ graph in float
        qdq = _run(tvm.compile(mod, target="llvm"), x)
        assert np.abs(y - qdq).max() <= out_scale * 1.001
    else:
        ref = _run(tvm.compile(mod, target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * max(1.0, np.abs(ref).max()))
    return tvm_aie.report(ex)


@st.composite
def conv_specs(draw, int8: bool):
    c = draw(st.integers(1, 8))
    h, w = draw(st.integers(3, 12)), draw(st.integers(3, 12))
    k = draw(st.sampled_from([1, 3, 5]))
    p = draw(st.integers(0, k // 2))
    s = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["standard", "depthwise", "grouped"]))
    o = c if kind == "depthwise" else draw(st.integers(1, 12))
    groups = {"standard": 1, "depthwise": c, "grouped": 2}[kind]
    assume(c % groups == 0 and o % groups == 0 and h + 2 * p >= k and w + 2 * p >= k)
    ho, wo = _out_hw(h, w, k, s, p)
    pool = draw(st.booleans()) and ho % 2 == 0 and wo % 2 == 0
    act = draw(st.sampled_from([None, "relu"] if int8 else [None, "relu", "clip"]))
    spec = {"o": o, "k": k, "s": s, "p": p, "groups": groups, "bias": draw(st.booleans()),
            "bn": not int8 and draw(st.booleans()), "act": act, "pool": pool}
    return (c, h, w), spec


_SETTINGS = settings(max_examples=10, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_SETTINGS
@given(conv_specs(int8=False), st.integers(0, 100))
def test_fp32_conv_matches_cpu_over_shapes(case, seed):
    shape, spec = case
    rep = check_model(shape, [spec], int8=False, seed=seed)
    assert rep.offloaded_share == 1.0


@_SETTINGS
@given(conv_specs(int8=True), st.integers(0, 100))
def test_int8_conv_bit_exact_over_shapes(case, seed):
    shape, spec = case
    rep = check_model(shape, [spec], int8=True, seed=seed)
    assert rep.offloaded_share == 1.0


@_SETTINGS
@given(conv_specs(int8=True), st.data())
def test_int8_conv_bit_exact_over_configs(case, data):
    """Any legal config (bands with halos, output channels over several tiles, single or double
    buffers) gives the same bits."""
    shape, spec = case
    mod, _ = conv_model(shape, [spec], int8=True)
    (layer,) = [lay for f in _aie_funcs(partition_for_aie(mod))
                for lay in tvm_aie.codegen.layers.read_layers(f)]
    wl, device = conv_workload_of(layer), get_device()
    legal = []
    for cfg in conv2d.candidates(wl, device):
        try:
            conv2d.check(wl, cfg, device)
            legal.append(cfg)
        except conv2d.TilingError:
            pass
    cfg = data.draw(st.sampled_from(legal))
    check_model(shape, [spec], int8=True, configs={0: cfg})


LENET_ISH = [dict(o=6, k=5, s=1, p=2, groups=1, bias=True, bn=False, act="relu", pool=True),
             dict(o=8, k=3, s=1, p=0, groups=1, bias=True, bn=False, act="relu", pool=True)]
MOBILENET_ISH = [dict(o=16, k=1, s=1, p=0, groups=1, bias=False, bn=True, act="clip", pool=False),
                 dict(o=16, k=3, s=2, p=1, groups=16, bias=False, bn=True, act="clip", pool=False),
                 dict(o=8, k=1, s=1, p=0, groups=1, bias=False, bn=True, act=None, pool=False)]


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("layers, shape", [(LENET_ISH, (3, 12, 12)), (MOBILENET_ISH, (8, 8, 8))])
def test_conv_chain_is_one_program_with_intermediates_on_chip(layers, shape, int8):
    if int8:  # the QDQ form: BN folded and ReLU6 as a plain ReLU, as onnxruntime leaves them
        layers = [{**spec, "bn": False, "bias": True, "act": spec["act"] and "relu"}
                  for spec in layers]
    rep = check_model(shape, layers, int8)
    (sub,) = rep.subgraphs
    assert len(sub.layers) == len(layers) and rep.offloaded_share == 1.0
    assert len(sub.onchip_intermediates) == len(layers) - 1
    assert all("memory tile" in edge for edge in sub.onchip_intermediates)
    assert "on-chip: conv0 -> conv1" in str(rep)


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("configs", [None, {0: conv2d.ConvConfig(th=2, n_par=2),
                                            1: conv2d.ConvConfig(th=4, n_par=4),
                                            2: conv2d.ConvConfig(th=2, n_par=2)}])
def test_inverted_residual_block_is_one_program(int8, configs):
    """MobileNetV2's block: expand, depthwise, project + the block's input, all on the array; the
    skip connection is read again from the memory tile that holds the block's input."""
    act = "relu" if int8 else "clip"
    layers = [dict(o=16, k=1, s=1, p=0, groups=1, bias=int8, bn=not int8, act=act, pool=False),
              dict(o=16, k=3, s=1, p=1, groups=16, bias=int8, bn=not int8, act=act, pool=False),
              dict(o=8, k=1, s=1, p=0, groups=1, bias=int8, bn=not int8, act=None, pool=False,
                   residual=True)]
    rep = check_model((8, 8, 8), layers, int8, configs=configs)
    (sub,) = rep.subgraphs
    assert len(sub.layers) == 3 and "+residual" in sub.layers[2]["summary"]
    assert "input -> conv2 (skip connection" in sub.onchip_intermediates[-1]


@pytest.mark.parametrize("cfg", [conv2d.ConvConfig(th=1, n_par=4), conv2d.ConvConfig(th=2, n_par=4),
                                 conv2d.ConvConfig(th=1, n_par=2)])
def test_residual_conv_on_several_tiles_with_short_bands_runs(cfg):
    """mobilenet_block's projection (+ the block's input) with one or two rows per band on
    several tiles: each tile's residual read takes the memory-tile image's lock only for its first
    block, so a read paced by its tile does not keep the others out (it deadlocked before)."""
    mod = from_onnx(zoo.onnx_model("mobilenet_block", quant="int8"))
    x = zoo.sample_input("mobilenet_block")
    ex = tvm_aie.build(mod, configs={2: cfg})
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(mod), x))
    (blob,) = relax.VirtualMachine(ex, tvm.cpu())["aie_programs"]()[1:]
    program = load_program(blob)
    assert conv2d.ConvConfig.from_dict(program.meta["layers"][2]["config"]) == cfg
    assert simulate_cycles(program) > 0  # the timing simulation runs too


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("cut, n_par", [
    (([1], [2], [6], [1]), 2),  # a channel range, across the producer's tile blocks
    (([1, 2, 3], [1, 1, 0], [8, 9, 7], [3, 2, 2]), 1),  # strided on every axis
    (([2, 3], [-5, 1], [100, 6], [1, 1]), 4),  # negative and clamped begins/ends (ONNX Slice)
])
def test_slice_between_convs_is_a_dma_pattern_in_one_program(cut, n_par, int8):
    """A strided_slice of a conv's output read by the next conv stays in the program: the
    producer's blocks fill a memory-tile buffer, the consumer's image is filled from it with the
    slice's offset n-D pattern (no compute); int8 bit-exact, fp32 as TVM on the CPU."""
    layers = [dict(o=8, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False,
                   slice=cut),
              dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False, act=None, pool=False)]
    rep = check_model((3, 9, 9), layers, int8, configs={0: conv2d.ConvConfig(th=3, n_par=n_par)})
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and len(sub.layers) == 2
    (edge,) = sub.onchip_intermediates
    assert edge.startswith("conv0 -> slice1 (sliced by DMA) -> conv2 (memory tile")


def test_slice_read_by_the_cpu_stays_there(caplog):
    """A slice whose reader is not on the array stays on the CPU with the reason logged."""
    mod, _ = conv_model((3, 8, 8), [dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False,
                                         act=None, pool=False, slice=([1], [1], [3], [1]))],
                        int8=False)
    with caplog.at_level("INFO", logger="tvm_aie"):
        part = partition_for_aie(mod)
    assert "strided_slice stays on the CPU: it is not read by one conv" in caplog.text
    assert len(_aie_funcs(part)) == 1


def test_chain_with_several_bands_and_tiles_per_layer():
    """Bands overlap by their halo rows and output channels spread over tiles in every layer."""
    configs = {0: conv2d.ConvConfig(th=2, n_par=3), 1: conv2d.ConvConfig(th=1, n_par=2),
               2: conv2d.ConvConfig(th=2, n_par=4, double_buffer_a=False)}
    layers = [dict(o=6, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=True),
              dict(o=6, k=3, s=1, p=1, groups=6, bias=True, bn=False, act="relu", pool=False),
              dict(o=8, k=1, s=1, p=0, groups=1, bias=True, bn=False, act=None, pool=False)]
    for int8 in (False, True):
        rep = check_model((4, 8, 8), layers, int8, configs=configs)
        assert rep.subgraphs[0].tiles == 3 + 2 + 4


def test_legality_check_names_the_buffer_that_does_not_fit():
    wl = conv2d.ConvWorkload(32, 32, 32, 64, 3, 3, (1, 1), (1, 1, 1, 1), 1, "float32")
    with pytest.raises(conv2d.TilingError, match="input band A does not fit"):
        conv2d.check(wl, conv2d.ConvConfig(th=16, n_par=1), get_device())
    big = conv2d.ConvWorkload(256, 64, 64, 8, 1, 1, (1, 1), (0, 0, 0, 0), 1, "float32")
    with pytest.raises(conv2d.TilingError, match="does not fit in a memory tile"):
        conv2d.check(big, conv2d.ConvConfig(th=1, n_par=1), get_device())


def test_scheduled_tir_gives_the_halo_band():
    wl = conv2d.ConvWorkload(4, 11, 10, 6, 3, 3, (2, 2), (1, 1, 1, 1), 2, "int8")
    cfg = conv2d.ConvConfig(th=2, n_par=2)
    lay = conv2d.tile_layout(conv2d.schedule(conv2d.conv_prim_func(wl), wl, cfg, get_device()).mod,
                             wl)
    # 2 output rows at stride 2 read 5 input rows; 5 output columns read 11 of the 12 padded ones;
    # a tile of this grouped conv receives its own group's 2 input channels
    assert lay.a.shape == (1, 2, 5, 11) and lay.w.shape == (3, 2, 3, 3)
    assert lay.c.shape == (1, 3, 2, 5) and (lay.bands, lay.n_par) == (3, 2)


@pytest.mark.parametrize("int8", [False, True])
def test_chain_too_big_for_the_array_is_split_and_stays_correct(int8):
    """Six conv layers, one column each, on a 4-column NPU: two programs run one after another,
    each keeping its own intermediates on-chip, and the report says where and why it split."""
    layers = [dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False)] * 6
    mod, out_scale = conv_model((4, 6, 6), layers, int8)
    x = np.random.default_rng(1).normal(0, 1, (1, 4, 6, 6)).astype(np.float32)
    ex = tvm_aie.build(mod, target="aie-ml/npu1")
    y = _run(ex, x)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    else:
        ref = _run(tvm.compile(mod, target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * np.abs(ref).max())
    rep = tvm_aie.report(ex)
    assert [s.name for s in rep.subgraphs] == ["aie_0.0", "aie_0.1"]
    assert [len(s.layers) for s in rep.subgraphs] == [4, 2] and rep.offloaded_share == 1.0
    first, second = rep.subgraphs
    assert "conv0..conv4 do not fit" in first.split and second.split is None
    assert len(first.onchip_intermediates) == 3 and len(second.onchip_intermediates) == 1
    assert "split (output via DDR to the next program)" in str(rep)


def pool_model(shape, kinds, int8: bool):
    """``x[1, *shape]`` through pooling layers ``kinds`` ((kind, window, stride) with kind
    max / avg / mean), each in its own QDQ pair in int8 (average pools rescale)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, *shape), "float32"))
    s, zp = 0.05, 3
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            if int8:
                y = bb.emit(relax.op.quantize(y, _c(s), _c(zp, "int8"), out_dtype="int8"))
            for kind, window, stride in kinds:
                if int8:
                    y = bb.emit(relax.op.dequantize(y, _c(s), _c(zp, "int8")))
                if kind == "mean":
                    y = bb.emit(relax.op.mean(y, [2, 3], keepdims=True))
                else:
                    pool = relax.op.nn.max_pool2d if kind == "max" else relax.op.nn.avg_pool2d
                    y = bb.emit(pool(y, window, stride))
                if int8:
                    if kind != "max":
                        s, zp = s * 0.7, zp - 5
                    y = bb.emit(relax.op.quantize(y, _c(s), _c(zp, "int8"), out_dtype="int8"))
            if int8:
                y = bb.emit(relax.op.dequantize(y, _c(s), _c(zp, "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), s


def _numpy_pools(x: np.ndarray, layers: list) -> np.ndarray:
    """The fp32 pools of :func:`pool_model` in numpy (windows without padding)."""
    for kind, k, s in layers:
        if kind == "mean":
            x = x.mean(axis=(2, 3), keepdims=True)
            continue
        ho, wo = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
        windows = np.stack([x[:, :, i:i + s * ho:s, j:j + s * wo:s]
                            for i in range(k) for j in range(k)])
        x = windows.max(axis=0) if kind == "max" else windows.mean(axis=0)
    return x


@_SETTINGS
@given(st.integers(1, 6), st.integers(2, 10), st.integers(2, 10),
       st.lists(st.sampled_from(["max", "avg", "mean"]), min_size=1, max_size=3),
       st.integers(1, 3), st.integers(1, 2), st.booleans())
def test_pooling_layers_over_shapes(c, h, w, kinds, k, s, int8):
    """Standalone max / average / global-average pools form a chain of their own on the array:
    int8 bit-exact with the reference (and within a step of float QDQ), fp32 within 1e-5."""
    layers, hh, ww = [], h, w
    for kind in kinds:
        kk = min(k, hh, ww)
        if kind == "mean":
            layers.append((kind, None, None))
            hh = ww = 1
        else:
            layers.append((kind, kk, s))
            hh, ww = (hh - kk) // s + 1, (ww - kk) // s + 1
    mod, out_scale = pool_model((c, h, w), layers, int8)
    x = np.random.default_rng(c * h * w).normal(0, 1, (1, c, h, w)).astype(np.float32)
    ex = tvm_aie.build(mod)
    y = _run(ex, x)
    # numpy, not TVM's LLVM build: TVM 0.27 emits invalid LLVM IR for some fp32 average pools
    # ("Instruction does not dominate all uses", e.g. 2x2 windows over a 4x3x6 map)
    ref = _numpy_pools(x, layers) if not int8 else _run(tvm.compile(mod, target="llvm"), x)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
        assert np.abs(y - ref).max() <= out_scale * 1.001
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * max(1.0, np.abs(ref).max()))
    (sub,) = tvm_aie.report(ex).subgraphs
    assert [layer["op"] for layer in sub.layers] == \
        ["maxpool" if kind == "max" else "avgpool" for kind, _, _ in layers]


@pytest.mark.parametrize("int8", [False, True])
def test_cnn_head_conv_global_pool_dense(int8):
    """conv -> ReLU -> global average pool -> flatten -> dense: one program; the pooled map stays
    in a memory tile, and the dense layer reads it there as the flattened row."""
    spec = dict(o=8, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False)
    rep = check_model((3, 6, 6), [spec], int8, head=4)
    (sub,) = rep.subgraphs
    assert [layer.get("op", "dense") for layer in sub.layers] == ["conv", "avgpool", "dense"]
    assert sub.onchip_intermediates == ["conv0 -> pool1 (memory tile 1,1)",
                                        "pool1 -> flatten2 -> dense3 (flattened in memory tile "
                                        "2,1)"]
    assert rep.offloaded_share == 1.0


@_SETTINGS
@given(conv_specs(int8=False), st.booleans(), st.integers(1, 20), st.integers(0, 100),
       st.sampled_from([None, (0, 2, 3, 1), (0, 1, 3, 2), (0, 3, 2, 1), (0, 2, 1, 3)]))
def test_conv_flatten_dense_is_one_program_over_shapes(case, int8, n, seed, perm):
    """Any conv layer, a flatten (after a transpose, e.g. to NHWC) and a dense layer: one program
    whose dense layer reads the conv's output from a memory tile as the flattened row (the conv
    writes it with the transposed strides; the dense reads an n-D pattern per cascade stage);
    int8 bit-exact with the reference, fp32 within 1e-5."""
    shape, spec = case
    if int8:
        spec = {**spec, "bn": False, "act": spec["act"] and "relu"}
    rep = check_model(shape, [spec], int8, seed=seed, head=n, head_pool=False, head_perm=perm)
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and "-> flatten1 -> dense2" in sub.onchip_intermediates[-1]


@pytest.mark.parametrize("quant", [None, "int8"])
def test_lenet_is_one_program_with_every_intermediate_on_chip(quant):
    """LeNet (conv, ReLU, max-pool twice, flatten, three dense layers) is one AIE program: no
    tensor between its layers goes through DDR."""
    model = zoo.onnx_model("lenet", quant=quant)
    mod = from_onnx(model)
    ex = tvm_aie.build(mod)
    x = zoo.sample_input("lenet")
    y = _run(ex, x)
    if quant:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
    else:
        ref = _run(tvm.compile(mod, target="llvm"), x)
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * max(1.0, np.abs(ref).max()))
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and sub.split is None
    assert sub.onchip_intermediates[1:] == ["conv1 -> flatten2 -> dense3 (flattened in memory "
                                            "tile 2,1)", "dense3 -> dense4", "dense4 -> dense5"]


def test_conv_too_big_for_the_array_stays_on_cpu(caplog):
    """A padded input image larger than a memory tile: the conv stays on the CPU, with why."""
    spec = dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False)
    mod, _ = conv_model((64, 66, 66), [spec], int8=False)
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(mod)
    assert "does not fit in a memory tile" in caplog.text
    x = np.random.default_rng(0).normal(0, 1, (1, 64, 66, 66)).astype(np.float32)
    np.testing.assert_allclose(_run(ex, x), _run(tvm.compile(mod, target="llvm"), x), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("quant", [None, "int8"])
def test_lenet_too_big_for_the_array_splits_with_the_flatten_kept_on_its_conv_part(quant):
    """On a 4-column NPU with the first dense layer pinned to a 4-tile cascade, LeNet is split in
    three programs: the conv part (its output, flattened, to DDR), then the dense layers; still
    correct, and the report says where and why."""
    mod = from_onnx(zoo.onnx_model("lenet", quant=quant))
    ex = tvm_aie.build(mod, target="aie-ml/npu1",
                       configs={3: DenseConfig(tm=4, n_par=1, cascade=4)})
    x = zoo.sample_input("lenet")
    y, ref = _run(ex, x), _run(build_reference(mod), x)
    if quant:
        np.testing.assert_array_equal(y, ref)
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * max(1.0, np.abs(ref).max()))
    rep = tvm_aie.report(ex)
    assert [[layer["name"] for layer in s.layers] for s in rep.subgraphs] == \
        [["conv0", "conv1"], ["dense3"], ["dense4", "dense5"]]
    assert "conv0..dense3 do not fit" in rep.subgraphs[0].split
