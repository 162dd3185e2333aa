"""Durable file writes and checksums that every service uses: atomic replace, fsync of the folder, sha256.

A reader (or a crash) must see either the old file or the complete new one, never half of it: every output that
another job reads (configs, markers, index.json, state.json, predictions) is written through `atomic_write_text`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shared.errors import InputError


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so a multi-GiB shard never sits in memory at once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable (the directory entry lives in the directory's own data)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync, rename over `path`, fsync the folder.

    A reader (or a crash) sees either the old file or the complete new one, never half of it.
    """
    target = Path(path)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def refuse_replacing(path: str | Path, what: str) -> None:
    """An existing non-empty output is never replaced silently: resume it, or say overwrite=true."""
    path = Path(path)
    if path.exists() and path.stat().st_size:
        raise InputError(f"{path}: already holds {what} and resume=false would replace it",
                         fix="resume=true continues it; overwrite=true replaces it; or choose another run name")
