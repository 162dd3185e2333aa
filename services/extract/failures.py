"""Unreadable inputs: `failures.jsonl` beside the shards, and the error that stops a run with too many of them.

Policy (docs: services/extract/README.md): a missing, empty, truncated or non-image file never becomes a vector.
Each one is recorded; if a shard has more than `max_failures` of them the run stops before writing that shard.
Otherwise every dialog that shows a failed image is dropped from its shard (its image id goes into the shard
metadata `dropped_image_ids` and a `dropped_dialog` record into failures.jsonl), so no row holds a fake embedding.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InputError

FAILURES_NAME = "failures.jsonl"


class ExtractError(InputError):
    """A run that cannot go on; the message names the file or setting and the fix."""


@dataclass(frozen=True)
class ImageFailure:
    image_id: int
    path: str
    reason: str


class FailureLog:
    """Append-only JSONL that never repeats a record: a resumed shard re-finds the same broken files.

    Each record is written with one O_APPEND write, so the jobs of a Slurm array may share the file.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FAILURES_NAME

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def append(self, records: list[dict]) -> int:
        """Append the records not yet in the file; return how many were new."""
        seen = {json.dumps(r, sort_keys=True) for r in self.records()}
        lines = [json.dumps(r, sort_keys=True) for r in records]
        new = [line for line in dict.fromkeys(lines) if line not in seen]
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, ("\n".join(new) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(new)


def too_many_error(failures: list[ImageFailure], max_failures: int, log_path: Path, where: str) -> ExtractError:
    shown = "; ".join(f"image {f.image_id}: {f.path or '(no file)'}: {f.reason}" for f in failures[:3])
    more = f"; ... and {len(failures) - 3} more" if len(failures) > 3 else ""
    return ExtractError(
        f"{where}: {len(failures)} image(s) could not be read (max_failures={max_failures}): {shown}{more} "
        f"(all are listed in {log_path})",
        fix=f"fix or replace the files and rerun (complete shards are kept), or allow max_failures={len(failures)} "
            "to drop the dialogs that show them")
