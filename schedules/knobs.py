"""What every template's configuration shares: knobs as plain data and a tile's memory budget.

Configurations travel as plain dicts (tuning databases, TIR annotations), and every template checks
its per-tile buffers against the same data memory, so both live here once.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import tvm_ffi

from ..codegen.resources import VECTOR_ALIGN


@tvm_ffi.register_error  # keeps its type when raised inside a TVM pass (relax.ext.aie)
class TilingError(ValueError):
    """A configuration the device cannot run; ``reason`` is a short key that spaces count."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


class Knobs:
    """Base of a frozen dataclass of int and bool knobs."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """From a dict or a TIR annotation map (extra keys, such as the workload's, are ignored;
        a knob added since the dict was written takes its default)."""
        return cls(**{f.name: (bool if f.type == "bool" else int)(d[f.name])
                      for f in fields(cls) if f.name in d})


def up(x: int, q: int) -> int:
    """``x`` rounded up to a multiple of ``q``."""
    return -(-x // q) * q


def check_tile_memory(where: str, buffers: list, device) -> None:
    """Raise :class:`TilingError` naming the first of ``buffers`` (``(name, bytes of one slot,
    slots)`` in allocation order) that takes a tile past its usable data memory."""
    budget, used = device.usable_data_memory_bytes, 0
    for name, size, count in buffers:
        used += up(size, VECTOR_ALIGN) * count
        if used > budget:
            raise TilingError(f"{where}: {name} does not fit: a tile needs {used:,} B so far, "
                              f"it has {budget:,} B of data memory", "memory")
