"""Shard format core: names, row ranges, validated atomic writes, done-markers, cleanup of interrupted writes.

Part of `shared.shards`: import from there.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from shared.errors import InputError
from shared.files import atomic_write_text, fsync_dir, sha256_file
from shared.shards._safetensors import HeaderError, read_header, write_safetensors

FORMAT = "vdmem-shard/1"
INDEX_FORMAT = "vdmem-shard-index/1"
INDEX_NAME = "index.json"
MARKER_SUFFIX = ".done.json"
# Metadata the caller supplies; write_shard adds `format` and `rows` itself.
CALLER_METADATA = ("encoder_id", "checkpoint_sha256", "image_dim", "text_dim", "dtype", "preprocessing",
                   "code_version", "split", "shard_index", "num_shards")
REQUIRED_TENSORS = ("image_ids", "num_rounds", "image", "question")
FLOAT_DTYPES = ("float16", "float32")
SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.safetensors$")


class ShardError(InputError):
    """A shard (or a shard folder) that is missing, incomplete, corrupted or inconsistent; the message names it."""


def shard_name(i: int, n: int) -> str:
    if not (n >= 1 and 0 <= i < n):
        raise ShardError(f"shard_index={i} num_shards={n}: need num_shards >= 1 and 0 <= shard_index < num_shards")
    return f"shard-{i:05d}-of-{n:05d}.safetensors"


def shard_range(total: int, i: int, n: int) -> tuple[int, int]:
    """Rows [start, stop) of shard `i` of `n` over `total` dialogs in file order (sizes differ by at most 1)."""
    shard_name(i, n)
    return i * total // n, (i + 1) * total // n


def marker_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + MARKER_SUFFIX)


def rebuild_hint(split: str, i: int, n: int) -> str:
    return (f"rerun `python -m services.extract --config <extract yaml> split={split} shard_index={i} "
            f"num_shards={n}` to rebuild it")


def _fail(path: Path, problem: str, fix: str) -> ShardError:
    return ShardError(f"{path}: {problem}; {fix}")


def expected_shapes(rows: int, rounds: int, image_dim: int, text_dim: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the contract's tensors; other (extra) tensors only need `rows` as their first dimension."""
    return {"image_ids": (rows,), "num_rounds": (rows,), "image": (rows, image_dim), "caption": (rows, text_dim),
            "question": (rows, rounds, text_dim), "answer": (rows, rounds, text_dim),
            "round_image": (rows, rounds, image_dim)}


def _check_tensors(path: Path, tensors: Mapping[str, np.ndarray], meta: dict[str, str]) -> dict[str, int]:
    """Validate a shard's tensors against the contract and its metadata; return its dims."""
    fix = "fix the extractor (this is a bug in the writer, not in the data on disk)"
    absent = [t for t in REQUIRED_TENSORS if t not in tensors]
    if absent:
        raise _fail(path, f"missing tensors {absent} (have {sorted(tensors)})", fix)
    ids, num_rounds, question = tensors["image_ids"], tensors["num_rounds"], tensors["question"]
    if ids.dtype != np.int64 or ids.ndim != 1:
        raise _fail(path, f"image_ids must be int64 [N], got {ids.dtype} {list(ids.shape)}", fix)
    if np.unique(ids).size != ids.size:
        raise _fail(path, "image_ids are not unique (one row per dialog)", fix)
    if question.ndim != 3:
        raise _fail(path, f"question must be [N, R, D_txt], got {list(question.shape)}", fix)
    rows, rounds, text_dim = question.shape
    image_dim = tensors["image"].shape[-1]
    expected = expected_shapes(rows, rounds, image_dim, text_dim)
    float_dtypes = set()
    for name, array in tensors.items():
        if name in expected and array.shape != expected[name]:
            raise _fail(path, f"{name} has shape {list(array.shape)}, expected {list(expected[name])}", fix)
        if array.ndim == 0 or array.shape[0] != ids.shape[0]:
            raise _fail(path, f"{name} has {array.shape[:1]} rows but image_ids has {ids.shape[0]}", fix)
        if name not in ("image_ids", "num_rounds"):
            float_dtypes.add(array.dtype.name)
            if not np.isfinite(array).all():  # fp16 overflow or a broken encoder must not become "data"
                raise _fail(path, f"{name} contains NaN/inf values", fix)
    if num_rounds.dtype != np.int64 or (rows and not ((num_rounds >= 1) & (num_rounds <= rounds)).all()):
        raise _fail(path, f"num_rounds must be int64 values in 1..{rounds}", fix)
    if len(float_dtypes) != 1 or not float_dtypes <= set(FLOAT_DTYPES) or float_dtypes != {meta["dtype"]}:
        raise _fail(path, f"embedding dtypes {sorted(float_dtypes)} must all equal metadata dtype={meta['dtype']} "
                    f"(one of {list(FLOAT_DTYPES)})", fix)
    if (meta["image_dim"], meta["text_dim"]) != (str(image_dim), str(text_dim)):
        raise _fail(path, f"metadata image_dim/text_dim {meta['image_dim']}/{meta['text_dim']} do not match the "
                    f"tensors ({image_dim}/{text_dim})", fix)
    return {"image": int(image_dim), "text": int(text_dim), "rounds": int(rounds)}


def write_shard(path: str | Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, object]) -> dict:
    """Validate and atomically write one shard, then its done-marker; return the marker.

    `metadata` needs every key of CALLER_METADATA; extra keys are kept. Numbers are stringified, dicts and lists
    JSON-encoded (header metadata is str -> str).
    Order matters for crash safety: old marker removed -> temp file -> fsync -> rename -> fsync folder -> marker
    (atomic too), so a marker always describes the file beside it. Identical inputs give identical bytes.
    """
    path = Path(path)
    absent = [k for k in CALLER_METADATA if k not in metadata]
    if absent:
        raise _fail(path, f"metadata lacks {absent}", "pass every key of shared.shards.CALLER_METADATA")
    meta = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v) for k, v in metadata.items()}
    rows = int(np.asarray(tensors.get("image_ids", ())).shape[0])
    for key, value in (("format", FORMAT), ("rows", str(rows))):
        if meta.setdefault(key, value) != value:
            raise _fail(path, f"metadata {key}={meta[key]!r} but it must be {value!r}", "leave it out")
    try:
        json.loads(meta["preprocessing"])
        index, count = int(meta["shard_index"]), int(meta["num_shards"])
    except ValueError as e:
        raise _fail(path, f"bad metadata ({e})", "preprocessing must be JSON, shard_index/num_shards ints") from None
    try:
        expected_name = shard_name(index, count)
    except ShardError as e:
        raise _fail(path, str(e), "fix the extraction config") from None
    if path.name != expected_name:
        raise _fail(path, f"file name does not match shard_index/num_shards (expected {expected_name})",
                    "write to shard_name(shard_index, num_shards)")
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    dims = _check_tensors(path, arrays, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    marker_path(path).unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    write_safetensors(tmp, arrays, meta)  # deterministic bytes, fsynced (see its docstring for why not save_file)
    tmp.replace(path)
    fsync_dir(path.parent)
    marker = {"rows": rows, "bytes": path.stat().st_size, "sha256": sha256_file(path), "dims": dims,
              "encoder_id": meta["encoder_id"], "split": meta["split"], "dtype": meta["dtype"],
              "shard_index": int(meta["shard_index"]), "num_shards": int(meta["num_shards"])}
    atomic_write_text(marker_path(path), json.dumps(marker, indent=1, sort_keys=True) + "\n")
    return marker


def read_marker(path: str | Path) -> dict | None:
    """The done-marker of a shard, or None when it is absent or unreadable (the shard then counts as incomplete)."""
    try:
        marker = json.loads(marker_path(path).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("bytes"), int) else None


def is_complete(path: str | Path) -> bool:
    marker = read_marker(path)
    return marker is not None and Path(path).is_file() and Path(path).stat().st_size == marker["bytes"]


def clean_stale(directory: str | Path, only: str | None = None) -> list[Path]:
    """Delete temp leftovers of shards and index, shards without a (matching) marker, and markers without a shard.

    Args:
        only: restrict to one shard's files (its file name). Concurrent array jobs must pass it, so that one job
            never deletes the temp file another job is still writing.
    Returns:
        the removed paths, sorted.
    """
    directory, removed = Path(directory), []
    if not directory.is_dir():
        return removed
    for p in sorted(directory.iterdir()):
        base = p.name.split(".tmp-")[0]
        owner = base[: -len(MARKER_SUFFIX)] if base.endswith(MARKER_SUFFIX) else base
        if (only is not None and owner != only) or not p.exists():  # gone: removed with its shard just before
            continue
        ours = SHARD_RE.match(owner) is not None or (only is None and owner == INDEX_NAME)  # never config.yaml.tmp-*
        stale = (".tmp-" in p.name and ours
                 or (SHARD_RE.match(p.name) is not None and not is_complete(p))
                 or (p.name.endswith(MARKER_SUFFIX) and not (directory / owner).is_file()))
        if stale:
            p.unlink(missing_ok=True)
            removed.append(p)
            if SHARD_RE.match(p.name) and marker_path(p).exists():  # a marker describing another file
                marker_path(p).unlink()
                removed.append(marker_path(p))
    return sorted(removed)


def missing_shards(directory: str | Path, n: int) -> list[int]:
    return [i for i in range(n) if not is_complete(Path(directory) / shard_name(i, n))]


def check_header(path: Path, split: str, i: int, n: int, expect: Mapping[str, str]) -> tuple[dict, int, dict]:
    """Parse a written shard's header and check it against `expect` (metadata strings from its marker or the index).

    Always checks the format tag, the expected metadata, and every tensor's shape against `rows` and the dims.
    Returns:
        (header, offset of the data section, dims {"image", "text", "rounds"}).
    """
    fix = rebuild_hint(split, i, n)
    try:
        header, data_start, _ = read_header(path)
    except HeaderError as e:
        raise _fail(path, str(e), fix) from None
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror})", fix) from None
    meta = header["__metadata__"]
    for key, want in {"format": FORMAT, "split": split, "shard_index": str(i), "num_shards": str(n), **expect}.items():
        if meta.get(key) != want:
            raise _fail(path, f"header says {key}={meta.get(key)!r} but {want!r} is expected", fix)
    shapes = {name: tuple(info["shape"]) for name, info in header.items() if name != "__metadata__"}
    try:
        rows, image_dim, text_dim = int(meta["rows"]), int(meta["image_dim"]), int(meta["text_dim"])
        rounds = shapes["question"][1]
    except (KeyError, IndexError, ValueError):
        raise _fail(path, f"header lacks rows/dims or the question tensor (tensors: {sorted(shapes)})", fix) from None
    for name, shape in shapes.items():
        want = expected_shapes(rows, rounds, image_dim, text_dim).get(name)
        if (want is not None and shape != want) or not shape or shape[0] != rows:
            raise _fail(path, f"tensor {name} has shape {list(shape)} but rows={rows}, dims image={image_dim} "
                        f"text={text_dim} rounds={rounds}", fix)
    absent = [t for t in REQUIRED_TENSORS if t not in shapes]
    if absent:
        raise _fail(path, f"missing tensors {absent}", fix)
    return header, data_start, {"image": image_dim, "text": text_dim, "rounds": int(rounds)}
