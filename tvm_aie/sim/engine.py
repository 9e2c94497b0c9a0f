"""The discrete-event engine: agents (cores, DMA channels) as generators on one event heap.

An agent is a generator that yields what it needs next: an ``int`` (be busy for that many cycles)
or a :class:`Wait` (block until a resource grants it, e.g. a lock value or a cascade block). Events
are ordered by ``(time, sequence number)``, so a run is deterministic. Events for the current
cycle (most of them: an agent woken by a lock) skip the heap and go to a FIFO that runs after the
heap's events of that cycle, which is the same order at a fraction of the cost. The engine knows how many
agents must finish for the run to be complete; agents that run forever (cyclic DMA chains) do not
count, so a program ends when the required ones are done even if cyclic chains still wait.

Time alone does not bound a run: agents that only take and give locks that are free (a core
looping acquire/release) do work without time passing. The engine also bounds the work done in one
cycle (:data:`ZERO_TIME_STEPS`) and raises :class:`NoProgressError` naming the agents that loop.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque

# Most steps (lock grants, wake-ups, zero-cycle requests) one cycle may take before the run is
# declared stuck: far above what any program does in one cycle (a few per agent), reached in
# about a second by agents looping without time passing.
ZERO_TIME_STEPS = 1_000_000


class SimulationError(RuntimeError):
    """The program misbehaves while running (e.g. a lock released past its maximum)."""


class DeadlockError(SimulationError):
    """No event is pending but the program has not finished: every agent left waits on another."""


class CycleLimitError(SimulationError):
    """The run went past its cycle limit without finishing."""


class NoProgressError(SimulationError):
    """Agents keep stepping (e.g. acquiring and releasing free locks) but time does not advance."""


class Wait:
    """Something an agent can block on. ``take`` grants it now if possible (returns (ok, value));
    otherwise the resource keeps the agent and calls :meth:`Engine.wake` when it grants it."""

    name = ""

    def take(self, agent) -> tuple[bool, object]:
        raise NotImplementedError

    def describe(self) -> str:
        """What is awaited and why it is not there, for deadlock messages."""
        raise NotImplementedError


class Agent:
    """One generator plus the bookkeeping the report needs: busy and stall cycles."""

    def __init__(self, name: str, gen, required: bool):
        self.name, self.gen, self.required = name, gen, required
        self.busy = 0
        self.stall = 0
        self.stall_on: dict = {}
        self.waiting: Wait | None = None
        self.wait_since = 0
        self.finished = False


class Engine:
    """``trace``: a list to record ``(track, label, start, cycles or value)`` into, or None.

    Agents record their busy spans (label ``busy``) and, when woken, the span they waited and on
    what; locks record their values. Nothing is recorded (and nothing costs) without a list.
    """

    def __init__(self, max_cycles: int, trace: list | None = None):
        self.trace = trace
        self.now = 0
        self.max_cycles = max_cycles
        self._heap: list = []
        self._now_queue: deque = deque()  # (fn, arg) due at ``now``, after the heap's
        self._seq = 0
        self.agents: list = []
        self._required_left = 0
        self._started = False

    def at(self, time: int, fn, arg=None) -> None:
        """Call ``fn(arg)`` at ``time``."""
        if time == self.now and self._started:
            self._now_queue.append((fn, arg))
            return
        heapq.heappush(self._heap, (time, self._seq, fn, arg))
        self._seq += 1

    def spawn(self, name: str, gen, required: bool) -> Agent:
        agent = Agent(name, gen, required)
        self.agents.append(agent)
        self._required_left += required
        self.at(0, self._step, (agent, None))
        return agent

    def wake(self, agent: Agent, value=None) -> None:
        """A resource grants what ``agent`` waited for; it resumes now with ``value``."""
        waited = self.now - agent.wait_since
        agent.stall += waited
        key = agent.waiting.name
        agent.stall_on[key] = agent.stall_on.get(key, 0) + waited
        if self.trace is not None and waited:
            self.trace.append((agent.name, key, agent.wait_since, waited))
        agent.waiting = None
        self.at(self.now, self._step, (agent, value))

    def _step(self, arg) -> None:
        agent, value = arg
        for _ in range(ZERO_TIME_STEPS):
            try:
                req = agent.gen.send(value)
            except StopIteration:
                agent.finished = True
                self._required_left -= agent.required
                return
            if isinstance(req, int):
                agent.busy += req
                if self.trace is not None and req:
                    self.trace.append((agent.name, "busy", self.now, req))
                self.at(self.now + req, self._step, (agent, None))
                return
            ok, value = req.take(agent)
            if not ok:
                agent.waiting, agent.wait_since = req, self.now
                return
        self._no_progress(Counter([agent.name]))

    def run(self) -> int:
        """Run until every required agent has finished; returns that time in cycles."""
        self._started = True
        heap, queue, pop = self._heap, self._now_queue, heapq.heappop
        steps = 0  # events run at the current cycle
        while self._required_left:
            if heap and heap[0][0] == self.now:
                _, _, fn, arg = pop(heap)
            elif queue:
                fn, arg = queue.popleft()
            elif heap:
                if heap[0][0] > self.max_cycles:
                    raise CycleLimitError(
                        f"no end after {self.max_cycles:,} cycles (raise max_cycles if the program "
                        f"is really that long); waiting:\n{self.blocked_report()}")
                self.now, steps = heap[0][0], 0
                continue
            else:
                raise DeadlockError("deadlock at cycle %d; blocked:\n%s"
                                    % (self.now, self.blocked_report()))
            steps += 1
            if steps > ZERO_TIME_STEPS:
                self._no_progress(Counter(a[0].name for _, a in queue
                                          if isinstance(a, tuple) and isinstance(a[0], Agent)))
            fn(arg)
        return self.now

    def _no_progress(self, agents: Counter) -> None:
        names = ", ".join(name for name, _ in agents.most_common(8)) or "(unknown)"
        raise NoProgressError(
            f"no progress at cycle {self.now:,}: over {ZERO_TIME_STEPS:,} steps without time "
            f"passing, looping: {names} (a loop of acquires and releases of free locks?)")

    def blocked_report(self) -> str:
        lines = [f"  {a.name}: waits on {a.waiting.describe()}" for a in self.agents
                 if a.waiting is not None and not a.finished]
        return "\n".join(lines) or "  (nothing)"
