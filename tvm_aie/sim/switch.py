"""The stream switch network: which switches a route crosses, and whether their ports suffice.

Each tile's stream switch has a fixed number of master ports (leaving) and slave ports (arriving)
per direction, from the catalog (``stream_switch_ports``: AM009 / AM020 tables; a memory tile has
no east or west ports). Routes are placed in program order, the way a router would: X then Y from
the source (the horizontal leg in the nearest row, towards the destination, whose switches have
east/west ports, since a memory tile's column is left vertically first); if a switch on that path
has no port left, the shortest path whose switches all have one (breadth-first search, only then,
so it costs nothing on programs that fit). A broadcast is a tree: a link its branches share is
used once. Routes merged into one S2MM port are one packet-switched stream: where they share a
link they share its port, which is what packet switching saves. A route no free path can carry
fails at load, naming the tile, the direction and the routes on its X-then-Y path's full switch.
"""

from __future__ import annotations

from collections import deque

from .memory import tile_key

# direction of a step (dc, dr) -> (master port it leaves by, slave port it arrives on)
_STEP = {(1, 0): ("east", "west"), (-1, 0): ("west", "east"),
         (0, 1): ("north", "south"), (0, -1): ("south", "north")}


class StreamSwitches:
    def __init__(self, device):
        self.device = device
        self.rows = device.first_compute_row + device.compute_rows
        self.usage: dict = {}  # (tile, "master" | "slave", direction) -> {stream id: route name}

    def kind(self, row: int) -> str:
        if row == 0:
            return "shim"
        return "memtile" if row < self.device.first_compute_row else "compute"

    def _horizontal_row(self, src, dst) -> int:
        """The row of the route's east/west leg: the source's, or the nearest one towards the
        destination whose switches have east/west ports."""
        ports = self.device.stream_switch_ports
        step = 1 if dst[1] >= src[1] else -1
        row = src[1]
        while 0 <= row < self.rows:
            if ports[self.kind(row)]["master"]["east"]:
                return row
            row += step
        raise ValueError(f"no row with east/west stream ports between {tile_key(src)} and "
                         f"{tile_key(dst)}")

    def links(self, src, dst) -> list:
        """The (from tile, to tile) steps of the route from ``src`` to ``dst`` ((col, row))."""
        row = src[1] if src[0] == dst[0] else self._horizontal_row(src, dst)
        corners = [(src[0], src[1]), (src[0], row), (dst[0], row), (dst[0], dst[1])]
        steps = []
        for (c0, r0), (c1, r1) in zip(corners, corners[1:]):
            dc, dr = (c1 > c0) - (c1 < c0), (r1 > r0) - (r1 < r0)
            while (c0, r0) != (c1, r1):
                steps.append(((c0, r0), (c0 + dc, r0 + dr)))
                c0, r0 = c0 + dc, r0 + dr
        return steps

    def add_route(self, name: str, stream, src, dsts: list) -> int:
        """Book the ports of a route (``stream``: its id, shared by a packet-switched merge);
        returns the most switches any destination's data crosses."""
        tree: dict = {}  # links in path order, each once: errors name the first switch short
        longest = 0
        for dst in dsts:
            steps = self.links(src, dst)
            if not all(link in tree or self._free(link, stream) for link in steps):
                steps = self._search(src, dst, stream, tree) or steps
            tree.update(dict.fromkeys(steps))
            longest = max(longest, len(steps) + 1)
        for a, b in tree:
            out, into = _STEP[(b[0] - a[0], b[1] - a[1])]
            self.usage.setdefault((a, "master", out), {}).setdefault(stream, name)
            self.usage.setdefault((b, "slave", into), {}).setdefault(stream, name)
        return longest

    def _free(self, link, stream) -> bool:
        """Whether ``stream`` can cross ``link``: it holds its ports already, or both have room."""
        (a, b), ports = link, self.device.stream_switch_ports
        out, into = _STEP[(b[0] - a[0], b[1] - a[1])]
        for tile, side, direction in ((a, "master", out), (b, "slave", into)):
            held = self.usage.get((tile, side, direction), {})
            if stream not in held and len(held) >= ports[self.kind(tile[1])][side][direction]:
                return False
        return True

    def _search(self, src, dst, stream, tree: dict) -> list | None:
        """The shortest path from ``src`` to ``dst`` over links with a free port (or in ``tree``,
        the route's own), or None."""
        cols = self.device.columns
        came = {src: None}
        queue = deque([src])
        while queue:
            a = queue.popleft()
            if a == dst:
                steps = []
                while came[a] is not None:
                    steps.append((came[a], a))
                    a = came[a]
                return steps[::-1]
            for dc, dr in _STEP:
                b = (a[0] + dc, a[1] + dr)
                if (b not in came and 0 <= b[0] < cols and 0 <= b[1] < self.rows
                        and ((a, b) in tree or self._free((a, b), stream))):
                    came[b] = a
                    queue.append(b)
        return None

    def check(self) -> None:
        """Every switch within its port counts, or a ValueError naming the tile and the routes."""
        ports = self.device.stream_switch_ports
        for (tile, side, direction), streams in self.usage.items():
            kind = self.kind(tile[1])
            have = ports[kind][side][direction]
            if len(streams) > have:
                routes = "; ".join(sorted(streams.values()))
                raise ValueError(
                    f"stream switch of {kind} tile {tile_key(tile)}: {len(streams)} streams "
                    f"{'leave' if side == 'master' else 'arrive'} "
                    f"{'to the' if side == 'master' else 'from the'} {direction} through its "
                    f"{have} {side} ports: {routes}")
