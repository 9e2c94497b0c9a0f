"""Conv programs over a batch of images: the layers run as a pipeline over the images.

A batch-N conv/pool/concat/slice/flatten subgraph is one AIE program that takes ``[N, C, H, W]``
from DDR, keeps its weights resident and loops over the images; each memory-tile map has two
copies (ping-pong) when the tile has room, so layer i works on image n+1 while layer i+1 works on
image n. Checked like the batch-1 tests (the helpers of ``test_conv2d``): fp32 as TVM on the CPU,
int8 bit-exact with the integer CPU reference; the zoo CNNs against onnxruntime; and the report's
steady-state interval per image, measured by the simulator, clearly below one image's latency.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from checks import assert_matches_onnxruntime
from test_conv2d import _SETTINGS, LENET_ISH, _run, check_model, conv_specs

import tvm_aie
from tvm_aie import zoo
from tvm_aie.schedules.conv2d import ConvConfig

DEVICE = "aie-ml/vek280"
FAST = _SETTINGS.__class__(parent=_SETTINGS, max_examples=4)


def _one_program(rep, batch: int):
    (sub,) = rep.subgraphs
    assert rep.offloaded_share == 1.0 and sub.batch == batch
    assert sub.interval_cycles is not None and 0 < sub.interval_cycles < sub.cycles
    return sub


@FAST
@given(conv_specs(int8=False), st.integers(2, 4), st.integers(0, 100))
def test_fp32_conv_batch_matches_cpu_over_shapes(case, batch, seed):
    shape, spec = case
    _one_program(check_model(shape, [spec], int8=False, seed=seed, batch=batch), batch)


@FAST
@given(conv_specs(int8=True), st.integers(2, 4), st.integers(0, 100))
def test_int8_conv_batch_bit_exact_over_shapes(case, batch, seed):
    shape, spec = case
    _one_program(check_model(shape, [spec], int8=True, seed=seed, batch=batch), batch)


@pytest.mark.parametrize("int8", [False, True])
def test_chain_with_flatten_and_dense_head_is_one_program(int8):
    """Two convs with pools, a flatten and a dense head with one row per image: every map of
    the batch goes through two-copy memory-tile images, the head reads the flattened rows."""
    sub = _one_program(check_model((3, 12, 12), LENET_ISH, int8, head=5, head_pool=False,
                                   batch=3), 3)
    assert sub.image_buffers == {"conv0": 2, "conv1": 2}
    assert "conv0 -> conv1 (memory tile 1,1, ping-pong)" in sub.onchip_intermediates
    assert any("-> flatten" in edge and "dense" in edge for edge in sub.onchip_intermediates)


@pytest.mark.parametrize("int8", [False, True])
def test_residual_read_by_several_tiles_over_a_batch(int8):
    """The block's input image has four readers per image (its layer's bands and the residual
    reads of the projection's three tiles): a copy is refilled only once all are done."""
    act = "relu" if int8 else "clip"
    layers = [dict(o=12, k=1, s=1, p=0, groups=1, bias=True, bn=False, act=act, pool=False),
              dict(o=12, k=3, s=1, p=1, groups=12, bias=True, bn=False, act=act, pool=False),
              dict(o=6, k=1, s=1, p=0, groups=1, bias=True, bn=False, act=None, pool=False,
                   residual=True)]
    configs = {0: ConvConfig(th=2, n_par=2), 1: ConvConfig(th=4, n_par=3),
               2: ConvConfig(th=1, n_par=3)}
    sub = _one_program(check_model((6, 8, 8), layers, int8, configs=configs, batch=3), 3)
    assert "input -> conv2 (skip connection" in sub.onchip_intermediates[-1]


@pytest.mark.parametrize("int8", [False, True])
def test_slice_between_convs_over_a_batch(int8):
    """The producer's blocks fill a two-copy buffer of its whole map; the slice's pattern reads
    each image out of it into the next conv's image."""
    layers = [dict(o=8, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False,
                   slice=([1, 2], [2, 1], [7, 8], [1, 2])),
              dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False, act=None, pool=False)]
    sub = _one_program(check_model((3, 9, 9), layers, int8, batch=2,
                                   configs={0: ConvConfig(th=3, n_par=2)}), 2)
    assert sub.onchip_intermediates[0].startswith("conv0 -> slice1 (sliced by DMA) -> conv2")
    assert set(sub.image_buffers.values()) == {2}


def test_map_too_large_for_two_copies_keeps_one_buffer():
    """A 16x64x64 fp32 input image (279 KB padded) fits a 512 KB memory tile once, not twice:
    it keeps one buffer (the DMA and the layer take turns), says so, and is still exact."""
    spec = dict(o=4, k=3, s=1, p=1, groups=1, bias=True, bn=False, act="relu", pool=False)
    rep = check_model((16, 64, 64), [spec], int8=False, batch=2)
    sub = _one_program(rep, 2)
    assert sub.image_buffers == {"conv0": 1}
    assert "one memory-tile buffer (two do not fit" in str(rep)


@pytest.mark.parametrize("quant", [None, "int8"])
@pytest.mark.parametrize("name, batch", [("lenet", 4), ("mobilenet_block", 2),
                                         ("squeezenet_fire", 2)])
def test_zoo_cnn_batch_is_one_program_matching_onnxruntime(name, batch, quant):
    model = zoo.onnx_model(name, quant=quant, batch=batch)
    x = zoo.sample_input(name, batch=batch, seed=3)
    mod = tvm_aie.load_onnx(model)
    ex = tvm_aie.build(mod, target=DEVICE)
    rep = tvm_aie.report(ex)
    (sub,) = rep.subgraphs
    assert rep.offloaded_share >= 0.95 and sub.batch == batch
    assert_matches_onnxruntime(model, mod, _run(ex, x), x, quant)


@pytest.mark.parametrize("name", ["lenet", "mobilenet_block", "squeezenet_fire"])
def test_pipeline_interval_is_below_one_images_latency(name):
    """Layers overlap across images: the steady-state interval per image of a batch of 4 is well
    under the latency of one image on its own (both measured by the simulator)."""
    def build(batch):
        model = zoo.onnx_model(name, quant="int8", batch=batch)
        return tvm_aie.report(tvm_aie.build(tvm_aie.load_onnx(model), target=DEVICE))

    rep = build(4)
    (one,), (four,) = build(1).subgraphs, rep.subgraphs
    assert one.batch == 1 and one.interval_cycles is None
    assert four.interval_cycles < 0.6 * one.cycles
    assert four.cycles < 4 * one.cycles  # the batch is faster than four runs of one image
    assert f"batch of 4: {four.cycles:,} cycles for the batch, " \
        f"{four.interval_cycles:,.0f} cycles" in str(rep)
