"""A run as a Perfetto / Chrome trace: one process per tile, a track per core, DMA channel and lock.

Open the JSON in https://ui.perfetto.dev or chrome://tracing. Cores show their kernel calls
(``busy``) and the spans they waited, named by the lock or cascade they waited on; DMA channels
show their transfers (the spans they waited on their stream) and their lock waits; each lock is a
counter track of its value. Times are in microseconds at the device clock, so the trace reads in
real time; the cycle of every event is in its ``args``.
"""

from __future__ import annotations

import json

from ..atomic import atomic_write
from ..target import get_device


def _tile_of(track: str) -> str:
    """``core 3,4`` -> ``3,4``; ``DMA 3,4:mm2s0`` -> ``3,4``; a lock -> its own group."""
    kind, _, rest = track.partition(" ")
    if kind == "core":
        return rest
    if kind == "DMA":
        return rest.split(":")[0]
    return "locks"


def chrome_trace(result, program) -> dict:
    """The trace events of ``result`` (a :func:`~tvm_aie.sim.simulate` run with ``trace=True``)."""
    if result.trace is None:
        raise ValueError("the run kept no trace: simulate(..., trace=True)")
    us_per_cycle = 1e6 / get_device(program.device).clock_hz
    lock_tiles = {lk.name: f"{lk.tile[0]},{lk.tile[1]}" for lk in program.locks}
    pids, tids, events = {}, {}, []

    def ids(tile: str, track: str) -> tuple[int, int]:
        if tile not in pids:
            pids[tile] = len(pids) + 1
            events.append({"ph": "M", "name": "process_name", "pid": pids[tile],
                           "args": {"name": f"tile {tile}"}})
        if track not in tids:
            tids[track] = len(tids) + 1
            events.append({"ph": "M", "name": "thread_name", "pid": pids[tile],
                           "tid": tids[track], "args": {"name": track}})
        return pids[tile], tids[track]

    for track, label, start, amount in result.trace:
        if label == "value":  # a lock's counter
            name = track.split(" ", 1)[1]
            pid, _ = ids(lock_tiles.get(name, "locks"), track)
            events.append({"ph": "C", "name": track, "pid": pid, "ts": start * us_per_cycle,
                           "args": {"value": amount}})
            continue
        pid, tid = ids(_tile_of(track), track)
        name = "kernel" if label == "busy" else (
            "transfer" if label.startswith("stream") else f"wait {label}")
        events.append({"ph": "X", "name": name, "pid": pid, "tid": tid,
                       "ts": start * us_per_cycle, "dur": amount * us_per_cycle,
                       "args": {"cycle": start, "cycles": amount, "on": label}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"program": program.name, "device": program.device,
                          "cycles": result.report.cycles}}


def write_trace(result, program, path) -> None:
    """Write :func:`chrome_trace` of ``result`` to ``path`` (JSON)."""
    with atomic_write(path, "w") as f:
        json.dump(chrome_trace(result, program), f)
