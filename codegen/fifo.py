"""Object FIFOs: data movement as first-class objects, lowered to buffers, locks, BDs and routes.

An object FIFO carries a stream of equally shaped objects (here: blocks of rows of a tensor) from
one producer to one or more consumers. An endpoint on a compute tile owns ``depth`` slots in its
data memory with a "free" and a "full" semaphore; depth 2 is ping-pong double buffering, so the DMA
fills one slot while the core works on the other. AIE (AIE1) locks are single bits, so there each
slot gets its own free/full pair; slots are used in order, so the handshake is the same. An
endpoint on a shim tile is a DDR tensor walked by an n-D pattern, one shim BD where the pattern
fits the shim DMA's dimensions, else a chain of them (:func:`_shim_bds`); an endpoint on a
memory tile is a region of one large buffer walked by n-D BDs, gated by semaphores the caller
chooses (a memory tile holds a whole feature map that several producers fill and readers take
once it is complete). Between the endpoints is one circuit-switched stream route; several
consumers make it a broadcast (the idea of mlir-aie's IRON ``ObjectFifo``, written for this program
format).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from .program import BufferDescriptor, DmaChannel, Instr, LockOp, Route
from .resources import ResourceError, TileResources


@dataclass
class TileEndpoint:
    """The slots and semaphores of one FIFO end on a compute tile, as the core sees them."""

    tile: tuple
    slots: list  # Buffer names, used in order
    frees: list  # locks counting empty slots: one for all slots, or one per slot (boolean locks)
    fulls: list  # locks counting filled slots, likewise

    def slot(self, i: int) -> str:
        return self.slots[i % len(self.slots)]

    def free(self, i: int) -> str:
        return self.frees[i % len(self.frees)]

    def full(self, i: int) -> str:
        return self.fulls[i % len(self.fulls)]

    @property
    def depth(self) -> int:
        return len(self.slots)


@dataclass
class DdrEndpoint:
    """A FIFO end in DDR: the tensor and the n-D pattern that walks it over the whole inference."""

    tensor: str
    offset: int
    sizes: list
    strides: list


@dataclass
class MemtileEndpoint:
    """A FIFO end in a memory-tile buffer: one n-D pattern over the whole inference, with the lock
    operations its BD does before and after moving the bytes."""

    buffer: str
    offset: int
    sizes: list
    strides: list
    acquire: LockOp | None = None
    release: LockOp | None = None


@dataclass
class MemtileChain:
    """A FIFO end in a memory-tile buffer walked by a chain of BDs, each a
    :class:`MemtileEndpoint` on ``buffer`` with its own lock operations (e.g. one per image of
    a batch and per copy of a double-buffered map); ``cyclic``: the last BD goes back to the
    first, so the chain serves as many objects as arrive (it runs until the program ends)."""

    buffer: str
    bds: list
    cyclic: bool = False


@dataclass
class ObjectFifo:
    name: str
    shape: tuple  # one object
    dtype: str
    producer: object = None  # (tile, depth) for a core, DdrEndpoint or MemtileEndpoint
    consumers: list = field(default_factory=list)  # [(tile, depth)], [DdrEndpoint], [Memtile...]
    src: list | None = None  # [col, row, channel] of the MM2S channel, once the producer is lowered


def _route_path(src, dst) -> list:
    """Tiles a route crosses: along the row of the source, then along the column (X then Y)."""
    (c0, r0), (c1, r1) = src, dst
    step_c = 1 if c1 >= c0 else -1
    step_r = 1 if r1 >= r0 else -1
    path = [[c, r0] for c in range(c0, c1 + step_c, step_c)]
    path += [[c1, r] for r in range(r0 + step_r, r1 + step_r, step_r)]
    return path


def _slot_endpoint(res: TileResources, fifo: ObjectFifo, tile, depth: int, side: str):
    slots = [res.buffer(f"{fifo.name}.{side}{tile[0]}_{tile[1]}.{s}", tile, fifo.shape, fifo.dtype)
             for s in range(depth)]
    tag = f"{fifo.name}.{side}{tile[0]}_{tile[1]}"
    if res.device.lock_max_value >= depth:
        frees = [res.lock(f"{tag}.free", tile, init=depth).name]
        fulls = [res.lock(f"{tag}.full", tile, init=0).name]
    else:
        frees = [res.lock(f"{tag}.free{s}", tile, init=1).name for s in range(depth)]
        fulls = [res.lock(f"{tag}.full{s}", tile, init=0).name for s in range(depth)]
    return TileEndpoint(tuple(tile), [b.name for b in slots], frees, fulls)


def _slot_channel(res: TileResources, ep: TileEndpoint, direction: str) -> list:
    """A cyclic BD chain over the endpoint's slots: the DMA side of the semaphore handshake."""
    ch = res.channel(ep.tile, direction)
    # S2MM fills free slots and marks them full; MM2S drains full slots and frees them.
    wait, post = (ep.free, ep.full) if direction == "s2mm" else (ep.full, ep.free)
    shape = res.program.buffer(ep.slots[0]).shape
    elems = 1
    for d in shape:
        elems *= d
    bds = [BufferDescriptor(id=s, buffer=name, offset=0, sizes=[elems], strides=[1],
                            acquire=LockOp(wait(s), 1), release=LockOp(post(s), 1),
                            next=(s + 1) % ep.depth)
           for s, name in enumerate(ep.slots)]
    res.program.dmas.append(DmaChannel(tile=list(ep.tile), direction=direction, channel=ch, bds=bds))
    return [ep.tile[0], ep.tile[1], ch]


def _ddr_channel(res: TileResources, ep: DdrEndpoint, direction: str, near_col: int) -> list:
    """A shim channel on the tensor: a DMA channel, or a PL stream port for a ``"pl"`` tensor."""
    pl = res.program.ddr_tensor(ep.tensor).io == "pl"
    shim = res.nearest_shim(near_col, direction, pl)
    ch = res.pl_port(shim, direction) if pl else res.channel(shim, direction)
    if pl:  # a PL stream port is no DMA: its one BD only spells out the stream's order
        bds = [BufferDescriptor(id=0, buffer=ep.tensor, offset=ep.offset, sizes=list(ep.sizes),
                                strides=list(ep.strides))]
    else:
        bds = _shim_bds(res.device.shim_dma, ep)
    res.program.dmas.append(DmaChannel(tile=list(shim), direction=direction, channel=ch, bds=bds))
    return [shim[0], shim[1], ch]


def _fewest_dims(sizes: list, strides: list) -> tuple[list, list]:
    """The same element order in as few dimensions as it takes: a dimension of one step goes, and
    one whose stride steps exactly over the whole of the next inner one merges with it."""
    dims = [(n, s) for n, s in zip(sizes, strides) if n > 1] or [(1, 1)]
    out = [dims[-1]]
    for n, s in reversed(dims[:-1]):
        inner_n, inner_s = out[0]
        if s == inner_n * inner_s:
            out[0] = (n * inner_n, inner_s)
        else:
            out.insert(0, (n, s))
    return [n for n, _ in out], [s for _, s in out]


def _shim_bds(table: dict, ep: DdrEndpoint) -> list:
    """The BDs that walk a DDR endpoint's pattern within what a shim DMA BD addresses.

    A BD has ``dims`` dimensions (``shim_dma`` in the catalog), plus on AIE-ML an outermost
    iteration dimension of at most ``iteration`` steps when it is its channel's only BD. A
    pattern with more is a chain of BDs over its outer indices, each the inner pattern at its
    offset, run one after the other in the pattern's order. A stream chunk never spans a BD, so
    each further BD costs the route's switch latency once more in the simulator
    (:mod:`tvm_aie.sim.dma`); AM020 gives no BD-switch time of its own, so none more is modelled.
    A chain longer than the channel's BDs is a :class:`ResourceError` naming the tensor."""
    sizes, strides = _fewest_dims(ep.sizes, ep.strides)
    dims, iteration = table.get("dims", len(sizes)), table.get("iteration", 0)
    if len(sizes) <= dims or (len(sizes) == dims + 1 and sizes[0] <= iteration):
        return [BufferDescriptor(id=0, buffer=ep.tensor, offset=ep.offset, sizes=sizes,
                                 strides=strides)]
    outer = len(sizes) - dims
    count = math.prod(sizes[:outer])
    if count > table["bds"]:
        raise ResourceError(f"DDR tensor {ep.tensor}: its {len(sizes)}-D pattern {sizes} takes "
                            f"{count} BDs of {dims} dimensions on a shim DMA channel, which has "
                            f"{table['bds']}")
    offsets = [ep.offset + sum(i * s for i, s in zip(idx, strides))
               for idx in itertools.product(*(range(n) for n in sizes[:outer]))]
    return [BufferDescriptor(id=i, buffer=ep.tensor, offset=o, sizes=sizes[outer:],
                             strides=strides[outer:], next=i + 1 if i + 1 < count else None)
            for i, o in enumerate(offsets)]


def _memtile_channel(res: TileResources, ep, direction: str) -> list:
    tile = res.program.buffer(ep.buffer).tile
    ch = res.channel(tile, direction)
    if isinstance(ep, MemtileChain):
        last = len(ep.bds) - 1
        bds = [BufferDescriptor(id=i, buffer=ep.buffer, offset=bd.offset, sizes=list(bd.sizes),
                                strides=list(bd.strides), acquire=bd.acquire, release=bd.release,
                                next=i + 1 if i < last else 0 if ep.cyclic else None)
               for i, bd in enumerate(ep.bds)]
    elif _takes_and_returns(ep, direction):
        # A reader that takes the buffer's count and gives it back only checks that the buffer
        # is complete: it holds the count for its first object, not for the whole pattern (a
        # reader paced by a slow consumer, e.g. a residual read, would otherwise keep every other
        # reader of the buffer out until its last object, and those can be what that consumer
        # waits for: a deadlock).
        head = BufferDescriptor(id=0, buffer=ep.buffer, offset=ep.offset,
                                sizes=[1, *ep.sizes[1:]], strides=list(ep.strides),
                                acquire=ep.acquire, release=ep.release, next=1)
        rest = BufferDescriptor(id=1, buffer=ep.buffer, offset=ep.offset + ep.strides[0],
                                sizes=[ep.sizes[0] - 1, *ep.sizes[1:]], strides=list(ep.strides))
        bds = [head, rest]
    else:
        bds = [BufferDescriptor(id=0, buffer=ep.buffer, offset=ep.offset, sizes=list(ep.sizes),
                                strides=list(ep.strides), acquire=ep.acquire, release=ep.release)]
    dims = res.device.memtile["dims"]
    for bd in bds:  # these BDs take locks, so the iteration dimension is no help (see _shim_bds)
        if len(bd.sizes) > dims:
            raise ResourceError(f"memory-tile buffer {ep.buffer}: a {len(bd.sizes)}-D pattern "
                                f"{bd.sizes}, a memory-tile DMA BD has {dims} dimensions")
    res.program.dmas.append(DmaChannel(tile=list(tile), direction=direction, channel=ch, bds=bds))
    return [tile[0], tile[1], ch]


def _takes_and_returns(ep: MemtileEndpoint, direction: str) -> bool:
    """An MM2S pattern of several objects whose BD takes a lock's count and returns all of it."""
    return (direction == "mm2s" and ep.acquire is not None and ep.acquire == ep.release
            and len(ep.sizes) > 1 and ep.sizes[0] > 1)


def lower_producer(res: TileResources, fifo: ObjectFifo):
    """Lower the producer end; returns its :class:`TileEndpoint` (None for a DDR or memory-tile
    producer)."""
    if isinstance(fifo.producer, (MemtileEndpoint, MemtileChain)):
        fifo.src = _memtile_channel(res, fifo.producer, "mm2s")
        return None
    if isinstance(fifo.producer, DdrEndpoint):
        cons = fifo.consumers[0]
        near_col = res.program.buffer(cons.buffer).tile[0] \
            if isinstance(cons, (MemtileEndpoint, MemtileChain)) \
            else cons[0][0]
        fifo.src = _ddr_channel(res, fifo.producer, "mm2s", near_col)
        return None
    tile, depth = fifo.producer
    ep = _slot_endpoint(res, fifo, tile, depth, "p")
    fifo.src = _slot_channel(res, ep, "mm2s")
    return ep


def lower_consumers(res: TileResources, fifo: ObjectFifo) -> dict:
    """Lower the consumer ends and the route; returns ``{tile: TileEndpoint}`` of core consumers."""
    endpoints, dsts = {}, []
    for cons in fifo.consumers:
        if isinstance(cons, DdrEndpoint):
            dsts.append(_ddr_channel(res, cons, "s2mm", fifo.src[0]))
        elif isinstance(cons, (MemtileEndpoint, MemtileChain)):
            dsts.append(_memtile_channel(res, cons, "s2mm"))
        else:
            tile, depth = cons
            ep = _slot_endpoint(res, fifo, tile, depth, "c")
            endpoints[tuple(tile)] = ep
            dsts.append(_slot_channel(res, ep, "s2mm"))
    path = []
    for d in dsts:
        path += [p for p in _route_path(fifo.src[:2], d[:2]) if p not in path]
    res.program.routes.append(Route(src=fifo.src, dsts=dsts, path=path))
    return endpoints


def acquire(ep: TileEndpoint, as_producer: bool, i: int) -> Instr:
    """The core waits for slot ``i`` to be empty (producer) or filled (consumer)."""
    return Instr(op="acquire", lock=LockOp(ep.free(i) if as_producer else ep.full(i), 1))


def release(ep: TileEndpoint, as_producer: bool, i: int) -> Instr:
    return Instr(op="release", lock=LockOp(ep.full(i) if as_producer else ep.free(i), 1))
