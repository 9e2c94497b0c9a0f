"""The report of a built model: what runs on the array, on how many tiles, how fast.

Made from the executable alone (its ``aie_programs`` manifest), so it works for a loaded one too.
Each program is run once on the simulator in timing mode, which gives the same cycles as a
functional run without needing inputs.
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
    def latency_ns(self) -> float:
        """Array time of one inference: the subgraphs run one after another."""
        return sum(s.latency_ns for s in self.subgraphs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["offloaded_share"] = self.offloaded_share
        d["latency_ns"] = self.latency_ns
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
            if s.split:
                lines.append(f"  split (output via DDR to the next program): {s.split}")
        return "\n".join(lines)


def _layer_rows(program, per_tile: dict) -> list:
    """Each layer of the program's meta with its kernel cycles per row block (the slowest tile's
    busy cycles over the blocks it computed): the figure kernel benchmarks publish."""
    rows = []
    for layer in program.meta["layers"]:
        blocks = layer.get("blocks") or -(-layer["m"] // layer["config"]["tm"])
        busy = max(per_tile.get(f"{c},{r}", {}).get("busy", 0) for c, r in layer["tiles"])
        rows.append({**layer, "kernel_cycles_per_block": busy // blocks})
    return rows


def subgraph_report(name: str, program) -> SubgraphReport:
    """Run one AIE program in timing mode (same cycles as functional, no inputs needed)."""
    from .sim import simulate  # pylint: disable=import-outside-toplevel

    dev = get_device(program.device)
    sim = simulate(program, None, mode="timing").report
    macs = program.meta["macs"]
    return SubgraphReport(
        name=name, layers=_layer_rows(program, sim.per_tile), tiles=sim.tiles_used,
        cycles=sim.cycles, latency_ns=sim.cycles / dev.clock_hz * 1e9, macs=macs,
        macs_per_cycle=macs / sim.cycles, peak_macs_per_cycle=sim.peak_macs_per_cycle,
        efficiency=macs / sim.cycles / sim.peak_macs_per_cycle,
        onchip_intermediates=program.meta["onchip_intermediates"],
        bytes_moved=sim.bytes_moved["total"], per_tile=sim.per_tile,
        split=program.meta.get("split"))


def programs(ex) -> tuple[dict, list]:
    """The manifest of an executable built by :func:`tvm_aie.build` and its ``(name, Program)``
    pairs, in the order the model runs them."""
    items = relax.VirtualMachine(ex, tvm.cpu())[MANIFEST_FUNC]()
    manifest = json.loads(items[0].numpy().tobytes().decode())
    return manifest, [(name, load_program(blob))
                      for name, blob in zip(manifest["programs"], list(items)[1:])]


def report(ex) -> Report:
    """The :class:`Report` of an executable built by :func:`tvm_aie.build`."""
    manifest, progs = programs(ex)
    dev = get_device(manifest["device"])
    subgraphs = [subgraph_report(name, program) for name, program in progs]
    return Report(device=dev.name, clock_hz=dev.clock_hz, model_macs=manifest["model_macs"],
                  offloaded_macs=sum(s.macs for s in subgraphs), subgraphs=subgraphs)
