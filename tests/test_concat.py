"""Branches and concats of conv layers in one AIE program (a DAG, not a chain).

Models are built in Relax directly (shapes drawn by Hypothesis): an optional stem conv, conv
branches reading it (or the input), a concat of the branches on channels and a conv reading the
concat; fp32 as TVM's ONNX importer writes it, int8 in onnxruntime's QDQ form (each concat input
dequantised at its producer's scale, the concat quantised at its own, or at the branches' one).
int8 must be bit-exact with the integer CPU reference and within one quantisation step of TVM
running the QDQ graph in float; fp32 within 1e-5 of the largest output.
"""

import logging

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax

import tvm_aie
from checks import assert_matches_onnxruntime
from tvm_aie import zoo
from tvm_aie.partition import partition_for_aie
from tvm_aie.reference import build_reference
from tvm_aie.schedules.conv2d import ConvConfig

FP32_RTOL = 1e-5
_SETTINGS = settings(max_examples=6, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _run(ex, x):
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _c(a, dtype="float32"):
    return relax.const(np.asarray(a, dtype=dtype), dtype)


class _Net:
    """Emits conv layers (same padding, bias, ReLU) in fp32 or onnxruntime's QDQ int8."""

    def __init__(self, bb, rng, int8: bool):
        self.bb, self.rng, self.int8 = bb, rng, int8

    def qparams(self):
        return 0.03 + 0.03 * self.rng.random(), int(self.rng.integers(-20, 20))

    def conv(self, y, c: int, o: int, k: int, q_in=None, q_out=None):
        """``y`` (int8 at ``q_in`` = (scale, zero point) in int8) -> conv -> (int8 at q_out)."""
        bb, rng = self.bb, self.rng
        w = rng.normal(0, 1 / np.sqrt(c * k * k), (o, c, k, k)).astype(np.float32)
        b = rng.normal(0, 0.3, o).astype(np.float32)
        if not self.int8:
            y = bb.emit(relax.op.nn.conv2d(y, _c(w), padding=k // 2))
            y = bb.emit(relax.op.add(y, relax.op.reshape(_c(b), (1, o, 1, 1))))
            return bb.emit(relax.op.nn.relu(y))
        (s_in, zp_in), (s_out, zp_out) = q_in, q_out
        s_w = np.abs(w).reshape(o, -1).max(axis=1) / 127
        w_q = np.round(w / s_w.reshape(-1, 1, 1, 1)).astype(np.int8)
        xf = bb.emit(relax.op.dequantize(y, _c(s_in), _c(zp_in, "int8")))
        wf = bb.emit(relax.op.dequantize(_c(w_q, "int8"), _c(s_w), _c(np.zeros(o), "int8"),
                                         axis=0))
        y = bb.emit(relax.op.nn.conv2d(xf, wf, padding=k // 2))
        bf = bb.emit(relax.op.dequantize(_c(np.round(b / (s_in * s_w)), "int32"), _c(s_in * s_w),
                                         _c(np.zeros(o), "int32"), axis=0))
        y = bb.emit(relax.op.nn.relu(relax.op.add(y, relax.op.reshape(bf, (1, o, 1, 1)))))
        return bb.emit(relax.op.quantize(y, _c(s_out), _c(zp_out, "int8"), out_dtype="int8"))

    def concat(self, ys, qs, q_out, axis=1):
        """Concat of ``ys`` (int8 at ``qs``, each dequantised first) quantised at ``q_out``."""
        if self.int8:
            ys = [self.bb.emit(relax.op.dequantize(y, _c(s), _c(zp, "int8")))
                  for y, (s, zp) in zip(ys, qs)]
        y = self.bb.emit(relax.op.concat(ys, axis=axis))
        if self.int8:
            y = self.bb.emit(relax.op.quantize(y, _c(q_out[0]), _c(q_out[1], "int8"),
                                               out_dtype="int8"))
        return y


def branch_model(shape, stem: int | None, branches, head_k: int, int8: bool, shared: bool,
                 seed: int = 0, axis: int = 1):
    """``x[1, *shape]`` -> a stem conv to ``stem`` channels (none if None) -> one conv per
    ``(o, k)`` of ``branches``, each reading it -> concat on ``axis`` -> a ``head_k`` conv to 4
    channels. int8: ``shared`` quantises every branch at the concat's scale (the concat moves the
    int8 values as they are), else each branch has its own. Returns (module, output scale)."""
    rng = np.random.default_rng(seed)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, *shape), "float32"))
    net = _Net(bb, rng, int8)
    with bb.function("main", [x]):
        with bb.dataflow():
            y, c, q = x, shape[0], net.qparams()
            if int8:
                y = bb.emit(relax.op.quantize(x, _c(q[0]), _c(q[1], "int8"), out_dtype="int8"))
            if stem:
                q_stem = net.qparams()
                y, c, q = net.conv(y, c, stem, 1, q, q_stem), stem, q_stem
            q_cat = net.qparams()
            qs = [q_cat if shared else net.qparams() for _ in branches]
            ys = [net.conv(y, c, o, k, q, qb) for (o, k), qb in zip(branches, qs)]
            y = net.concat(ys, qs, q_cat, axis)
            c = sum(o for o, _ in branches) if axis == 1 else branches[0][0]  # same widths
            q_out = net.qparams()
            y = net.conv(y, c, 4, head_k, q_cat, q_out)
            if int8:
                y = bb.emit(relax.op.dequantize(y, _c(q_out[0]), _c(q_out[1], "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), q_out[0]


def split_model(shape, widths, int8: bool, seed: int = 0):
    """``x[1, *shape]`` sliced on channels (``x[:, 1:]``) -> a 3x3 stem conv -> ``split`` on
    channels into ``widths`` -> a conv per part -> concat -> a 1x1 conv; in int8 the slice and
    the split each between a dequantize and quantizes of one scale, as onnxruntime writes them."""
    rng = np.random.default_rng(seed)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, *shape), "float32"))
    net = _Net(bb, rng, int8)

    def qdq(y, q, op):  # op(y), between a dequantize and a quantize at q in int8
        if not int8:
            return op(y)
        y = bb.emit(relax.op.dequantize(y, _c(q[0]), _c(q[1], "int8")))
        parts = op(y)
        return [bb.emit(relax.op.quantize(p, _c(q[0]), _c(q[1], "int8"), out_dtype="int8"))
                for p in parts] if isinstance(parts, list) else \
            bb.emit(relax.op.quantize(parts, _c(q[0]), _c(q[1], "int8"), out_dtype="int8"))

    with bb.function("main", [x]):
        with bb.dataflow():
            q_in, q_stem = net.qparams(), net.qparams()
            y = bb.emit(relax.op.quantize(x, _c(q_in[0]), _c(q_in[1], "int8"),
                                          out_dtype="int8")) if int8 else x
            y = qdq(y, q_in, lambda t: bb.emit(relax.op.strided_slice(t, [1], [1], [shape[0]])))
            y = net.conv(y, shape[0] - 1, sum(widths), 3, q_in, q_stem)

            def split(t):
                tup = bb.emit(relax.op.split(t, list(np.cumsum(widths)[:-1]), axis=1))
                return [bb.emit(relax.TupleGetItem(tup, i)) for i in range(len(widths))]

            parts = qdq(y, q_stem, split)
            q_cat = net.qparams()
            qs = [net.qparams() for _ in widths]
            ys = [net.conv(p, c, 4, 1 + 2 * (i % 2), q_stem, q)
                  for i, (p, c, q) in enumerate(zip(parts, widths, qs))]
            q_out = net.qparams()
            y = net.conv(net.concat(ys, qs, q_cat), 4 * len(widths), 3, 1, q_cat, q_out)
            if int8:
                y = bb.emit(relax.op.dequantize(y, _c(q_out[0]), _c(q_out[1], "int8")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get(), q_out[0]


def check(mod, shape, int8: bool, out_scale: float, seed=1, configs=None):
    """Build for the array (``configs``: layer index -> ConvConfig pinned), run, compare (int8
    bit-exact with the reference and within a step of the QDQ graph in float, fp32 as TVM on the
    CPU); return the report."""
    x = np.random.default_rng(seed).normal(0, 1, (1, *shape)).astype(np.float32)
    ex = tvm_aie.build(mod, configs=configs)
    y, ref = _run(ex, x), _run(tvm.compile(mod, target="llvm"), x)
    if int8:
        np.testing.assert_array_equal(y, _run(build_reference(mod), x))
        assert np.abs(y - ref).max() <= out_scale * 1.001
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=FP32_RTOL * max(1.0, np.abs(ref).max()))
    return tvm_aie.report(ex)


@st.composite
def dags(draw):
    shape = (draw(st.integers(1, 6)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    stem = draw(st.one_of(st.none(), st.integers(1, 8)))
    branches = draw(st.lists(st.tuples(st.integers(1, 10), st.sampled_from([1, 3])),
                             min_size=2, max_size=4))
    return shape, stem, branches, draw(st.sampled_from([1, 3]))


@_SETTINGS
@given(dags(), st.booleans(), st.booleans(), st.integers(0, 100))
def test_branches_and_concat_are_one_program_over_shapes(dag, int8, shared, seed):
    """Any stem, 2-4 conv branches of any widths and kernels, their concat and a conv after it:
    one program, every MAC on the array, the branch edges and the concat on-chip."""
    shape, stem, branches, head_k = dag
    mod, out_scale = branch_model(shape, stem, branches, head_k, int8, shared, seed)
    rep = check(mod, shape, int8, out_scale, seed=seed + 1)
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and len(sub.layers) == (stem is not None) + \
        len(branches) + 1
    names = [layer["name"] for layer in sub.layers]
    cat = [e for e in sub.onchip_intermediates if "(concatenated by DMA)" in e]
    assert cat == [f"{' + '.join(names[-1 - len(branches):-1])} -> concat{len(names) - 1} "
                   f"(concatenated by DMA) -> {names[-1]} (memory tile "
                   f"{sub.layers[-1]['tiles'][0][0]},1)"]
    if stem:  # the stem's output is one broadcast to every branch's memory-tile image
        assert sum(e.startswith(f"{names[0]} -> ") for e in sub.onchip_intermediates) == \
            len(branches)


@pytest.mark.parametrize("int8", [False, True])
def test_concat_of_branches_on_several_tiles_each(int8):
    """Producers on several tiles (each writes its channel blocks at the concat offset plus its
    own), the stem broadcasting each tile's blocks to both branches' images, bands with halos."""
    shape = (4, 8, 8)
    mod, out_scale = branch_model(shape, 6, [(6, 1), (4, 3)], 3, int8, shared=False, seed=3)
    configs = {0: ConvConfig(th=2, n_par=2), 1: ConvConfig(th=4, n_par=3),
               2: ConvConfig(th=2, n_par=2), 3: ConvConfig(th=4, n_par=2)}
    rep = check(mod, shape, int8, out_scale, configs=configs)
    (sub,) = rep.subgraphs
    assert [len(layer["tiles"]) for layer in sub.layers] == [2, 3, 2, 2]
    assert "conv1 + conv2 -> concat3 (concatenated by DMA) -> conv4" in sub.onchip_intermediates[-1]


def test_concat_written_by_more_streams_than_a_memory_tile_takes_falls_back(caplog):
    """Four branches on two tiles each would write the concat reader's image with eight streams;
    a memory tile has six S2MM channels, and the DAG cannot be cut inside the branches: the
    function runs on the CPU, with one warning saying why, and the model is still right."""
    shape = (4, 8, 8)
    mod, _ = branch_model(shape, 6, [(4, 1), (4, 3), (4, 1), (4, 3)], 1, False, False)
    configs = {i: ConvConfig(th=8, n_par=2) for i in range(1, 5)}
    with caplog.at_level(logging.WARNING, logger="tvm_aie"):
        ex = tvm_aie.build(mod, configs=configs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stays on the CPU: the array cannot run it as partitioned: " \
        "conv6: 8 streams write its input image (concat5 of conv1 + conv2 + conv3 + conv4), a " \
        "memory tile has 6 S2MM channels" in warnings[0]
    assert not tvm_aie.report(ex).subgraphs
    x = np.random.default_rng(0).normal(0, 1, (1, *shape)).astype(np.float32)
    np.testing.assert_allclose(_run(ex, x), _run(tvm.compile(mod, target="llvm"), x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("quant", [None, "int8"])
def test_squeezenet_fire_is_one_program_matching_onnxruntime(quant):
    """The zoo's SqueezeNet (two fire modules) end to end: one program with every MAC and every
    intermediate (branches, concats) on-chip; fp32 within 1e-4 of onnxruntime, int8 bit-exact
    with the reference and within one step of onnxruntime."""
    model = zoo.onnx_model("squeezenet_fire", quant)
    mod = tvm_aie.load_onnx(model)
    x = zoo.sample_input("squeezenet_fire", seed=5)
    ex = tvm_aie.build(mod)
    assert_matches_onnxruntime(model, mod, _run(ex, x), x, quant)
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    assert rep.offloaded_macs == zoo.macs(model) and sub.split is None
    edges = sub.onchip_intermediates
    assert {"conv1 -> conv2 (memory tile 2,1)", "conv1 -> conv3 (memory tile 3,1)",
            "conv6 -> conv7 (memory tile 6,1)", "conv6 -> conv8 (memory tile 7,1)"} <= set(edges)
    assert "conv2 + conv3 -> concat4 (concatenated by DMA) -> pool5 (memory tile 4,1)" in edges
    assert "conv7 + conv8 -> concat9 (concatenated by DMA) -> conv10 (memory tile 8,1)" in edges
    assert len(edges) == 9  # every tensor between two layers


def test_squeezenet_fire_too_big_for_the_array_is_cut_between_branches():
    """On a 4-column NPU the DAG is split where one tensor is handed over (the squeeze output,
    read by both expand convs as the next program's input), never inside a fire module's
    branches; still bit-exact."""
    model = zoo.onnx_model("squeezenet_fire", "int8")
    mod = tvm_aie.load_onnx(model)
    x = zoo.sample_input("squeezenet_fire")
    ex = tvm_aie.build(mod, target="aie-ml/npu1")
    np.testing.assert_array_equal(_run(ex, x), _run(build_reference(mod), x))
    rep = tvm_aie.report(ex)
    assert [[layer["name"] for layer in s.layers] for s in rep.subgraphs] == \
        [["conv0", "conv1"], ["conv2", "conv3", "pool5", "conv6"],
         ["conv7", "conv8", "conv10", "pool11"]]
    assert rep.offloaded_share == 1.0 and "do not fit" in rep.subgraphs[0].split


@pytest.mark.parametrize("int8", [False, True])
def test_concat_on_another_axis_stays_on_the_cpu(int8, caplog):
    """A concat along H is not data movement the array does: it stays on the CPU with the reason
    logged; the branches before it are one program returning both outputs, the conv after it
    another, and the model is still correct."""
    shape = (3, 6, 6)
    mod, out_scale = branch_model(shape, 4, [(5, 1), (5, 3)], 1, int8, shared=False, axis=2)
    with caplog.at_level(logging.INFO, logger="tvm_aie"):
        rep = check(mod, shape, int8, out_scale)
    assert "relax.concat stays on the CPU: concat on axis 2" in caplog.text
    assert [len(s.layers) for s in rep.subgraphs] == [3, 1] and rep.offloaded_share == 1.0


@pytest.mark.parametrize("int8", [False, True])
def test_input_slice_and_split_into_convs_are_dma_patterns(int8):
    """The program's input sliced before its first conv (read from DDR with the slice's pattern)
    and a ``split`` whose parts feed convs (each part a slice of the producer's memory-tile
    buffer), their outputs concatenated again: one program, no CPU op between the layers."""
    shape = (5, 7, 7)
    mod, out_scale = split_model(shape, [3, 2, 4], int8)
    main = partition_for_aie(mod)["main"]
    ops = {getattr(b.value.op, "name", "") for block in main.body.blocks for b in block.bindings
           if isinstance(b.value, relax.Call)}
    assert not ops & {"relax.strided_slice", "relax.split", "relax.concat", "relax.nn.conv2d"}
    rep = check(mod, shape, int8, out_scale)
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and len(sub.layers) == 5
    edges = sub.onchip_intermediates
    assert [e.split(" (memory")[0] for e in edges] == [
        "conv1 -> slice2 (sliced by DMA) -> conv5", "conv1 -> slice3 (sliced by DMA) -> conv6",
        "conv1 -> slice4 (sliced by DMA) -> conv7",
        "conv5 + conv6 + conv7 -> concat8 (concatenated by DMA) -> conv9"]
