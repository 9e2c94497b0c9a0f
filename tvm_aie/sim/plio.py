"""The shim's PL interface: streams between the programmable logic and the array, beside DDR.

A shim (array interface) tile reaches the outside two ways: its DMA reads and writes DDR over the
NoC (:mod:`.noc`, one bandwidth all shims share), and its PL interface carries AXI4-Stream ports
from and to the programmable logic (AM009 / AM020 array interface; ``pl_interface`` in the
catalog). A design fed from the PL, as AIE4ML's are, is not limited by DDR at all. A program says
which way a shim channel goes by the DDR tensor its BDs name (``DdrTensor.io``): the bytes of a
``"pl"`` tensor are what PL logic streams in, in the BD's element order, or takes out; they cross
the port at the PL stream rate (``Device.pl_stream_bytes_per_cycle``) and book nothing on DDR.

Port counts per shim: ``in_streams`` PL to array and ``out_streams`` array to PL (8 and 6 on AIE
and AIE-ML). The shim DMA's channels enter the stream switch through the same south ports (the
shim mux puts them in place of two PL ports each way), so on a device with a PL interface a
shim's channel numbers, DMA and PL together, are below those counts, DMA channels still no more
than ``shim_dma`` has; without one (Ryzen AI NPUs) they are the DMA's channels only. A PL port is
no DMA: it has no locks to take and no BD limit (the BD list only spells out the stream's order).
Not modelled: which columns have a PL interface (only 39 of VC1902's 50 do), the device's
aggregate PL bandwidth, and PL logic slower than the port.
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
