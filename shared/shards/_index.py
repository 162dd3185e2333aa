"""`index.json` of a shard folder: built from the done-markers once every shard is complete, read by ShardSet.

Part of `shared.shards`: import from there.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

from shared.files import atomic_write_text
from shared.shards._format import (INDEX_FORMAT, INDEX_NAME, SHARD_RE, ShardError, check_header, missing_shards,
                                 read_marker, rebuild_hint, shard_name, shard_range)

log = logging.getLogger(__name__)
# Header metadata every shard of one folder must share (code_version may differ: it is only warned about).
SHARED_METADATA = ("encoder_id", "split", "dtype", "image_dim", "text_dim", "checkpoint_sha256", "preprocessing")
# Optional provenance keys a writer may add; when shard 0 has one, every shard must carry the same value.
OPTIONAL_SHARED = ("source_rows", "dataset", "config_hash")
INDEX_HINT = ("build it with `python -m services.extract finalize --config <extract yaml> split=<split>` "
              "once every shard is done")


def _num_shards(directory: Path) -> int:
    """The `n` of the shard files in the folder; more than one `n` means two runs were mixed."""
    found: dict[int, list[int]] = defaultdict(list)
    for p in directory.iterdir():
        if m := SHARD_RE.match(p.name):
            found[int(m.group(2))].append(int(m.group(1)))
    if not found:
        raise ShardError(f"{directory}: no shard-*-of-*.safetensors files; run the extractor for this split first")
    if len(found) > 1:
        runs = ", ".join(f"{len(v)} of {n}" for n, v in sorted(found.items()))
        raise ShardError(f"{directory}: shards of different num_shards are mixed ({runs}); delete the files of the "
                         "old run and rerun the missing shards")
    return next(iter(found))


def _missing_error(directory: Path, n: int, missing: list[int], split: str) -> ShardError:
    names = ", ".join(shard_name(i, n) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return ShardError(f"{directory}: {len(missing)} of {n} shards are missing or incomplete ({names}); for each, "
                      + rebuild_hint(split, missing[0], n).replace(f"shard_index={missing[0]}", "shard_index=<i>"))


def _check_row_split(path: Path, rows: int, meta: dict, total: int, i: int, n: int) -> None:
    """Shard i must hold exactly its `shard_range` of the data file, less the dialogs the writer reports dropped.

    Writers that drop dialogs (e.g. for unreadable images) record `source_rows` (dialogs in the data file) and
    `dropped_image_ids` (a JSON list) in the header; without them the shards must add up to the whole file.
    """
    try:
        source = int(meta.get("source_rows", total))
        dropped = len(json.loads(meta.get("dropped_image_ids", "[]")))
    except (ValueError, TypeError):
        raise ShardError(f"{path}: unreadable source_rows/dropped_image_ids metadata; "
                         + rebuild_hint(meta.get("split", "<split>"), i, n)) from None
    start, stop = shard_range(source, i, n)
    if rows != stop - start - dropped:
        raise ShardError(f"{path}: holds {rows} rows but shard_range({source}, {i}, {n}) has {stop - start}"
                         f"{f' less {dropped} dropped' if dropped else ''}; the shards come from different data "
                         "files or settings — delete them and rerun the extraction")


def build_index(directory: str | Path) -> dict:
    """Check every shard against its marker and against shard 0, then write `index.json` atomically.

    Deterministic: the same shards give byte-identical index files (no timestamps, sorted keys).
    Raises:
        ShardError: a shard is missing/incomplete, or its header disagrees with its marker or with shard 0.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError(f"{directory}: folder does not exist; run the extractor for this split first")
    n = _num_shards(directory)
    first = read_marker(directory / shard_name(0, n)) or {}
    split = str(first.get("split", "<split>"))
    missing = missing_shards(directory, n)
    if missing:
        raise _missing_error(directory, n, missing, split)
    entries, metas, reference, dims0 = [], [], None, None
    for i in range(n):
        path = directory / shard_name(i, n)
        marker = read_marker(path)
        dims = marker.get("dims") or {}
        expect = {"rows": str(marker.get("rows")), "encoder_id": str(marker.get("encoder_id")),
                  "dtype": str(marker.get("dtype")), "image_dim": str(dims.get("image")),
                  "text_dim": str(dims.get("text")), **(reference or {})}
        header, _, header_dims = check_header(path, split, i, n, expect)
        if header_dims != dims or (dims0 is not None and dims != dims0):
            raise ShardError(f"{path}: dims {header_dims} (marker {dims}) differ from shard 0's {dims0 or dims}; "
                             + rebuild_hint(split, i, n))
        meta = header["__metadata__"]
        if reference is None:
            reference = {k: meta[k] for k in SHARED_METADATA + OPTIONAL_SHARED if k in meta}
            dims0, meta0 = dims, meta
        elif meta.get("code_version") != meta0.get("code_version"):
            log.warning("%s: code_version %s differs from shard 0's %s", path, meta.get("code_version"),
                        meta0.get("code_version"))
        metas.append(meta)
        entries.append({"file": path.name, "rows": marker["rows"], "bytes": marker["bytes"],
                        "sha256": marker["sha256"]})
    total = sum(e["rows"] for e in entries)
    for i, (entry, meta) in enumerate(zip(entries, metas)):
        _check_row_split(directory / entry["file"], entry["rows"], meta, total, i, n)
    index = {"format": INDEX_FORMAT, "encoder_id": reference["encoder_id"], "split": split, "num_shards": n,
             "total_rows": total, "dims": dims0, "dtype": reference["dtype"], "metadata": meta0, "shards": entries}
    atomic_write_text(directory / INDEX_NAME, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


def load_index(directory: str | Path) -> dict:
    """Read and sanity-check `index.json`; a missing index explains which shards are still missing."""
    directory = Path(directory)
    path = directory / INDEX_NAME
    if not directory.is_dir():
        raise ShardError(f"{directory}: embeddings folder does not exist; run the extractor for this split first")
    if not path.is_file():
        n = _num_shards(directory)
        split = str((read_marker(directory / shard_name(0, n)) or {}).get("split", "<split>"))
        missing = missing_shards(directory, n)
        if missing:
            raise _missing_error(directory, n, missing, split)
        raise ShardError(f"{path}: missing; " + INDEX_HINT.format(dir=directory))
    try:
        index = json.loads(path.read_text())
        shards = index["shards"]
        ok = index["format"] == INDEX_FORMAT and len(shards) == index["num_shards"] and isinstance(index["dims"], dict)
    except (ValueError, KeyError, TypeError) as e:
        raise ShardError(f"{path}: unreadable index ({e}); " + INDEX_HINT.format(dir=directory)) from None
    if not ok:
        raise ShardError(f"{path}: not a {INDEX_FORMAT} index with one entry per shard; "
                         + INDEX_HINT.format(dir=directory))
    return index
