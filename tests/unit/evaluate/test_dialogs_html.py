"""dialogs.html: one row per predicted round with the right kind and error flag, pictures by relative path, the
reminders of both kinds of run, nothing fetched from anywhere; a missing picture stops the evaluation early.
(tests/browser opens it in chromium: the pictures load and the filters work.)"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.evaluate.config import BertScoreConfig, BootstrapConfig, EvaluateConfig, TextConfig
from services.evaluate.evaluator import evaluate
from shared.errors import InputError
from shared.predictions import scores_to_ranks

ROW = re.compile(r'<tr class="round" data-kind="(\w+)" data-error="(\w+)"><td>(\d+)</td>')


@pytest.fixture
def world(tmp_path, val_split, rows_for, write_jsonl, val_with_kinds):
    """The real VisDial val sample with kinds (rounds 6-10 'memory'), a picture per image, and predictions."""
    data = val_with_kinds
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for d in val_split.dialogs:
        Image.new("RGB", (8, 8), "red").save(pictures / f"{d.image_id}.png")
    rows = rows_for(val_split, scores="random")
    rows[0]["raw"] = "<reminder>\n[turn 1] Q: is it <sunny>? A: yes\n</reminder> no"  # a model that writes one
    rows[1]["reminders"] = ["[turn 1] Q: what color? A: red"]  # a bridge prompt's reminder
    preds = write_jsonl(tmp_path / "p.jsonl", rows)
    return {"data": data, "pictures": pictures, "preds": preds, "rows": rows, "split": val_split}


def _cfg(tmp_path, world, **kw) -> EvaluateConfig:
    return EvaluateConfig(predictions=str(world["preds"]), data=str(world["data"]), out=str(tmp_path / "run" / "eval"),
                          bertscore=BertScoreConfig(enabled=False), text=TextConfig(enabled=False),
                          bootstrap=BootstrapConfig(samples=20), plots=False, **kw)


def test_every_round_with_its_kind_rank_and_pictures(tmp_path, world):
    report = evaluate(_cfg(tmp_path, world, images=str(world["pictures"])))
    out = tmp_path / "run" / "eval"
    html = (out / "dialogs.html").read_text()
    rows = ROW.findall(html)
    assert len(rows) == len(world["rows"]) == 500
    split = world["split"]
    gt = {(d.image_id, r.round_id): r.gt_index for d in split.dialogs for r in d.rounds}
    expected = [("memory" if p["round_id"] > 5 else "current",
                 str(bool(scores_to_ranks(np.array(p["scores"]))[gt[p["image_id"], p["round_id"]]] > 1)).lower(),
                 str(p["round_id"])) for p in world["rows"]]
    assert sorted(rows) == sorted(expected)
    errors = sum(e == "true" for _, e, _ in expected)
    assert f"errors: right answer not ranked first ({errors})" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 50 and all(not os.path.isabs(s) and s.startswith("../../pictures/") for s in sources)
    assert all((out / s).resolve().is_file() for s in sources)
    # the two reminder sources, escaped
    assert "[turn 1] Q: is it &lt;sunny&gt;? A: yes" in html and "[turn 1] Q: what color? A: red" in html
    # self-contained: nothing fetched, nothing lazy
    for banned in ("http://", "https://", "loading=", "fetch(", "<link", "@import"):
        assert banned not in html
    assert report["dialogs_html"] == "dialogs.html" and "[dialogs.html](dialogs.html)" in (out / "report.md").read_text()


def test_a_missing_picture_stops_before_any_metric(tmp_path, world):
    next(world["pictures"].iterdir()).unlink()
    with pytest.raises(InputError) as missing:
        evaluate(_cfg(tmp_path, world, images=str(world["pictures"])))
    assert "no picture for 1 image id" in missing.value.message and "images=null" in missing.value.fix
    assert not (tmp_path / "run" / "eval" / "report.json").exists()


def test_without_pictures_or_without_the_page(tmp_path, world):
    evaluate(_cfg(tmp_path, world, images=None))
    html = Path(tmp_path / "run" / "eval" / "dialogs.html").read_text()
    assert "<img" not in html and "not shown (images=null)" in html and len(ROW.findall(html)) == 500
    (tmp_path / "run" / "eval" / "dialogs.html").unlink()
    report = evaluate(_cfg(tmp_path, world, images=str(world["pictures"]), dialogs_html=False, overwrite=True))
    assert not (tmp_path / "run" / "eval" / "dialogs.html").exists() and "dialogs_html" not in report
