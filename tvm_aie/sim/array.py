"""The array: an AIE program turned into agents on the event engine, checked, run and reported.

Loading checks everything the program states against itself and the device catalog (buffers in
memory and not overlapping, BD patterns inside their buffers, channels and BDs within the tile's
DMA, shim channels within the shim's DMA channels and PL stream ports (:mod:`.plio`), every
channel on a route and every MM2S channel on one, routes within every stream switch's ports,
padding only where a memory tile's MM2S does it, cascades between neighbours in the device's
cascade direction, kernels on buffers of their own tile or of a neighbour whose memory the core
reaches, each core's estimated program within the tile's program memory), so a malformed program
fails with a ValueError naming the culprit instead of misbehaving later. Running has two modes that
take the same cycles: ``functional`` moves bytes and computes, ``timing`` only counts.
"""

from __future__ import annotations

import gc
import math

import numpy as np

from ..target import get_device
from .cascade import CascadeLink
from .dma import (PaddedTransfer, Port, Route, Transfer, channel_agent, chain_is_cyclic,
                  padded_pattern, pattern_bounds, pattern_elements, port_name)
from .engine import Engine
from .kernels import KERNELS
from .locks import Lock
from .memory import Memories, tile_key
from .noc import Ddr
from .plio import ShimPorts, channel_io
from .report import SimReport, SimResult
from .switch import StreamSwitches

MODES = ("functional", "timing")
# Core code operations (see _Array._compile), and how far timing mode unrolls a core's loops.
STEP, RELEASE, CALL, LOOP = "step", "release", "call", "loop"
UNROLL_LIMIT = 1 << 14
# Guard against programs that never end (e.g. DMAs feeding each other forever): far beyond any
# single inference the codegen makes, short enough to fail in seconds to minutes.
MAX_CYCLES = 100_000_000
# A core's program size, checked against program_memory_bytes at load: estimates, not measured
# figures. The start-up code and main() around the instruction list (crt0, stack set-up, lock
# helpers: about 1 KB), and the scalar code each instruction compiles to: an acquire or release
# (lock address set-up and the lock instruction), a call (argument pointers and the call), a
# loop (counter, compare, branch; its body is code once). Kernels add their CODE_BYTES once per
# variant (kernels*.py).
PROGRAM_BASE_BYTES = 1024
INSTR_BYTES = {"acquire": 16, "release": 16, "call": 32, "loop": 16}


def check_loads(program) -> None:
    """Raise what loading ``program`` onto its device raises (routes the stream switches cannot
    place, buffers over a memory, a core's program over its memory, ...), without running it."""
    _Array(program, get_device(program.device), False, MAX_CYCLES, None)


def simulate(program, inputs: dict | None = None, mode: str = "functional",
             max_cycles: int = MAX_CYCLES, trace: bool = False) -> SimResult:
    """Run one inference of ``program``; ``inputs`` maps DDR input names to arrays (functional).

    ``trace``: also record what every core and DMA channel did when, and every lock's value, in
    ``SimResult.trace`` (for :mod:`tvm_aie.sim.trace`); costs time, changes no cycle.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    # A run makes many short-lived generators, tuples and events that form no garbage cycles the
    # run itself needs collected; the cyclic collector would otherwise rescan the whole program's
    # objects over and over (a third of a large design's wall time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        sim = _Array(program, get_device(program.device), mode == "functional", max_cycles,
                     [] if trace else None)
        if sim.memories.functional:
            sim.memories.load(program, inputs)
        return sim.run()
    finally:
        if collecting:
            gc.enable()


class _Array:
    def __init__(self, program, device, functional: bool, max_cycles: int,
                 trace: list | None = None):
        self.program, self.device = program, device
        self.buffers = {b.name: b for b in program.buffers}
        self.ddr = {t.name: t for t in program.ddr}
        self.engine = Engine(max_cycles, trace)
        self.memories = Memories(program, device, functional)
        self.locks = self._locks()
        self.transfers: dict = {}  # channel name -> {BD id: Transfer factory}
        self.ports, self.cyclic = self._channels()
        self._routes()
        self.links_out, self.links_in = self._cascades()
        self.code_bytes = 0  # the cores' programs, as configuration writes them
        self.cores = self._cores()

    # ---- loading ----
    def _locks(self) -> dict:
        locks = {}
        for lk in self.program.locks:
            if lk.name in locks:
                raise ValueError(f"lock {lk.name} is defined twice")
            locks[lk.name] = Lock(lk.name, tile_key(lk.tile), lk.init,
                                  self.device.lock_max_value, self.engine)
        return locks

    def _lock(self, op, where: str) -> Lock:
        """The lock a lock operation names, after checking its value fits the lock's range."""
        if op is None:
            raise ValueError(f"{where}: a lock instruction without its lock")
        if not isinstance(op.lock, str) or op.lock not in self.locks:
            raise ValueError(f"{where}: unknown lock {op.lock}")
        lock = self.locks[op.lock]
        if not isinstance(op.value, int) or isinstance(op.value, bool) or \
                not 0 <= op.value <= lock.maximum:
            raise ValueError(f"{where}: lock {op.lock} acquired or released by {op.value!r}, "
                             f"outside the lock's range 0..{lock.maximum}")
        return lock

    def _dma_table(self, kind: str) -> dict:
        return {"shim": self.device.shim_dma, "memtile": self.device.memtile,
                "compute": self.device.tile_dma}[kind]

    def _channels(self) -> tuple[dict, set]:
        ports, cyclic = {}, set()
        shims = ShimPorts(self.device)
        for ch in self.program.dmas:
            name = port_name(ch.tile, ch.direction, ch.channel)
            if name in ports:
                raise ValueError(f"DMA channel {name} is defined twice")
            if tile_key(ch.tile) not in self.memories.kinds:
                raise ValueError(f"DMA channel {name}: tile is not among the program's tiles")
            kind = self.memories.kind(ch.tile)
            table = self._dma_table(kind)
            io = channel_io(ch, self.ddr, name) if kind == "shim" else "ddr"
            if kind == "shim":
                shims.add(ch, io, name)
            elif ch.direction not in ("mm2s", "s2mm") or not 0 <= ch.channel < table[ch.direction]:
                raise ValueError(f"DMA channel {name}: a {kind} tile has "
                                 f"{table.get(ch.direction, 0)} {ch.direction} channels")
            if io == "ddr" and len(ch.bds) > table["bds"]:
                raise ValueError(f"DMA channel {name}: {len(ch.bds)} BDs, a {kind} tile has "
                                 f"{table['bds']}")
            ids = {bd.id for bd in ch.bds}
            if len(ids) != len(ch.bds) or ch.start_bd not in ids or any(
                    bd.next is not None and bd.next not in ids for bd in ch.bds):
                raise ValueError(f"DMA channel {name}: BD ids {sorted(ids)} repeat or its chain "
                                 f"(start {ch.start_bd}) names a missing BD")
            for bd in ch.bds:
                for op in (bd.acquire, bd.release):
                    if op is not None:
                        self._lock(op, f"DMA channel {name} BD {bd.id}")
            ports[name] = Port(name, ch, pl=io == "pl")
            self.transfers[name] = {bd.id: self._transfer_factory(ch, bd, ports[name])
                                    for bd in ch.bds}
            if chain_is_cyclic(ch):
                cyclic.add(name)
        return ports, cyclic

    def _bd_target(self, ch, bd, where: str):
        """(byte array or None, byte offset of element 0, dtype, element count) a BD addresses."""
        if self.memories.kind(ch.tile) == "shim":
            if bd.buffer not in self.ddr:
                raise ValueError(f"{where}: {bd.buffer} is not a DDR tensor")
            t = self.ddr[bd.buffer]
            mem = self.memories.ddr_bytes.get(t.name)
            return mem, 0, t.dtype, math.prod(t.shape)
        if bd.buffer not in self.buffers:
            raise ValueError(f"{where}: unknown buffer {bd.buffer}")
        b = self.buffers[bd.buffer]
        if tile_key(b.tile) != tile_key(ch.tile) and not self._reaches_neighbour(ch, b.tile):
            raise ValueError(f"{where}: buffer {b.name} is on tile {tile_key(b.tile)}, not the "
                             f"DMA's tile (nor an east/west memory tile its channel reaches)")
        mem = self.memories.tile_bytes.get(tile_key(b.tile))
        return mem, b.offset, b.dtype, math.prod(b.shape)

    def _reaches_neighbour(self, ch, tile) -> bool:
        """A memory tile's DMA channels below ``neighbour_channels`` also address the memory of
        the memory tiles east and west of it (AM020)."""
        return (self.memories.kind(ch.tile) == "memtile" and self.memories.kind(tile) == "memtile"
                and ch.channel < self.device.memtile["neighbour_channels"]
                and tile[1] == ch.tile[1] and abs(tile[0] - ch.tile[0]) == 1)

    def _padding(self, ch, bd, where: str) -> tuple[list, list] | None:
        """The BD's (before, after) zero padding per dimension, or None; only a memory tile's
        MM2S channel pads (AM020)."""
        if bd.pad_before is None and bd.pad_after is None:
            return None
        dims = len(bd.sizes)
        before, after = bd.pad_before or [0] * dims, bd.pad_after or [0] * dims
        kind = self.memories.kind(ch.tile)
        if ch.direction != "mm2s" or kind != "memtile" or not self.device.memtile.get(
                "mm2s_zero_padding"):
            raise ValueError(f"{where}: zero padding is done by memory-tile MM2S channels only, "
                             f"this is a {kind} {ch.direction} channel")
        if len(before) != dims or len(after) != dims or min(before + after) < 0:
            raise ValueError(f"{where}: padding {before} / {after} must give a count >= 0 for "
                             f"each of the {dims} dimensions")
        return before, after

    def _check_rank(self, ch, bd, where: str) -> None:
        """A BD addresses at most its DMA kind's ``dims`` dimensions. Where the kind has an
        ``iteration`` dimension (AIE-ML: AM020), one more outermost dimension of at most that
        many steps is the BD's iteration offset, which advances once per execution of the BD: it
        walks the pattern only when the BD is executed that many times back to back, i.e. it is
        the channel's only BD (run ``sizes[0]`` times from its task queue), and without locks
        (which each execution would take and give again)."""
        kind = self.memories.kind(ch.tile)
        table = self._dma_table(kind)
        dims, iteration, rank = table.get("dims"), table.get("iteration"), len(bd.sizes)
        if dims is None or rank <= dims:
            return
        alone = len(ch.bds) == 1 and bd.next is None and bd.acquire is None and bd.release is None
        if iteration and rank == dims + 1 and bd.sizes[0] <= iteration and alone:
            return
        limit = f"{dims}" if not iteration else \
            f"{dims} plus an iteration dimension of at most {iteration} steps (on a channel's " \
            f"only BD, without locks)"
        raise ValueError(f"{where}: {rank}-D pattern {bd.sizes}, a {kind} DMA BD has {limit}")

    def _transfer_factory(self, ch, bd, port: Port):
        where = f"DMA channel {port.name} BD {bd.id}"
        mem, base, dtype, count = self._bd_target(ch, bd, where)
        if len(bd.sizes) != len(bd.strides) or not bd.sizes or min(bd.sizes) < 1:
            raise ValueError(f"{where}: sizes {bd.sizes} and strides {bd.strides} do not make a "
                             f"non-empty pattern")
        if not port.pl:  # a PL port's BD list only spells out the stream's order (:mod:`.plio`)
            self._check_rank(ch, bd, where)
        lo, hi = pattern_bounds(bd.offset, bd.sizes, bd.strides)
        if lo < 0 or hi >= count:
            raise ValueError(f"{where}: pattern reaches elements [{lo}, {hi}] of {bd.buffer}, "
                             f"which has {count}")
        isz = np.dtype(dtype).itemsize
        padding = self._padding(ch, bd, where)
        if padding is None:
            nbytes = math.prod(bd.sizes) * isz
        else:
            nbytes = math.prod(b + n + a for b, n, a in zip(padding[0], bd.sizes, padding[1])) * isz
        if mem is None:
            return lambda: Transfer(port, nbytes, None, None)
        if padding is None:
            elems = pattern_elements(bd.offset, bd.sizes, bd.strides)
        else:
            elems, pad = padded_pattern(bd.offset, bd.sizes, bd.strides, *padding)
            pad = np.repeat(pad, isz)
        byte_index = (base + elems[:, None] * isz + np.arange(isz)).reshape(-1)
        if padding is None:
            return lambda: Transfer(port, nbytes, mem, byte_index)
        return lambda: PaddedTransfer(port, nbytes, mem, byte_index, pad)

    def _rate(self, port: Port) -> int:
        kind = self.memories.kind(port.channel.tile)
        rate = self.device.stream_bytes_per_cycle
        if port.pl:
            rate = min(rate, self.device.pl_stream_bytes_per_cycle)
        elif kind == "shim":
            rate = min(rate, self.device.shim_dma["bytes_per_cycle"])
        elif kind == "memtile":
            rate = min(rate, self.device.memtile["bytes_per_cycle_per_channel"])
        return rate

    def _routes(self) -> None:
        switches = StreamSwitches(self.device)
        ddr = Ddr(self.device.ddr_bytes_per_cycle)
        # An S2MM port several routes end at is one packet-switched stream: they share ports.
        into: dict = {}
        for r in self.program.routes:
            for d in r.dsts:
                into[tuple(d)] = into.get(tuple(d), 0) + 1
        for i, r in enumerate(self.program.routes):
            src = port_name(r.src[:2], "mm2s", r.src[2])
            dsts = [port_name(d[:2], "s2mm", d[2]) for d in r.dsts]
            for name in [src, *dsts]:
                if name not in self.ports:
                    raise ValueError(f"route {src} -> {dsts}: no DMA channel {name}")
            if self.ports[src].routes:  # S2MM ports may merge several routes, MM2S ports not
                raise ValueError(f"DMA channel {src} is the source of two routes")
            merged = len(r.dsts) == 1 and into[tuple(r.dsts[0])] > 1
            crossed = switches.add_route(f"{src} -> {', '.join(dsts)}",
                                         ("packet", dsts[0]) if merged else i, tuple(r.src[:2]),
                                         [tuple(d[:2]) for d in r.dsts])
            ends = [self.ports[n] for n in [src, *dsts]]
            shims = sum(self.memories.kind(p.channel.tile) == "shim" and not p.pl for p in ends)
            Route(self.engine, ends[0], ends[1:], min(self._rate(p) for p in ends),
                  crossed * self.device.stream_switch_latency_cycles, self.memories.functional,
                  ddr, shims)
        switches.check()
        for name, port in self.ports.items():
            if not port.routes:
                raise ValueError(f"DMA channel {name} is on no route")

    def _cascades(self) -> tuple[dict, dict]:
        out, inn = {}, {}
        for c in self.program.cascades:
            src, dst = tile_key(c.src), tile_key(c.dst)
            if src in out or dst in inn:
                raise ValueError(f"cascade {src}->{dst}: a tile has one cascade out and one in")
            if not self.device.cascade_allowed(c.src, c.dst):
                raise ValueError(f"cascade {src}->{dst}: not between neighbours in a direction the "
                                 f"cascade of row {c.src[1]} takes on {self.device.name} "
                                 f"({', '.join(self.device.cascade_direction(c.src[1]))})")
            out[src] = inn[dst] = CascadeLink(self.engine, src, dst)
        return out, inn

    def _cores(self) -> dict:
        cores = {}
        bufs = self.buffers
        for core in self.program.cores:
            key = tile_key(core.tile)
            if key in cores:
                raise ValueError(f"tile {key} has two cores")
            if self.memories.kinds.get(key) != "compute":
                raise ValueError(f"core on tile {key}, which is not a compute tile of the program")
            variants: dict = {}
            cores[key] = self._compile(core.body, core.tile, bufs, variants)
            instrs = _instruction_bytes(core.body)
            size = PROGRAM_BASE_BYTES + instrs + sum(variants.values())
            self.code_bytes += size
            if size > self.device.program_memory_bytes:
                kernels = ", ".join(f"{'/'.join(v)} {b}" for v, b in variants.items())
                raise ValueError(
                    f"core {key}: program of about {size} bytes (start-up {PROGRAM_BASE_BYTES}, "
                    f"instructions {instrs}, kernels {kernels}) exceeds the tile's "
                    f"{self.device.program_memory_bytes} bytes of program memory")
        return cores

    def _compile(self, body: list, tile, bufs: dict,
                 variants: dict) -> tuple[list, int, str | None]:
        """Instrs -> (code, MACs, precision of the first kernel call).

        Code is flat tuples with locks and kernels resolved, so running does no look-ups: ``STEP``
        yields its cycles or wait object (stateless, so one serves every pass), ``RELEASE`` a lock,
        ``CALL`` runs a kernel with data. In timing mode a call is its kernel's ``steps``, and
        loops are unrolled up to ``UNROLL_LIMIT`` instructions (a list repeated, not copied), so
        a core runs as one plain loop without a generator per call or per iteration.
        ``variants`` collects the code bytes of each kernel variant called (program memory).
        """
        where = f"core {tile_key(tile)}"
        code, macs, precision = [], 0, None
        for ins in body:
            if ins.op == "acquire":
                code.append((STEP, self._lock(ins.lock, where).acquire(ins.lock.value), None))
            elif ins.op == "release":
                code.append((RELEASE, self._lock(ins.lock, where), ins.lock.value))
            elif ins.op == "loop":
                count = int(ins.count)
                sub, sub_macs, sub_precision = self._compile(ins.body, tile, bufs, variants)
                macs += count * sub_macs
                precision = precision or sub_precision
                if count * len(sub) <= UNROLL_LIMIT:
                    code += sub * count
                else:
                    code.append((LOOP, count, sub))
            elif ins.op == "call":
                kernel = self._kernel(ins.call, tile, bufs)
                variants[kernel.variant] = kernel.CODE_BYTES
                macs += kernel.macs
                precision = precision or kernel.precision
                steps = getattr(kernel, "steps", None)
                if self.memories.functional or steps is None:
                    code.append((CALL, kernel, None))
                else:
                    code += [(STEP, step, None) for step in steps]
            else:
                raise ValueError(f"{where}: unknown instruction {ins.op!r}")
        return code, macs, precision

    def _kernel(self, call, tile, bufs: dict):
        if call is None:
            raise ValueError(f"core {tile_key(tile)}: a call instruction without its call")
        where = f"core {tile_key(tile)} kernel {call.kernel}"
        if call.kernel not in KERNELS:
            raise ValueError(f"{where}: unknown kernel (have {sorted(KERNELS)})")
        resolved = {}
        for role, name in call.buffers.items():
            if name not in bufs:
                raise ValueError(f"{where}: unknown buffer {name} for {role}")
            at = bufs[name].tile
            if self.memories.kind(at) != "compute" or not self.device.core_reaches(tile, at):
                raise ValueError(
                    f"{where}: buffer {name} is on tile {tile_key(at)}, whose memory the core "
                    f"does not reach (its own tile's and its "
                    f"{'/'.join(self.device.core_memory_directions(tile[1]))} compute "
                    f"neighbours' only)")
            resolved[role] = bufs[name]
        key = tile_key(tile)
        try:
            return KERNELS[call.kernel](call, tile, resolved, self.device,
                                        self.links_in.get(key), self.links_out.get(key))
        except (KeyError, TypeError) as e:  # a parameter missing or of the wrong type
            raise ValueError(f"{where}: bad parameters {call.params} ({type(e).__name__}: "
                             f"{e})") from None

    # ---- running ----
    def _core_agent(self, code: list, name: str):
        mem = self.memories if self.memories.functional else None
        engine = self.engine
        for op, arg, value in code:
            if op is STEP:
                yield arg
            elif op is RELEASE:
                arg.release(engine, value, name)
            elif op is CALL:
                yield from arg.run(mem)
            else:
                for _ in range(arg):
                    yield from self._core_agent(value, name)

    def run(self) -> SimResult:
        core_agents = {}
        for key, (code, _, _) in self.cores.items():
            core_agents[key] = self.engine.spawn(f"core {key}", self._core_agent(code, f"core {key}"),
                                                 required=True)
        for name, port in self.ports.items():
            agent = channel_agent(port.channel, port, self.locks, self.engine, self.transfers[name])
            self.engine.spawn(f"DMA {name}", agent, required=name not in self.cyclic)
        cycles = self.engine.run()
        return SimResult(outputs=self._outputs(), report=self._report(cycles, core_agents),
                         trace=self.engine.trace)

    def _outputs(self) -> dict:
        if not self.memories.functional:
            return {}
        return {t.name: self.memories.ddr_view(t.name).copy() for t in self.program.outputs()}

    def _report(self, cycles: int, core_agents: dict) -> SimReport:
        per_tile, peak = {}, 0
        for key, agent in core_agents.items():
            _, macs, precision = self.cores[key]
            per_tile[key] = {"busy": agent.busy, "stall": agent.stall,
                             "stall_on": dict(agent.stall_on), "macs": macs}
            precision = precision or self.program.meta.get("precision")
            if precision is not None:
                peak += self.device.peak_macs_per_cycle(precision)
        moved = {name: p.bytes for name, p in self.ports.items()}
        moved["total"] = sum(p.bytes for name, p in self.ports.items() if ":s2mm" in name)
        starts = [p.first for p in self.ports.values() if p.first is not None and ":s2mm" in
                  p.name and self.memories.kind(p.channel.tile) == "shim"]
        config = self.code_bytes + sum(
            int(np.prod(b.shape)) * np.dtype(b.dtype).itemsize
            for b in self.program.buffers if b.initial is not None)
        return SimReport(cycles=cycles, tiles_used=len(core_agents),
                         macs=sum(t["macs"] for t in per_tile.values()),
                         peak_macs_per_cycle=peak, per_tile=per_tile, bytes_moved=moved,
                         first_output=min(starts, default=cycles), config_bytes=config,
                         config_cycles=-(-config // self.device.ddr_bytes_per_cycle))


def _instruction_bytes(body: list) -> int:
    """Estimated code bytes of a core's instruction list (INSTR_BYTES; a loop body counts once)."""
    return sum(INSTR_BYTES[ins.op] + (_instruction_bytes(ins.body) if ins.op == "loop" else 0)
               for ins in body)
