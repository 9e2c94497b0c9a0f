"""The batched-matmul kernel: one ``[m, k] @ [k, n]`` product of two activations on tile memory.

Registered into :data:`tvm_aie.sim.kernels.KERNELS` as ``"bmm"``. Unlike the dense ``matmul``, no
operand is a constant, so int8 zero points cannot be folded into a bias ahead of time: the kernel
subtracts them (``(a - a_zp) @ (b - b_zp)``, exact in int32) and requantises with
:func:`tvm_aie.quant.requantize`; float32 multiplies in float32 and applies ``scale``; bfloat16
(AIE-ML's bf16 datapath, AM020) multiplies bf16 operands into float32 accumulators, applies
``scale`` there and rounds the result to bf16, as the dense ``matmul`` does, at the catalog's
bf16 MAC rate (``macs_per_cycle``, ``mmul_shapes``).
"""

from __future__ import annotations

import math

import numpy as np

from ..quant import requantize
from .kernels import KERNELS, check_standalone_call, matmul_cycles
from .memory import tile_key


class BatchMatMul:
    name = "bmm"
    # Estimated code bytes (see MatMul.CODE_BYTES): the matmul loop plus the zero-point and scale.
    CODE_BYTES = 2560

    def __init__(self, call, tile, buffers: dict, device, link_in, link_out):
        p = call.params
        where = f"bmm on tile {tile_key(tile)}"
        self.precision = p.get("precision", "int8")
        self.variant = (self.name, self.precision)
        need = {"a", "b", "c"} | ({"mult", "shift"} if self.precision == "int8" else set())
        check_standalone_call(where, buffers, need, link_in, link_out)
        a, b, c = buffers["a"], buffers["b"], buffers["c"]
        (self.m, self.k), self.n = a.shape, b.shape[-1]
        if list(b.shape) != [self.k, self.n] or list(c.shape) != [self.m, self.n]:
            raise ValueError(f"{where}: shapes {a.shape} @ {b.shape} -> {c.shape} do not agree")
        if {a.dtype, b.dtype, c.dtype} != {self.precision}:
            raise ValueError(f"{where}: dtypes {a.dtype}, {b.dtype}, {c.dtype}, "
                             f"not {self.precision}")
        self.scale, self.out_zp = float(p.get("scale", 1.0)), int(p.get("out_zp", 0))
        self.a_zp, self.b_zp = int(p.get("a_zp", 0)), int(p.get("b_zp", 0))
        self.buffers = {role: buf.name for role, buf in buffers.items()}
        self.macs = self.m * self.k * self.n
        # The matmul's cycles (catalog MAC rate, intrinsic padding, load bound), plus one pass
        # over each int8 operand to centre it on its zero point, as both arrive at run time.
        centring = 0
        if self.precision == "int8" and (self.a_zp or self.b_zp):
            centring = math.ceil((self.m + self.n) * self.k / device.vector_load_bytes_per_cycle)
        self.cycles = matmul_cycles(device, self.precision, self.m, self.k, self.n,
                                    self.precision, False) + centring
        self.steps = (self.cycles,)

    def run(self, memories):
        yield self.cycles
        if memories is None:
            return
        view = memories.buffer_view
        a, b = view(self.buffers["a"]), view(self.buffers["b"])
        if self.precision in ("float32", "bfloat16"):  # bf16: float32 accumulation (AM020)
            out = a.astype(np.float32) @ b.astype(np.float32)
            if self.scale != 1.0:
                out = out * np.float32(self.scale)
        else:  # exact in float64 (int8 products, sums far below 2^53), int32 lanes
            acc = ((a.astype(np.float64) - self.a_zp) @ (b.astype(np.float64) - self.b_zp))
            out = requantize(acc.astype(np.int64).astype(np.int32),
                             view(self.buffers["mult"]).reshape(-1),
                             view(self.buffers["shift"]).reshape(-1), self.out_zp, False)
        view(self.buffers["c"])[...] = out


KERNELS[BatchMatMul.name] = BatchMatMul
