"""bench/history.py, the entry point of `make eval-history`, end to end on 2 real VisDial dialogs (last rounds):
rank-text with the real SmolLM2 in the train venv, the evaluator and `compare` in this one, the history report."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo_artifacts import smollm2

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ["history_mrr_none", "history_mrr_caption", "history_mrr_full", "history_mrr_reminder",
           "history_mrr_gated", "history_r1_full", "history_r1_reminder", "history_context_ratio"]

pytestmark = pytest.mark.slow


def test_history_smoke(tmp_path):
    smollm2()
    proc = subprocess.run([sys.executable, "bench/history.py", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    figures = dict(re.findall(r"^([a-z0-9_]+): ([-0-9.eE+]+)$", proc.stdout, re.M))
    assert list(figures)[-len(FIGURES):] == FIGURES  # the bench ends with exactly these lines, in this order
    values = {k: float(v) for k, v in figures.items()}
    assert all(0 < values[k] <= 1 for k in FIGURES if k.startswith("history_mrr"))
    assert 0 < values["history_context_ratio"] < 1  # a reminder block is shorter than the whole history
    run = tmp_path / "history_smollm2"
    assert "caption stands in for its picture" in (run / "history.md").read_text()
    assert "reminder - full, mrr" in (run / "history.md").read_text()
    assert (run / "compare" / "compare.md").is_file() and (run / "per_round.png").stat().st_size > 10_000
    for condition in ("none", "caption", "full", "reminder", "gated"):
        assert (run / condition / "eval" / "report.json").is_file()
