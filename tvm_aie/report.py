"""The report of a built model: what runs on the array, on how many tiles, how fast.

Made from the executable alone (its ``aie_programs`` manifest), so it works for a loaded one too.
Each program is run once on the simulator in timing mode, which gives the same cycles as a
functional run without needing inputs. A program over a batch of images (a conv part whose layers
run as a pipeline) reports the cycles of the whole batch and the steady-state interval per image,
both measured in that one run: the interval is the mean gap between successive images being done
by every conv layer, read from the run's trace of kernel calls. Configuring the array with a
program costs its ``config_cycles``; a model of several programs reconfigures the array for each
one in every inference, a model of one program only before its first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import tvm
from tvm import relax

from .offload import MANIFEST_FUNC
from .runtime import load_program
from .target import get_device


@dataclass
class SubgraphReport:
    name: str
    layers: list
    tiles: int
    cycles: int
    latency_ns: float
    macs: int
    macs_per_cycle: float
    peak_macs_per_cycle: int  # of the tiles this subgraph uses
    efficiency: float  # macs_per_cycle / peak_macs_per_cycle
    onchip_intermediates: list
    bytes_moved: int
    per_tile: dict = field(repr=False)
    split: str | None = None  # why the subgraph ends here and the next program continues it
    batch: int = 1  # images the program runs (``cycles`` and ``latency_ns`` are the batch's)
    interval_cycles: float | None = None  # batch > 1: steady-state cycles per image
    interval_ns: float | None = None
    image_buffers: dict | None = None  # batch > 1: copies of each memory-tile map (2: ping-pong)
    config_bytes: int = 0  # configuring the array with this program: weights, maps, code
    config_cycles: int = 0  # those bytes from DDR (see tvm_aie.sim.report.SimReport)
    config_ns: float = 0.0


@dataclass
class Report:
    device: str
    clock_hz: int
    model_macs: int
    offloaded_macs: int
    subgraphs: list

    @property
    def offloaded_share(self) -> float:
        return self.offloaded_macs / self.model_macs if self.model_macs else 0.0

    @property
    def reconfigures(self) -> bool:
        """Whether every inference configures the array again (a model of several programs)."""
        return len(self.subgraphs) > 1

    @property
    def latency_ns(self) -> float:
        """Array time of one inference once running: the subgraphs one after another, each
        after configuring the array with it when there are several."""
        return sum(s.latency_ns + (s.config_ns if self.reconfigures else 0)
                   for s in self.subgraphs)

    @property
    def first_latency_ns(self) -> float:
        """The first inference: every program configured, then run."""
        return sum(s.latency_ns + s.config_ns for s in self.subgraphs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["offloaded_share"] = self.offloaded_share
        d["latency_ns"] = self.latency_ns
        d["first_latency_ns"] = self.first_latency_ns
        return d

    def __str__(self) -> str:
        dev = get_device(self.device)
        lines = [f"tvm-aie report: {dev.name} ({dev.tag}, {dev.board}), "
                 f"{dev.compute_tiles} compute tiles at {self.clock_hz / 1e9:.2f} GHz",
                 f"MACs on the array: {self.offloaded_macs:,} of {self.model_macs:,} "
                 f"({100 * self.offloaded_share:.1f}%)",
                 f"{'subgraph':<28}{'layers':>7}{'tiles':>7}{'cycles':>10}{'latency':>12}"
                 f"{'MAC/cyc':>10}{'peak':>8}{'eff':>8}"]
        for s in self.subgraphs:
            lines.append(f"{s.name:<28}{len(s.layers):>7}{s.tiles:>7}{s.cycles:>10,}"
                         f"{s.latency_ns / 1e3:>10.2f}us{s.macs_per_cycle:>10.1f}"
                         f"{s.peak_macs_per_cycle:>8}{100 * s.efficiency:>7.1f}%")
            for layer in s.layers:
                cfg = layer["config"]
                what = layer.get("summary") or f"{layer['m']}x{layer['k']}x{layer['n']} " \
                    f"{layer['precision']}"
                knobs = " ".join(f"{k}={v}" for k, v in cfg.items() if not k.startswith("double"))
                lines.append(f"  {layer['name']:<26}{what}  {knobs}  kernel "
                             f"{layer['kernel_cycles_per_block']:,} cycles/block")
            for edge in s.onchip_intermediates:
                lines.append(f"  on-chip: {edge}")
            if s.interval_cycles is not None:
                lines.append(f"  batch of {s.batch}: {s.cycles:,} cycles for the batch, "
                             f"{s.interval_cycles:,.0f} cycles ({s.interval_ns / 1e3:.2f}us, "
                             f"{1e9 / s.interval_ns:,.0f} images/s) per image in steady state "
                             f"(layers pipelined over the images)")
                single = [name for name, depth in (s.image_buffers or {}).items() if depth == 1]
                if single:
                    lines.append(f"  one memory-tile buffer (two do not fit; its writers and "
                                 f"readers take turns): {', '.join(single)}")
            if s.split:
                lines.append(f"  split (output via DDR to the next program): {s.split}")
            lines.append(f"  configuration: {s.config_bytes:,} B (weights, maps, code), "
                         f"{s.config_cycles:,} cycles ({s.config_ns / 1e3:.2f}us) from DDR, "
                         + ("every inference (the array is reconfigured for each program)"
                            if self.reconfigures else "before the first inference only"))
        lines.append(f"latency per inference: {self.latency_ns / 1e3:.2f}us"
                     + ("" if self.reconfigures else
                        f" (first inference, configuration included: "
                        f"{self.first_latency_ns / 1e3:.2f}us)"))
        return "\n".join(lines)


def _layer_rows(program, per_tile: dict) -> list:
    """Each layer of the program's meta with its kernel cycles per row block (the slowest tile's
    busy cycles over the blocks it computed): the figure kernel benchmarks publish."""
    rows = []
    for layer in program.meta["layers"]:
        blocks = layer["blocks"] * program.meta.get("batch", 1) if layer.get("blocks") else \
            -(-layer["m"] // layer["config"]["tm"])  # a conv layer's bands are per image
        busy = max(per_tile.get(f"{c},{r}", {}).get("busy", 0) for c, r in layer["tiles"])
        rows.append({**layer, "kernel_cycles_per_block": busy // blocks})
    return rows


def image_interval(program, trace: list) -> float:
    """Steady-state cycles per image of a program over a batch: image n is done when every conv
    layer has computed its last band (the end of kernel call ``(n + 1) * blocks`` on each of the
    layer's tiles, in the simulator's ``trace``); the mean gap between successive images."""
    ends = {}
    for track, label, start, cycles in trace:
        if label == "busy" and track.startswith("core "):
            ends.setdefault(track[len("core "):], []).append(start + cycles)
    images = program.meta["batch"]
    done = [0] * images
    for layer in (x for x in program.meta["layers"] if x.get("blocks")):
        per_image = layer["blocks"] * layer["config"].get("passes", 1)  # calls per image
        for c, r in layer["tiles"]:
            calls = ends[f"{c},{r}"]
            if len(calls) != images * per_image:
                raise ValueError(f"{layer['name']} on tile {c},{r} made {len(calls)} kernel "
                                 f"calls, not {per_image} per image of {images}")
            done = [max(d, calls[(n + 1) * per_image - 1]) for n, d in enumerate(done)]
    return (done[-1] - done[0]) / (images - 1)


def subgraph_report(name: str, program) -> SubgraphReport:
    """Run one AIE program in timing mode (same cycles as functional, no inputs needed); a
    program over a batch also keeps the trace to measure its interval per image."""
    from .sim import simulate  # pylint: disable=import-outside-toplevel

    dev = get_device(program.device)
    batch = program.meta.get("batch", 1)
    run = simulate(program, None, mode="timing", trace=batch > 1)
    sim = run.report
    interval = image_interval(program, run.trace) if batch > 1 else None
    macs = program.meta["macs"]
    return SubgraphReport(
        name=name, layers=_layer_rows(program, sim.per_tile), tiles=sim.tiles_used,
        cycles=sim.cycles, latency_ns=sim.cycles / dev.clock_hz * 1e9, macs=macs,
        macs_per_cycle=macs / sim.cycles, peak_macs_per_cycle=sim.peak_macs_per_cycle,
        efficiency=macs / sim.cycles / sim.peak_macs_per_cycle,
        onchip_intermediates=program.meta["onchip_intermediates"],
        bytes_moved=sim.bytes_moved["total"], per_tile=sim.per_tile,
        split=program.meta.get("split"), batch=batch, interval_cycles=interval,
        interval_ns=None if interval is None else interval / dev.clock_hz * 1e9,
        image_buffers=program.meta.get("image_buffers") if batch > 1 else None,
        config_bytes=sim.config_bytes, config_cycles=sim.config_cycles,
        config_ns=sim.config_cycles / dev.clock_hz * 1e9)


def programs(ex) -> tuple[dict, list]:
    """The manifest of an executable built by :func:`tvm_aie.build` and its ``(name, Program)``
    pairs, in the order the model runs them."""
    items = relax.VirtualMachine(ex, tvm.cpu())[MANIFEST_FUNC]()
    try:  # a loaded executable's manifest is data from a file: check its shape
        blobs = list(items)
        manifest = json.loads(blobs[0].numpy().tobytes().decode())
        if not isinstance(manifest["programs"], list) or len(manifest["programs"]) != \
                len(blobs) - 1 or not isinstance(manifest["model_macs"], int):
            raise ValueError(f"{len(blobs) - 1} programs for the names {manifest['programs']}")
        get_device(manifest["device"])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the executable's {MANIFEST_FUNC} manifest is malformed "
                         f"({type(e).__name__}: {e}); rebuild it with tvm-aie compile") from None
    return manifest, [(name, load_program(blob))
                      for name, blob in zip(manifest["programs"], blobs[1:])]


def report(ex) -> Report:
    """The :class:`Report` of an executable built by :func:`tvm_aie.build`."""
    manifest, progs = programs(ex)
    dev = get_device(manifest["device"])
    subgraphs = [subgraph_report(name, program) for name, program in progs]
    return Report(device=dev.name, clock_hz=dev.clock_hz, model_macs=manifest["model_macs"],
                  offloaded_macs=sum(s.macs for s in subgraphs), subgraphs=subgraphs)
