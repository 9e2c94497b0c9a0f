"""Cascade links: accumulator blocks passed from one core to its neighbour.

A kernel with ``cascade_out`` pushes its whole accumulator block into the link; one with
``cascade_in`` pops a block and adds it to its own. The link is modelled as a FIFO of whole blocks
holding two of them: the producer can finish one block while the consumer still holds the previous
one, as double-buffered accumulator registers allow, and blocks beyond that wait (back-pressure).
"""

from __future__ import annotations

from collections import deque

from .engine import Wait

FIFO_BLOCKS = 2  # a modelling choice (double-buffered accumulators), not a catalog fact


class CascadeLink:
    def __init__(self, engine, src: str, dst: str):
        self.engine = engine
        self.name = f"cascade {src}->{dst}"
        self.blocks: deque = deque()
        self.pusher = None  # (agent, block) waiting for room
        self.popper = None  # agent waiting for a block

    def push(self, block) -> "Push":
        return Push(self, block)

    def pop(self) -> "Pop":
        return Pop(self)


class Push(Wait):
    def __init__(self, link: CascadeLink, block):
        self.link, self.block, self.name = link, block, link.name

    def take(self, agent):
        link = self.link
        if len(link.blocks) >= FIFO_BLOCKS:
            link.pusher = (agent, self.block)
            return False, None
        if link.popper is not None:
            agent_waiting, link.popper = link.popper, None
            link.engine.wake(agent_waiting, self.block)
        else:
            link.blocks.append(self.block)
        return True, None

    def describe(self) -> str:
        return f"{self.link.name} (full: {len(self.link.blocks)} blocks not taken)"


class Pop(Wait):
    def __init__(self, link: CascadeLink):
        self.link, self.name = link, link.name

    def take(self, agent):
        link = self.link
        if not link.blocks:
            link.popper = agent
            return False, None
        block = link.blocks.popleft()
        if link.pusher is not None:
            (pusher, pending), link.pusher = link.pusher, None
            link.blocks.append(pending)
            link.engine.wake(pusher)
        return True, block

    def describe(self) -> str:
        return f"{self.link.name} (empty)"
