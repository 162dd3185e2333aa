"""Predictions checked against the split: every bad input is an error naming the line (or, empty answers, counted)."""
import numpy as np
import pytest

from services.evaluate.align import align
from shared.predictions import PredictionError


@pytest.fixture()
def rows(val_split, rows_for):
    return rows_for(val_split, scores="random")


@pytest.fixture()
def run(tmp_path, write_jsonl):
    """align() over `rows` written to predictions.jsonl."""
    return lambda rows, split, **kw: align(write_jsonl(tmp_path / "predictions.jsonl", rows), split, **kw)


def test_valid_file_aligns_every_round(run, rows, val_split):
    a = run(rows, val_split)
    assert len(a.answer) == 500 and a.rankings.scores.shape == (500, 100) and a.ranked.all()
    assert a.counts["dialogs"] == 50 and a.counts["empty_answers"] == 0
    assert a.line[:3].tolist() == [1, 2, 3] and a.config_hashes == ["0123456789ab"]
    assert (a.gt_index >= 0).all() and not a.has_kinds


def test_missing_round(run, rows, val_split):
    gone = rows.pop(17)
    with pytest.raises(PredictionError,
                       match=rf"1 round\(s\) .* image_id={gone['image_id']} round_id={gone['round_id']}"):
        run(rows, val_split)


def test_unknown_image_id_names_the_line(run, rows, val_split):
    rows[4]["image_id"] = 999999999
    with pytest.raises(PredictionError, match=r"predictions.jsonl:5: image_id 999999999 is not a dialog"):
        run(rows, val_split)


def test_round_outside_the_dialog(run, rows, val_split):
    rows[2]["round_id"] = 11
    with pytest.raises(PredictionError, match=r":3: round_id 11 not in 1..10"):
        run(rows, val_split)


def test_duplicate_names_both_lines(run, rows, val_split):
    rows.append(dict(rows[6]))
    with pytest.raises(PredictionError, match=r":501: duplicate image_id=.* \(first at line 7\)"):
        run(rows, val_split)


def test_ranks_that_are_not_a_permutation(run, rows, val_split):
    del rows[2]["scores"]
    rows[2]["ranks"] = [1] * 100
    with pytest.raises(PredictionError, match=r":3: ranks are not a permutation of 1..100"):
        run(rows, val_split)


def test_ranks_that_contradict_the_scores(run, rows, val_split):
    rows[0]["ranks"] = list(range(100, 0, -1))
    rows[0]["scores"] = np.linspace(1, 0, 100).tolist()  # implies ranks 1..100
    with pytest.raises(PredictionError, match=r":1: ranks disagree with scores"):
        run(rows, val_split)


def test_scores_of_the_wrong_length(run, rows, val_split):
    rows[8]["scores"] = rows[8]["scores"][:99]
    with pytest.raises(PredictionError, match=r":9: scores has 99 entries, expected num_options=100"):
        run(rows, val_split)


def test_non_json_line(tmp_path, write_jsonl, rows, val_split):
    path = write_jsonl(tmp_path / "predictions.jsonl", rows)
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = '{"image_id": 1, "round_id": \n'
    path.write_text("".join(lines))
    with pytest.raises(PredictionError, match=r"predictions.jsonl:4: not a JSON object line"):
        align(path, val_split)


def test_ranking_on_some_rounds_only(run, rows, val_split):
    del rows[10]["scores"]
    with pytest.raises(PredictionError, match=r":11: no scores/ranks on this line while other lines have them"):
        run(rows, val_split)


def test_empty_file(tmp_path, val_split):
    (tmp_path / "predictions.jsonl").write_text("")
    with pytest.raises(PredictionError, match="no predictions"):
        align(tmp_path / "predictions.jsonl", val_split)


def test_empty_answers_are_counted_not_errors(run, rows, val_split):
    rows[0]["answer"] = ""
    rows[1]["answer"] = "<reasoning>only scaffolding</reasoning>"
    a = run(rows, val_split)
    assert a.counts["empty_answers"] == 2 and a.answer[:2] == ["", ""]


def test_reminder_blocks_are_stripped_and_counted(run, rows, val_split):
    for r in rows[:5]:
        r["raw"] = "<reminder>\n[turn 1] Q: what is it? A: a cat\n</reminder> " + r["answer"]
    expected = rows[5]["answer"]
    rows[5]["answer"] = "<reminder>[turn 1] Q: q A: a</reminder> " + expected  # the producer forgot to strip
    a = run(rows, val_split)
    assert a.counts["raw_with_blocks"] == 5 and a.counts["answers_with_blocks"] == 1
    assert a.answer[5] == " ".join(expected.split())


def test_test_split_open_round_has_no_reference(run, rows_for, test_split):
    rows = rows_for(test_split, scores="random")
    a = run(rows, test_split)
    last = np.array([r["round_id"] == test_split.dialog_by_image()[r["image_id"]].num_rounds for r in rows])
    assert all(a.reference[i] is None for i in np.flatnonzero(last))
    assert a.ranked.sum() == last.sum() and (a.gt_index == -1).all()


def test_scores_for_a_round_without_options(run, rows_for, test_split):
    rows = rows_for(test_split, scores="random")
    history = next(i for i, r in enumerate(rows) if "scores" not in r)
    rows[history]["scores"] = [0.0] * 100
    with pytest.raises(PredictionError, match=rf":{history + 1}: scores/ranks given for round .* no answer_options"):
        run(rows, test_split)


def test_expect_last_round_only(run, rows_for, test_split):
    open_rounds = [r for r in rows_for(test_split, scores="random") if "scores" in r]
    assert len(run(open_rounds, test_split, expect_rounds="last").answer) == len(test_split.dialogs)
    with pytest.raises(PredictionError, match="have no prediction"):
        run(open_rounds, test_split, expect_rounds="all")
