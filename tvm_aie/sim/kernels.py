"""Kernels: what a core computes in one call, and how many cycles the call takes.

Each kernel has a functional model (numpy on the core's buffers, bit-exact with the integer
reference through :mod:`tvm_aie.quant`) and a cycle model next to it. Kernels are looked up by the
name a :class:`KernelCall` gives, in :data:`KERNELS`; a new operator family adds its class there.
A kernel object has ``run(memories)``, the generator of one call (``memories`` None in timing
mode), and may have ``steps``: the same cycles and waits as a tuple, which timing mode replays
without making a generator per call.
A kernel may only touch buffers in its own tile's memory or in a neighbour's that the core reaches
(catalog ``core_memory_access``, checked at load): reaching further would hide a missing DMA. Each
kernel class states an estimated ``CODE_BYTES`` per ``variant`` (one compiled copy of its code),
which the load check adds into the core's program size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..quant import QMAX, requantize, requantize_add
from ..target import get_device
from .memory import tile_key

# ---- matmul cycle-model constants (kernel software, not architecture: they live with the kernel)
# Fixed cost of one call: lock handshakes, pointer and loop set-up. aie4ml passes/estimate.py
# attributes ~30 of the 53 cycles of a 16x16x16 int8 dense call to it.
CALL_OVERHEAD = 30
# The kernel computes a 2x2 group of mmul intrinsics per inner-loop iteration (Vitis tutorial XD100
# "AIE-ML Programming and Optimization", optimised kernel; mlir-aie's matmul kernels do the same),
# so one A tile is reused across two B tiles and vice versa.
GROUP = 2
# Software-pipeline fill/drain of the K loop per 2x2 output group. Calibrated: XD100's 1121 cycles
# for 64x64x64 int8 leave (1121 - 1024 - 30) / 32 groups = 2.1; aie4ml's 53 cycles for 16x16x16
# leave (53 - 16 - 30) / 2 = 3.5; 3 keeps both within 3%.
GROUP_OVERHEAD = 3
# Accumulator lane bits per precision (what a cascade carries): 32 for int8, bf16 and float32;
# int16 x int8 uses the 64-bit lanes (AM020: 512-bit accumulators as 16 x 32 or 8 x 64 bits).
ACC_BITS = {"int16xint8": 64}
# Bytes of one (A, B) element per precision.
OPERAND_BYTES = {"int8": (1, 1), "int16xint8": (2, 1), "bfloat16": (2, 2)}


def require_buffers(where: str, buffers: dict, need: set) -> None:
    """A kernel call must name every buffer its kernel reads or writes."""
    if missing := need - set(buffers):
        raise ValueError(f"{where}: missing buffers {sorted(missing)}")


def check_standalone_call(where: str, buffers: dict, need: set, link_in, link_out) -> None:
    """The checks of a kernel that works on its own tile's buffers and not on the cascade."""
    require_buffers(where, buffers, need)
    if link_in is not None or link_out is not None:
        raise ValueError(f"{where}: this kernel does not use the cascade")


def matmul_cycles(device, precision: str, m: int, k: int, n: int, out_dtype: str,
                  cascade: bool) -> int:
    """Cycles of one ``[m, k] @ [k, n]`` call on one core; ``cascade``: the accumulator leaves
    over the cascade instead of being stored (receiving one is hidden by the MAC loop).

    (Memoised per device name: a large design has hundreds of identical calls.)

    cycles = CALL_OVERHEAD + groups * GROUP_OVERHEAD + max(mac, load) + store + cascade, where

    * mac = padded MACs / macs_per_cycle[precision], the MACs padded to the intrinsic shape
      (catalog ``mmul_shapes``) since the datapath always computes whole intrinsics (AM020);
    * load = the inner loop's loads, A tiles through one of the two load units and B tiles through
      the other (each half of vector_load_bytes_per_cycle), so the busier unit bounds the loop.
      That is at least the UG1079 "Kernel Coding Bounds" rule, bytes / (2 x 32 B), and is XD100's
      accounting of the 4x16x8 loop (A and B loads counted per unit); at batch 1 the weights
      stream through one unit alone (aie4ml: ~32 B/cycle for a dense layer's weights);
    * store = exposed stores of 32-bit outputs (int32, float32): without the shift-round-saturate
      store (VST.SRS) that narrows int8/int16 results inside the MAC loop, the accumulators go out
      at vector_store_bytes_per_cycle after the loop (XD100: 1121 cycles with int16 output, 1750
      with int32);
    * cascade = the part of moving the [m, n] accumulator block over the cascade at cascade_bits
      per cycle that the MAC loop does not hide (the block leaves group by group while the next
      group computes).
    """
    return _matmul_cycles(device.name, precision, m, k, n, out_dtype, cascade)


@lru_cache(maxsize=4096)
def _matmul_cycles(device_name: str, precision: str, m: int, k: int, n: int, out_dtype: str,
                   cascade: bool) -> int:
    device = get_device(device_name)
    mm, mk, mn = device.mmul_shape(precision)
    mp, kp, np_ = (math.ceil(m / mm) * mm, math.ceil(k / mk) * mk, math.ceil(n / mn) * mn)
    mac = math.ceil(mp * kp * np_ / device.peak_macs_per_cycle(precision))
    groups = math.ceil(m / (GROUP * mm)) * math.ceil(n / (GROUP * mn))
    a_bytes, b_bytes = OPERAND_BYTES.get(precision, (4, 4))
    # GROUP A tiles and GROUP B tiles per K step, on their own load unit each
    busier = groups * kp * GROUP * max(mm * a_bytes, mn * b_bytes)
    load = math.ceil(busier / (device.vector_load_bytes_per_cycle // 2))
    body = max(mac, load)
    store = 0
    if out_dtype in ("int32", "float32") and not cascade:
        store = math.ceil(m * n * 4 / device.vector_store_bytes_per_cycle)
    casc = 0
    if cascade:
        casc = max(0, math.ceil(m * n * ACC_BITS.get(precision, 32) / device.cascade_bits) - body)
    return CALL_OVERHEAD + groups * GROUP_OVERHEAD + body + store + casc


class MatMul:
    """``c = epilogue(a[:, a_offset:a_offset+k] @ b (+ cascade in) (+ bias))``.

    int8: exact int32 accumulation; the epilogue is :func:`tvm_aie.quant.requantize` for int8/int16
    output, or the accumulator itself for int32 (ReLU as max 0). int16xint8: int16 ``a``, int8
    ``b``, int64 accumulation, requantised the same way (to int16). With ``add`` (a QDQ bias add
    after the layer) the requantised output then gets the ``addend`` constant through
    :func:`tvm_aie.quant.requantize_add`, as a conv's residual add does. float32: float32
    arithmetic; bfloat16: bf16 operands accumulated in float32, rounded to the output's dtype. With
    ``cascade_out`` the accumulator goes to the next core instead (no epilogue, no ``c``).
    """

    name = "matmul"
    # Estimated bytes of compiled code (not a measured figure): a kernel with a software-pipelined
    # 2x2-group mmul loop and its epilogue is typically 1-3 KB of AIE-ML VLIW code (mlir-aie's
    # matmul kernel objects are of this order); one copy per precision on a core.
    CODE_BYTES = 2048
    IN = {"int8": ("int8", "int8"), "int16xint8": ("int16", "int8"),
          "float32": ("float32", "float32"), "bfloat16": ("bfloat16", "bfloat16")}
    INTEGER = ("int8", "int16xint8")  # requantised by the epilogue

    def __init__(self, call, tile, buffers: dict, device, link_in, link_out):
        p = call.params
        self.precision = p.get("precision", "int8")
        self.variant = (self.name, self.precision)  # what one compiled copy of the code serves
        if self.precision not in self.IN:
            raise ValueError(f"matmul on tile {tile_key(tile)}: precision {self.precision} "
                             f"not supported (have {sorted(self.IN)})")
        self.m, self.k, self.n = int(p["m"]), int(p["k"]), int(p["n"])
        self.a_offset = int(p.get("a_offset", 0))
        self.cascade_in, self.cascade_out = bool(p.get("cascade_in")), bool(p.get("cascade_out"))
        self.relu, self.out_zp = bool(p.get("relu")), int(p.get("out_zp", 0))
        # a QDQ bias add after the requantisation: [zp, mult, shift] of the requantised output,
        # then of the ``addend`` constant's integers (tvm_aie.quant.requantize_add)
        self.add = p.get("add")
        self.out_dtype = p.get("out_dtype", "float32" if self.precision not in self.INTEGER
                               else self.IN[self.precision][0])
        self.buffers = {role: b.name for role, b in buffers.items()}
        self.link_in, self.link_out = link_in, link_out
        self._check(tile, buffers)
        self.macs = self.m * self.k * self.n
        self.cycles = matmul_cycles(device, self.precision, self.m, self.k, self.n,
                                    self.out_dtype, self.cascade_out)
        if self.add and not self.cascade_out:  # one more pass over the block, as conv2d's add
            self.cycles += math.ceil(self.m * self.n * np.dtype(self.out_dtype).itemsize /
                                     device.vector_load_bytes_per_cycle)
        # What a call yields when no data moves (timing mode): the steps of ``run`` without data.
        self.steps = ((self.cycles,) + ((link_in.pop(),) if self.cascade_in else ())
                      + ((link_out.push(None),) if self.cascade_out else ()))

    def _check(self, tile, buffers: dict) -> None:
        where = f"matmul on tile {tile_key(tile)}"
        need = {"a", "b"} | (set() if self.cascade_out else {"c"})
        if self.precision in self.INTEGER and self.out_dtype in QMAX and not self.cascade_out:
            need |= {"mult", "shift"} | ({"addend"} if self.add else set())
        require_buffers(where, buffers, need)
        a, b = buffers["a"], buffers["b"]
        if len(a.shape) != 2 or a.shape[0] != self.m or a.shape[1] < self.a_offset + self.k:
            raise ValueError(f"{where}: a {a.name} {a.shape} does not hold [{self.m}, "
                             f"{self.a_offset}+{self.k}]")
        if list(b.shape) != [self.k, self.n]:
            raise ValueError(f"{where}: b {b.name} is {b.shape}, not [{self.k}, {self.n}]")
        for buf, dtype in zip((a, b), self.IN[self.precision]):
            if buf.dtype != dtype:
                raise ValueError(f"{where}: {buf.name} is {buf.dtype}, not {dtype}")
        if "c" in buffers:
            c = buffers["c"]
            if list(c.shape) != [self.m, self.n] or c.dtype != self.out_dtype:
                raise ValueError(f"{where}: c {c.name} is {c.shape} {c.dtype}, not "
                                 f"[{self.m}, {self.n}] {self.out_dtype}")
        for role in ("bias", "mult", "shift", "addend"):
            if role in buffers and math.prod(buffers[role].shape) != self.n:
                raise ValueError(f"{where}: {role} {buffers[role].name} has "
                                 f"{buffers[role].shape}, not [{self.n}]")
        if self.cascade_in and self.link_in is None:
            raise ValueError(f"{where}: cascade_in but no cascade link ends at this tile")
        if self.cascade_out and self.link_out is None:
            raise ValueError(f"{where}: cascade_out but no cascade link starts at this tile")

    def run(self, memories):
        """The call as an agent step: compute, then exchange with the cascade, then store."""
        yield self.cycles
        acc = self._accumulate(memories) if memories is not None else None
        if self.cascade_in:
            block = yield self.link_in.pop()
            if acc is not None:
                acc = acc + block
        if self.cascade_out:
            yield self.link_out.push(acc)
        elif acc is not None:
            memories.buffer_view(self.buffers["c"])[...] = self._epilogue(memories, acc)

    def _accumulate(self, memories) -> np.ndarray:
        view = memories.buffer_view
        a = view(self.buffers["a"])[:, self.a_offset:self.a_offset + self.k]
        b = view(self.buffers["b"])
        if self.precision == "float32":
            return a @ b
        if self.precision == "bfloat16":  # bf16 operands, float32 accumulation (AM020)
            return a.astype(np.float32) @ b.astype(np.float32)
        # float64 products of int8 (int16 x int8: below 2^22) are exact and sums stay exact below
        # 2^53; BLAS keeps it fast. int32 accumulator lanes (int16xint8: int64): later additions
        # (cascade, bias) wrap as the hardware's do.
        acc = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
        return acc if self.precision == "int16xint8" else acc.astype(np.int32)

    def _epilogue(self, memories, acc) -> np.ndarray:
        view = memories.buffer_view
        if "bias" in self.buffers:
            acc = acc + view(self.buffers["bias"]).reshape(-1)
        if self.precision in self.INTEGER and self.out_dtype in QMAX:
            out = requantize(acc, view(self.buffers["mult"]).reshape(-1),
                             view(self.buffers["shift"]).reshape(-1),
                             self.add[0] if self.add else self.out_zp, self.relu, self.out_dtype)
            if self.add:
                out = requantize_add(out, *self.add[:3], view(self.buffers["addend"]).reshape(-1),
                                     *self.add[3:], self.out_zp, self.out_dtype)
            return out
        if self.relu:
            acc = np.maximum(acc, 0)
        return acc.astype(self.out_dtype)


KERNELS = {MatMul.name: MatMul}
