"""Single-kernel benchmark: one dense layer on one AIE-ML tile, over sizes and precisions.

The row block is pinned to the whole of M, so one kernel call computes the whole layer and the
report's ``kernel_cycles_per_block`` is the kernel's cycles, the figure kernel papers publish
(AIE4ML: "close to architectural peak"; AMD's 64x64x64 int8 tutorial kernel: 1121 cycles, 91%).
Whole-program cycles add the DMA that brings the input in and takes the output out.

    .venv/bin/python scripts/bench_kernels.py
"""

from __future__ import annotations

import sys

import benchlib
from tvm_aie import zoo
from tvm_aie.schedules.dense import DenseWorkload, TilingError, default_config

SIZES = {"int8": [32, 48, 64, 96, 128], "int16xint8": [32, 48, 64, 96],
         "bfloat16": [16, 32, 48, 64], "float32": [16, 32, 48, 64]}
CONV_SIZES = [(16, 16, 16, 16), (32, 32, 16, 32)]  # (H, W, Cin, Cout), 3x3
CONV_PRECISIONS = ["int8", "int16xint8"]


def kernel_row(size: int, precision: str) -> dict:
    dev = benchlib.device()
    wl = DenseWorkload(size, size, size, precision)
    cfg = default_config(wl, dev, tm=size, n_par=1, cascade=1)
    rep, t_compile, t_sim = benchlib.dense_cycles(size, size, size, cfg, precision)
    layer, = rep.layers
    macs = size ** 3
    peak = dev.peak_macs_per_cycle(precision)
    kernel = layer["kernel_cycles_per_block"]
    return {"precision": precision, "m": size, "k": size, "n": size, "config": str(cfg),
            "kernel_cycles": kernel, "kernel_macs_per_cycle": macs / kernel,
            "peak_macs_per_cycle": peak, "kernel_utilisation": macs / kernel / peak,
            "program_cycles": rep.cycles, "program_utilisation": macs / rep.cycles / peak,
            "compile_s": t_compile, "simulate_s": t_sim}


def conv_row(h: int, w: int, cin: int, cout: int, precision: str = "int8") -> dict:
    """One 3x3 convolution (int8, or int16 activations x int8 weights) as the default plan
    compiles it (the conv family chooses its own tiling), whole-program cycles against the peak
    of the tiles it uses at that precision; when the plan is one tile and one block (one kernel
    call computes the whole layer), also the kernel alone."""
    funcs = benchlib.offloaded_functions(zoo.conv_layer(h, w, cin, cout, precision=precision))
    if not funcs:
        raise ValueError(f"the partitioner does not offload {precision} Conv on this device")
    (name, func), = funcs
    program, t_compile = benchlib.compile_subgraph(func, name)
    rep, t_sim = benchlib.simulate(program, name)
    layer, = rep.layers
    whole = rep.tiles == 1 and layer["blocks"] == 1
    kernel = layer["kernel_cycles_per_block"] if whole else None
    peak = benchlib.device().peak_macs_per_cycle(precision)
    return {"precision": f"{precision} conv2d 3x3", "shape": f"{h}x{w}, {cin}->{cout} ch",
            "tiles": rep.tiles, "kernel_cycles": kernel,
            "kernel_utilisation": rep.macs / kernel / peak if kernel else None,
            "program_cycles": rep.cycles, "macs": rep.macs,
            "program_utilisation": rep.efficiency, "compile_s": t_compile, "simulate_s": t_sim}


def run() -> dict:
    convs, missing = [], []
    for precision in CONV_PRECISIONS:
        for shape in CONV_SIZES:
            try:
                convs.append(conv_row(*shape, precision))
            except Exception as err:  # pylint: disable=broad-except  # any failure: not there yet
                missing.append((f"{precision} conv2d",
                                f"{type(err).__name__}: {str(err).splitlines()[0]}"))
                break
    rows = []
    for precision, sizes in SIZES.items():
        for size in sizes:
            try:
                rows.append(kernel_row(size, precision))
            except TilingError as err:
                rows.append({"precision": precision, "m": size, "k": size, "n": size,
                             "error": str(err)})
    data = {"device": benchlib.DEVICE, "rows": rows, "conv": convs, "unavailable": missing}
    benchlib.save("kernels", data)
    return data


def markdown(data: dict) -> str:
    ok = [r for r in data["rows"] if "error" not in r]
    rows = [[r["precision"], f"{r['m']}x{r['k']}x{r['n']}", r["config"], f"{r['kernel_cycles']:,}",
             f"{r['kernel_macs_per_cycle']:.1f}", r["peak_macs_per_cycle"],
             f"{100 * r['kernel_utilisation']:.1f}%", f"{r['program_cycles']:,}",
             f"{100 * r['program_utilisation']:.1f}%"] for r in ok]
    out = [benchlib.table(["precision", "M x K x N", "config", "kernel cycles", "MAC/cycle",
                           "peak", "kernel utilisation", "program cycles",
                           "program utilisation"], rows)]
    for precision in SIZES:
        same = [r for r in ok if r["precision"] == precision]
        if same:
            best = max(same, key=lambda r: r["kernel_utilisation"])
            out.append(f"\nBest {precision} kernel: {best['m']}x{best['k']}x{best['n']} at "
                       f"{100 * best['kernel_utilisation']:.1f}% of the tile's "
                       f"{best['peak_macs_per_cycle']} MAC/cycle.")
    if data["conv"]:
        out.append("\n" + benchlib.table(
            ["kernel", "shape", "tiles", "kernel cycles (one call, whole layer)",
             "kernel utilisation", "program cycles", "MACs", "utilisation of its tiles"],
            [[r["precision"], r["shape"], r["tiles"],
              f"{r['kernel_cycles']:,}" if r["kernel_cycles"] else "— (more than one call)",
              f"{100 * r['kernel_utilisation']:.1f}%" if r["kernel_cycles"] else "—",
              f"{r['program_cycles']:,}", f"{r['macs']:,}",
              f"{100 * r['program_utilisation']:.1f}%"] for r in data["conv"]]))
    failed = [r for r in data["rows"] if "error" in r]
    for r in failed:
        out.append(f"\n- {r['precision']} {r['m']}x{r['k']}x{r['n']} does not build: {r['error']}")
    for what, why in data["unavailable"]:
        out.append(f"\n- not available yet: {what} ({why})")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(print(markdown(run())))
