"""data/prepare_demo.py: EasyVQA-Dialog is deterministic, valid VisDial, and its memory rounds are answerable."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from shared.visdial import load_dense, load_visdial

DATA_DIR = Path(__file__).resolve().parents[3] / "data"
SMALL = ["--train-dialogs", "20", "--val-dialogs", "20", "--test-dialogs", "10"]
FILES = ("train.json", "val.json", "test.json", "val_dense.json")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DATA_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


prepare_demo = _load("prepare_demo")
evd = sys.modules["easyvqa_dialog"]


def _digests(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in FILES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert prepare_demo.main(["--out", str(out), "--seed", "7", *SMALL]) == 0
    return out


def test_same_seed_gives_identical_bytes_and_another_seed_differs(demo, tmp_path):
    assert prepare_demo.main(["--out", str(tmp_path / "again"), "--seed", "7", "--link", *SMALL]) == 0
    assert _digests(tmp_path / "again") == _digests(demo)
    assert prepare_demo.main(["--out", str(tmp_path / "other"), "--seed", "8", *SMALL]) == 0
    assert _digests(tmp_path / "other")["train.json"] != _digests(demo)["train.json"]


def test_files_pass_the_project_reader_and_have_the_requested_shape(demo):
    splits = {s: load_visdial(demo / f"{s}.json") for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in splits] == [20, 20, 10]
    raw = json.loads((demo / "train.json").read_text())
    assert raw["version"] == "1.0" and "easy-VQA" in raw["attribution"] and "Victor Zhou" in raw["attribution"]
    assert raw["data"]["num_options"] == 13 and sorted(raw["data"]["answers"]) == sorted(
        evd.COLORS + evd.SHAPES + evd.YES_NO)
    for name, split in splits.items():
        ids = [d.image_id for d in split]
        assert len(set(ids)) == len(ids), f"{name}: dialog image ids repeat"
        assert sum(len(d.image_ids()) > 1 for d in split) == round(0.3 * len(split))
        for dialog in split:
            assert all(r.kind in ("current", "memory") and sorted(r.options) == sorted(raw["data"]["answers"])
                       for r in dialog.rounds)
            for image_id in dialog.image_ids():
                assert (demo / "images" / f"{image_id}.png").is_file()
                assert (image_id >= evd.TEST_ID_OFFSET) == (name != "train")  # val/test use easy-VQA test images
    assert not set(splits["val"].image_ids()) & set(splits["test"].image_ids())
    rounds = [r for d in raw["data"]["dialogs"] for r in d["dialog"]]
    assert len({tuple(r["answer_options"]) for r in rounds}) > len(rounds) // 2, "options are shuffled per round"
    assert len({r["gt_index"] for r in rounds if r["answer"] == 4}) > 1, "one answer, many positions"


def _colour_and_shape(dialog) -> dict[int, dict[str, str]]:
    """picture id -> attribute -> answer of its current-picture colour/shape turns (which must agree)."""
    facts: dict[int, dict[str, str]] = {}
    for r in dialog.rounds:
        for attr, templates in evd.CURRENT_TEMPLATES.items():
            if r.kind == "current" and r.question in templates:
                assert facts.setdefault(r.image_id, {}).setdefault(attr, r.answer) == r.answer
    return facts


@pytest.mark.parametrize("split", ["train", "val"])
def test_memory_rounds_point_at_the_turn_that_answers_them(demo, split):
    memory_dialogs = [d for d in load_visdial(demo / f"{split}.json") if len(d.image_ids()) > 1]
    assert memory_dialogs
    for dialog in memory_dialogs:
        pictures, facts = dialog.image_ids(), _colour_and_shape(dialog)
        assert len(pictures) in (2, 3) and [dialog.rounds[i].image_id for i in (0, 3)] == pictures[:2]
        assert set(facts) == set(pictures) and all(set(f) == {"color", "shape"} for f in facts.values())
        memory = [r for r in dialog.rounds if r.kind == "memory"]
        assert len(memory) >= 3 and all(r.round_id >= 5 for r in memory)
        for r in memory:
            ordinal = re.search(r"\b(first|second)\b", r.question).group(1)
            asked = pictures[evd.ORDINALS.index(ordinal)]
            assert asked != r.image_id, "a memory question asks about a picture no longer on screen"
            evidence = dialog.rounds[r.evidence_round - 1]
            assert evidence.round_id < r.round_id and evidence.image_id == asked and evidence.kind == "current"
            attr = "color" if evidence.answer in evd.COLORS else "shape"
            assert evidence.question in evd.CURRENT_TEMPLATES[attr] and facts[asked][attr] == evidence.answer
            on_screen = facts[r.image_id][attr]
            if r.answer in evd.YES_NO:
                value = next(v for v in evd.COLORS + evd.SHAPES if re.search(rf"\b{v}\b", r.question))
                assert (r.answer == "yes") == (value == evidence.answer)
            else:
                assert r.answer == evidence.answer and r.answer != on_screen


def test_single_image_dialogs_use_that_images_easy_vqa_questions(demo):
    import easy_vqa

    qa = set(zip(*easy_vqa.get_train_questions()[:2]))
    for dialog in [d for d in load_visdial(demo / "train.json") if len(d.image_ids()) == 1]:
        assert len(dialog.rounds) == 10 and all(r.kind == "current" for r in dialog.rounds)
        assert all((r.question, r.answer) in qa for r in dialog.rounds)
        assert all(a.question != b.question for a, b in zip(dialog.rounds, dialog.rounds[1:]))


def test_test_split_ends_on_an_open_round(demo):
    test = load_visdial(demo / "test.json")
    assert test.is_test
    for dialog in test:
        *history, last = dialog.rounds
        assert 5 <= len(dialog.rounds) <= 10
        assert last.answer is None and last.gt_index is None and len(last.options) == 13
        assert all(r.answer is not None and r.options[r.gt_index] == r.answer for r in history)
        if len(dialog.image_ids()) > 1:
            assert last.kind == "memory"


def test_dense_relevance_follows_the_documented_rule(demo):
    val = load_visdial(demo / "val.json")
    dense = load_dense(demo / "val_dense.json", val)
    assert len(dense) == len(val)
    by_image = val.dialog_by_image()
    half_credit = 0
    for (image_id, round_id), relevance in dense.items():
        dialog = by_image[image_id]
        r = dialog.rounds[round_id - 1]
        assert relevance[r.gt_index] == 1.0 and relevance.count(1.0) == 1 and set(relevance) <= {0.0, 0.5, 1.0}
        if 0.5 in relevance:
            half_credit += 1
            assert r.kind == "memory" and r.answer not in evd.YES_NO
            attr = "color" if r.answer in evd.COLORS else "shape"
            assert r.options[relevance.index(0.5)] == _colour_and_shape(dialog)[r.image_id][attr] != r.answer
        if len(dialog.image_ids()) > 1:
            assert r.kind == "memory"
    assert half_credit > 0


def test_rerun_is_up_to_date_and_a_changed_file_is_rebuilt(demo, capsys):
    before = _digests(demo)
    mtime = (demo / "train.json").stat().st_mtime_ns
    assert prepare_demo.main(["--out", str(demo), "--seed", "7", *SMALL]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (demo / "train.json").stat().st_mtime_ns == mtime
    (demo / "val.json").write_bytes((demo / "val.json").read_bytes().replace(b'"kind"', b'"kinx"', 1))
    assert prepare_demo.main(["--out", str(demo), "--seed", "7", *SMALL]) == 0
    assert "up to date" not in capsys.readouterr().out and _digests(demo) == before
    manifest = json.loads((demo / "MANIFEST.json").read_text())
    assert manifest["files"]["val.json"]["sha256"] == before["val.json"]
    assert manifest["counts"]["val"]["dialogs"] == 20 and manifest["params"]["seed"] == 7


def test_too_many_dialogs_is_a_clear_error(tmp_path, capsys):
    assert prepare_demo.main(["--out", str(tmp_path), "--val-dialogs", "900", "--test-dialogs", "900"]) == 1
    err = capsys.readouterr().err
    assert "easy-VQA test" in err and "lower the dialog counts" in err
    with pytest.raises(SystemExit):
        prepare_demo.parse_args(["--memory-share", "1.5"])


def test_derive_facts_reads_statements_negations_and_exclusions():
    assert evd.derive_facts([("what is the blue shape?", "circle")]) == ("blue", "circle")
    assert evd.derive_facts([("is there not a red shape?", "no"), ("is no triangle present?", "yes")]) == ("red", None)
    excluded = [(f"is there a {c} shape?", "no") for c in evd.COLORS if c != "teal"]
    excluded += [("does the image contain a circle?", "no"), ("is there a rectangle?", "no")]
    assert evd.derive_facts(excluded) == ("teal", "triangle")
    with pytest.raises(ValueError, match="contradictory"):
        evd.derive_facts([("what color is the shape?", "red"), ("is there a red shape?", "no")])
