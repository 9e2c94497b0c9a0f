"""Semaphore locks: the only synchronisation between cores and DMAs on AIE-ML.

``acquire(v)`` waits until the value is >= v and subtracts v; ``release(v)`` adds v. The largest
value is the catalog's ``lock_max_value`` (a 6-bit counter on AIE-ML and AIE-MLv2, a single bit on
AIE), so releasing past it is a program error, not something to saturate silently.
"""

from __future__ import annotations

from .engine import SimulationError, Wait


class Lock:
    def __init__(self, name: str, tile, init: int, maximum: int, engine):
        if not 0 <= init <= maximum:
            raise ValueError(f"lock {name} on tile {tile}: initial value {init} "
                             f"not in [0, {maximum}]")
        self.name, self.tile, self.value, self.maximum = name, tile, init, maximum
        self.engine = engine
        self.waiters: list = []  # [(agent, value)] in arrival order
        self.changed()

    def changed(self) -> None:
        """Record the value in the engine's trace, if it keeps one."""
        if self.engine.trace is not None:
            self.engine.trace.append((f"lock {self.name}", "value", self.engine.now, self.value))

    def release(self, engine, value: int, by: str) -> None:
        if self.value + value > self.maximum:
            raise SimulationError(f"{by} releases lock {self.name} by {value} at cycle "
                                  f"{engine.now}: {self.value} + {value} exceeds its maximum "
                                  f"{self.maximum}")
        self.value += value
        still = []
        for agent, want in self.waiters:
            if self.value >= want:
                self.value -= want
                engine.wake(agent)
            else:
                still.append((agent, want))
        self.waiters = still
        self.changed()

    def acquire(self, value: int) -> "Acquire":
        return Acquire(self, value)


class Acquire(Wait):
    def __init__(self, lock: Lock, value: int):
        self.lock, self.value, self.name = lock, value, lock.name

    def take(self, agent):
        if self.lock.value >= self.value:
            self.lock.value -= self.value
            self.lock.changed()
            return True, None
        self.lock.waiters.append((agent, self.value))
        return False, None

    def describe(self) -> str:
        return f"lock {self.lock.name} (wants {self.value}, holds {self.lock.value})"
