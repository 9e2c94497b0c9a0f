"""The dense schedule template: legality checks, default configs, the scheduled TIR and its layout."""

import numpy as np
import pytest
import tvm

from tvm_aie.schedules import dense
from tvm_aie.schedules.dense import DenseConfig, DenseWorkload, TilingError
from tvm_aie.target import get_device

DEV = get_device("ve2802")
SHAPES = [(1, 16, 64), (4, 64, 64), (1, 1024, 1024), (1, 32, 5)]
WORKLOADS = [DenseWorkload(m, k, n, p) for m, k, n in SHAPES for p in ("int8", "float32")]


@pytest.mark.parametrize("wl", WORKLOADS, ids=str)
def test_default_config_schedules_and_reads_back(wl):
    cfg = dense.default_config(wl, DEV)
    dense.check(wl, cfg, DEV)
    sch = dense.schedule(dense.dense_prim_func(wl), wl, cfg, DEV)
    lay = dense.tile_layout(sch.mod)
    m_pad, k_pad, n_pad = dense.padded_shape(wl, cfg, DEV)
    kc, nc = k_pad // cfg.cascade, n_pad // cfg.n_par
    assert (lay.m_pad, lay.k_pad, lay.n_pad) == (m_pad, k_pad, n_pad)
    assert (lay.m_blocks, lay.n_par, lay.cascade) == (m_pad // cfg.tm, cfg.n_par, cfg.cascade)
    assert lay.mmul == DEV.mmul_shape(wl.precision)
    assert lay.a.shape == (cfg.tm, kc) and lay.a.dtype == wl.in_dtype
    assert lay.w.shape == (kc, nc) and lay.w.dtype == wl.weight_dtype
    assert lay.c.shape == (cfg.tm, nc) and lay.c.dtype == wl.acc_dtype
    assert {lay.a.scope, lay.w.scope, lay.c.scope} == {"local.aie"}
    assert (lay.double_buffer_a, lay.double_buffer_c) == (cfg.double_buffer_a, cfg.double_buffer_c)
    assert DenseConfig.from_dict(lay.config) == cfg
    assert lay.out_dtype == wl.out_dtype


def test_layout_of_a_padded_cascade():
    wl = DenseWorkload(1, 32, 5, "int8")
    cfg = DenseConfig(tm=4, n_par=1, cascade=2, double_buffer_a=True, double_buffer_c=False)
    lay = dense.tile_layout(dense.schedule(dense.dense_prim_func(wl), wl, cfg, DEV).mod)
    assert (lay.m_pad, lay.k_pad, lay.n_pad) == (4, 32, 8)
    assert (lay.a.shape, lay.w.shape, lay.c.shape) == ((4, 16), (16, 8), (4, 8))
    assert (lay.a.depth, lay.w.depth, lay.c.depth) == (2, 1, 1)


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_scheduled_tir_computes_the_matmul(precision):
    """Padding, tiling and staging must not change the result (run on the host with LLVM)."""
    wl = DenseWorkload(3, 40, 5, precision)
    sch = dense.schedule(dense.dense_prim_func(wl), wl, DenseConfig(4, 1, 2), DEV)
    lib = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "main")}),
                      target="llvm")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (3, 40)).astype(precision)
    w = rng.integers(-128, 128, (40, 5)).astype(precision)
    y = tvm.runtime.tensor(np.zeros((3, 5), wl.acc_dtype))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w), y)
    np.testing.assert_array_equal(y.numpy(), x.astype(wl.acc_dtype) @ w.astype(wl.acc_dtype))


def test_tile_layout_rejects_contradicting_tir():
    wl = DenseWorkload(4, 64, 64, "int8")
    sch = dense.schedule(dense.dense_prim_func(wl), wl, DenseConfig(4, 2, 2), DEV)
    main = sch.get_sblock("matmul")
    sch.unannotate(main, dense.ANN_CONFIG)  # annotate() keeps an existing key
    sch.annotate(main, dense.ANN_CONFIG, {**DenseConfig(4, 2, 1).to_dict(), "m": 4, "k": 64,
                                          "n": 64, "precision": "int8", "out_dtype": "int8"})
    with pytest.raises(ValueError, match="tile grid matches the config"):
        dense.tile_layout(sch.mod)
    with pytest.raises(ValueError, match="annotations missing"):
        dense.tile_layout(dense.dense_prim_func(wl))


def test_memory_error_names_the_buffer_and_the_budget():
    wl = DenseWorkload(1, 1024, 1024, "int8")
    with pytest.raises(TilingError) as err:
        dense.check(wl, DenseConfig(4, 1, 1), DEV)
    msg = str(err.value)
    assert err.value.reason == "memory" and "\n" not in msg
    assert "W does not fit" in msg and "W 1,048,576 B" in msg and "A 4,096 B ×2" in msg
    assert f"{DEV.usable_data_memory_bytes:,} B of data memory (64 KB less 1 KB stack)" in msg


@pytest.mark.parametrize("cfg, reason", [
    (DenseConfig(3, 1, 1), "shape"),  # tm not a multiple of the intrinsic M
    (DenseConfig(8, 1, 1), "padding"),  # more rows per block than the batch has
    (DenseConfig(4, 20, 20), "tiles"),  # more tiles than the device has
    (DenseConfig(4, 9, 32), "placement"),  # 2 row bands x 32 columns > 38 columns
])
def test_check_rejects(cfg, reason):
    with pytest.raises(TilingError) as err:
        dense.check(DenseWorkload(1, 4096, 4096, "int8"), cfg, DEV)
    assert err.value.reason == reason


def test_check_rejects_tiles_of_pure_padding():
    with pytest.raises(TilingError, match="only padding"):
        dense.check(DenseWorkload(1, 32, 5, "int8"), DenseConfig(4, 2, 1), DEV)


def test_default_config_keeps_pins():
    wl = DenseWorkload(1, 1024, 1024, "int8")
    cfg = dense.default_config(wl, DEV, cascade=8, tm=4)
    assert (cfg.cascade, cfg.tm) == (8, 4)
    dense.check(wl, cfg, DEV)
    with pytest.raises(TilingError, match="no legal configuration"):
        dense.default_config(wl, DEV, n_par=1, cascade=1)


def test_default_config_prefers_few_tiles_and_double_buffering():
    small = dense.default_config(DenseWorkload(4, 64, 64, "int8"), DEV)
    assert small == DenseConfig(4, 1, 1, True, True)


@pytest.mark.parametrize("wl", [DenseWorkload(4, 64, 64, "int8"),
                                DenseWorkload(1, 1024, 1024, "int8"),
                                DenseWorkload(1, 32, 5, "float32")], ids=str)
def test_space_points_are_legal(wl):
    sp = dense.space(wl, DEV)
    assert sp.configs and len(set(sp.configs)) == len(sp.configs)
    for cfg in sp.configs:
        dense.check(wl, cfg, DEV)
    assert dense.default_config(wl, DEV) in sp.configs


def test_config_round_trip():
    cfg = DenseConfig(8, 3, 2, False, True)
    assert DenseConfig.from_dict(cfg.to_dict()) == cfg
