"""Loader to report on the real VisDial val sample with synthetic predictions: random, oracle, ground-truth text."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.evaluate.config import BertScoreConfig, BootstrapConfig, EvaluateConfig
from services.evaluate.evaluator import evaluate
from shared.visdial import load_visdial

ROOT = Path(__file__).resolve().parents[3]
VAL_SAMPLE = ROOT / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"
TEST_SAMPLE = ROOT / "tests/assets/visdial_v1_real_sample/visdial_1.0_test.small.json"


def _cfg(tmp_path, predictions, data=VAL_SAMPLE, bertscore=False, **kw):
    return EvaluateConfig(predictions=str(predictions), data=str(data), out=str(tmp_path / "run" / "eval"),
                          bertscore=BertScoreConfig(enabled=bertscore), bootstrap=BootstrapConfig(samples=200), **kw)


def _dense(split, tmp_path, seed=0):
    """One dense round per dialog: gt option 1.0, three others 0.5; the last dialog's round all zero."""
    rng = np.random.default_rng(seed)
    entries = []
    for d in split.dialogs:
        r = d.rounds[int(rng.integers(len(d.rounds)))]
        rel = np.zeros(100)
        rel[rng.choice([j for j in range(100) if j != r.gt_index], 3, replace=False)] = 0.5
        rel[r.gt_index] = 1.0
        entries.append({"image_id": d.image_id, "round_id": r.round_id, "gt_relevance": rel.tolist()})
    entries[-1]["gt_relevance"] = [0.0] * 100
    path = tmp_path / "dense.json"
    path.write_text(json.dumps(entries))
    return path, entries


def test_random_scores_land_at_chance(tmp_path, val_split, rows_for, write_jsonl):
    preds = write_jsonl(tmp_path / "p.jsonl", rows_for(val_split, scores="random", seed=1))
    h = evaluate(_cfg(tmp_path, preds))["headline"]
    assert 0.0 <= h["r@1"]["value"] <= 0.04 and 0.05 <= h["r@10"]["value"] <= 0.16
    assert 45 <= h["mean_rank"]["value"] <= 56 and 0.03 <= h["mrr"]["value"] <= 0.08  # chance: 50.5, H_100/100
    lo, hi = h["mrr"]["ci"]
    assert lo < h["mrr"]["value"] < hi and h["mrr"]["n"] == 500


def test_oracle_scores_are_perfect_and_all_zero_dense_round_is_skipped(tmp_path, val_split, rows_for, write_jsonl):
    dense_path, entries = _dense(val_split, tmp_path)
    rows = rows_for(val_split, scores="oracle")
    rel = {(e["image_id"], e["round_id"]): np.array(e["gt_relevance"]) for e in entries}
    for row in rows:  # the oracle also orders the dense relevances correctly
        key = (row["image_id"], row["round_id"])
        if key in rel:
            row["scores"] = (np.array(row["scores"]) * 0.01 + rel[key]).tolist()
            row["scores"][val_split.dialog_by_image()[key[0]].rounds[key[1] - 1].gt_index] = 2.0
    report = evaluate(_cfg(tmp_path, write_jsonl(tmp_path / "p.jsonl", rows), dense=str(dense_path)))
    h = report["headline"]
    assert h["r@1"]["value"] == 1.0 and h["mrr"]["value"] == 1.0 and h["mean_rank"]["value"] == 1.0
    assert h["ndcg"]["value"] == pytest.approx(1.0) and h["ndcg"]["n"] == 49
    assert report["counts"]["dense_rounds"] == 50 and report["counts"]["dense_rounds_all_zero"] == 1
    assert any("all-zero relevances" in n for n in report["notes"])


def test_ground_truth_text_only(tmp_path, rows_for, write_jsonl):
    doc = json.loads(VAL_SAMPLE.read_text())
    doc["data"]["dialogs"] = doc["data"]["dialogs"][:10]  # 100 rounds keep BERTScore quick on CPU
    data = tmp_path / "val10.json"
    data.write_text(json.dumps(doc))
    rows = rows_for(load_visdial(data), answer="gt", scores=None,
                    raw_prefix="<reminder>[turn 1] Q: a A: b</reminder> ")
    rows[0]["answer"] = ""
    report = evaluate(_cfg(tmp_path, write_jsonl(tmp_path / "p.jsonl", rows), data=data, bertscore=True))
    h, out = report["headline"], tmp_path / "run" / "eval"
    assert "r@1" not in h and any("no scores/ranks" in n for n in report["notes"])
    assert h["bertscore_f1"]["value"] == pytest.approx(99 / 100, abs=1e-4)  # one empty answer scores 0
    assert h["rouge_l"]["value"] == pytest.approx(99 / 100)
    assert h["bleu1"]["value"] > 0.99 and h["sacrebleu"]["value"] > 0.9
    assert report["counts"]["empty_answers"] == 1 and report["counts"]["stripped_share"] == 1.0
    assert report["methods"]["bertscore"]["num_layers"] == 4
    assert report["methods"]["bertscore"]["rescale_with_baseline"] is False
    for name in ("report.json", "report.md", "config.yaml", "per_round.png"):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "## Headline" in md and "BERTScore F1" in md and "no rescaling baseline" in md and "100 generations" in md
    assert json.loads((out / "report.json").read_text())["per_round"]["text"]["10"]["n"] == 10


def test_per_kind_breakdown(tmp_path, val_split, rows_for, write_jsonl, val_with_kinds):
    data = val_with_kinds
    preds = write_jsonl(tmp_path / "p.jsonl", rows_for(val_split, scores="oracle"))
    report = evaluate(_cfg(tmp_path, preds, data=data))
    assert report["per_kind"]["ranking"]["memory"] == pytest.approx(
        {"r@1": 1.0, "r@5": 1.0, "r@10": 1.0, "mean_rank": 1.0, "mrr": 1.0, "n": 250})
    assert report["per_kind"]["text"]["current"]["n"] == 250
    assert (tmp_path / "run" / "eval" / "per_kind.png").is_file()


def test_test_split_excludes_the_open_round(tmp_path, test_split, rows_for, write_jsonl):
    preds = write_jsonl(tmp_path / "p.jsonl", rows_for(test_split, scores="random"))
    report = evaluate(_cfg(tmp_path, preds, data=TEST_SAMPLE, plots=False))
    open_rounds = len(test_split.dialogs)
    assert report["counts"]["text_rounds"] == report["counts"]["predictions"] - open_rounds
    assert report["counts"]["ranked_rounds"] == 0 and "r@1" not in report["headline"]
    assert any("no ground-truth answer" in n for n in report["notes"])
    assert any("export_evalai" in n for n in report["notes"])


def test_cli_reports_bad_input_with_the_line(tmp_path, val_split, rows_for, write_jsonl):
    rows = rows_for(val_split, scores=None)
    rows[2]["image_id"] = 7
    preds = write_jsonl(tmp_path / "p.jsonl", rows)
    proc = subprocess.run([sys.executable, "-m", "services.evaluate", "--config", "configs/evaluate/default.yaml",
                           f"predictions={preds}", f"data={VAL_SAMPLE}", "dense=null", f"out={tmp_path / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{preds}:3: image_id 7 is not a dialog" in proc.stderr
