"""The AIE program: the one contract between the codegen and the simulator.

Tiles, buffers (with their addresses), locks, DMA buffer descriptors with n-D patterns, stream
routes and cascades, spelled out; nothing refers to TIR or Relax. Serialised as one ``.npz``
without pickle, so loading a program never runs anything from it. ``docs/design.md`` ("The AIE
program format") has the conventions (locks, BD patterns, DDR tensors and their ``io``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field

import ml_dtypes
import numpy as np

FORMAT_VERSION = 1
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)  # numpy's name "bfloat16" (ml_dtypes registers it)


class ProgramFormatError(ValueError):
    """A serialised program that cannot be read."""


Tile = tuple  # (col, row)


@dataclass
class TileSpec:
    col: int
    row: int
    kind: str  # "compute" | "memtile" | "shim"


@dataclass
class DdrTensor:
    name: str
    shape: list
    dtype: str
    role: str  # "input" | "output" | "constant"
    valid_shape: list | None = None
    io: str = "ddr"  # "ddr" | "pl": how the shim reaches it (see the module docstring)


@dataclass
class Buffer:
    """A buffer in a compute tile's or memory tile's local memory."""

    name: str
    tile: list  # [col, row]
    offset: int  # byte address in the tile's memory
    shape: list
    dtype: str
    initial: str | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class Lock:
    name: str
    tile: list
    id: int
    init: int


@dataclass
class LockOp:
    lock: str
    value: int = 1


@dataclass
class BufferDescriptor:
    """One DMA transfer pattern on a buffer (tile memory) or a DDR tensor (shim)."""

    id: int
    buffer: str  # a Buffer name, or a DdrTensor name for shim BDs
    offset: int
    sizes: list
    strides: list
    acquire: LockOp | None = None
    release: LockOp | None = None
    next: int | None = None  # BD id to chain to on the same channel; None ends the chain
    # Zero padding per dimension (outermost first, in elements) that a memory tile's MM2S
    # channel puts on the stream before and after the data (AM020); None = no padding.
    pad_before: list | None = None
    pad_after: list | None = None

    @property
    def elements(self) -> int:
        return int(np.prod(self.sizes))


@dataclass
class DmaChannel:
    """A DMA channel of a tile and its BD chain, started at ``start_bd``.

    ``repeat`` is how many times the whole chain is run (a chain whose last BD points back to an
    earlier one runs until the program ends and ignores it).
    """

    tile: list
    direction: str  # "mm2s" (memory to stream) | "s2mm" (stream to memory)
    channel: int
    bds: list
    start_bd: int = 0
    repeat: int = 1


@dataclass
class Route:
    """A circuit-switched stream route from one MM2S channel to one or more S2MM channels."""

    src: list  # [col, row, channel] of an MM2S channel
    dsts: list  # [[col, row, channel], ...] of S2MM channels (several = broadcast)
    path: list = field(default_factory=list)  # tiles the route crosses, for port accounting


@dataclass
class Cascade:
    src: list
    dst: list


@dataclass
class KernelCall:
    """One call of a kernel on tile-local buffers; ``params`` are the kernel's compile-time data."""

    kernel: str
    buffers: dict  # role -> Buffer name (e.g. {"a": ..., "b": ..., "c": ...})
    params: dict = field(default_factory=dict)


@dataclass
class Instr:
    """One core instruction: ``acquire``/``release`` a lock, ``call`` a kernel, or ``loop``."""

    op: str
    lock: LockOp | None = None
    call: KernelCall | None = None
    count: int = 0
    body: list = field(default_factory=list)


@dataclass
class Core:
    tile: list
    body: list  # [Instr]


@dataclass
class Program:
    name: str
    device: str
    tiles: list = field(default_factory=list)
    ddr: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    locks: list = field(default_factory=list)
    dmas: list = field(default_factory=list)
    routes: list = field(default_factory=list)
    cascades: list = field(default_factory=list)
    cores: list = field(default_factory=list)
    constants: dict = field(default_factory=dict)  # name -> np.ndarray (not in JSON)
    meta: dict = field(default_factory=dict)  # layers, MACs, what the report needs

    # ---- lookup helpers used by codegen, simulator and report ----
    def buffer(self, name: str) -> Buffer:
        return self._index("buffers")[name]

    def lock(self, name: str) -> Lock:
        return self._index("locks")[name]

    def ddr_tensor(self, name: str) -> DdrTensor:
        return self._index("ddr")[name]

    def _index(self, attr):
        return {x.name: x for x in getattr(self, attr)}

    def inputs(self) -> list:
        return [t for t in self.ddr if t.role == "input"]

    def outputs(self) -> list:
        return [t for t in self.ddr if t.role == "output"]

    # ---- serialisation ----
    def to_json_dict(self) -> dict:
        d = asdict(self)
        d.pop("constants")
        d["format_version"] = FORMAT_VERSION
        return d

    def digest(self) -> str:
        """SHA-256 of the program's JSON and constants: equal digests, the same program."""
        h = hashlib.sha256(json.dumps(self.to_json_dict(), sort_keys=True).encode())
        for name in sorted(self.constants):
            value = np.ascontiguousarray(self.constants[name])
            h.update(f"{name}:{value.dtype}:{value.shape}".encode())
            h.update(value.tobytes())
        return h.hexdigest()

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        # .npz has no bfloat16: such constants are stored as their 16-bit patterns
        arrays = {(f"const_bf16/{k}" if v.dtype == BFLOAT16 else f"const/{k}"):
                  np.ascontiguousarray(v).view(np.uint16) if v.dtype == BFLOAT16 else
                  np.ascontiguousarray(v) for k, v in self.constants.items()}
        blob = json.dumps(self.to_json_dict(), sort_keys=True).encode()
        np.savez(out, **{"program.json": np.frombuffer(blob, dtype=np.uint8)}, **arrays)
        return out.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Program:
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                d = json.loads(z["program.json"].tobytes().decode())
                constants = {k[len("const/"):]: z[k] for k in z.files if k.startswith("const/")}
                constants.update({k[len("const_bf16/"):]: z[k].view(BFLOAT16) for k in z.files
                                  if k.startswith("const_bf16/")})
        except (zipfile.BadZipFile, ValueError, KeyError, OSError, UnicodeDecodeError) as e:
            raise ProgramFormatError(f"not an AIE program: {e}") from e
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            raise ProgramFormatError(
                f"AIE program format {d.get('format_version') if isinstance(d, dict) else d!r} "
                f"is not {FORMAT_VERSION}")
        try:
            _check(d, _PROGRAM, "program")
            return _program_from_dict(d, constants)
        except (KeyError, TypeError) as e:
            raise ProgramFormatError(f"malformed AIE program: {e}") from e


# The JSON form's schema, checked before a program is built from it, so a malformed file is one
# ProgramFormatError naming the field: a dict is a record (its keys' specs; a missing key is the
# constructor's error), a list [spec] a list of spec, ("ints", n) n ints, ("optional", spec) spec
# or null, ("one of", values) a value among them, "dtype" a numeric dtype name.
_TILE = ("ints", 2)
_LOCKOP = {"lock": str, "value": int}
_INSTR = {"op": ("one of", ("acquire", "release", "call", "loop")), "lock": ("optional", _LOCKOP),
          "call": ("optional", {"kernel": str, "buffers": ("map", str), "params": dict}),
          "count": int}
_INSTR["body"] = [_INSTR]
_BD = {"id": int, "buffer": str, "offset": int, "sizes": [int], "strides": [int],
       "acquire": ("optional", _LOCKOP), "release": ("optional", _LOCKOP),
       "next": ("optional", int), "pad_before": ("optional", [int]),
       "pad_after": ("optional", [int])}
_PROGRAM = {
    "name": str, "device": str, "meta": dict,
    "tiles": [{"col": int, "row": int, "kind": ("one of", ("compute", "memtile", "shim"))}],
    "ddr": [{"name": str, "shape": [int], "dtype": "dtype",
             "role": ("one of", ("input", "output", "constant")),
             "valid_shape": ("optional", [int]), "io": ("one of", ("ddr", "pl"))}],
    "buffers": [{"name": str, "tile": _TILE, "offset": int, "shape": [int], "dtype": "dtype",
                 "initial": ("optional", str)}],
    "locks": [{"name": str, "tile": _TILE, "id": int, "init": int}],
    "dmas": [{"tile": _TILE, "direction": ("one of", ("mm2s", "s2mm")), "channel": int,
              "bds": [_BD], "start_bd": int, "repeat": int}],
    "routes": [{"src": ("ints", 3), "dsts": [("ints", 3)], "path": [[int]]}],
    "cascades": [{"src": _TILE, "dst": _TILE}],
    "cores": [{"tile": _TILE, "body": [_INSTR]}],
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numeric_dtype(name) -> bool:
    try:
        return isinstance(name, str) and (name == "bfloat16" or np.dtype(name).kind in "iuf")
    except TypeError:
        return False


def _check(value, spec, where: str) -> None:
    """Raise :class:`ProgramFormatError` unless ``value`` matches ``spec`` (see ``_PROGRAM``)."""
    if isinstance(spec, dict):
        ok = isinstance(value, dict)
        for key, sub in spec.items() if ok else ():
            if key in value:
                _check(value[key], sub, f"{where}.{key}")
    elif isinstance(spec, list):
        ok = isinstance(value, list)
        for i, item in enumerate(value if ok else ()):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, tuple):
        kind, arg = spec
        if kind == "optional":
            ok = value is None or _check(value, arg, where) is None
        elif kind == "ints":
            ok = isinstance(value, list) and len(value) == arg and all(map(_is_int, value))
        elif kind == "map":
            ok = isinstance(value, dict) and all(isinstance(v, arg) for v in value.values())
        else:
            ok = isinstance(value, str) and value in arg
    elif spec == "dtype":
        ok = _numeric_dtype(value)
    else:
        ok = _is_int(value) if spec is int else isinstance(value, spec)
    if not ok:
        raise ProgramFormatError(f"malformed AIE program: {where} is {value!r:.60}, not "
                                 f"{getattr(spec, '__name__', None) or _spec_text(spec)}")


def _spec_text(spec) -> str:
    if isinstance(spec, dict):
        return "a record"
    if isinstance(spec, list):
        return "a list"
    if spec == "dtype":
        return "a numeric dtype name"
    kind, arg = spec
    return {"ints": f"a list of {arg} ints", "map": "a map of names",
            "optional": "null or " + (_spec_text(arg) if not isinstance(arg, type)
                                      else arg.__name__)}.get(kind, f"one of {arg}")


def _lockop(d):
    return None if d is None else LockOp(**d)


def _instr(d):
    return Instr(
        op=d["op"], lock=_lockop(d["lock"]), count=d["count"],
        call=None if d["call"] is None else KernelCall(**d["call"]),
        body=[_instr(x) for x in d["body"]],
    )


def _bd(d):
    d = dict(d)
    d["acquire"], d["release"] = _lockop(d["acquire"]), _lockop(d["release"])
    return BufferDescriptor(**d)


def _program_from_dict(d: dict, constants: dict) -> Program:
    return Program(
        name=d["name"], device=d["device"],
        tiles=[TileSpec(**t) for t in d["tiles"]],
        ddr=[DdrTensor(**t) for t in d["ddr"]],
        buffers=[Buffer(**b) for b in d["buffers"]],
        locks=[Lock(**lk) for lk in d["locks"]],
        dmas=[DmaChannel(**{**c, "bds": [_bd(b) for b in c["bds"]]}) for c in d["dmas"]],
        routes=[Route(**r) for r in d["routes"]],
        cascades=[Cascade(**c) for c in d["cascades"]],
        cores=[Core(tile=c["tile"], body=[_instr(i) for i in c["body"]]) for c in d["cores"]],
        constants=constants, meta=d["meta"],
    )
