"""Run logging: `metrics.jsonl` records, progress with ETA (tqdm on a terminal, log lines in batch jobs), plots.

A metrics record is one JSON line `{"step": int, "time": unix seconds, <name>: value, ...}`. Non-finite floats are
stored as the strings "nan"/"inf"/"-inf" (JSON has no NaN) and turned back into floats by `read_metrics`, so a
diverging loss stays visible instead of making the file unreadable.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from shared.files import atomic_write_text

log = logging.getLogger(__name__)
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a record is emitted (not the stream of the first call)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str | int = "INFO") -> None:
    """Timestamped log lines on stderr for every module (call once, in the entry point)."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # torch registers libraries' enums at import and warns about its own deprecation each time: noise to a user
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    return value


class MetricsLogger:
    """Append-only `metrics.jsonl` writer.

    Args:
        resume_step: when a run resumes from a checkpoint taken at this step, records logged after it (by the
            interrupted run) are dropped first, so the resumed run does not log those steps twice.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n"
                                                 for r in kept))
        elif self.path.exists():
            _drop_partial_line(self.path)  # else the next record would be glued onto it
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, step: int, **values: Any) -> dict:
        """Append one record (flushed at once, so `tail -f` and a crash both see it)."""
        record = {"step": int(step), "time": round(time.time(), 3), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_partial_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        log.warning("%s: dropping a cut-off last line left by an interrupted run", path)
        os.truncate(path, data.rfind(b"\n") + 1)


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a metrics file; a cut-off last line (a crash mid-write) is dropped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file; it is written by the training run (MetricsLogger)")
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line and n == len(lines):
            break
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("a record needs an integer 'step'")
        except ValueError as e:
            if n == len(lines):  # no trailing newline: the writer was interrupted mid-line
                log.warning("%s:%d: dropping a cut-off last line", path, n)
                break
            raise ValueError(f"{path}:{n}: bad metrics record ({e}); fix or delete that line") from None
        records.append({k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in record.items()})
    return records


class Progress:
    """Progress of a loop: a tqdm bar on a terminal, else an INFO line with rate and ETA every `every_s` seconds.

    Use as `with Progress(len(items), "extract") as bar: ... bar.update(batch_size)`.
    """

    def __init__(self, total: int | None, desc: str, every_s: float = 30.0, tty: bool | None = None) -> None:
        self.total, self.desc, self.every_s, self.done = total, desc, every_s, 0
        self._start = self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty() if tty is None else tty:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=desc, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info("%s", self.status_line(now))

    def status_line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            eta_text = _duration(eta) if math.isfinite(eta) else "?"
            return (f"{self.desc}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), {rate:.2f}/s, "
                    f"elapsed {_duration(elapsed)}, ETA {eta_text}")
        return f"{self.desc}: {self.done} done, {rate:.2f}/s, elapsed {_duration(elapsed)}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            log.info("%s (finished)", self.status_line())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def plot_metrics(metrics_path: str | Path, out_png: str | Path, keys: Sequence[str] | Iterable[str]) -> Path:
    """One panel per key (value against step) from a metrics file, saved as PNG.

    Raises:
        ValueError: a key that no record has (the message lists the keys that exist).
    """
    import matplotlib  # lazy: only the jobs that plot pay for the import
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, keys = read_metrics(metrics_path), list(keys)
    present = sorted({k for r in records for k in r} - {"step", "time"})
    absent = [k for k in keys if k not in present]
    if not keys or absent:
        raise ValueError(f"{metrics_path}: no records of {absent or 'any key'}; keys present: {present}")
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
