"""DMA channels, their buffer-descriptor chains, and the stream routes between them.

A channel is an agent walking its BD chain (lock, bytes through its port, lock); a route joins one
MM2S port to one or more S2MM ports in chunks with back-pressure, switch latency and, at a shim,
DDR bandwidth; several routes into one S2MM port are a packet-switched merge. ``docs/design.md``
("The simulator") has the model.
"""

from __future__ import annotations

import math

import numpy as np

from .engine import Wait
from .memory import tile_key

def port_name(tile, direction: str, channel: int) -> str:
    return f"{tile_key(tile)}:{direction}{channel}"


def pattern_elements(offset: int, sizes: list, strides: list) -> np.ndarray:
    """Element indices an n-D BD visits, outermost dimension first."""
    idx = np.full([1] * len(sizes), offset, dtype=np.int64)
    for d, (size, stride) in enumerate(zip(sizes, strides)):
        shape = [1] * len(sizes)
        shape[d] = size
        idx = idx + (np.arange(size, dtype=np.int64) * stride).reshape(shape)
    return idx.reshape(-1)


def padded_pattern(offset: int, sizes: list, strides: list, before: list,
                   after: list) -> tuple[np.ndarray, np.ndarray]:
    """(element indices, is padding) of a BD with zero padding, outermost dimension first.

    Dimension ``d`` visits ``before[d] + sizes[d] + after[d]`` positions; a position in the
    padding of any dimension is a zero (its index is ``offset``, never read)."""
    idx = np.full([1] * len(sizes), offset, dtype=np.int64)
    pad = np.zeros([1] * len(sizes), dtype=bool)
    for d, (size, stride, b, a) in enumerate(zip(sizes, strides, before, after)):
        shape = [1] * len(sizes)
        shape[d] = b + size + a
        pos = np.arange(-b, size + a, dtype=np.int64)
        outside = (pos < 0) | (pos >= size)
        idx = idx + (np.where(outside, 0, pos) * stride).reshape(shape)
        pad = pad | outside.reshape(shape)
    idx, pad = np.broadcast_arrays(idx, pad)
    return np.where(pad, offset, idx).reshape(-1), pad.reshape(-1)


def pattern_bounds(offset: int, sizes: list, strides: list) -> tuple[int, int]:
    """Smallest and largest element index the pattern touches (without enumerating it)."""
    lo = hi = offset
    for size, stride in zip(sizes, strides):
        reach = (size - 1) * stride
        lo, hi = lo + min(0, reach), hi + max(0, reach)
    return lo, hi


class Port:
    """One DMA channel's end of its routes; ``current`` is the BD transfer it is on, if any.

    An MM2S port is the source of one route; an S2MM port is a destination of one or more (a merge).
    ``busy`` is set while a chunk crosses the port.
    """

    def __init__(self, name: str, channel, pl: bool = False):
        self.name, self.channel = name, channel
        self.pl = pl  # a shim's PL stream port (:mod:`.plio`): its own rate, no DDR booking
        self.current: Transfer | None = None
        self.stream = f"stream {name}"  # what a transfer on this port is called in stalls
        self.routes: list = []
        self.busy = False
        self.bytes = 0
        self.first = None  # cycle the first chunk started into this port (an S2MM end), if any
        self.turn = 0  # round-robin pointer: the route asked first

    def try_routes(self, last=None) -> None:
        """Let the routes into this port start a chunk, round-robin from the one after ``last``
        (just served)."""
        routes = self.routes
        if last is not None:
            self.turn = routes.index(last) + 1
        n = len(routes)
        for i in range(self.turn, self.turn + n):
            routes[i % n].try_move()


class Transfer(Wait):
    """One BD's bytes crossing the port; the channel blocks on it until the last byte moved."""

    def __init__(self, port: Port, nbytes: int, memory, byte_index):
        self.port, self.remaining, self.memory, self.byte_index = port, nbytes, memory, byte_index
        self.name = port.stream
        self.pos = 0
        self.agent = None

    def take(self, agent):
        self.agent = agent
        self.port.current = self
        self.port.try_routes()
        return False, None

    def read(self, nbytes: int) -> np.ndarray:
        return self.memory[self.byte_index[self.pos:self.pos + nbytes]]

    def write(self, data: np.ndarray) -> None:
        self.memory[self.byte_index[self.pos:self.pos + len(data)]] = data

    def describe(self) -> str:
        ends = {p.name: p for r in self.port.routes for p in [r.src, *r.dsts]}
        idle = [name for name, p in ends.items() if p.current is None]
        return f"stream transfer on {self.port.name}, {self.remaining} B left; " \
               f"no BD ready on {', '.join(idle)}"


class PaddedTransfer(Transfer):
    """A memory-tile MM2S BD with zero padding: ``pad`` marks the stream bytes that are zeros."""

    def __init__(self, port: Port, nbytes: int, memory, byte_index, pad):
        super().__init__(port, nbytes, memory, byte_index)
        self.pad = pad

    def read(self, nbytes: int) -> np.ndarray:
        data = super().read(nbytes)
        data[self.pad[self.pos:self.pos + nbytes]] = 0
        return data


class Route:
    """``ddr``: the shared DDR (:class:`.noc.Ddr`) booked once per shim end, or None."""

    def __init__(self, engine, src: Port, dsts: list, rate: int, latency: int, functional: bool,
                 ddr=None, ddr_ends: int = 0):
        self.engine, self.src, self.dsts = engine, src, dsts
        self.rate, self.latency, self.functional = rate, latency, functional
        self.ddr, self.ddr_ends = ddr, ddr_ends
        self.in_flight = False
        for p in [src, *dsts]:
            p.routes.append(self)

    def try_move(self) -> None:
        if self.in_flight or self.src.current is None:
            return
        for d in self.dsts:
            if d.current is None or d.busy:
                return
        nbytes = min(p.current.remaining for p in [self.src, *self.dsts])
        self.in_flight = True
        now = self.engine.now
        for d in self.dsts:
            d.busy = True
            if d.first is None:
                d.first = now
        cycles = math.ceil(nbytes / self.rate)
        for _ in range(self.ddr_ends):
            cycles = max(cycles, self.ddr.book(now, nbytes) - now)
        self.engine.at(now + cycles + self.latency, self._arrive, nbytes)

    def _arrive(self, nbytes: int) -> None:
        if self.functional:
            data = self.src.current.read(nbytes)
            for d in self.dsts:
                d.current.write(data)
        for p in [self.src, *self.dsts]:
            t = p.current
            p.bytes += nbytes
            t.pos += nbytes
            t.remaining -= nbytes
            if t.remaining == 0:
                p.current = None
                self.engine.wake(t.agent)
        self.in_flight = False
        for d in self.dsts:
            d.busy = False
        for d in self.dsts:  # this route is among each destination's, so it is tried too
            d.try_routes(last=self)


def chain_is_cyclic(channel) -> bool:
    """Whether the BD chain from ``start_bd`` comes back to a BD it already ran."""
    nxt = {bd.id: bd.next for bd in channel.bds}
    seen, bd = set(), channel.start_bd
    while bd is not None:
        if bd in seen:
            return True
        seen.add(bd)
        bd = nxt[bd]
    return False


def channel_agent(channel, port: Port, locks: dict, engine, transfers: dict):
    """The generator of one DMA channel; ``transfers[bd.id]`` builds that BD's :class:`Transfer`."""
    # Per BD: (the stateless lock wait or None, the transfer factory, lock and value to release)
    steps = {bd.id: (None if bd.acquire is None else
                     locks[bd.acquire.lock].acquire(bd.acquire.value), transfers[bd.id],
                     None if bd.release is None else locks[bd.release.lock],
                     None if bd.release is None else bd.release.value, bd.next)
             for bd in channel.bds}
    # A cyclic chain never reaches a ``None`` next, so it runs until the program ends.
    for _ in range(1 if chain_is_cyclic(channel) else channel.repeat):
        bd_id = channel.start_bd
        while bd_id is not None:
            wait, transfer, lock, value, bd_id = steps[bd_id]
            if wait is not None:
                yield wait
            yield transfer()
            if lock is not None:
                lock.release(engine, value, port.name)
