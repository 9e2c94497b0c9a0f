"""The tuning database: an append-only JSON-lines file, one measurement (or design) per line.

Every record is written with one ``write`` of a whole line, then flushed and fsynced, so a tuner
killed with ``kill -9`` loses at most the measurement in flight and never a finished one; resuming
reads the file back and skips what is already measured. A line that does not parse (the torn tail
of a killed write, a hand edit, a record whose fields are not of their types) is skipped with a
warning naming its line number. Records are data (``json``), so loading one never executes
anything.

Two kinds of record:

* ``measure``: ``{"task", "workload", "device", "config", "cycles", "error", "tiles", "tuner",
  "seed", "trial"}``: one candidate of one task measured on the simulator;
* ``design``: ``{"device", "tasks", "goal", "configs", "tuned", "cycles", "default_cycles"}``: the
  configs the graph-level allocation chose for one chain of layers, confirmed by simulating it.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from dataclasses import fields

from ..schedules.conv2d import ConvConfig
from ..schedules.dense import DenseConfig

log = logging.getLogger("tvm_aie.tune")
_REQUIRED = {"measure": {"task", "config", "cycles", "tiles"},
             "design": {"device", "tasks", "configs", "tuned", "cycles", "default_cycles"}}


def config_type(task_key: str) -> type:
    """The config class of a task's records, from its key (``device/family/...``)."""
    return DenseConfig if task_key.split("/")[1] == "dense" else ConvConfig


def _check_config(task_key, config) -> None:
    """Raise ValueError unless ``task_key`` is ``device/family/...`` and ``config`` that family's
    knobs: each int knob a whole number >= 1, each bool knob a bool."""
    if not isinstance(task_key, str) or len(task_key.split("/")) < 3:
        raise ValueError(f"task {task_key!r} is not device/family/shape")
    if not isinstance(config, dict):
        raise ValueError(f"config {config!r} is not a dict of knobs")
    for f in fields(config_type(task_key)):
        value = config.get(f.name)
        ok = isinstance(value, bool) if f.type == "bool" else \
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not ok:
            raise ValueError(f"config knob {f.name}={value!r} is not a {f.type}"
                             + (" >= 1" if f.type == "int" else ""))


def _check_record(rec) -> None:
    """Raise ValueError unless ``rec`` is a well-formed measure or design record."""
    if not isinstance(rec, dict) or rec.get("kind") not in ("measure", "design") or \
            not _REQUIRED[rec["kind"]] <= rec.keys():
        raise ValueError("not a tuning record (kind or fields missing)")
    counts = [rec.get("cycles"), rec.get("default_cycles"), rec.get("tiles")]
    if any(c is not None and (not isinstance(c, int) or isinstance(c, bool) or c < 0)
           for c in counts) or (rec["kind"] == "design" and None in counts[:2]):
        raise ValueError(f"cycles or tiles {counts} are not counts")
    if rec["kind"] == "measure":
        _check_config(rec["task"], rec["config"])
        return
    if not isinstance(rec["tuned"], bool) or not isinstance(rec["device"], str) or \
            not isinstance(rec["tasks"], list) or \
            not isinstance(rec["configs"], list) or len(rec["tasks"]) != len(rec["configs"]):
        raise ValueError("a design's tasks and configs are not two lists of one length")
    for key, config in zip(rec["tasks"], rec["configs"]):
        _check_config(key, config)


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

    @classmethod
    def existing(cls, path) -> "Database":
        """The database at ``path``, to read: a missing file, or one with no record, is an error
        (building or reporting from it would silently use nothing)."""
        db = cls(path)
        if not db.path.exists():
            raise DatabaseFormatError(f"no tuning database at {db.path}; make one with "
                                      "tvm-aie tune --work-dir DIR, or check the path")
        if not db.records:
            raise DatabaseFormatError(f"{db.path} holds no tuning records; tune into it first")
        return db

    def _load(self) -> None:
        bad = []  # (line number, why) of each line that is not a record
        data = self.path.read_bytes()
        self._torn_tail = bool(data) and not data.endswith(b"\n")
        for lineno, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                _check_record(rec)
            except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError too
                bad.append((lineno, str(e).splitlines()[0][:80]))
                continue
            self.records.append(rec)
        if bad and not self.records:
            raise DatabaseFormatError(f"{self.path}: no line is a tuning record (line {bad[0][0]}: "
                                      f"{bad[0][1]}); not a database?")
        for lineno, why in bad:
            log.warning("%s:%d: skipping a corrupted record (%s)", self.path, lineno, why)

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
