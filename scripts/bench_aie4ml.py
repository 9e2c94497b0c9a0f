"""Whole models against AIE4ML's own designs, on the same simulator.

For every zoo model: export its int8 QDQ form with per-tensor power-of-two scales (what AIE4ML's
ONNX frontend accepts), run AIE4ML's planner on it in its own venv (``scripts/aie4ml_plan.py``),
read the per-layer parallelism it chose from ``aie_pipeline.json`` (``cas_num`` chains of
``cas_length`` cascaded tiles: our ``n_par`` and ``cascade``), and replay that design in tvm-aie by
pinning those knobs. The replay, tvm-aie's default plan and (when the tuner exists) its tuned design
are compiled from the same ONNX file and simulated alike: tiles, latency of one inference, and the
steady-state interval when inferences stream (one batch-1 inference per row block).

Our dataflow chains a layer's ``n_par`` output blocks straight into the next layer's cascade
(``cascade[i+1] = n_par[i]``); AIE4ML merges outputs in memory and may choose any cascade length.
Where the two differ the replay keeps AIE4ML's ``n_par`` and takes the cascade our chain needs, and
the table says so.

    .venv/bin/python scripts/bench_aie4ml.py      # needs .venv-aie4ml (scripts/benchmarks.sh)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

import benchlib
import tvm_aie
from tvm_aie import zoo
from tvm_aie.codegen.relax_ext import workload_of
from tvm_aie.codegen.layers import read_layers
from tvm_aie.schedules.dense import DenseConfig, TilingError, default_config

VENV = benchlib.ROOT / ".venv-aie4ml"
WORK = benchlib.OUT / "aie4ml"
BLOCKS = (4, 12)  # stream lengths (row blocks) whose difference gives the interval
TUNE_TRIALS = 160  # per model (split over its tasks), when tvm_aie.tune exists


def po2_variant(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (int8 QDQ, per-tensor) with symmetric power-of-two scales and zero points 0.

    Activations keep the range onnxruntime calibrated, rounded up to a power-of-two step; constant
    tensors (weights, biases) are re-quantised from their dequantised values the same way. The
    result is still a valid QDQ model of the same network, so tvm-aie compiles the same file.
    """
    inits = {t.name: t for t in model.graph.initializer}
    arrays = {name: numpy_helper.to_array(t) for name, t in inits.items()}
    new = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        data, scale_name, zp_name = node.input
        scale = float(arrays[scale_name].reshape(-1)[0])
        zp = int(arrays[zp_name].reshape(-1)[0])
        if data in arrays and node.op_type == "DequantizeLinear":
            info = np.iinfo(arrays[data].dtype)
            values = (arrays[data].astype(np.float64) - zp) * scale
            step = 2.0 ** np.ceil(np.log2(max(np.abs(values).max(), 1e-30) / info.max))
            new[data] = np.clip(np.round(values / step), info.min, info.max).astype(
                arrays[data].dtype)
        else:
            info = np.iinfo(arrays[zp_name].dtype)
            reach = max(abs(info.min - zp), abs(info.max - zp)) * scale
            step = 2.0 ** np.ceil(np.log2(reach / info.max))
        new[scale_name] = np.full(arrays[scale_name].shape, step, np.float32)
        new[zp_name] = np.zeros_like(arrays[zp_name])
    for name, value in new.items():
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return model


def export(name: str, batch: int) -> onnx.ModelProto:
    return po2_variant(zoo.onnx_model(name, quant="int8", per_channel=False, batch=batch))


def run_aie4ml(name: str) -> dict:
    """AIE4ML's planner on the batch-1 model, in its venv; its verdict, time and design."""
    if not (VENV / "bin" / "python").exists():
        return {"accepted": False, "reason": f"not available yet: no AIE4ML venv at {VENV}"}
    path = WORK / f"{name}.onnx"
    onnx.save(export(name, 1), path)
    proc = subprocess.run([str(VENV / "bin" / "python"), str(benchlib.ROOT / "scripts" /
                                                             "aie4ml_plan.py"),
                           str(path), str(WORK / name)], capture_output=True, text=True,
                          check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"accepted": False, "reason": f"aie4ml_plan.py failed: {proc.stderr.strip()[-300:]}"}
    result = json.loads(lines[-1])
    if result["accepted"]:
        result["design"] = read_design(result["pipeline"])
    return result


def read_design(pipeline_path: str) -> dict:
    """The per-layer parallelism and placement AIE4ML chose, in execution order."""
    pipe = json.loads(open(pipeline_path, encoding="utf-8").read())
    placements = pipe["physical"]["placements"]
    layers = []
    for entry in pipe["execution"]:
        par = entry.get("config", {}).get("parallelism", {})
        layers.append({"node": entry["node"], "op_type": entry["op_type"],
                       "cas_num": par.get("cas_num"), "cas_length": par.get("cas_length"),
                       "placement": placements.get(entry["node"])})
    return {"tiles": pipe["optimizer"]["tiles"], "mode": pipe["optimizer"]["mode"],
            "layers": layers}


def chains(model: onnx.ModelProto) -> list:
    """``[(function name, function, [DenseWorkload])]`` of the subgraphs tvm-aie offloads."""
    return [(name, func, [workload_of(layer) for layer in read_layers(func)])
            for name, func in benchlib.offloaded_functions(model)]


def replay_configs(subgraphs: list, design: dict, tm: int, dev) -> tuple[dict, list]:
    """``({function: pinned}, notes)``: AIE4ML's parallelism as DenseConfigs, its layers taken in
    order over our subgraphs (see module docstring)."""
    dense = [layer for layer in design["layers"] if layer["op_type"] == "dense"]
    count = sum(len(wls) for _, _, wls in subgraphs)
    if len(dense) != count or len(dense) != len(design["layers"]):
        raise ValueError(f"AIE4ML's design has {len(design['layers'])} nodes "
                         f"({len(dense)} dense), tvm-aie offloads {count} dense layers")
    pinned, notes, theirs = {}, [], iter(dense)
    for fname, _, workloads in subgraphs:
        pins = pinned[fname] = {}
        for i, (wl, layer) in enumerate(zip(workloads, theirs)):
            cascade = layer["cas_length"] if i == 0 else pins[i - 1].n_par
            if cascade != layer["cas_length"]:
                notes.append(f"{layer['node']}: cascade {layer['cas_length']} -> {cascade}")
            pins[i] = default_config(wl, dev, tm=tm, n_par=layer["cas_num"], cascade=cascade)
    return pinned, notes


def tuned_configs(model: onnx.ModelProto, name: str, dev) -> dict | str:
    """The tuner's design of each offloaded chain as pinned configs, or why there is none."""
    try:
        from tvm_aie.tune import graph  # pylint: disable=import-outside-toplevel
        from tvm_aie.tune.database import Database  # pylint: disable=import-outside-toplevel
        from tvm_aie.tune.tuner import tune_model  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        return f"not available yet: tvm_aie.tune ({err})"
    db_path = WORK / f"{name}.tune.jsonl"
    db_path.unlink(missing_ok=True)
    goal = "throughput" if "throughput" in getattr(graph, "GOALS", ()) else "latency"
    result = tune_model(tvm_aie.load_onnx(model), dev, Database(str(db_path)), TUNE_TRIALS,
                        goal=goal)
    return {d["function"]: {i: DenseConfig.from_dict(c) for i, c in enumerate(d["configs"])}
            for d in result.designs}


def _run_subgraphs(model: onnx.ModelProto, pinned: dict) -> tuple[list, float, float]:
    """Compile and simulate every offloaded subgraph of ``model`` with its pinned configs."""
    reps, compile_s, sim_s = [], 0.0, 0.0
    for fname, func in benchlib.offloaded_functions(model):
        program, t_c = benchlib.compile_subgraph(func, fname, pinned.get(fname))
        rep, t_s = benchlib.simulate(program, fname)
        reps.append(rep)
        compile_s, sim_s = compile_s + t_c, sim_s + t_s
    return reps, compile_s, sim_s


def measure(name: str, pinned: dict) -> dict:
    """Tiles, latency (batch 1) and streaming interval of one design of model ``name``.

    Subgraphs run one after another (the host is between them), so their tiles, latencies and
    intervals add up; the interval streams batch-1 inferences through the design's row blocks.
    """
    reps, compile_s, sim_s = _run_subgraphs(export(name, 1), pinned)
    configs = {r.name: {i: DenseConfig.from_dict(layer["config"])
                        for i, layer in enumerate(r.layers)} for r in reps}
    tm = next(iter(configs.values()))[0].tm
    cycles = [sum(r.cycles for r in _run_subgraphs(export(name, tm * blocks), configs)[0])
              for blocks in BLOCKS]
    return {"subgraphs": len(reps), "tiles": sum(r.tiles for r in reps),
            "latency_cycles": sum(r.cycles for r in reps),
            "interval_cycles": benchlib.interval(*cycles, *BLOCKS),
            "configs": [f"{c.n_par}x{c.cascade}" for cfgs in configs.values()
                        for c in cfgs.values()],
            "tm": tm, "compile_s": compile_s, "simulate_s": sim_s}


def compare(name: str, a4: dict) -> dict:
    dev = benchlib.device()
    model = export(name, 1)
    t0 = time.perf_counter()
    tvm_aie.build(tvm_aie.load_onnx(model), target=benchlib.DEVICE)
    out = {"build_s": time.perf_counter() - t0, "default": measure(name, {})}
    try:
        pinned, notes = replay_configs(chains(model), a4["design"], out["default"]["tm"], dev)
        out["replay"] = {**measure(name, pinned), "notes": notes}
    except (TilingError, ValueError) as err:
        out["replay"] = {"error": str(err)}
    tuned = tuned_configs(model, name, dev)
    out["tuned"] = measure(name, tuned) if isinstance(tuned, dict) else {"error": tuned}
    return out


def run() -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    models = {}
    for name in zoo.names():
        a4 = run_aie4ml(name)
        models[name] = {"aie4ml": a4}
        if a4["accepted"]:
            models[name]["tvm_aie"] = compare(name, a4)
    data = {"device": benchlib.DEVICE, "blocks": BLOCKS, "models": models}
    benchlib.save("aie4ml", data)
    return data


def _fmt(d: dict, key: str, spec: str = ",.0f") -> str:
    return format(d[key], spec) if key in d else "—"


def behind(data: dict) -> list:
    """Every figure where tvm-aie's best design is worse than AIE4ML's replayed design."""
    out = []
    for name, m in data["models"].items():
        ours = m.get("tvm_aie", {})
        replay = ours.get("replay", {})
        if not ours or "error" in replay:
            continue
        mine = [d for d in (ours["default"], ours.get("tuned", {})) if "error" not in d and d]
        for key, label in (("interval_cycles", "interval"), ("latency_cycles", "latency"),
                           ("tiles", "tiles")):
            best = min(mine, key=lambda d, key=key: (d[key], d["tiles"]))
            if best[key] > replay[key]:
                out.append(f"{name}: tvm-aie's best {label} is {best[key]:,.0f} on "
                           f"{best['tiles']} tiles, AIE4ML's design replayed gives "
                           f"{replay[key]:,.0f} on {replay['tiles']} tiles "
                           f"({best[key] / replay[key]:.2f}x)")
        # Per figure above, different designs may win; at no more tiles than AIE4ML's design,
        # one design has to win both at once.
        frugal = [d for d in mine if d["tiles"] <= replay["tiles"]]
        for key, label in (("interval_cycles", "interval"), ("latency_cycles", "latency")):
            best = min(frugal, key=lambda d, key=key: d[key], default=None)
            if best is not None and best[key] > replay[key]:
                out.append(f"{name}: on no more than the {replay['tiles']} tiles of AIE4ML's "
                           f"design, tvm-aie's best {label} is {best[key]:,.0f} ({best['tiles']} "
                           f"tiles) against {replay[key]:,.0f} ({best[key] / replay[key]:.2f}x)")
        if m["aie4ml"]["design"]["tiles"] < min(d["tiles"] for d in mine):
            out.append(f"{name}: AIE4ML's own design uses {m['aie4ml']['design']['tiles']} tiles, "
                       f"tvm-aie's fewest {min(d['tiles'] for d in mine)}")
    return out


def markdown(data: dict) -> str:
    rows, rejected, notes = [], [], []
    for name, m in data["models"].items():
        a4 = m["aie4ml"]
        if not a4["accepted"]:
            rejected.append(f"- {name}: AIE4ML rejects it: {a4['reason']}")
            continue
        ours = m["tvm_aie"]
        a4_par = ", ".join(f"{layer['cas_num']}x{layer['cas_length']}"
                           for layer in a4["design"]["layers"])
        rows.append([name, "AIE4ML's own plan", a4_par, a4["design"]["tiles"], "—", "—",
                     f"{a4['seconds']:.2f}"])
        for label, key in (("AIE4ML's design replayed", "replay"), ("tvm-aie default", "default"),
                           ("tvm-aie tuned", "tuned")):
            d = ours[key]
            if "error" in d:
                notes.append(f"- {name}, {label}: {d['error']}")
                continue
            compile_s = f"{ours['build_s']:.2f} (build), {d['compile_s']:.2f} (AIE part)" \
                if key == "default" else f"{d['compile_s']:.2f} (AIE part)"
            split = f", {d['subgraphs']} subgraphs" if d["subgraphs"] > 1 else ""
            rows.append([name, label, ", ".join(d["configs"]) + f" (tm={d['tm']}{split})", d["tiles"],
                         _fmt(d, "latency_cycles"), _fmt(d, "interval_cycles"), compile_s])
            for note in d.get("notes", []):
                notes.append(f"- {name}, replay: {note} (our chain feeds n_par blocks into the "
                             f"next layer's cascade)")
    out = [benchlib.table(["model", "design", "n_par x cascade per layer", "tiles",
                           "latency (cycles, batch 1)", "interval (cycles/inference)",
                           "compile s"], rows)]
    out += ["", *rejected, *notes]
    lag = behind(data)
    out.append("")
    out += ([f"**tvm-aie is behind AIE4ML's design here:** {line}" for line in lag] if lag else
            ["tvm-aie's default or tuned design is at least as good as AIE4ML's replayed design on "
             "every model and figure above."])
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(print(markdown(run())))
