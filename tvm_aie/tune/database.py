"""The tuning database: an append-only JSON-lines file, one measurement (or design) per line.

Every record is written with one ``write`` of a whole line, then flushed and fsynced, so a tuner
killed with ``kill -9`` loses at most the measurement in flight and never a finished one; resuming
reads the file back and skips what is already measured. A line that does not parse (the torn tail
of a killed write, a hand edit) is skipped with a warning naming its line number. Records are data
(``json``), so loading one never executes anything.

Two kinds of record:

* ``measure``: ``{"task", "workload", "device", "config", "cycles", "error", "tiles", "tuner",
  "seed", "trial"}``: one candidate of one task measured on the simulator;
* ``design``: ``{"device", "tasks", "goal", "configs", "cycles", "default_cycles"}``: the configs
  the graph-level allocation chose for one chain of layers, confirmed by simulating the chain.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

from ..schedules.conv2d import ConvConfig
from ..schedules.dense import DenseConfig

log = logging.getLogger("tvm_aie.tune")
_REQUIRED = {"measure": {"task", "config", "cycles", "tiles"},
             "design": {"device", "tasks", "configs"}}


def config_type(task_key: str) -> type:
    """The config class of a task's records, from its key (``device/family/...``)."""
    return DenseConfig if task_key.split("/")[1] == "dense" else ConvConfig


class DatabaseFormatError(ValueError):
    """The file is not a tvm-aie tuning database at all (no line of it is a record)."""


class Database:
    """Records of one JSONL file, in file order; :meth:`append` adds one durably."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.records: list[dict] = []
        self._torn_tail = False  # the file ends inside a line (a write killed midway)
        if self.path.is_dir():
            raise DatabaseFormatError(f"{self.path} is a directory, not a tuning database file")
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        bad = 0
        data = self.path.read_bytes()
        self._torn_tail = bool(data) and not data.endswith(b"\n")
        for lineno, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict) or not _REQUIRED.get(rec.get("kind"), set()) or \
                        not _REQUIRED[rec["kind"]] <= rec.keys():
                    raise ValueError("not a tuning record (kind or fields missing)")
            except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError too
                bad += 1
                log.warning("%s:%d: skipping a corrupted record (%s)", self.path, lineno,
                            str(e).splitlines()[0][:80])
                continue
            self.records.append(rec)
        if bad and not self.records:
            raise DatabaseFormatError(f"{self.path}: no line is a tuning record; not a database?")

    def append(self, record: dict) -> None:
        """Add ``record`` at the end of the file: one line, flushed and fsynced before returning."""
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._torn_tail:  # end the torn line first: it stays one corrupted line, not two
            line, self._torn_tail = "\n" + line, False
        with open(self.path, "ab") as f:
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def measurements(self, task_key: str) -> list[dict]:
        """The ``measure`` records of one task, in the order they were made."""
        return [r for r in self.records if r["kind"] == "measure" and r["task"] == task_key]

    def best(self, task_key: str) -> tuple | None:
        """The fastest successfully measured config of a task and its cycles (None if untuned).

        Ties go to fewer tiles, then to the earlier record, so the choice is reproducible.
        """
        ok = [(r["cycles"], r["tiles"], i, r) for i, r in enumerate(self.measurements(task_key))
              if r.get("cycles") is not None]
        if not ok:
            return None
        rec = min(ok, key=lambda t: t[:3])[3]
        return config_type(task_key).from_dict(rec["config"]), rec["cycles"]

    def design(self, device: str, task_keys: list[str]) -> dict | None:
        """The latest ``design`` record for this chain of tasks on this device."""
        found = [r for r in self.records if r["kind"] == "design" and r["device"] == device
                 and r["tasks"] == list(task_keys)]
        return found[-1] if found else None
