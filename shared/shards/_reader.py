"""ShardSet: every shard of one `embeddings/<encoder_id>/<split>/` folder as one memory-mapped, checked table.

Part of `shared.shards`: import from there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from shared.files import atomic_write_text, sha256_file
from shared.shards._safetensors import map_tensors
from shared.shards._format import ShardError, check_header, rebuild_hint, shard_name
from shared.shards._index import INDEX_HINT, load_index


@dataclass(frozen=True)
class ShardView:
    """One shard's tensors as read-only views over its mmap; global rows [start, stop)."""

    path: Path
    index: int
    start: int
    stop: int
    tensors: Mapping[str, np.ndarray]
    metadata: Mapping[str, str]


VERIFY_MODES = ("once", "always", "never")
VERIFIED_SUFFIX = ".verified.json"  # beside a shard: the sha256 that matched, for this size and mtime


def _verified(path: Path, sha256: str, stat: os.stat_result) -> bool:
    """True when the shard was hashed before, unchanged since (same size and mtime), and matched `sha256`."""
    try:
        seen = json.loads(Path(str(path) + VERIFIED_SUFFIX).read_text())
    except (OSError, ValueError):
        return False
    return seen == {"sha256": sha256, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _record_verified(path: Path, sha256: str, stat: os.stat_result) -> None:
    """Remember a good hash; a read-only folder only means the next reader hashes again."""
    try:
        atomic_write_text(Path(str(path) + VERIFIED_SUFFIX),
                          json.dumps({"sha256": sha256, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    except OSError:
        pass


class ShardSet:
    """Memory-mapped embeddings of one split: rows, dims and headers always checked, every byte hashed once.

    Args:
        directory: the `embeddings/<encoder_id>/<split>` folder holding the shards and `index.json`.
        encoder_id: expected encoder; a folder written by another encoder raises ShardError.
        dims: expected subset of {"image": D_img, "text": D_txt, "rounds": R}.
        verify: "once" (default): hash a shard the first time it is read and record the result beside it
            (`<shard>.verified.json`, keyed by size and mtime), so later reads cost a stat; "always": hash every
            time; "never": headers and sizes only. True/False mean "always"/"never".
    Raises:
        ShardError: naming the offending shard file (or index) and how to fix it.
    """

    def __init__(self, directory: str | Path, encoder_id: str | None = None,
                 dims: Mapping[str, int] | None = None, verify: bool | str = "once") -> None:
        verify = {True: "always", False: "never"}.get(verify, verify)
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify={verify!r}: use one of {VERIFY_MODES}")
        self.directory = Path(directory)
        index = load_index(self.directory)
        self.index = index
        self.split: str = index["split"]
        self.encoder_id: str = index["encoder_id"]
        self.dims: dict[str, int] = dict(index["dims"])
        self.metadata: dict[str, str] = dict(index["metadata"])
        n, total = index["num_shards"], index["total_rows"]
        first = self.directory / shard_name(0, n)
        if encoder_id is not None and encoder_id != self.encoder_id:
            raise ShardError(f"{first}: written by encoder {self.encoder_id!r}, but {encoder_id!r} was asked for; "
                             "point the job at embeddings/<encoder_id>/<split> of the encoder it was configured with")
        unknown = sorted(set(dims or {}) - set(self.dims))
        wrong = {k: v for k, v in (dims or {}).items() if k in self.dims and self.dims[k] != v}
        if unknown or wrong:
            raise ShardError(f"{first}: dims are {self.dims}, but {dict(dims)} was asked for; re-extract with the "
                             "encoder the model expects or set the model's dims to match")
        self._views: list[ShardView] = []
        start = 0
        for i, entry in enumerate(index["shards"]):
            self._views.append(self._open(i, n, entry, start, verify))
            start += entry["rows"]
        if start != total:
            raise ShardError(f"{self.directory}/index.json: total_rows={total} but shards hold {start}; "
                             + INDEX_HINT.format(dir=self.directory))
        self._names = tuple(sorted(self._views[0].tensors)) if self._views else ()
        self._offsets = np.array([v.start for v in self._views] + [total], dtype=np.int64)
        self.image_ids = np.concatenate([v.tensors["image_ids"] for v in self._views]) if self._views else \
            np.zeros(0, np.int64)
        self._order = np.argsort(self.image_ids, kind="stable")
        sorted_ids = self.image_ids[self._order]
        if sorted_ids.size > 1 and (dup := sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]).size:
            raise ShardError(f"{self.directory}: image id {int(dup[0])} appears in more than one row; the shards "
                             "come from different data files — delete them and rerun the extraction")
        self._sorted_ids = sorted_ids
        # dialogs the extraction left out (unreadable images, max_failures > 0): a lookup of one says so
        self.dropped: set[int] = set()
        for view in self._views:
            self.dropped.update(int(i) for i in json.loads(view.metadata.get("dropped_image_ids", "[]")))

    def _open(self, i: int, n: int, entry: Mapping, start: int, verify: str) -> ShardView:
        path = self.directory / str(entry.get("file"))
        fix = rebuild_hint(self.split, i, n)
        if entry.get("file") != shard_name(i, n):
            raise ShardError(f"{path}: index entry {i} should be {shard_name(i, n)}; "
                             + INDEX_HINT.format(dir=self.directory))
        if not path.is_file():
            raise ShardError(f"{path}: missing; {fix}, then rebuild the index")
        stat = path.stat()
        size = stat.st_size
        if size != entry["bytes"]:
            raise ShardError(f"{path}: {size} bytes but the index says {entry['bytes']} (truncated or rewritten); "
                             f"{fix}, then rebuild the index")
        expect = {"encoder_id": self.encoder_id, "rows": str(entry["rows"]), "dtype": self.index["dtype"],
                  "image_dim": str(self.dims.get("image")), "text_dim": str(self.dims.get("text"))}
        header, data_start, dims = check_header(path, self.split, i, n, expect)
        if dims != self.dims:
            raise ShardError(f"{path}: dims {dims} differ from the index's {self.dims}; {fix}")
        if verify == "always" or (verify == "once" and not _verified(path, entry["sha256"], stat)):
            if (digest := sha256_file(path)) != entry["sha256"]:
                raise ShardError(f"{path}: sha256 {digest[:16]}... does not match the recorded "
                                 f"{entry['sha256'][:16]}... (corrupted on disk); delete it and {fix}")
            if verify == "once":
                _record_verified(path, digest, stat)
        tensors = map_tensors(path, header, data_start)
        if self._views and sorted(tensors) != sorted(self._views[0].tensors):
            raise ShardError(f"{path}: tensors {sorted(tensors)} differ from shard 0's "
                             f"{sorted(self._views[0].tensors)}; {fix} with the same settings as the others")
        return ShardView(path, i, start, start + int(entry["rows"]), tensors, header.get("__metadata__", {}))

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return self._names

    def iter_shards(self) -> Iterator[ShardView]:
        """Shard by shard, zero-copy: the way to stream a whole split without gathering."""
        return iter(self._views)

    def rows_of(self, image_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row of each image id; an id without a row raises (never a silent zero vector)."""
        ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self._sorted_ids, ids).clip(max=max(len(self) - 1, 0))
        absent = ids[(self._sorted_ids[pos] != ids)] if len(self) else ids
        if absent.size:
            dropped = [int(i) for i in absent if int(i) in self.dropped]
            if dropped:
                raise ShardError(f"{self.directory}: image id {dropped[0]} has no embedding: the extraction dropped "
                                 f"its dialog ({len(dropped)} such ids asked for; failures.jsonl beside the shards "
                                 "says why, e.g. an unreadable image); fix: repair the image and re-extract the "
                                 "split, or leave those dialogs out of the data file")
            raise ShardError(f"{self.directory}: image id {int(absent[0])} has no embedding ({absent.size} ids "
                             f"missing of {ids.size}); the split's data file differs from the one extracted — "
                             f"rerun the extraction for split={self.split}")
        return self._order[pos]

    def row_of(self, image_id: int) -> int:
        return int(self.rows_of([image_id])[0])

    def get(self, name: str, rows: np.ndarray | list[int] | int) -> np.ndarray:
        """Gather rows of tensor `name` across shards into a new array (global row numbers, any order)."""
        if name not in self._names:
            raise ShardError(f"{self.directory}: no tensor {name!r} (have {list(self._names)}); rerun the "
                             "extraction with that tensor enabled")
        scalar = np.ndim(rows) == 0
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ShardError(f"{self.directory}: row {int(idx.max() if idx.max() >= len(self) else idx.min())} "
                             f"out of range 0..{len(self) - 1}")
        which = np.searchsorted(self._offsets, idx, side="right") - 1
        sample = self._views[0].tensors[name] if self._views else np.zeros((0,), np.float32)
        out = np.empty((idx.size,) + sample.shape[1:], dtype=sample.dtype)
        for s in np.unique(which):
            mask = which == s
            out[mask] = self._views[s].tensors[name][idx[mask] - self._offsets[s]]
        return out[0] if scalar else out
