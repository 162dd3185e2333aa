"""metrics.jsonl logging, progress lines with ETA, plots."""
import logging
import math

import numpy as np
import pytest

from shared import runlog
from shared.runlog import MetricsLogger, Progress, plot_metrics, read_metrics, setup_logging


def test_metrics_round_trip_with_numpy_and_non_finite_values(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    with MetricsLogger(path) as metrics:
        metrics.log(1, loss=np.float32(2.5), lr=1e-4)
        metrics.log(2, loss=float("nan"), grad_norm=np.array(float("inf")))
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == 2.5 and records[0]["lr"] == 1e-4 and records[0]["time"] > 1.6e9
    assert math.isnan(records[1]["loss"]) and records[1]["grad_norm"] == math.inf
    assert "NaN" not in path.read_text()  # strict JSON on disk


def test_resume_drops_steps_after_the_checkpoint_and_partial_lines(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    with MetricsLogger(path) as metrics:
        for step in range(1, 6):
            metrics.log(step, loss=1.0 / step)
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')  # killed mid-line
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]
    assert "cut-off last line" in caplog.text
    with MetricsLogger(path, resume_step=3) as metrics:  # resumed from the step-3 checkpoint
        metrics.log(4, loss=0.2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
    with open(path, "a") as f:
        f.write('{"step": 5, "lo')
    with MetricsLogger(path) as metrics:  # appending must not glue a record onto the cut-off line
        metrics.log(5, loss=0.1)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]


def test_bad_record_in_the_middle_names_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"loss": 3}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: bad metrics record"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        read_metrics(tmp_path / "absent.jsonl")


def test_progress_logs_rate_and_eta_when_not_a_terminal(caplog, monkeypatch):
    clock = iter([100.0, 110.0, 120.0, 121.0, 130.0, 140.0]).__next__
    monkeypatch.setattr(runlog.time, "monotonic", clock)
    with caplog.at_level(logging.INFO, logger="shared.runlog"):
        with Progress(100, "extract", every_s=10, tty=False) as bar:
            bar.update(10)  # t=110: logs
            bar.update(10)  # t=120: logs
            bar.update(5)   # t=121: too soon
            bar.update(25)  # t=130: logs
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "extract: 10/100 (10%), 1.00/s, elapsed 0m10s, ETA 1m30s"
    assert lines[2] == "extract: 50/100 (50%), 1.67/s, elapsed 0m30s, ETA 0m30s"
    assert len(lines) == 4 and lines[3].endswith("(finished)")


def test_progress_uses_tqdm_on_a_terminal(capsys):
    bar = Progress(3, "train", tty=True)
    assert bar._bar is not None
    bar.update(3)
    bar.close()
    assert "train" in capsys.readouterr().err
    assert Progress(None, "stream", tty=False).status_line().startswith("stream: 0 done")


def test_setup_logging_sets_level(capsys):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging("WARNING")
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").warning("shown")
    finally:  # do not leave a handler on capsys's stream for later tests
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    err = capsys.readouterr().err
    assert "shown" in err and "hidden" not in err and " WARNING x: " in err


def test_plot_metrics_writes_a_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLogger(path) as metrics:
        for step in range(20):
            metrics.log(step, loss=1 / (step + 1), **({"val_mrr": step / 20} if step % 5 == 0 else {}))
    out = plot_metrics(path, tmp_path / "plots" / "loss.png", ["loss", "val_mrr"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"no records of \['acc'\]; keys present: \['loss', 'val_mrr'\]"):
        plot_metrics(path, tmp_path / "x.png", ["acc"])
