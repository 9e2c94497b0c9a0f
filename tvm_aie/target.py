"""The device catalog and the TVM target tags built from it.

Every architecture number used anywhere in tvm-aie comes from ``devices.json`` through
:func:`get_device`; each fact there carries the public document it was taken from. A device is the
union of its generation's per-tile facts and its own array facts (size, clock).

TVM cannot gain a new target *kind* from Python, so the AIE targets are tags on ``llvm`` with the
extra key ``aie``: the host part of a model compiles with LLVM, and ``model`` names the AIE device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_CATALOG_PATH = Path(__file__).with_name("devices.json")


# (column, row) step between neighbouring tiles -> the direction it goes in
_STEPS = {(1, 0): "east", (-1, 0): "west", (0, -1): "south", (0, 1): "north"}


class UnknownDeviceError(ValueError):
    """A device or target tag that the catalog does not know."""


@dataclass(frozen=True)
class Device:
    """One AIE device: the facts of its generation plus its array geometry and clock."""

    name: str
    tag: str
    board: str
    generation: str
    columns: int
    compute_rows: int
    memtile_rows: int
    clock_hz: int
    interface_in_bytes_per_cycle: int
    interface_out_bytes_per_cycle: int
    ddr_bytes_per_cycle: int
    macs_per_cycle: dict
    data_memory_bytes: int
    data_memory_banks: int
    program_memory_bytes: int
    stack_bytes: int
    locks_per_tile: int
    lock_kind: str
    lock_max_value: int
    stream_switch_latency_cycles: int
    core_stream_ports: dict
    stream_bytes_per_cycle: int
    stream_switch_ports: dict
    cascade_bits: int
    cascade_directions: tuple
    tile_dma: dict
    memtile: dict | None
    shim_dma: dict
    vector_load_bytes_per_cycle: int
    vector_store_bytes_per_cycle: int
    mmul_shapes: dict
    # neighbours whose data memory a core reaches: a list, or one list per row parity (AIE)
    core_memory_access: list | dict
    # the shim tiles' programmable-logic streams; None on devices without PL (Ryzen AI NPUs)
    pl_interface: dict | None = None
    # element-wise fp32 on the vector unit: native lanes (AIE: mul_lanes, add_lanes), or a
    # multiply emulated by bf16 products (AIE-ML, AIE-MLv2: bf16_products_per_mul, add_lanes)
    float32_vector: dict | None = None
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def compute_tiles(self) -> int:
        return self.columns * self.compute_rows

    @property
    def usable_data_memory_bytes(self) -> int:
        """Data memory left for buffers once the core's stack is reserved."""
        return self.data_memory_bytes - self.stack_bytes

    def peak_macs_per_cycle(self, precision: str) -> int:
        """MACs per cycle of one tile for ``precision`` (a key of ``macs_per_cycle``)."""
        if precision not in self.macs_per_cycle:
            raise ValueError(
                f"{self.name} ({self.generation}) has no {precision} MAC datapath; "
                f"it has {sorted(self.macs_per_cycle)}"
            )
        return self.macs_per_cycle[precision]

    def mmul_shape(self, precision: str) -> tuple[int, int, int]:
        """The (M, K, N) shape of one matrix-multiply intrinsic for ``precision``."""
        if precision not in self.mmul_shapes:
            raise ValueError(f"{self.name} has no mmul intrinsic for {precision}")
        return tuple(self.mmul_shapes[precision])

    @property
    def pl_stream_bytes_per_cycle(self) -> float:
        """Bytes per AIE cycle one PL stream port carries: its width at the PL clock, and at most
        what a stream-switch port takes at the AIE clock (the clock-domain crossing's two ends)."""
        pl = self.pl_interface
        return min(self.stream_bytes_per_cycle,
                   pl["stream_bits"] / 8 * pl["pl_clock_hz"] / self.clock_hz)

    @property
    def first_compute_row(self) -> int:
        """Row 0 is the shim (array interface) row, then the memory-tile rows, then compute rows."""
        return 1 + self.memtile_rows

    def cascade_direction(self, row: int) -> tuple[str, ...]:
        """Directions a cascade may leave a compute tile of ``row`` in (``cascade_directions``).

        AIE's cascade is one snake through the array: eastwards on even compute rows, westwards on
        odd ones (the wrap to the next row at the array's edge is not used by the codegen).
        """
        if "snake" in self.cascade_directions:
            return ("east",) if (row - self.first_compute_row) % 2 == 0 else ("west",)
        return self.cascade_directions

    def cascade_allowed(self, src, dst) -> bool:
        """Whether a cascade may link compute tile ``src`` to its neighbour ``dst`` ((col, row))."""
        return _STEPS.get((dst[0] - src[0], dst[1] - src[1])) in self.cascade_direction(src[1])

    def core_memory_directions(self, row: int) -> tuple[str, ...]:
        """Neighbours whose data memory the core of a compute tile in ``row`` reaches besides its
        own (``core_memory_access``): on AIE the memory module alternates sides by array row, so
        the horizontal neighbour is east on even rows and west on odd ones."""
        access = self.core_memory_access
        if isinstance(access, dict):
            access = access["even" if row % 2 == 0 else "odd"]
        return tuple(access)

    def core_reaches(self, core, tile) -> bool:
        """Whether the core of compute tile ``core`` may load and store in the data memory of
        compute tile ``tile`` ((col, row)): its own, or a neighbour's in an allowed direction."""
        step = (tile[0] - core[0], tile[1] - core[1])
        return step == (0, 0) or _STEPS.get(step) in self.core_memory_directions(core[1])

    def source_of(self, fact: str) -> str:
        """The public document a fact was taken from."""
        return self.sources[fact]


@lru_cache(maxsize=1)
def _catalog() -> dict:
    with open(_CATALOG_PATH, encoding="utf-8") as f:
        return json.load(f)


def _value(entry):
    """Catalog facts are ``{"value": v, "source": s}``; MAC tables nest one level deeper."""
    if isinstance(entry, dict) and "value" in entry:
        return entry["value"]
    return {k: _value(v) for k, v in entry.items()}


def _source(entry, references):
    if isinstance(entry, dict) and "source" in entry:
        return references[entry["source"]]
    return {k: _source(v, references) for k, v in entry.items()}


def device_names() -> list[str]:
    return sorted(_catalog()["devices"])


def device_tags() -> dict[str, str]:
    """Target tag -> device name, including the bare ``aie`` tag for the default device."""
    cat = _catalog()
    tags = {d["tag"]: name for name, d in cat["devices"].items()}
    tags["aie"] = cat["default_device"]
    return tags


@lru_cache(maxsize=None)
def get_device(name: str | None = None) -> Device:
    """Look a device up by name (``ve2802``) or target tag (``aie-ml/vek280``, ``aie``)."""
    cat = _catalog()
    name = name or cat["default_device"]
    name = device_tags().get(name, name)
    if name not in cat["devices"]:
        known = ", ".join(f"{n} ({cat['devices'][n]['tag']})" for n in device_names())
        raise UnknownDeviceError(f"unknown AIE device '{name}'; known devices: {known}")
    dev = cat["devices"][name]
    gen = cat["generations"][dev["generation"]]
    refs = cat["references"]
    facts, sources = {}, {}
    for key, entry in list(gen.items()) + [(k, v) for k, v in dev.items() if isinstance(v, dict)]:
        facts[key] = _value(entry)
        sources[key] = _source(entry, refs)
    facts.setdefault("stack_bytes", 0)
    facts["cascade_directions"] = tuple(facts["cascade_directions"])
    return Device(
        name=name, tag=dev["tag"], board=dev["board"], generation=dev["generation"],
        sources=sources, **facts,
    )


def device_of_target(target) -> Device:
    """The AIE device a TVM target names, from its ``model`` attribute (``aie`` key required)."""
    import tvm  # pylint: disable=import-outside-toplevel

    if target is None:
        return get_device()
    if isinstance(target, str):
        if target in device_tags() or target in _catalog()["devices"]:
            return get_device(target)
        target = tvm.target.Target(target)
    if "aie" not in target.keys:
        raise UnknownDeviceError(f"target {target} is not an AIE target (no 'aie' key)")
    return get_device(str(target.attrs.get("model", "")) or None)


def register_targets() -> None:
    """Register one ``llvm`` tag per device (and ``aie`` for the default one)."""
    from tvm.target import register_tag  # pylint: disable=import-outside-toplevel

    for tag, name in device_tags().items():
        register_tag(tag, {"kind": "llvm", "keys": ["aie", "cpu"], "model": name}, override=True)
