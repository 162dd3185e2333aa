"""predictions.jsonl: resumable writer, strict reader, ranks from scores, EvalAI export."""
import json
import logging

import numpy as np
import pytest

from shared.errors import InputError
from shared.predictions import PredictionError, PredictionWriter, export_evalai, read_predictions, scores_to_ranks


def row(image_id, round_id, n=4, **extra):
    scores = np.linspace(0, 1, n)[::-1] + image_id * 0.001
    return {"image_id": image_id, "round_id": round_id, "answer": "red", "raw": "<reminder>x</reminder>red",
            "scores": scores, "ranks": scores_to_ranks(scores), **extra}


def test_scores_to_ranks_descending_with_ties_to_lower_index():
    np.testing.assert_array_equal(scores_to_ranks(np.array([0.5, 0.9, 0.5])), [2, 1, 3])
    np.testing.assert_array_equal(scores_to_ranks(np.array([1.0, 1.0, 1.0, 2.0])), [2, 3, 4, 1])
    np.testing.assert_array_equal(scores_to_ranks(np.array([-3.0, -1.0, -2.0])), [3, 1, 2])


def test_scores_to_ranks_is_vectorised_and_matches_a_loop():
    scores = np.random.default_rng(0).integers(0, 4, size=(5, 7, 13)).astype(np.float32)  # many ties
    ranks = scores_to_ranks(scores)
    assert ranks.shape == scores.shape
    for idx in np.ndindex(*scores.shape[:-1]):
        order = sorted(range(13), key=lambda j: (-scores[idx][j], j))
        expected = np.empty(13, int)
        expected[order] = np.arange(1, 14)
        np.testing.assert_array_equal(ranks[idx], expected)
    with pytest.raises(PredictionError, match="finite"):
        scores_to_ranks(np.array([0.1, np.nan]))


def test_writer_round_trip_and_numpy_values(tmp_path):
    path = tmp_path / "predictions.jsonl"
    with PredictionWriter(path, "abc123") as writer:
        writer.write([row(np.int64(5), 1), row(5, 2, answer="")])  # empty answers are allowed
        writer.write([row(6, 1)])
        assert writer.done_keys() == {(5, 1), (5, 2), (6, 1)}
    rows = read_predictions(path, num_options=4)
    assert [(r["image_id"], r["round_id"]) for r in rows] == [(5, 1), (5, 2), (6, 1)]
    assert rows[1]["answer"] == "" and all(r["config_hash"] == "abc123" for r in rows)
    assert rows[0]["ranks"] == [1, 2, 3, 4] and len(rows[0]["scores"]) == 4


def test_writer_refuses_duplicates_and_bad_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    writer = PredictionWriter(path, "h")
    writer.write([row(1, 1)])
    with pytest.raises(PredictionError, match="duplicate prediction for image_id=1 round_id=1"):
        writer.write([row(1, 1)])
    with pytest.raises(PredictionError, match="duplicate prediction for image_id=2 round_id=1"):
        writer.write([row(2, 1), row(2, 1)])
    with pytest.raises(PredictionError, match="answer must be a string"):
        writer.write([{**row(3, 1), "answer": None}])
    with pytest.raises(PredictionError, match="finite"):
        writer.write([{**row(3, 1), "scores": [0.1, float("nan"), 0.2, 0.3]}])
    writer.close()
    assert len(read_predictions(path)) == 1  # a refused batch writes nothing


def test_resume_drops_a_truncated_last_line_without_duplicates(tmp_path, caplog):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path, "h") as writer:
        writer.write([row(1, 1), row(1, 2)])
    with open(path, "a") as f:  # the process was killed in the middle of the next line
        f.write(json.dumps({**row(1, 3), "scores": [0.1] * 4, "ranks": [1, 2, 3, 4], "config_hash": "h"})[:25])
    with pytest.raises(PredictionError, match=r"p.jsonl:3: not a JSON object line.*resume it"):
        read_predictions(path)
    with caplog.at_level(logging.WARNING), PredictionWriter(path, "h") as writer:
        assert writer.done_keys() == {(1, 1), (1, 2)}
        writer.write([row(1, 3)])
    assert "truncated last line" in caplog.text
    assert [(r["round_id"]) for r in read_predictions(path)] == [1, 2, 3]


def test_resume_refuses_another_config_and_fresh_start_truncates(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path, "h1") as writer:
        writer.write([row(1, 1)])
    with pytest.raises(PredictionError, match=r"p.jsonl:1: written with config_hash 'h1', this run is 'h2'"):
        PredictionWriter(path, "h2")
    with pytest.raises(InputError, match=r"p.jsonl: already holds predictions .*; fix: .*overwrite=true replaces it"):
        PredictionWriter(path, "h2", resume=False)  # never replaced silently
    assert [r["config_hash"] for r in read_predictions(path)] == ["h1"]
    with PredictionWriter(path, "h2", resume=False, overwrite=True) as writer:
        assert writer.done_keys() == set()
        writer.write([row(1, 1)])
    assert [r["config_hash"] for r in read_predictions(path)] == ["h2"]


def test_corruption_in_the_middle_is_not_silently_dropped(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps({"image_id": 1, "round_id": 1, "answer": "a", "config_hash": "h"})
    path.write_text(good + "\n{oops\n" + good.replace('"round_id": 1', '"round_id": 2') + "\n")
    with pytest.raises(PredictionError, match=r"p.jsonl:2: not valid JSON in the middle"):
        PredictionWriter(path, "h")


BASE = {"image_id": 1, "round_id": 1, "answer": "a", "scores": [0.3, 0.2, 0.1], "ranks": [1, 2, 3]}


@pytest.mark.parametrize("line, message", [
    ("not json", "not a JSON object line"),
    ("[1, 2]", "not a JSON object"),
    ("", "not a JSON object line"),
    (json.dumps({k: v for k, v in BASE.items() if k != "image_id"}), "missing 'image_id'"),
    (json.dumps({k: v for k, v in BASE.items() if k != "round_id"}), "missing 'round_id'"),
    (json.dumps({k: v for k, v in BASE.items() if k != "answer"}), "missing 'answer'"),
    (json.dumps({**BASE, "image_id": "1"}), "image_id must be an integer"),
    (json.dumps({**BASE, "round_id": True}), "round_id must be an integer"),
    (json.dumps({**BASE, "round_id": 0}), "1-based"),
    (json.dumps({**BASE, "answer": 3}), "answer must be a string"),
    (json.dumps({**BASE, "raw": None}), "raw must be a string"),
    (json.dumps({**BASE, "scores": [0.1, 0.2]}), "scores has 2 entries, expected num_options=3"),
    ('{"image_id": 1, "round_id": 1, "answer": "a", "scores": [0.1, NaN, 0.2]}', "finite"),
    (json.dumps({**BASE, "scores": [0.1, "x", 0.2]}), "finite"),
    (json.dumps({**BASE, "ranks": [1, 1, 2]}), "not a permutation of 1..3"),
    (json.dumps({**BASE, "ranks": [0, 1, 2]}), "not a permutation"),
    (json.dumps({**BASE, "ranks": [1.0, 2.0, 3.0]}), "ranks must be a list of integers"),
    (json.dumps({**BASE, "round_id": 2, "config_hash": 7}), "config_hash must be a string"),
    (json.dumps({**BASE, "reminders": "[turn 1] Q: a? A: b"}), "reminders must be a list of strings"),
    (json.dumps({**BASE, "gate": 1}), "gate must be true or false"),
])
def test_reader_rejects_bad_lines_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps({**BASE, "round_id": 9}) + "\n" + line + "\n")
    with pytest.raises(PredictionError, match=message) as err:
        read_predictions(path, num_options=3)
    assert f"{path}:2:" in str(err.value)


def test_reader_duplicates_lengths_and_mixed_runs(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(BASE) + "\n" + json.dumps(BASE) + "\n")
    with pytest.raises(PredictionError, match=r"p.jsonl:2: duplicate image_id=1 round_id=1 \(first at line 1\)"):
        read_predictions(path)
    path.write_text(json.dumps(BASE) + "\n" + json.dumps({**BASE, "round_id": 2, "ranks": [1, 2]}) + "\n")
    with pytest.raises(PredictionError, match=r"p.jsonl:2: ranks has 2 entries, expected num_options=3"):
        read_predictions(path)  # without num_options the first line fixes it
    path.write_text(json.dumps({**BASE, "config_hash": "a"}) + "\n"
                    + json.dumps({**BASE, "round_id": 2, "config_hash": "b"}) + "\n")
    with pytest.raises(PredictionError, match=r"p.jsonl:2: config_hash 'b' differs from line 1"):
        read_predictions(path)
    with pytest.raises(PredictionError, match="no such predictions file"):
        read_predictions(tmp_path / "absent.jsonl")


def test_export_evalai_uses_ranks_or_scores(tmp_path):
    rows = [{"image_id": 7, "round_id": 10, "answer": "a", "ranks": [2, 1, 3]},
            {"image_id": 8, "round_id": 10, "answer": "b", "scores": [0.1, 0.1, 0.5]}]
    out = export_evalai(rows, tmp_path / "eval" / "submission.json")
    assert json.loads(out.read_text()) == [{"image_id": 7, "round_id": 10, "ranks": [2, 1, 3]},
                                           {"image_id": 8, "round_id": 10, "ranks": [2, 3, 1]}]
    with pytest.raises(PredictionError, match="neither ranks nor scores"):
        export_evalai([{"image_id": 1, "round_id": 1, "answer": "x"}], tmp_path / "x.json")
