"""Crash-safe append-only JSONL files keyed by record id: resume skips what is there, never duplicates or loses.

Every record is appended and fsynced before the next request, so a crash loses at most the one record in flight
(which the rerun regenerates). A torn last line (killed mid-write) is dropped with a warning on resume.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.errors import InputError
from shared.files import refuse_replacing

log = logging.getLogger(__name__)


class RecordFileError(InputError):
    """An existing output file that cannot be resumed; the message names file:line and the fix."""


class JsonlLog:
    """Append records to `path`; `ids` holds the ids already present (read on resume).

    Args:
        check: returns a problem string for a malformed record (checked on resume and on every write).
        config_hash: every record must carry it; resuming a file of another config is refused.
    """

    def __init__(self, path: str | Path, config_hash: str, resume: bool,
                 check: Callable[[Mapping[str, Any]], str | None] | None = None, key: str = "id",
                 overwrite: bool = False):
        self.path, self.config_hash, self.key = Path(path), config_hash, key
        self.check = check or (lambda record: None)
        if not resume and not overwrite:
            refuse_replacing(self.path, "records")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        if resume and self.path.exists():
            self._load()
        self._file = open(self.path, "a" if resume else "w", encoding="utf-8")

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):
            log.warning("%s: dropping a torn last line (interrupted run); that record will be regenerated", self.path)
            os.truncate(self.path, good_end)
        for n, line in enumerate(data[:good_end].decode("utf-8").splitlines(), 1):
            where = f"{self.path}:{n}"
            try:
                record = json.loads(line)
            except ValueError:
                raise RecordFileError(f"{where}: not JSON", fix="fix or delete that line, or replace the file with "
                                                                "resume=false overwrite=true") from None
            problem = "not a JSON object" if not isinstance(record, dict) else self.check(record)
            if problem:
                raise RecordFileError(f"{where}: {problem}", fix="fix or delete that line, or replace the file with "
                                                                 "resume=false overwrite=true")
            if record.get("config_hash") != self.config_hash:
                raise RecordFileError(f"{where}: written with config_hash {record.get('config_hash')!r}, this run is "
                                      f"{self.config_hash!r} (other settings)",
                                      fix="use another run name, or replace the file with resume=false overwrite=true")
            if record[self.key] in self.ids:
                raise RecordFileError(f"{where}: duplicate {self.key} {record[self.key]!r}; delete one of the lines")
            self.ids.add(record[self.key])

    def write(self, record: Mapping[str, Any]) -> None:
        record = {**record, "config_hash": self.config_hash}
        problem = self.check(record)
        if problem:
            raise RecordFileError(f"{self.path}: record {record.get(self.key)!r} does not fit the schema: {problem}")
        if record[self.key] in self.ids:
            raise RecordFileError(f"{self.path}: {self.key} {record[self.key]!r} is already written")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.ids.add(record[self.key])

    def close(self) -> None:
        self._file.close()
