"""Record schema, the gen_reason response format, the shipped configs, and prompt assembly helpers."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.generate.config import GenerateConfig
from services.generate.verbs import VERBS
from services.generate.prompts import fill, images_shown
from services.generate.run import selected_rounds
from services.generate.schema import check_reason_response, check_record, clean_answer, record_id
from shared.config import ConfigError, load_config
from shared.visdial import load_visdial
from tests.unit.generate.conftest import write_split

REPO = Path(__file__).resolve().parents[3]
GOOD = {"id": "train:1:2", "image_id": 1, "round_id": 2, "prompt_kind": "gen_base",
        "conversation": "Q: a?\nA: b\nQ: c?\nA:", "response": "red", "answer": "red", "reminder": "",
        "reference": "red", "images": [1], "backend": "hf", "model": "m", "config_hash": "abc"}


@pytest.mark.parametrize("change, problem", [
    ({}, None),
    ({"reference": None}, None),
    ({"round_id": 0}, "round_id 0 < 1"),
    ({"image_id": True}, "image_id is bool"),
    ({"prompt_kind": "gen_eval"}, "prompt_kind 'gen_eval' not in"),
    ({"conversation": "Q: c?\nA: the answer"}, "does not end with the open question"),
    ({"extra": 1}, "unknown keys ['extra']"),
    ({"images": ["x"]}, "images must be a list of image ids"),
])
def test_check_record(change, problem):
    result = check_record({**GOOD, **change})
    assert result == problem if problem is None else problem in result
    assert "missing keys ['model']" in check_record({k: v for k, v in GOOD.items() if k != "model"})
    assert record_id("val", 5, 3) == "val:5:3"


@pytest.mark.parametrize("response, problem", [
    ("<reminder>\n[turn 1] Q: a? A: red\n</reminder>\nIt is red.", None),
    ("  <REMINDER>the circle was red</Reminder> red", None),
    ("red", "no <reminder> block"),
    ("<reminder>the circle was red", "never closed"),
    ("Sure! <reminder>x</reminder> red", "text before the <reminder> block"),
    ("<reminder> </reminder> red", "empty <reminder> block"),
    ("<reminder>x</reminder>", "no answer after"),
    ("<reminder>x</reminder> " + "word " * 30, "answer has 30 words (> 25)"),
])
def test_check_reason_response(response, problem):
    result = check_reason_response(response, max_answer_words=25)
    assert result == problem if problem is None else problem in result


def test_shipped_configs_load_and_hash_ignores_run_control():
    for verb in VERBS:
        path = REPO / f"configs/generate/{verb.replace('-', '_')}.yaml"
        header = f"# python -m services.generate {verb} --config {path.relative_to(REPO)}"
        assert path.read_text().splitlines()[0] == header
        cfg = load_config(VERBS[verb].config, path)
        assert cfg.record_hash() == dataclasses.replace(cfg, max_records=7, resume=False,
                                                        outputs_root="/moved").record_hash()
        assert cfg.record_hash() != load_config(VERBS[verb].config, path,
                                                ["backend.temperature=0.7"]).record_hash()


def test_config_errors_explain_the_fix():
    with pytest.raises(ConfigError, match="must contain {conversation}"):
        load_config(GenerateConfig, None, ["prompt.user=hello"])
    with pytest.raises(ConfigError, match="needs {reminder}"):
        load_config(GenerateConfig, None, ["retrieval.enabled=true", 'prompt.user="Q {conversation}"'])
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(GenerateConfig, None, ["backend.api_key=sk-123"])  # keys only through api_key_env


def test_round_selection_images_and_placeholders(tmp_path):
    split = load_visdial(write_split(tmp_path))
    memory_dialog = split.dialogs[1]
    assert [r.round_id for r in selected_rounds(memory_dialog, "memory")] == [3]
    assert [r.round_id for r in selected_rounds(memory_dialog, "last")] == [3]
    assert len(selected_rounds(memory_dialog, "all")) == 3
    assert images_shown(memory_dialog, 3, "all_shown") == [21, 22]
    assert images_shown(memory_dialog, 1, "all_shown") == [21]
    assert images_shown(memory_dialog, 3, "current") == [22]
    assert images_shown(memory_dialog, 3, "none") == []
    assert fill("{reminder}\nJSON like {\"a\": 1}\n{conversation}", reminder="", conversation="Q: x?\nA:") == \
        'JSON like {"a": 1}\nQ: x?\nA:'


def test_clean_answer_drops_blocks_and_a_leading_label():
    assert clean_answer("<reminder>[turn 1] Q: a? A: b</reminder>\nA: red") == "red"
    assert clean_answer("Answer:  a red circle") == "a red circle"
    assert clean_answer("a: b") == "b" and clean_answer("red A: no") == "red A: no"
