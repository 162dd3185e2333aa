"""Crash points for the resume tests: `VDMEM_EXTRACT_KILL_AT=<point>` makes the process SIGKILL itself there.

Points:
  image_batch      after the first batch of images of a shard is embedded (mid-shard, nothing written yet)
  before_rename    when a shard's temp file is written and fsynced, just before its rename to the final name
  after_shard:<i>  after shard i and its done-marker are complete, before the next shard starts
SIGKILL (not an exception) so nothing gets to clean up: exactly what an OOM kill or a pre-empted node does.
Unset (every real run), each check is one dict lookup.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "VDMEM_EXTRACT_KILL_AT"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point(name: str) -> None:
    """SIGKILL this process if the environment asks to die at `name`."""
    if os.environ.get(ENV) == name:
        _die()


def arm_before_rename() -> None:
    """Die on the rename that publishes a shard (shared.shards writes temp -> fsync -> Path.replace).

    This hooks Path.replace rather than shared.shards' internals: it fires for any writer that follows the
    documented temp-file-then-rename protocol, and the resume test checks that a temp file was left behind.
    """
    if os.environ.get(ENV) != "before_rename":
        return
    original = Path.replace

    def replace_or_die(self: Path, target: str | os.PathLike) -> Path:
        if str(target).endswith(".safetensors"):
            _die()
        return original(self, target)

    Path.replace = replace_or_die  # type: ignore[method-assign]
