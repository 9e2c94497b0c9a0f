"""Placement: which compute tile of the grid runs which part of which layer.

A dense layer is a block of ``n_par`` cascade chains of length ``cascade``. Cascades run between
horizontal neighbours, so each chain lies along a row: west to east on AIE-ML, and on AIE the way
the cascade snake runs in that row (west to east, or east to west); the chains of one layer are
stacked in the rows of a column band, and layers follow one another eastwards in dataflow order,
so a layer's outputs travel a short distance to the next layer's inputs.
"""

from __future__ import annotations


class PlacementError(ValueError):
    """The layers of one program need more of the array than the device has."""


def first_compute_row(device) -> int:
    """Row 0 is the shim (array interface) row, then the memory-tile rows, then compute rows."""
    return device.first_compute_row


def _chain(col: int, row: int, cascade: int, device) -> list:
    """The tiles of one chain starting in column band ``col``, in the row's cascade direction."""
    cols = range(col, col + cascade)
    return [(c, row) for c in (cols if "east" in device.cascade_direction(row) else reversed(cols))]


def place_layers(shapes: list, device, first_col: int = 0) -> list:
    """Place layers given as ``[(name, n_par, cascade)]``; return ``tiles[layer][p][c] = (col, row)``."""
    rows = device.compute_rows
    row0 = first_compute_row(device)
    col = first_col
    placement = []
    for name, n_par, cascade in shapes:
        groups = -(-n_par // rows)
        tiles = [_chain(col + (p // rows) * cascade, row0 + p % rows, cascade, device)
                 for p in range(n_par)]
        col += groups * cascade
        if col > device.columns:
            need = sum(-(-n // rows) * c for _, n, c in shapes)
            raise PlacementError(
                f"layer {name} does not fit: the program needs {need} columns of "
                f"{rows} compute tiles, {device.name} has {device.columns}"
            )
        placement.append(tiles)
    return placement
