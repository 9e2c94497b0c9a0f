"""Atomic file writes: a file is either its old content or its whole new content, never half.

Everything tvm-aie saves (executables, traces, pictures, reports) goes through :func:`atomic_write`:
the bytes go to a temporary file beside the target, which is flushed, fsynced and renamed over it
only when the write succeeded. A failed write (disk full, file-size limit, an exception while
producing the content) removes the temporary file and leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file for writing (``"wb"`` or ``"w"``, UTF-8) that replaces ``path`` when
    the ``with`` block ends without an error; on an error ``path`` is untouched."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 would make the saved file private
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_figure(fig, path, dpi: int) -> None:
    """``fig.savefig`` through :func:`atomic_write`, in the format the suffix names (else PNG)."""
    with atomic_write(path) as f:
        fig.savefig(f, dpi=dpi, format=pathlib.Path(path).suffix.lstrip(".").lower() or "png")
