"""The simulator's report of one run: cycles, where they went, and how well the MACs were used."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SimReport:
    """One inference of one program.

    ``per_tile`` is keyed ``"col,row"`` for every core: ``busy`` cycles in kernels, ``stall`` cycles
    blocked, ``stall_on`` the stall split by lock or cascade name, ``macs`` computed.
    ``bytes_moved`` has ``total`` (bytes written into memories and DDR by S2MM channels; a
    broadcast counts once per destination) and one entry per DMA channel (``"col,row:mm2s0"``).
    ``peak_macs_per_cycle`` sums the catalog's MAC rate over the cores used, for their precision.
    ``first_output``: the cycle the first bytes of any output start into a shim (DDR or PL port),
    the end of what aiesimulator's I/O latency measures (first input to first output); ``cycles``
    if the program writes no output. ``config_bytes``: what configuring the array with the
    program writes (every buffer's initial contents, weights and padded maps, and the cores'
    code), and ``config_cycles`` that many bytes from DDR at the catalog's DDR rate (a lower
    bound: the configuration port's own rate and the register writes of BDs, locks and routes
    are not modelled); not part of ``cycles``.
    """

    cycles: int
    tiles_used: int
    macs: int
    peak_macs_per_cycle: int
    per_tile: dict = field(default_factory=dict)
    bytes_moved: dict = field(default_factory=dict)
    first_output: int = 0
    config_bytes: int = 0
    config_cycles: int = 0

    @property
    def macs_per_cycle(self) -> float:
        return self.macs / self.cycles if self.cycles else 0.0

    @property
    def efficiency(self) -> float:
        """Achieved over peak MAC rate of the cores used."""
        return self.macs_per_cycle / self.peak_macs_per_cycle if self.peak_macs_per_cycle else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["macs_per_cycle"] = self.macs_per_cycle
        d["efficiency"] = self.efficiency
        return d


@dataclass
class SimResult:
    outputs: dict  # DDR output name -> array of the tensor's (padded) shape; empty in timing mode
    report: SimReport
    trace: list | None = None  # (track, label, start cycle, cycles or lock value), if recorded
