"""Run every benchmark and write ``docs/benchmarks.md`` (issue 7: benchmarks against the anchors).

Nothing in the document is typed by hand: the machine and date come from the platform, every
figure and every verdict ("behind", "level") from the benchmarks' results. ``scripts/benchmarks.sh``
sets up both venvs and runs this.

    .venv/bin/python scripts/benchmarks.py [--only kernels,scaling,models,aie4ml]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time

import benchlib
import bench_aie4ml
import bench_kernels
import bench_models
import bench_nets
import bench_scaling
from tvm_aie.target import get_device

DOC = benchlib.ROOT / "docs" / "benchmarks.md"
PARTS = {  # order of the document; (module, heading, what it measures)
    "kernels": (bench_kernels, "1. Single kernel on one AIE-ML tile",
                "One dense layer, the row block pinned to all of M so one kernel call is the whole "
                "layer. Kernel cycles are the report's `kernel_cycles_per_block`; program cycles "
                "add the input and output DMA. Utilisation is against the tile's peak MACs/cycle "
                "for the precision (fp32 is emulated on AIE-ML)."),
    "scaling": (bench_scaling, "2. Layer scaling to the whole array",
                "One int8 dense layer, a fixed weight block per tile, the grid grown from 1 tile to "
                "304; all weights resident on-chip, rows streaming in blocks from the programmable "
                "logic through the shims' PL stream ports (as AIE4ML feeds its array); the DDR-fed "
                "columns stream them by shim DMA from DDR instead."),
    "aie4ml": (bench_aie4ml, "3. Whole models against AIE4ML's designs",
               "Power-of-two int8 variants of the zoo models; AIE4ML's planner (throughput mode, "
               "VEK280) chooses its design, which is replayed through tvm-aie's DenseConfig knobs "
               "and simulated next to tvm-aie's own designs. Latency is one batch-1 inference; "
               "the interval is the steady-state cycles per inference when batch-1 inferences "
               "stream (one per row block). Compile time: AIE4ML's `from_onnx` + `write` against "
               "`tvm_aie.build`."),
    "models": (bench_models, "4. Compile time and simulator speed per model",
               "Every zoo model in int8 QDQ and int16 QDQ (int16 activations, int8 weights), "
               "and the transformer in bf16; batch 1, tvm-aie's default plan."),
    "nets": (bench_nets, "5. Full-size networks against the CPU",
             "ResNet-18/50, MobileNetV2, EfficientNet-B0 at 224, ViT-Tiny, DeiT-Small and a "
             "BERT-base encoder (seq 128), generated from code with seeded weights, in fp32 and "
             "int8 QDQ, built by tvm-aie's default plan for aie-ml/vek280. Latency is one "
             "batch-1 inference on the simulated array: the offloaded programs one after "
             "another, each configured first when there are several (weights and maps from "
             "DDR); CPU parts of a model are not timed. '% of peak' is the model's offloaded "
             "MACs over that latency against the whole array's peak. The CPU columns are this "
             "machine, measured in the same run (median of 3); the speedup is over the faster "
             "CPU figure."),
}


def _git(*args) -> str:
    out = subprocess.run(["git", *args], cwd=benchlib.ROOT, capture_output=True, text=True,
                         check=False)
    return out.stdout.strip()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list:
    aie4ml = [m["aie4ml"].get("version") for m in benchlib.load("aie4ml")["models"].values()] \
        if (benchlib.OUT / "aie4ml.json").exists() else []
    dev = get_device(benchlib.DEVICE)
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs"
        f" ({platform.processor() or 'processor not reported'})",
        f"- Python {platform.python_version()}; apache-tvm {_version('apache-tvm')}, "
        f"tvm-aie {_version('tvm-aie')} at commit {_git('rev-parse', '--short', 'HEAD')}"
        f"{' (with uncommitted changes)' if _git('status', '--porcelain', '--untracked-files=no') else ''}"
        f"; aie4ml {next((v for v in aie4ml if v), 'not run')} (its own venv)",
        f"- simulated device: {dev.name} ({dev.tag}), {dev.compute_tiles} compute tiles at "
        f"{dev.clock_hz / 1e9:.2f} GHz, {dev.peak_macs_per_cycle('int8')} int8 MACs/cycle per tile",
    ]


def summary(results: dict) -> list:
    """The headline figures, each computed from the results."""
    out = []
    if "kernels" in results:
        for precision in ("int8", "int16xint8", "bfloat16"):
            rows = [r for r in results["kernels"]["rows"]
                    if r["precision"] == precision and "error" not in r]
            best = max(rows, key=lambda r: r["kernel_utilisation"])
            out.append(f"- Single {precision} dense kernel on one tile: up to "
                       f"{100 * best['kernel_utilisation']:.1f}% of its "
                       f"{best['peak_macs_per_cycle']} MAC/cycle peak "
                       f"({best['m']}x{best['k']}x{best['n']}, {best['kernel_cycles']:,} cycles).")
        for r in results["kernels"]["conv"]:
            if r["kernel_cycles"]:
                out.append(f"- Single {r['precision']} kernel ({r['shape']}, one call): "
                           f"{100 * r['kernel_utilisation']:.1f}% of peak "
                           f"({r['kernel_cycles']:,} cycles).")
    if "scaling" in results:
        rows = results["scaling"]["rows"]
        r = min((r for r in rows if r["tiles"] >= bench_scaling.AIE4ML_TILES),
                key=lambda r: r["tiles"])
        out.append(f"- Layer scaling: {100 * r['efficiency']:.1f}% of single-kernel efficiency on "
                   f"{r['tiles']} tiles, PL-fed ({r['tops']:.1f} int8 TOPS simulated; "
                   f"{100 * r['ddr_efficiency']:.1f}% fed from DDR); AIE4ML publishes "
                   f"{100 * bench_scaling.AIE4ML_EFFICIENCY:.1f}% on {bench_scaling.AIE4ML_TILES}.")
    if "aie4ml" in results:
        models = results["aie4ml"]["models"]
        accepted = [n for n, m in models.items() if m["aie4ml"]["accepted"]]
        lag = bench_aie4ml.behind(results["aie4ml"])
        out.append(f"- AIE4ML accepts {len(accepted)} of {len(models)} zoo models "
                   f"({', '.join(accepted) or 'none'}); tvm-aie is behind its design on "
                   f"{len(lag)} figure(s)" + (": see section 3." if lag else "."))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    results, seconds = {}, {}
    for key in PARTS:
        if key in wanted:
            print(f"benchmarks: running {key} ...", flush=True)
            t0 = time.perf_counter()
            results[key] = PARTS[key][0].run()
            seconds[key] = time.perf_counter() - t0
    lines = ["# Benchmarks against the anchors", "",
             "Generated by `scripts/benchmarks.sh` (`scripts/benchmarks.py`); do not edit by hand.",
             "Figures are from tvm-aie's bundled AIE array simulator unless marked published.", "",
             "## Machine and date", "", *machine(), "", "## Summary", "", *summary(results), ""]
    for key, (module, heading, what) in PARTS.items():
        if key not in results:
            continue
        lines += [f"## {heading}", "", what, "",
                  f"Command: `.venv/bin/python scripts/{module.__name__}.py` "
                  f"({seconds[key]:.0f} s in this run)", "", module.markdown(results[key]), ""]
        if key == "scaling":
            png = DOC.parent / "benchmarks_scaling.png"
            shutil.copyfile(results[key]["plot"], png)
            lines += [f"![layer scaling]({png.name})", ""]
    lines += ["## Commands", "", "```sh", "scripts/benchmarks.sh   # set up .venv and "
              ".venv-aie4ml, run everything, write this file", *[
                  f".venv/bin/python scripts/{PARTS[k][0].__name__}.py" for k in PARTS], "```",
              "", f"Total benchmark time: {sum(seconds.values()):.0f} s.", ""]
    DOC.write_text("\n".join(lines))
    print(f"benchmarks: wrote {DOC.relative_to(benchlib.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
