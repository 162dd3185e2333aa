"""`predictions.jsonl` (docs/CONTRACTS.md): one line per (image_id, round_id), written resumably, read strictly.

Line: {"image_id": int, "round_id": int >= 1, "answer": str, "raw": str, "scores": [float]*N (optional, higher is
better), "ranks": [int]*N (optional, a permutation of 1..N, 1 = best), "reminders": [str] (optional, the reminder
lines the prompt held), "gate": bool (optional: whether the reminder gate let this round's reminder in),
"config_hash": str}. An empty `answer` is
allowed (the evaluator counts it as a miss); anything else malformed raises PredictionError naming file:line.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from shared.errors import InputError
from shared.files import atomic_write_text, refuse_replacing

log = logging.getLogger(__name__)
Key = tuple[int, int]
MAX_LINE_BYTES = 1 << 20  # a row with 100 scores and ranks is a few KB; longer lines are refused, never buffered



class PredictionError(InputError):
    """A malformed predictions file or row; the message names file:line and the fix."""


def scores_to_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks (1 = best) of the options along the last axis, by descending score.

    Ties are broken by the lower option index first (a stable sort of the negated scores), so equal scores give
    deterministic ranks, e.g. [0.5, 0.9, 0.5] -> [2, 1, 3].
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 0 or not np.isfinite(scores).all():
        raise PredictionError("scores_to_ranks: scores must be a finite array [..., num_options]")
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, scores.shape[-1] + 1), order.shape), axis=-1)
    return ranks


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_row(row: Mapping[str, Any], num_options: int | None = None) -> str | None:
    """The first problem of one prediction row as text, or None when it is valid."""
    for key in ("image_id", "round_id"):
        if key not in row:
            return f"missing {key!r}"
        if not _is_int(row[key]):
            return f"{key} must be an integer, got {row[key]!r}"
    if row["round_id"] < 1:
        return f"round_id {row['round_id']} must be >= 1 (rounds are 1-based)"
    if not isinstance(row.get("answer"), str):
        return "missing 'answer'" if "answer" not in row else f"answer must be a string, got {row['answer']!r}"
    for key in ("raw", "config_hash"):
        if key in row and not isinstance(row[key], str):
            return f"{key} must be a string, got {row[key]!r}"
    if "reminders" in row and not (isinstance(row["reminders"], list)
                                   and all(isinstance(line, str) for line in row["reminders"])):
        return f"reminders must be a list of strings, got {row['reminders']!r}"
    if "gate" in row and not isinstance(row["gate"], bool):  # the reminder gate fired (prompt.reminder=gated)
        return f"gate must be true or false, got {row['gate']!r}"
    lengths = {}
    if "scores" in row:
        scores = row["scores"]
        if not isinstance(scores, (list, tuple, np.ndarray)) or not all(
                isinstance(s, (int, float, np.number)) and not isinstance(s, bool) and math.isfinite(s)
                for s in scores):
            return "scores must be a list of finite numbers"
        lengths["scores"] = len(scores)
    if "ranks" in row:
        ranks = row["ranks"]
        if not isinstance(ranks, (list, tuple, np.ndarray)) or not all(_is_int(r) for r in ranks):
            return "ranks must be a list of integers"
        if sorted(int(r) for r in ranks) != list(range(1, len(ranks) + 1)):
            return f"ranks are not a permutation of 1..{len(ranks)}"
        lengths["ranks"] = len(ranks)
    for key, length in lengths.items():
        if num_options is not None and length != num_options:
            return f"{key} has {length} entries, expected num_options={num_options}"
    if len(set(lengths.values())) > 1:
        return f"scores and ranks have different lengths {lengths}"
    return None


def _jsonable(row: Mapping[str, Any]) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, (list, tuple)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _scan(path: Path) -> tuple[list[dict], int, bool]:
    """Parse an existing file for resuming: (rows, byte length of the complete lines, last line was partial)."""
    data = path.read_bytes()
    rows, good_end, start = [], 0, 0
    while start < len(data):
        newline = data.find(b"\n", start)
        if newline < 0:  # no newline: the process died mid-write; everything before is intact
            return rows, good_end, True
        try:
            rows.append(json.loads(data[start:newline]))
        except ValueError:
            if not data[newline + 1:]:
                return rows, good_end, True  # the last line is unparsable: treat it like a cut-off line
            raise PredictionError(f"{path}:{len(rows) + 1}: not valid JSON in the middle of the file (edited or "
                                  "corrupted)", fix="fix or delete that line, or replace the file with resume=false "
                                                    "overwrite=true") from None
        start = good_end = newline + 1
    return rows, good_end, False


class PredictionWriter:
    """Append prediction rows to `path`, resumable after a crash without loss or duplicates.

    Args:
        config_hash: the run's `shared.config.config_hash`, stored in every line; resuming a file written by another
            config is refused.
        resume: keep the existing lines (dropping a truncated last line with a warning); False starts a new file,
            which replaces an existing non-empty one only with `overwrite`.
    """

    def __init__(self, path: str | Path, config_hash: str, resume: bool = True, overwrite: bool = False) -> None:
        self.path, self.config_hash = Path(path), config_hash
        if not resume and not overwrite:
            refuse_replacing(self.path, "predictions")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: set[Key] = set()
        if resume and self.path.exists():
            rows, good_end, partial = _scan(self.path)
            if partial:
                log.warning("%s: dropping a truncated last line (an interrupted run); it will be regenerated",
                            self.path)
                os.truncate(self.path, good_end)
            for n, row in enumerate(rows, 1):
                problem = "not a JSON object" if not isinstance(row, dict) else check_row(row)
                if problem:
                    raise PredictionError(f"{self.path}:{n}: {problem}",
                                          fix="fix or delete that line, or replace the file with resume=false "
                                              "overwrite=true")
                if row.get("config_hash") != config_hash:
                    raise PredictionError(f"{self.path}:{n}: written with config_hash {row.get('config_hash')!r}, "
                                          f"this run is {config_hash!r} (other settings)",
                                          fix="use another run name, or replace the file with resume=false "
                                              "overwrite=true")
                self._done.add((int(row["image_id"]), int(row["round_id"])))
        self._file = open(self.path, "a" if resume else "w", encoding="utf-8")

    def done_keys(self) -> set[Key]:
        """(image_id, round_id) pairs already written: skip them when resuming."""
        return set(self._done)

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Validate and append a batch, then flush and fsync so a crash loses at most the batch in flight."""
        lines, keys = [], []
        for row in rows:
            row = {**_jsonable(row), "config_hash": self.config_hash}
            problem = check_row(row)
            if problem:
                raise PredictionError(f"{self.path}: row {row.get('image_id')}/{row.get('round_id')}: {problem}")
            key = (row["image_id"], row["round_id"])
            if key in self._done or key in keys:
                raise PredictionError(f"{self.path}: duplicate prediction for image_id={key[0]} round_id={key[1]}; "
                                      "skip the keys in done_keys() when resuming")
            keys.append(key)
            lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._done.update(keys)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_predictions(path: str | Path, num_options: int | None = None) -> list[dict]:
    """Read and validate every line; scores/ranks lengths must equal `num_options` (or agree with each other)."""
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"{path}: no such predictions file; run inference first (it writes predictions.jsonl)")
    rows, seen, hashes = [], {}, {}
    with open(path, "rb") as f:
        for n, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            where = f"{path}:{n}"
            if len(line) > MAX_LINE_BYTES:  # never buffered whole: a wrong file can be gigabytes without a newline
                raise PredictionError(f"{where}: longer than {MAX_LINE_BYTES >> 20} MiB, while a prediction is a few "
                                      "KB: this is not a predictions file", fix="give the predictions.jsonl that "
                                                                                "inference wrote")
            try:
                row = json.loads(line)  # its text is never shown: the path may name a file that is not ours
            except ValueError:
                raise PredictionError(f"{where}: not a JSON object line (predictions.jsonl has one per line)",
                                      fix="if the run was interrupted, resume it (the writer drops a partial line); "
                                          "else check the path, or fix or delete that line") from None
            problem = "not a JSON object" if not isinstance(row, dict) else check_row(row, num_options)
            if problem:
                raise PredictionError(f"{where}: {problem}; regenerate the file or fix that line")
            key = (row["image_id"], row["round_id"])
            if key in seen:
                raise PredictionError(f"{where}: duplicate image_id={key[0]} round_id={key[1]} (first at line "
                                      f"{seen[key]}); keep one of them")
            seen[key] = n
            if "config_hash" in row:
                hashes.setdefault(row["config_hash"], n)
                if len(hashes) > 1:
                    raise PredictionError(f"{where}: config_hash {row['config_hash']!r} differs from line "
                                          f"{min(hashes.values())}'s; the file mixes two runs — regenerate it")
            if num_options is None and ("scores" in row or "ranks" in row):
                num_options = len(row.get("scores", row.get("ranks")))
            rows.append(row)
    return rows


def export_evalai(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the EvalAI submission [{image_id, round_id, ranks}], ranks taken from `ranks` or derived from `scores`."""
    out = []
    for row in rows:
        if "ranks" in row:
            ranks = [int(r) for r in row["ranks"]]
        elif "scores" in row:
            ranks = scores_to_ranks(np.asarray(row["scores"])).tolist()
        else:
            raise PredictionError(f"image_id={row.get('image_id')} round_id={row.get('round_id')}: neither ranks nor "
                                  "scores; EvalAI needs ranked options — rerun inference with option ranking enabled")
        out.append({"image_id": int(row["image_id"]), "round_id": int(row["round_id"]), "ranks": ranks})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out) + "\n")
    return path
