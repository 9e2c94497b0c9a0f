"""DDR behind the NoC: one bandwidth that every shim DMA channel shares.

A shim DMA reads and writes DDR through the NoC, and the memory delivers ``ddr_bytes_per_cycle``
(catalog) in all, reads and writes together. Each chunk a shim channel moves books its bytes on
that budget in the order chunks start: it may not finish before the memory has served every byte
booked before it and its own. Alone, a channel is limited by its stream (4 B/cycle); many at once
share the memory: N channels of B bytes each that start together finish by N * B / bandwidth.
Bookings are kept in byte-times (cycles x bandwidth) so the arithmetic is exact in integers.
"""

from __future__ import annotations


class Ddr:
    def __init__(self, bytes_per_cycle: int):
        self.rate = bytes_per_cycle
        self.free_at = 0  # byte-time at which the memory has served every booked byte

    def book(self, now: int, nbytes: int) -> int:
        """Book ``nbytes`` starting at cycle ``now``; returns the cycle they have all moved by."""
        self.free_at = max(now * self.rate, self.free_at) + nbytes
        return -(-self.free_at // self.rate)
