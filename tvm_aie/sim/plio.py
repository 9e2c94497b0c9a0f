"""The shim's PL interface: streams between the programmable logic and the array, beside DDR.

A ``"pl"`` DDR tensor's bytes cross a shim's PL stream port at the PL rate and book nothing on
DDR; DMA channels and PL ports share a shim's south stream ports. ``docs/design.md`` ("The
simulator") has the port counts and what is not modelled.
"""

from __future__ import annotations


def channel_io(channel, tensors: dict, name: str) -> str:
    """``"ddr"`` or ``"pl"``: which way the shim channel ``channel`` goes, from its BDs' tensors."""
    kinds = {tensors[bd.buffer].io for bd in channel.bds if bd.buffer in tensors}
    if len(kinds) > 1:
        raise ValueError(f"shim channel {name}: its BDs name both DDR and PL tensors")
    io = kinds.pop() if kinds else "ddr"
    if io not in ("ddr", "pl"):
        raise ValueError(f"shim channel {name}: tensor io must be 'ddr' or 'pl', not {io!r}")
    if io == "pl" and any(bd.acquire or bd.release for bd in channel.bds):
        raise ValueError(f"shim channel {name}: a PL stream port has no locks to acquire or "
                         f"release")
    return io


class ShimPorts:
    """The shim channels of one program, counted per tile and direction against the catalog."""

    def __init__(self, device):
        self.device = device
        self.used: dict = {}  # (tile key, direction, io) -> channels

    def add(self, channel, io: str, name: str) -> None:
        pl, dma = self.device.pl_interface, self.device.shim_dma
        if io == "pl" and pl is None:
            raise ValueError(f"shim channel {name}: {self.device.name} has no PL interface")
        if channel.direction not in ("mm2s", "s2mm"):
            raise ValueError(f"shim channel {name}: direction must be mm2s or s2mm")
        ports = dma[channel.direction] if pl is None else \
            pl["in_streams" if channel.direction == "mm2s" else "out_streams"]
        if not 0 <= channel.channel < ports:
            raise ValueError(f"shim channel {name}: a shim tile has {ports} {channel.direction} "
                             f"stream ports{'' if pl is None else ' (DMA and PL together)'}")
        key = (f"{channel.tile[0]},{channel.tile[1]}", channel.direction, io)
        self.used[key] = self.used.get(key, 0) + 1
        if io == "ddr" and self.used[key] > dma[channel.direction]:
            raise ValueError(f"shim tile {key[0]}: {self.used[key]} {channel.direction} DMA "
                             f"channels, a shim tile has {dma[channel.direction]}")
