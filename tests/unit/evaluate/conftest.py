"""Shared fixtures of the evaluator tests: the real VisDial val sample and a predictions-file writer."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "tests" / "assets" / "visdial_v1_real_sample"
VAL_SAMPLE = SAMPLE / "visdial_1.0_val.small.json"
TEST_SAMPLE = SAMPLE / "visdial_1.0_test.small.json"


@pytest.fixture(scope="session", autouse=True)
def wordnet_installed():
    """METEOR needs WordNet; a missing install is a failure with the fix, never a skip."""
    from services.evaluate.textmetrics import NltkDataError, require_wordnet

    try:
        require_wordnet()
    except NltkDataError as e:
        pytest.fail(f"{e}\n(run `make setup`, or for a probe venv: bash docker/install_nltk_data.sh /tmp/nltk_data "
                    "and NLTK_DATA=/tmp/nltk_data)", pytrace=False)


@pytest.fixture(scope="session")
def val_split():
    from shared.visdial import load_visdial

    return load_visdial(VAL_SAMPLE)


@pytest.fixture(scope="session")
def test_split():
    from shared.visdial import load_visdial

    return load_visdial(TEST_SAMPLE)


@pytest.fixture
def val_with_kinds(tmp_path) -> Path:
    """The val sample with question kinds: rounds 1-5 "current", 6-10 "memory" (evidence in round 1)."""
    doc = json.loads(VAL_SAMPLE.read_text())
    for d in doc["data"]["dialogs"]:
        for k, r in enumerate(d["dialog"]):
            r["kind"] = "memory" if k >= 5 else "current"
            if k >= 5:
                r["evidence_round"] = 1
    data = tmp_path / "val_kinds.json"
    data.write_text(json.dumps(doc))
    return data


@pytest.fixture(scope="session")
def write_jsonl():
    return _write_jsonl


@pytest.fixture(scope="session")
def rows_for():
    return _rows_for


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows_for(split, answer="gt", scores="random", seed=0, raw_prefix="") -> list[dict]:
    """One prediction row per round of `split`.

    answer: "gt" (the ground-truth answer text) or "empty"; scores: "random", "oracle" (gt option highest) or None.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for d in split.dialogs:
        for r in d.rounds:
            text = (r.answer or "") if answer == "gt" else ""
            row = {"image_id": d.image_id, "round_id": r.round_id, "answer": text, "raw": raw_prefix + text,
                   "config_hash": "0123456789ab"}
            if scores is not None and r.options is not None:
                s = rng.random(len(r.options))
                if scores == "oracle" and r.gt_index is not None:
                    s[r.gt_index] = 2.0
                row["scores"] = s.round(6).tolist()
            rows.append(row)
    return rows
