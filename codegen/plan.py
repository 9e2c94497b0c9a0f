"""Plan: the configuration of every layer of one offloaded chain, decided together.

Layers of a chain are not independent: all stream the same row blocks (one ``tm``), and layer i's
output block p is layer i+1's K slice p, so ``cascade[i+1] = n_par[i]``. The default plan is a
dynamic programme over the layers whose state is the previous layer's ``n_par``: it finds the legal
plan with the fewest tiles (the array is shared by everything offloaded), breaking ties by the
smallest per-tile work of the slowest layer. Tuned configurations from a database replace the
defaults layer by layer; the constraint between neighbours still holds.
"""

from __future__ import annotations

from ..schedules.dense import DenseConfig, TilingError, check

MAX_PARTS = 64  # widest split considered per layer dimension by the default plan


def _row_block(m: int, device, precision: str) -> int:
    """Rows per block: the intrinsic's M, times what the batch needs, up to four intrinsics."""
    mm = device.mmul_shape(precision)[0]
    return min(-(-m // mm) * mm, 4 * mm)


def _legal(workload, device, tm: int, n_par: int, cascade: int, errors: list):
    """The legal config with these parts, double-buffered where memory allows (None if none;
    the rejection of the single-buffered one is appended to ``errors``)."""
    for dba, dbc in ((True, True), (True, False), (False, True), (False, False)):
        cfg = DenseConfig(tm=tm, n_par=n_par, cascade=cascade, double_buffer_a=dba,
                          double_buffer_c=dbc)
        try:
            check(workload, cfg, device)
            return cfg
        except TilingError as err:
            last = err
    errors.append((n_par * cascade, last))
    return None


def _closest_miss(errors: list) -> str:
    """Why the candidate that came closest failed: a memory overflow on the most tiles that are
    still placeable, else the first rejection; this names the buffer that does not fit."""
    memory = [(tiles, e) for tiles, e in errors if e.reason == "memory"]
    return str(max(memory, key=lambda te: te[0])[1] if memory else errors[0][1])


def plan_chain(workloads: list, device, pinned: dict | None = None) -> list:
    """One :class:`DenseConfig` per workload of a chain (see module docstring).

    ``pinned`` maps a layer index to a tuned config to keep; its neighbours adapt to it.
    """
    pinned = pinned or {}
    tm = next((c.tm for c in pinned.values()), None) or _row_block(
        workloads[0].m, device, workloads[0].precision)
    # states: n_par of the last planned layer -> (cost, configs so far)
    states = {None: ((0, 0), [])}
    for i, wl in enumerate(workloads):
        nxt, errors = {}, []
        for prev_par, (cost, cfgs) in states.items():
            if i in pinned:
                options = [pinned[i]] if prev_par in (None, pinned[i].cascade) else []
            else:
                cascades = [prev_par] if prev_par is not None else range(1, MAX_PARTS + 1)
                options = [cfg for cas in cascades for par in range(1, MAX_PARTS + 1)
                           if (cfg := _legal(wl, device, tm, par, cas, errors)) is not None]
            for cfg in options:
                tiles = cfg.n_par * cfg.cascade
                work = wl.k * wl.n // tiles
                new = (cost[0] + tiles, max(cost[1], work))
                if cfg.n_par not in nxt or new < nxt[cfg.n_par][0]:
                    nxt[cfg.n_par] = (new, cfgs + [cfg])
        if not nxt:
            chained = " that takes the previous layer's output blocks" if i else ""
            why = f"; closest: {_closest_miss(errors)}" if errors else ""
            raise TilingError(f"layer {i} ({wl}) has no legal configuration on {device.name}"
                              f"{chained}{why}", "memory")
        states = nxt
    return min(states.values(), key=lambda state: state[0])[1]
