"""Runtime: the ``aie.run`` function the Relax VM calls for every offloaded subgraph.

The executable carries each AIE program as a uint8 constant; the VM passes it with the subgraph's
inputs and its destination tensor. This module only decodes the program, lays the inputs out in
(padded) DDR buffers as the host would, runs the simulator and copies the outputs back. It decides
nothing about the design.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import tvm

from .codegen.program import Program


@lru_cache(maxsize=64)
def _decode(digest: str, data: bytes) -> Program:  # pylint: disable=unused-argument
    return Program.from_bytes(data)


def load_program(blob) -> Program:
    """A program from its serialised bytes (a uint8 tensor or ``bytes``), decoded once per content."""
    data = blob.numpy().tobytes() if hasattr(blob, "numpy") else bytes(blob)
    return _decode(hashlib.sha1(data).hexdigest(), data)


def host_inputs(program: Program, arrays: list) -> dict:
    """Zero-padded DDR images of the subgraph's inputs, checked against the program's DDR tensors."""
    feeds = {}
    for ddr, arr in zip(program.inputs(), arrays):
        arr = np.asarray(arr)
        want = tuple(ddr.valid_shape or ddr.shape)
        if arr.size == np.prod(want):  # [B, S, K] is the [B*S, K] of a dense layer: same bytes
            arr = arr.reshape(want)
        if arr.dtype == np.float32 and ddr.dtype == "bfloat16":  # a bf16 program: the host casts
            arr = arr.astype(ddr.dtype)
        if arr.shape != want or arr.dtype != np.dtype(ddr.dtype):
            raise ValueError(f"AIE program {program.name}: input {ddr.name} must be {want} "
                             f"{ddr.dtype}, got {arr.shape} {arr.dtype}")
        image = np.zeros(ddr.shape, dtype=ddr.dtype)
        image[tuple(slice(0, s) for s in arr.shape)] = arr
        feeds[ddr.name] = image
    return feeds


def run_program(program: Program, arrays: list) -> tuple[list, object]:
    """Run ``program`` on the simulator; returns (outputs cut to their valid shapes, SimReport)."""
    from .sim import simulate  # pylint: disable=import-outside-toplevel

    result = simulate(program, host_inputs(program, arrays), mode="functional")
    outs = []
    for ddr in program.outputs():
        valid = tuple(ddr.valid_shape or ddr.shape)
        outs.append(result.outputs[ddr.name][tuple(slice(0, s) for s in valid)])
    return outs, result.report


@tvm.register_global_func("aie.run", override=True)
def _aie_run(blob, *args):
    """VM entry: ``aie.run(program, inputs..., out)`` in destination-passing style."""
    program = load_program(blob)
    n_in = len(program.inputs())
    outs, _ = run_program(program, [a.numpy() for a in args[:n_in]])
    for dst, val in zip(args[n_in:], outs):
        dst.copyfrom(np.ascontiguousarray(val).astype(str(dst.dtype)).reshape(dst.shape))
