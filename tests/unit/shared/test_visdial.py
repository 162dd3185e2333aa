"""shared.visdial on the real VisDial v1.0 sample and on malformed copies of it (each with its own message)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.visdial import Dialog, Round, VisDialError, VisDialSplit, load_dense, load_visdial

SAMPLE = Path(__file__).parents[2] / "assets" / "visdial_v1_real_sample"
VAL, TEST = SAMPLE / "visdial_1.0_val.small.json", SAMPLE / "visdial_1.0_test.small.json"


@pytest.fixture(scope="module")
def val() -> VisDialSplit:
    return load_visdial(VAL)


@pytest.fixture(scope="module")
def sample_test_split() -> VisDialSplit:
    return load_visdial(TEST)


@pytest.fixture(scope="module")
def val_raw_bytes() -> bytes:
    return VAL.read_bytes()


def test_val_sample_loads_with_every_round_resolved(val: VisDialSplit) -> None:
    raw = json.loads(VAL.read_text())
    pools = raw["data"]
    assert (val.version, val.split, val.num_options, len(val), val.num_rounds) == ("1.0", "val2018", 100, 50, 10)
    assert not val.is_test
    for d, raw_d in zip(val.dialogs, pools["dialogs"], strict=True):
        assert isinstance(d, Dialog) and d.image_id == raw_d["image_id"] and d.caption == raw_d["caption"]
        assert d.num_rounds == 10 and [r.round_id for r in d.rounds] == list(range(1, 11))
        for r, raw_r in zip(d.rounds, raw_d["dialog"], strict=True):
            assert isinstance(r, Round) and r.image_id == d.image_id and r.kind is None and r.evidence_round is None
            assert r.question == pools["questions"][raw_r["question"]]
            assert r.answer == pools["answers"][raw_r["answer"]]
            assert len(r.options) == 100 and r.options[r.gt_index] == r.answer
            assert list(r.options) == [pools["answers"][j] for j in raw_r["answer_options"]]
    first = val.dialogs[0].rounds[0]
    assert (first.question, first.answer) == ("is the photo in color", "yes")


def test_options_share_the_pool_strings(val: VisDialSplit) -> None:
    # options are references into data.answers, not copies: every "yes" of the split is one str object
    yes = [o for d in val for r in d.rounds for o in (*r.options, r.answer) if o == "yes"]
    assert len(yes) > 10 and all(o is yes[0] for o in yes)


def test_split_helpers(val: VisDialSplit) -> None:
    ids = [d.image_id for d in val.dialogs]
    assert val.image_ids() == ids and len(set(ids)) == 50
    by_image = val.dialog_by_image()
    assert list(by_image) == ids and by_image[ids[7]] is val.dialogs[7]
    assert val.dialogs[0].image_ids() == [ids[0]]


def test_test_sample_keeps_the_last_round_open(sample_test_split: VisDialSplit) -> None:
    test_split = sample_test_split
    assert (test_split.split, len(test_split), test_split.num_rounds) == ("test2018", 50, 10)
    assert test_split.is_test
    lengths = {d.num_rounds for d in test_split}
    assert min(lengths) == 1 and max(lengths) == 10
    for d in test_split:
        *history, last = d.rounds
        assert last.answer is None and last.gt_index is None and len(last.options) == 100
        assert all(r.answer and r.options is None and r.gt_index is None for r in history)


def test_multi_image_memory_extension(tmp_path: Path) -> None:
    doc = json.loads(VAL.read_text())
    data = doc["data"]
    data["dialogs"] = data["dialogs"][:2]
    rounds = data["dialogs"][0]["dialog"]
    rounds[3].update(image_id=777, kind="current", evidence_round=4)
    rounds[6].update(kind="memory", evidence_round=2)
    path = tmp_path / "val.json"
    path.write_text(json.dumps(doc))
    split = load_visdial(path)
    d = split.dialogs[0]
    assert [r.image_id for r in d.rounds[2:5]] == [d.image_id, 777, d.image_id]
    assert (d.rounds[6].kind, d.rounds[6].evidence_round) == ("memory", 2)
    assert d.image_ids() == [d.image_id, 777]
    assert split.image_ids() == [d.image_id, 777, split.dialogs[1].image_id]


def test_custom_num_options(tmp_path: Path) -> None:
    doc = json.loads(VAL.read_text())
    doc["data"]["num_options"] = 13
    for d in doc["data"]["dialogs"]:
        for r in d["dialog"]:
            r["answer_options"] = r["answer_options"][:13]
            r["gt_index"] = 0
            r["answer"] = r["answer_options"][0]
    (tmp_path / "val.json").write_text(json.dumps(doc))
    split = load_visdial(tmp_path / "val.json")
    assert split.num_options == 13 and all(len(r.options) == 13 for d in split for r in d.rounds)


def _dialog(doc: dict, i: int) -> dict:
    return doc["data"]["dialogs"][i]


def _round(doc: dict, i: int, k: int) -> dict:
    return doc["data"]["dialogs"][i]["dialog"][k]


def _set(obj_of: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    return lambda doc: obj_of(doc).__setitem__(key, value)


def _drop(obj_of: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda doc: obj_of(doc).pop(key)


def _memory_round(doc: dict, **extra: Any) -> None:
    _round(doc, 0, 3).update(kind="memory", **extra)


class _WholeDocument(list):
    """Returned by a mutation that replaces the whole document (every other mutation edits it in place)."""


R32 = lambda doc: _round(doc, 3, 2)  # noqa: E731
P = "data.dialogs[3].dialog[2]"
# (id, mutation of the parsed val sample, how the message must go on after `<file>: `)
MALFORMED: list[tuple[str, Callable[[dict], Any], str]] = [
    ("top-level-list", lambda doc: _WholeDocument([doc]),
     "top level: expected an object {version, split, data}, got an array"),
    ("missing-version", _drop(lambda d: d, "version"), "version: missing (found keys ['data', 'split'])"),
    ("missing-data", _drop(lambda d: d, "data"), "data: missing"),
    ("missing-questions", _drop(lambda d: d["data"], "questions"), "data.questions: missing"),
    ("pool-not-strings", lambda d: d["data"]["answers"].__setitem__(10, 5),
     "data.answers[10]: expected a string, got a number (5)"),
    ("no-dialogs", _set(lambda d: d["data"], "dialogs", []), "data.dialogs: empty"),
    ("dialog-not-object", lambda d: d["data"]["dialogs"].__setitem__(4, "x"),
     "data.dialogs[4]: expected an object {image_id, caption, dialog}, got a string"),
    ("missing-rounds", _drop(lambda d: d["data"]["dialogs"][2], "dialog"), "data.dialogs[2].dialog: missing"),
    ("empty-rounds", _set(lambda d: d["data"]["dialogs"][2], "dialog", []), "data.dialogs[2].dialog: empty"),
    ("caption-null", _set(lambda d: d["data"]["dialogs"][1], "caption", None),
     "data.dialogs[1].caption: expected a string, got null"),
    ("image-id-string", _set(lambda d: d["data"]["dialogs"][5], "image_id", "185565"),
     "data.dialogs[5].image_id: expected an integer, got a string ('185565')"),
    ("duplicate-image-id", lambda d: _dialog(d, 9).__setitem__("image_id", _dialog(d, 2)["image_id"]),
     "data.dialogs[9].image_id: 574189 already used by data.dialogs[2]"),
    ("question-string", _set(R32, "question", "12"), f"{P}.question: expected an integer, got a string ('12')"),
    ("question-missing", _drop(R32, "question"), f"{P}.question: missing"),
    ("question-out-of-pool", _set(R32, "question", 45237), f"{P}.question: 45237 not in 0..45236"),
    ("answer-negative", _set(R32, "answer", -1), f"{P}.answer: -1 not in 0..34820"),
    ("answer-missing", _drop(R32, "answer"), f"{P}.answer: missing; only the last round of a test split"),
    ("gt-index-out-of-range", _set(R32, "gt_index", 117), f"{P}.gt_index: 117 not in 0..99"),
    ("gt-index-bool", _set(R32, "gt_index", True), f"{P}.gt_index: expected an integer, got a boolean (true)"),
    ("gt-index-float", _set(R32, "gt_index", 3.0), f"{P}.gt_index: expected an integer, got a number (3.0)"),
    ("gt-index-missing", _drop(R32, "gt_index"), f"{P}.gt_index: missing while answer and answer_options"),
    ("gt-not-the-answer", lambda d: R32(d).__setitem__("gt_index", (R32(d)["gt_index"] + 1) % 100),
     f"{P}.gt_index: answer_options[61] is answer"),
    ("options-short", lambda d: R32(d)["answer_options"].pop(),
     f"{P}.answer_options: 99 options, expected data.num_options = 100"),
    ("options-not-list", _set(R32, "answer_options", {"0": 1}), f"{P}.answer_options: expected an array"),
    ("option-out-of-pool", lambda d: R32(d)["answer_options"].__setitem__(5, 34821),
     f"{P}.answer_options[5]: 34821 not in 0..34820"),
    ("option-negative", lambda d: R32(d)["answer_options"].__setitem__(6, -2),
     f"{P}.answer_options[6]: -2 not in 0..34820"),
    ("option-bool", lambda d: R32(d)["answer_options"].__setitem__(7, False),
     f"{P}.answer_options[7]: expected an integer index into data.answers, got a boolean (false)"),
    ("num-options-mismatch", _set(lambda d: d["data"], "num_options", 50),
     "data.dialogs[0].dialog[0].answer_options: 100 options, expected data.num_options = 50"),
    ("num-options-zero", _set(lambda d: d["data"], "num_options", 0), "data.num_options: 0 is below 1"),
    ("unknown-round-key", lambda d: R32(d).__setitem__("gt_idx", 0), f"{P}: unknown key 'gt_idx'"),
    ("unknown-kind", _set(R32, "kind", "past"), f"{P}.kind: a string ('past') is not one of ['current', 'memory']"),
    ("memory-without-evidence", _memory_round, "data.dialogs[0].dialog[3].evidence_round: missing; a memory question"),
    ("memory-evidence-not-earlier", lambda d: _memory_round(d, evidence_round=4),
     "data.dialogs[0].dialog[3].evidence_round: 4 not in 1..3"),
    ("evidence-round-zero", _set(R32, "evidence_round", 0), f"{P}.evidence_round: 0 not in 1..3"),
    ("first-round-other-image", lambda d: _round(d, 0, 0).__setitem__("image_id", 5),
     "data.dialogs[0].dialog[0].image_id: 5 differs from the dialog's image_id 185565"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_val_file(tmp_path: Path, val_raw_bytes: bytes, mutate: Callable, expected: str) -> None:
    doc = json.loads(val_raw_bytes)
    replaced = mutate(doc)
    path = tmp_path / "val.json"
    path.write_text(json.dumps(replaced if isinstance(replaced, _WholeDocument) else doc))
    with pytest.raises(VisDialError) as info:
        load_visdial(path)
    message = str(info.value)  # <file>: <json path>: <problem>; <fix>
    assert message.startswith(f"{path}: {expected}") and "; " in message


def test_truncated_file_names_line_and_column(tmp_path: Path, val_raw_bytes: bytes) -> None:
    path = tmp_path / "val.json"
    path.write_bytes(val_raw_bytes[:100_000])
    with pytest.raises(VisDialError, match=r"val\.json: line 1 column 100001: not valid JSON .*truncated or corrupt"):
        load_visdial(path)


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "val.json"
    path.write_bytes(b'{"version": "\xff\xfe\xfa"}')
    with pytest.raises(VisDialError, match="not UTF-8"):
        load_visdial(path)
    with pytest.raises(VisDialError, match=r"nothere\.json: file not found; rebuild it with `make data-demo`"):
        load_visdial(tmp_path / "nothere.json")


def _mutated_test_file(tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    doc = json.loads(TEST.read_text())
    mutate(doc)
    path = tmp_path / "test.json"
    path.write_text(json.dumps(doc))
    return path


def test_test_split_history_round_needs_its_answer(tmp_path: Path) -> None:
    path = _mutated_test_file(tmp_path, lambda d: _round(d, 0, 1).pop("answer"))
    with pytest.raises(VisDialError, match=r"test\.json: data\.dialogs\[0\]\.dialog\[1\]\.answer: missing"):
        load_visdial(path)


def test_test_split_gt_index_without_answer(tmp_path: Path) -> None:
    path = _mutated_test_file(tmp_path, lambda d: _round(d, 0, 3).__setitem__("gt_index", 4))
    with pytest.raises(VisDialError, match=r"data\.dialogs\[0\]\.dialog\[3\]\.gt_index: given without answer"):
        load_visdial(path)


def _dense_entries(split: VisDialSplit, n: int = 6) -> list[dict]:
    """Dense annotations in the published val format for the first rounds of the sample (relevance 1 at gt_index)."""
    entries = []
    for d in split.dialogs[:n]:
        r = d.rounds[d.image_id % d.num_rounds]
        scores = [0.0] * split.num_options
        scores[r.gt_index] = 1.0
        scores[(r.gt_index + 1) % split.num_options] = 0.5
        entries.append({"image_id": d.image_id, "round_id": r.round_id, "gt_relevance": scores})
    return entries


def test_dense_loads_with_and_without_split(tmp_path: Path, val: VisDialSplit) -> None:
    entries = _dense_entries(val)
    entries[1]["relevance"] = entries[1].pop("gt_relevance")  # the key the train dense sample uses
    path = tmp_path / "val_dense.json"
    path.write_text(json.dumps(entries))
    for dense in (load_dense(path, val), load_dense(path)):
        assert list(dense) == [(e["image_id"], e["round_id"]) for e in entries]
        for e in entries:
            scores = dense[e["image_id"], e["round_id"]]
            assert len(scores) == 100 and sorted(scores)[-2:] == [0.5, 1.0]
            rnd = val.dialog_by_image()[e["image_id"]].rounds[e["round_id"] - 1]
            assert scores[rnd.gt_index] == 1.0


def _dense_set(i: int, key: str, value: Any) -> Callable[[list], None]:
    return lambda entries: entries[i].__setitem__(key, value)


MALFORMED_DENSE: list[tuple[str, Callable[[list], Any], str]] = [
    ("top-level-object", lambda e: {"entries": list(e)},
     "top level: expected an array of {image_id, round_id, gt_relevance}"),
    ("entry-not-object", lambda e: e.__setitem__(2, [1, 2]),
     "[2]: expected an object {image_id, round_id, gt_relevance}, got an array"),
    ("missing-round-id", lambda e: e[1].pop("round_id"),
     "[1].round_id: missing (found keys ['gt_relevance', 'image_id'])"),
    ("missing-scores", lambda e: e[3].pop("gt_relevance"), "[3].gt_relevance: missing"),
    ("round-id-string", _dense_set(0, "round_id", "3"), "[0].round_id: expected an integer, got a string ('3')"),
    ("round-id-zero", _dense_set(0, "round_id", 0), "[0].round_id: 0 is below 1"),
    ("round-id-past-dialog", _dense_set(0, "round_id", 11), "[0].round_id: 11 not in 1..10"),
    ("image-not-in-split", _dense_set(4, "image_id", 999), "[4].image_id: 999 is not a dialog of"),
    ("scores-short", lambda e: e[2]["gt_relevance"].pop(), "[2].gt_relevance: 99 scores, expected 100"),
    ("score-negative", lambda e: e[2]["gt_relevance"].__setitem__(3, -0.5),
     "[2].gt_relevance[3]: a number (-0.5) is not a finite score >= 0"),
    ("score-bool", lambda e: e[2]["gt_relevance"].__setitem__(4, True),
     "[2].gt_relevance[4]: a boolean (true) is not a finite score"),
    ("score-nan", lambda e: e[2]["gt_relevance"].__setitem__(5, float("nan")),
     "[2].gt_relevance[5]: a number (nan) is not a finite score"),
    ("duplicate-round", lambda e: e.append(dict(e[1])), "[6]: (image_id 284024, round_id 5) already annotated at [1]"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in MALFORMED_DENSE], ids=[m[0] for m in MALFORMED_DENSE])
def test_malformed_dense_file(tmp_path: Path, val: VisDialSplit, mutate: Callable, expected: str) -> None:
    entries = _dense_entries(val)
    replaced = mutate(entries)
    path = tmp_path / "val_dense.json"
    path.write_text(json.dumps(replaced if isinstance(replaced, dict) else entries))
    with pytest.raises(VisDialError) as info:
        load_dense(path, val)
    assert str(info.value).startswith(f"{path}: {expected}")


def test_dense_without_split_needs_equal_lengths_and_truncation_is_reported(tmp_path: Path, val: VisDialSplit) -> None:
    entries = _dense_entries(val)
    entries[4]["gt_relevance"] = entries[4]["gt_relevance"][:13]
    path = tmp_path / "val_dense.json"
    path.write_text(json.dumps(entries))
    expected = r"val_dense\.json: \[4\]\.gt_relevance: 13 scores, expected 100; one score per answer option$"
    with pytest.raises(VisDialError, match=expected):
        load_dense(path)
    path.write_text(json.dumps(_dense_entries(val))[:-300])
    with pytest.raises(VisDialError, match=r"val_dense\.json: line 1 column \d+: not valid JSON"):
        load_dense(path)
