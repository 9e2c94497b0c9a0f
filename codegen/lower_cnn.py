"""Lowering: a conv chain, a flatten and a dense head -> one AIE program (a whole CNN on-chip).

The two parts are lowered as :mod:`~tvm_aie.codegen.lower_conv` and
:mod:`~tvm_aie.codegen.lower` do, on one placement (the dense head's columns follow the conv
part's), with one change at the seam: the conv part's last layer writes its blocks, with the 4-D
patterns it would use for the DDR output, into a ``[m_pad, k_pad]`` buffer in the memory tile
under the dense head's first column. Those patterns put the feature map in NCHW order, which *is*
the flattened row (the flatten moves no data of its own); once every conv writer has released
the buffer's lock, each cascade stage of the first dense layer reads its K slice from it with the
n-D pattern it would use on DDR. The buffer starts zeroed, so the K padding reads zeros (the
padded weight rows are zero too, and fp32 ``0 * 0`` keeps the sums exact).
"""

from __future__ import annotations

import numpy as np

from . import fifo as fifos
from .lower import _DenseChainLowering, dense_shapes, k_slices
from .lower_conv import _ConvChainLowering, conv_shapes
from .place import place_layers
from .program import LockOp, Program
from .resources import TileResources


def lower_cnn(name: str, convs: list, conv_layouts: list, flatten, denses: list,
              dense_layouts: list, device) -> Program:
    """One AIE program for ``convs`` -> ``flatten`` -> ``denses`` (see the module docstring)."""
    program = Program(name=name, device=device.name)
    res = TileResources(program, device, device.first_compute_row)
    placement = place_layers(conv_shapes(convs, conv_layouts) +
                             dense_shapes(denses, dense_layouts), device)
    head = dense_layouts[0]
    memtile = (placement[len(convs)][0][0][0], 1)
    tag = f"{flatten.name}.row"
    program.constants[tag] = np.zeros((head.m_pad, head.k_pad), denses[0].in_dtype)
    row = res.buffer(tag, memtile, [head.m_pad, head.k_pad], denses[0].in_dtype,
                     initial=tag).name
    full = res.lock(f"{tag}.full", memtile, init=0).name
    writers = conv_layouts[-1].n_par

    def sink(offset, sizes, strides):
        return fifos.MemtileEndpoint(row, offset, sizes, strides, release=LockOp(full, 1))

    conv = _ConvChainLowering(convs, conv_layouts, res, placement[:len(convs)])
    conv.run(sink)
    dense = _DenseChainLowering(denses, dense_layouts, res, placement[len(convs):], "ddr")
    # Readers take the writers' count and give it back, so every K slice finds it.
    dense.run(k_slices(head, row, fifos.MemtileEndpoint, acquire=LockOp(full, writers),
                       release=LockOp(full, writers)))
    program.tiles = res.tile_specs()
    conv_meta, dense_meta = conv.meta(), dense.meta()
    seam = f"{convs[-1].name} -> {flatten.name} -> {denses[0].name} (flattened in memory tile " \
        f"{memtile[0]},{memtile[1]})"
    program.meta = {
        **dense_meta,
        "precision": convs[0].precision,
        "macs": conv_meta["macs"] + dense_meta["macs"],
        "padded_macs": conv_meta["padded_macs"] + dense_meta["padded_macs"],
        "layers": conv_meta["layers"] + dense_meta["layers"],
        "onchip_intermediates": conv_meta["onchip_intermediates"] + [seam] +
        dense_meta["onchip_intermediates"],
    }
    return program
