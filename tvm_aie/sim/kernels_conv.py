"""The conv2d kernel: one band of output rows of one tile's output channels, on tile memory.

Registered into :data:`tvm_aie.sim.kernels.KERNELS` as ``"conv2d"``. The core receives a padded
input band ``a[C, th_in, w_read]`` (the DMA did the halo and padding), keeps its weights
``w[Op, C/groups, KH, KW]`` resident and writes ``c[Op, th/ph, Wo/pw]``: the convolution with
stride, then bias, activation (int8: :func:`tvm_aie.quant.requantize`, so bit-exact with the CPU
reference; int16xint8: int16 ``a``, int8 ``w``, int64 accumulator and bias, requantised the same
way to int16; float32: float32 arithmetic, ReLU or ReLU6-style ``clip(0, clip_max)``), then the
non-overlapping max-pool or the residual add of ``r[Op, th, Wo]`` (int8 and int16:
:func:`tvm_aie.quant.requantize_add`). Grouped and depthwise convs are a loop over the tile's
groups, each reading its own input channels from the band. Pooling layers use the same kernel:
an average pool is a depthwise window of constant weights, a max-pool (``kind="maxpool"``) takes
the window's maximum instead and has no weights and no epilogue (its int8 scale is unchanged).
"""

from __future__ import annotations

import math

import numpy as np

from ..quant import QMAX, requantize, requantize_add, rescale
from .kernels import CALL_OVERHEAD, KERNELS, check_standalone_call, matmul_cycles
from .memory import tile_key


def conv2d_cycles(device, precision: str, groups: int, group_size: int, cin_g: int, kh: int,
                  kw: int, th: int, wo: int, out_dtype: str, pool: tuple, residual: bool) -> int:
    """Cycles of one call: per group, the implicit-im2col matmul
    ``[th*Wo, cin_g*KH*KW] @ [cin_g*KH*KW, group_size]`` on the mmul datapath, costed by
    :func:`~tvm_aie.sim.kernels.matmul_cycles` (catalog MAC rate, intrinsic padding, vector load
    bound) with one call overhead for the whole band; the max-pool and the residual add are one
    more pass each over the block at the vector load rate. Depthwise convs (``group_size`` 1,
    K = KH*KW) pad each intrinsic heavily, which is why they run far below peak on the mmul unit.
    """
    per_group = matmul_cycles(device, precision, th * wo, cin_g * kh * kw, group_size, out_dtype,
                              False) - CALL_OVERHEAD
    passes = (pool != (1, 1)) + residual
    nbytes = groups * group_size * th * wo * np.dtype(out_dtype).itemsize
    return CALL_OVERHEAD + groups * per_group + \
        passes * math.ceil(nbytes / device.vector_load_bytes_per_cycle)


class Conv2d:
    """``c = maxpool(epilogue(conv2d(a[cin_offset:], w, stride) (+ bias)))`` for one band."""

    name = "conv2d"
    # Estimated code bytes (see MatMul.CODE_BYTES): window, channel and band loops around the mmul
    # loop, the requantising epilogue and the pooling pass, about twice the matmul kernel's.
    CODE_BYTES = 4096
    IN = {"int8": ("int8", "int8"), "int16xint8": ("int16", "int8"),
          "float32": ("float32", "float32"), "bfloat16": ("bfloat16", "bfloat16")}
    # exact integer accumulation, then requantised by the per-channel multiplier and shift
    ACC = {"int8": np.int32, "int16xint8": np.int64}

    def __init__(self, call, tile, buffers: dict, device, link_in, link_out):
        p = call.params
        where = f"conv2d on tile {tile_key(tile)}"
        self.precision = p.get("precision", "int8")
        if self.precision not in self.IN:
            raise ValueError(f"{where}: precision {self.precision} not supported")
        self.stride = tuple(int(s) for s in p["stride"])
        self.pool = tuple(int(s) for s in p.get("pool", (1, 1)))
        self.relu, self.out_zp = bool(p.get("relu")), int(p.get("out_zp", 0))
        self.clip_max = p.get("clip_max")  # float32 ReLU6-style bound (with relu), or None
        self.out_dtype = p.get("out_dtype", self.IN[self.precision][0])
        self.cin_offset = int(p.get("cin_offset", 0))
        # residual add (int8, int16): [conv_zp, conv_mult, conv_shift, res_zp, res_mult, res_shift]
        self.residual, self.add = bool(p.get("residual")), p.get("add")
        self.relu_after = bool(p.get("relu_after"))  # float: ReLU after the residual add
        # weights streamed in passes: bias, multiplier and shift hold every pass's channels and
        # this call instruction computes passes first, first + step, ... (mod passes), as a loop
        # over the passes advances a pointer into them
        self.passes, self.pass_step = int(p.get("passes", 1)), int(p.get("pass_step", 1))
        self.next_pass = int(p.get("pass_first", 0))
        # int8 output read by a concat at another scale: [zp, mult, shift, concat's zp], applied
        # last (:func:`tvm_aie.quant.rescale`; monotone, so it commutes with the max-pool)
        self.rescale = p.get("rescale")
        # "conv" (also average pools, as depthwise windows of constant weights) or "maxpool"
        self.kind = p.get("kind", "conv")
        self.variant = (self.name, self.precision, self.kind)
        self.buffers = {role: b.name for role, b in buffers.items()}
        self.per_channel = {b.name for role, b in buffers.items() if role in ("bias", "mult",
                                                                              "shift")}
        need = {"a", "c"} | ({"r"} if self.residual else set()) | (
            set() if self.kind == "maxpool" else
            {"w"} | ({"mult", "shift"} if self.precision in self.ACC else set()))
        check_standalone_call(where, buffers, need, link_in, link_out)
        a, c = buffers["a"], buffers["c"]
        if self.kind == "maxpool":
            (op, *_), self.cin_g, (self.kh, self.kw) = c.shape, 1, p["window"]
        else:
            if len(buffers["w"].shape) != 4:
                raise ValueError(f"{where}: w {buffers['w'].shape} is not OIHW")
            op, self.cin_g, self.kh, self.kw = buffers["w"].shape
        if len(a.shape) != 3:
            raise ValueError(f"{where}: a {a.shape} is not [C, rows, cols]")
        # output channels per group: all of the tile's for a standard conv, 1 for depthwise
        self.group_size = int(p.get("group_size", op))
        if self.group_size < 1 or op % self.group_size:
            raise ValueError(f"{where}: group_size {self.group_size} does not divide {op} channels")
        self.groups = op // self.group_size
        sh, sw = self.stride
        self.th, self.wo = (a.shape[1] - self.kh) // sh + 1, (a.shape[2] - self.kw) // sw + 1
        ph, pw = self.pool
        want = [op, self.th // ph, self.wo // pw]
        if list(c.shape) != want or c.dtype != self.out_dtype:
            raise ValueError(f"{where}: c {c.name} is {c.shape} {c.dtype}, not {want} "
                             f"{self.out_dtype}")
        if self.cin_offset + self.groups * self.cin_g > a.shape[0]:
            raise ValueError(f"{where}: the tile's groups read input channels beyond the "
                             f"{a.shape[0]} of {a.name}")
        for buf, dtype in zip([a] + ([buffers["w"]] if "w" in buffers else []),
                              self.IN[self.precision]):
            if buf.dtype != dtype:
                raise ValueError(f"{where}: {buf.name} is {buf.dtype}, not {dtype} "
                                 f"({self.precision})")
        if self.residual and (list(buffers["r"].shape) != want or buffers["r"].dtype != c.dtype):
            raise ValueError(f"{where}: residual {buffers['r'].name} is not like c {want}")
        for role in ("bias", "mult", "shift"):
            if role in buffers and int(np.prod(buffers[role].shape)) != op * self.passes:
                raise ValueError(f"{where}: {role} {buffers[role].name} is not one per channel")
        window_ops = op * self.th * self.wo * self.cin_g * self.kh * self.kw
        self.macs = window_ops if self.kind == "conv" else 0  # pools: as the model counts them
        if self.kind == "maxpool":  # one vector max per loaded input vector
            self.cycles = CALL_OVERHEAD + math.ceil(
                window_ops * np.dtype(a.dtype).itemsize / device.vector_load_bytes_per_cycle)
        else:
            self.cycles = conv2d_cycles(device, self.precision, self.groups, self.group_size,
                                        self.cin_g, self.kh, self.kw, self.th, self.wo,
                                        self.out_dtype, self.pool, self.residual)
        if self.rescale:  # one more pass over the output block
            self.cycles += math.ceil(int(np.prod(c.shape)) * np.dtype(c.dtype).itemsize /
                                     device.vector_load_bytes_per_cycle)
        self.steps = (self.cycles,)  # timing mode: the call's cycles, no data

    def run(self, memories):
        yield self.cycles
        if memories is not None:
            g, op = self.next_pass, int(memories.buffer_view(self.buffers["c"]).shape[0])
            self.next_pass = (g + self.pass_step) % self.passes

            def view(name):  # this pass's bias, multiplier and shift
                arr = memories.buffer_view(name)
                if self.passes > 1 and name in self.per_channel:
                    return arr.reshape(-1)[g * op:(g + 1) * op]
                return arr

            out = self._compute(view)
            if self.rescale:
                out = rescale(out, *self.rescale, self.out_dtype)
            view(self.buffers["c"])[...] = out

    def _compute(self, view) -> np.ndarray:
        a = view(self.buffers["a"])
        sh, sw = self.stride
        win = np.lib.stride_tricks.sliding_window_view(a, (self.kh, self.kw), axis=(1, 2))
        win = win[:, ::sh, ::sw][:, :self.th, :self.wo]  # [C, th, wo, kh, kw]
        if self.kind == "maxpool":
            return win[self.cin_offset:self.cin_offset + self.groups].max(axis=(3, 4))
        w = view(self.buffers["w"])
        # bf16 accumulates in fp32; int8 and int16 x int8 products (below 2^22) and their sums
        # (below 2^53) are exact in float64
        calc = np.float64 if self.precision in self.ACC else np.float32
        acc = np.empty((w.shape[0], self.th, self.wo), calc)
        gs = self.group_size
        for g in range(self.groups):
            lo = self.cin_offset + g * self.cin_g
            acc[g * gs:(g + 1) * gs] = np.tensordot(
                w[g * gs:(g + 1) * gs].astype(calc), win[lo:lo + self.cin_g].astype(calc),
                axes=([1, 2, 3], [0, 3, 4]))
        if self.precision in self.ACC:  # int32 lanes wrap as the hardware's do (int64: exact)
            acc = acc.astype(np.int64).astype(self.ACC[self.precision])
        if "bias" in self.buffers:
            acc = acc + view(self.buffers["bias"]).reshape(-1, 1, 1)
        if self.precision in self.ACC and self.out_dtype in QMAX:
            zp = self.add[0] if self.residual else self.out_zp
            out = requantize(acc.transpose(1, 2, 0), view(self.buffers["mult"]).reshape(-1),
                             view(self.buffers["shift"]).reshape(-1), zp, self.relu,
                             self.out_dtype).transpose(2, 0, 1)
            if self.residual:
                out = requantize_add(out, *self.add[:3], view(self.buffers["r"]), *self.add[3:],
                                     self.out_zp, self.out_dtype)
        else:
            out = np.maximum(acc, 0) if self.relu else acc
            if self.clip_max is not None:
                out = np.minimum(out, np.float32(self.clip_max))
            if self.residual:
                out = out + view(self.buffers["r"])
                if self.relu_after:  # in the add's pass: one more max per vector
                    out = np.maximum(out, 0)
            out = out.astype(self.out_dtype)
        ph, pw = self.pool
        if (ph, pw) != (1, 1):
            o, th, wo = out.shape
            out = out.reshape(o, th // ph, ph, wo // pw, pw).max(axis=(2, 4))
        return out


KERNELS[Conv2d.name] = Conv2d
