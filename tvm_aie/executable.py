"""Saving and loading built executables as data.

An exported TVM library is machine code, and loading it runs code from the file. tvm-aie saves
instead what the executable was built from after the AIE codegen: the Relax module (TVM's JSON
form, with the AIE programs and weights as constants inside) and the AIE device, in one ``.npz``
without pickle. Loading reads that data and recompiles the host part with LLVM for this host (the
device's target tag here, so a file saved on another host of the same kind runs).

The Relax module is data only as long as it cannot call out: before compiling, :func:`check_host`
walks it and accepts only Relax functions made of TVM's own tensor operators (those LegalizeOps
lowers, and a few more that only compute on tensors or shapes) and ``call_dps_packed`` of
``aie.run``. A TIR function (it could ``call_extern`` anything), any other extern or packed
function, a closure, a VM or memory builtin, or a function handed to an external codegen is
refused with :class:`UnsafeExecutableError` before anything is compiled.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import tvm
from tvm import relax

from .atomic import atomic_write
from .offload import MANIFEST_FUNC
from .pipeline import compile_lowered
from .target import device_of_target, get_device

FORMAT = "tvm-aie-executable/1"
# the only function the host part may call by name: the simulator's entry (tvm_aie.runtime)
ALLOWED_EXTERN = frozenset({"aie.run"})
# operators LegalizeOps does not lower that only compute on tensors or shapes (sort, scan and
# data-dependent ops are dispatched to TVM's own kernels and builtins); every other operator must
# have a legalization. call_dps_packed is allowed here: its callee is checked (ALLOWED_EXTERN).
DATA_OPS = frozenset({"relax.argsort", "relax.sort", "relax.topk", "relax.cumsum",
                      "relax.cumprod", "relax.nonzero", "relax.unique", "relax.shape_of",
                      "relax.tensor_to_shape", "relax.call_dps_packed"})
REFUSED_ATTRS = ("Codegen", "Composite")  # functions handed to an external codegen
_DPS_PACKED = tvm.ir.Op.get("relax.call_dps_packed")


class ExecutableFormatError(ValueError):
    """A file that is not a saved tvm-aie executable."""


class UnsafeExecutableError(ExecutableFormatError):
    """A saved module that could call code of the file's choosing when compiled or run."""


def _op_allowed(op) -> bool:
    return op.name in DATA_OPS or op.get_attr("FLegalize") is not None


def check_host(mod: tvm.IRModule, where: str = "executable") -> None:
    """Raise :class:`UnsafeExecutableError` unless ``mod`` (an executable's Relax module) is only
    Relax tensor operators and ``aie.run`` calls, with ``main`` and the manifest function."""
    def refuse(what: str):
        raise UnsafeExecutableError(
            f"{where}: refused, {what}; a saved executable may only hold Relax tensor operators "
            f"and {', '.join(sorted(ALLOWED_EXTERN))} calls (rebuild it with tvm-aie compile)")

    names = {gv.name_hint for gv in mod.functions}
    for name in ("main", MANIFEST_FUNC):
        if name not in names:
            refuse(f"it has no function {name!r}")
    if mod.attrs is not None and "external_mods" in mod.attrs:
        refuse("it links external modules")
    for gv, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            refuse(f"{gv.name_hint} is a {type(func).__name__}, not a Relax function")
        for attr in REFUSED_ATTRS:
            if func.attrs is not None and attr in func.attrs:
                refuse(f"{gv.name_hint} is for the external codegen {func.attrs[attr]}")
        bad = []

        def visit(node, bad=bad):
            if isinstance(node, relax.ExternFunc) and node.global_symbol not in ALLOWED_EXTERN:
                bad.append(f"extern function {node.global_symbol!r}")
            elif isinstance(node, relax.Call) and isinstance(node.op, tvm.ir.Op) and \
                    not _op_allowed(node.op):
                bad.append(f"operator {node.op.name}")
            elif isinstance(node, relax.Call) and node.op.same_as(_DPS_PACKED) and \
                    not isinstance(node.args[0], relax.ExternFunc):
                bad.append(f"call_dps_packed of a {type(node.args[0]).__name__}")

        relax.analysis.post_order_visit(func, visit)
        if bad:
            refuse(f"{gv.name_hint} calls {bad[0]}")


def save(ex, path: str) -> None:
    """Write an executable from :func:`tvm_aie.build` to ``path`` (an ``.npz``), atomically: a
    failed write leaves an earlier file at ``path`` as it was."""
    if not hasattr(ex, "aie_lowered"):
        raise ValueError("only executables built by tvm_aie.build can be saved as data")
    check_host(ex.aie_lowered, str(path))
    header = {"format": FORMAT, "device": device_of_target(ex.aie_target).name,
              "target": str(ex.aie_target)}
    with atomic_write(path) as f:
        np.savez(f, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                 module=np.frombuffer(tvm.ir.save_json(ex.aie_lowered).encode(), np.uint8))


def load(path: str):
    """Read a saved executable and rebuild its host part for this host's CPU.

    Never executes anything from the file: the module is checked by :func:`check_host` first.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            module_json = z["module"].tobytes().decode()
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, UnicodeDecodeError,
            EOFError) as e:
        raise ExecutableFormatError(f"{path}: not a tvm-aie executable ({e or 'empty file'}); "
                                    "make one with tvm-aie compile") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ExecutableFormatError(f"{path}: format {found!r}, expected {FORMAT}")
    try:
        lowered = tvm.ir.load_json(module_json)
        if not isinstance(lowered, tvm.IRModule):
            raise TypeError(f"a {type(lowered).__name__}, not an IRModule")
        device = get_device(header["device"]) if "device" in header else \
            device_of_target(tvm.target.Target(header["target"]))  # files from before "device"
    except Exception as e:  # TVM raises its own error types for malformed IR or target JSON
        why = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
        raise ExecutableFormatError(f"{path}: the saved module does not parse ({why})") from e
    check_host(lowered, str(path))
    return compile_lowered(lowered, tvm.target.Target(device.tag))
