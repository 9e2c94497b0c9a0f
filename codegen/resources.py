"""Per-tile resources the codegen hands out: data memory, locks, DMA channels and PL ports.

Every allocation is checked against the device catalog at the moment it is made, so a design that
does not fit fails with the tile, the resource and the numbers, not later in the simulator.
"""

from __future__ import annotations

from .program import Buffer, Lock, Program, TileSpec

VECTOR_ALIGN = 32  # 256-bit vector loads and stores need 32-byte aligned buffers (AM020)


class ResourceError(ValueError):
    """A design asks a tile for more memory, locks or DMA channels than it has."""


def _key(tile) -> tuple:
    return (int(tile[0]), int(tile[1]))


class TileResources:
    """Bump allocators for every tile of one program."""

    def __init__(self, program: Program, device, first_compute_row: int):
        self.program = program
        self.device = device
        self.first_compute_row = first_compute_row
        self._mem_top: dict = {}
        self._locks: dict = {}
        self._channels: dict = {}  # DMA channels in use per (tile, direction)
        self._numbers: dict = {}  # channel numbers handed out per (tile, direction)

    def kind(self, tile) -> str:
        row = tile[1]
        if row == 0:
            return "shim"
        return "memtile" if row < self.first_compute_row else "compute"

    def tile_specs(self) -> list:
        """The :class:`TileSpec` of every tile the program uses (a buffer or a DMA channel)."""
        used = {_key(b.tile) for b in self.program.buffers} | \
            {_key(d.tile) for d in self.program.dmas}
        return [TileSpec(c, r, self.kind((c, r))) for c, r in sorted(used)]

    def _memory(self, tile) -> tuple[int, int]:
        """(first usable byte, memory size) of a tile; the core's stack sits at the bottom."""
        if self.kind(tile) == "memtile":
            return 0, self.device.memtile["bytes"]
        return self.device.stack_bytes, self.device.data_memory_bytes

    def buffer(self, name: str, tile, shape, dtype: str, initial: str | None = None) -> Buffer:
        base, size = self._memory(tile)
        top = self._mem_top.get(_key(tile), base)
        buf = Buffer(name=name, tile=list(_key(tile)), offset=top, shape=list(shape), dtype=dtype,
                     initial=initial)
        end = top + buf.nbytes
        if end > size:
            used = ", ".join(f"{b.name} {b.nbytes:,} B" for b in self.program.buffers
                             if _key(b.tile) == _key(tile))
            raise ResourceError(
                f"buffer {name} ({buf.nbytes:,} B) does not fit in tile {_key(tile)}: "
                f"{top - base:,} of {size - base:,} B already used ({used})"
            )
        self._mem_top[_key(tile)] = -(-end // VECTOR_ALIGN) * VECTOR_ALIGN
        self.program.buffers.append(buf)
        return buf

    def free_bytes(self, tile) -> int:
        """Bytes of ``tile``'s memory not yet handed out (a buffer starts 32-byte aligned)."""
        base, size = self._memory(tile)
        return size - self._mem_top.get(_key(tile), base)

    def lock(self, name: str, tile, init: int) -> Lock:
        ids = self._locks.setdefault(_key(tile), 0)
        limit = self._lock_limit(tile)
        if ids >= limit:
            raise ResourceError(f"tile {_key(tile)} has no lock left for {name} ({limit} in use)")
        self._locks[_key(tile)] = ids + 1
        lk = Lock(name=name, tile=list(_key(tile)), id=ids, init=init)
        self.program.locks.append(lk)
        return lk

    def _lock_limit(self, tile) -> int:
        kind = self.kind(tile)
        if kind == "memtile":
            return self.device.memtile["locks"]
        return self.device.locks_per_tile

    def channel(self, tile, direction: str) -> int:
        """The next free DMA channel of ``direction`` ("mm2s" | "s2mm") on ``tile``."""
        kind = self.kind(tile)
        table = {"shim": self.device.shim_dma, "memtile": self.device.memtile,
                 "compute": self.device.tile_dma}[kind]
        used = self._channels.get((_key(tile), direction), 0)
        if used >= table[direction]:
            raise ResourceError(f"{kind} tile {_key(tile)} has no free {direction} DMA channel "
                                f"({table[direction]} in use)")
        self._channels[(_key(tile), direction)] = used + 1
        return self._number(tile, direction)

    def pl_port(self, tile, direction: str) -> int:
        """The next free PL stream port of ``direction`` on shim ``tile`` (its channel number)."""
        if self.free_pl_ports(tile, direction) == 0:
            raise ResourceError(f"shim tile {_key(tile)} has no free {direction} PL stream port "
                                f"({self._pl_limit(direction)} in use by DMA channels and PL "
                                f"streams)")
        return self._number(tile, direction)

    def _pl_limit(self, direction: str) -> int:
        return self.device.pl_interface["in_streams" if direction == "mm2s" else "out_streams"]

    def free_pl_ports(self, tile, direction: str) -> int:
        """A shim's south stream ports not yet taken by its DMA channels or PL streams."""
        return self._pl_limit(direction) - self._numbers.get((_key(tile), direction), 0)

    def _number(self, tile, direction: str) -> int:
        """Channel numbers per tile and direction, in order; on a shim its DMA channels and PL
        ports share them (the south stream ports, :mod:`tvm_aie.sim.plio`)."""
        n = self._numbers.get((_key(tile), direction), 0)
        self._numbers[(_key(tile), direction)] = n + 1
        return n

    def free_channels(self, tile, direction: str) -> int:
        kind = self.kind(tile)
        table = {"shim": self.device.shim_dma, "memtile": self.device.memtile,
                 "compute": self.device.tile_dma}[kind]
        free = table[direction] - self._channels.get((_key(tile), direction), 0)
        if kind == "shim" and self.device.pl_interface is not None:
            free = min(free, self.free_pl_ports(tile, direction))
        return free

    def nearest_shim(self, col: int, direction: str, pl: bool = False) -> tuple:
        """The shim tile nearest to column ``col`` that still has a free ``direction`` channel
        (``pl``: PL stream port)."""
        if pl and self.device.pl_interface is None:
            raise ResourceError(f"{self.device.name} has no PL interface to stream through")
        free = self.free_pl_ports if pl else self.free_channels
        for dist in range(self.device.columns):
            for c in (col - dist, col + dist):
                if 0 <= c < self.device.columns and free((c, 0), direction) > 0:
                    return (c, 0)
        what = "PL stream port" if pl else "channel"
        raise ResourceError(f"no shim tile has a free {direction} {what} left")
