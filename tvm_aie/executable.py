"""Saving and loading built executables as data.

An exported TVM library is machine code, and loading it runs code from the file. tvm-aie saves
instead what the executable was built from after the AIE codegen: the Relax module (TVM's JSON
form, with the AIE programs and weights as constants inside) and the target, in one ``.npz``
without pickle. Loading reads that data and recompiles the host part with LLVM.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import tvm

from .pipeline import compile_lowered

FORMAT = "tvm-aie-executable/1"


class ExecutableFormatError(ValueError):
    """A file that is not a saved tvm-aie executable."""


def save(ex, path: str) -> None:
    """Write an executable from :func:`tvm_aie.build` to ``path`` (an ``.npz``)."""
    if not hasattr(ex, "aie_lowered"):
        raise ValueError("only executables built by tvm_aie.build can be saved as data")
    header = {"format": FORMAT, "target": str(ex.aie_target)}
    with open(path, "wb") as f:
        np.savez(f, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                 module=np.frombuffer(tvm.ir.save_json(ex.aie_lowered).encode(), np.uint8))


def load(path: str):
    """Read a saved executable and rebuild its host part; never executes anything from the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            module_json = z["module"].tobytes().decode()
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, UnicodeDecodeError) as e:
        raise ExecutableFormatError(f"{path}: not a tvm-aie executable ({e})") from e
    if header.get("format") != FORMAT:
        raise ExecutableFormatError(f"{path}: format {header.get('format')!r}, expected {FORMAT}")
    try:
        lowered = tvm.ir.load_json(module_json)
    except Exception as e:  # TVM raises its own error types for malformed IR JSON
        raise ExecutableFormatError(f"{path}: the saved module does not parse ({e})") from e
    return compile_lowered(lowered, tvm.target.Target(header["target"]))
