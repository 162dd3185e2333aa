"""Match predictions.jsonl rows to the rounds of a VisDial split, strictly, into flat per-round arrays.

Every problem is an error naming the predictions file, the line and the fix: a row for an image the split does
not have, a round the dialog does not have, a missing round, ranks/scores of the wrong length or not a
permutation, ranks that contradict the scores, a ranking for some rounds but not others. Empty answers are
kept (they score as misses) and counted; reminder/reasoning blocks are stripped from every answer first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.evaluate.ranking import OptionRankings
from shared.predictions import PredictionError, read_predictions, scores_to_ranks
from shared.reminder import parse_reminder, render_line, strip_blocks
from shared.visdial import VisDialSplit

UNMARKED = "unmarked"  # kind label of rounds the data does not mark as "current" / "memory"


@dataclass
class Aligned:
    """One entry per prediction row, in file order (row i is line i + 1 of the predictions file)."""

    line: np.ndarray  # int64 [N]
    image_id: np.ndarray  # int64 [N]
    round_id: np.ndarray  # int64 [N]
    kind: np.ndarray  # str [N]: "current" | "memory" | UNMARKED
    answer: list[str]  # the scored answer: blocks stripped, whitespace collapsed
    reference: list[str | None]  # the ground-truth answer; None on the test split's open round
    gt_index: np.ndarray  # int64 [N], -1 where the round has none
    rankings: OptionRankings | None  # None when no row carries scores or ranks
    counts: dict[str, int] = field(default_factory=dict)
    config_hashes: list[str] = field(default_factory=list)
    # per row, the reminder lines used: the row's `reminders` (the prompt's, from a bridge) or the <reminder> the
    # model wrote in `raw` (a fine-tuned Gemma); dialogs.html shows them
    reminders: list[list[str]] = field(default_factory=list)

    @property
    def ranked(self) -> np.ndarray:
        return np.zeros(len(self.line), bool) if self.rankings is None else self.rankings.ranked

    @property
    def has_kinds(self) -> bool:
        return bool((self.kind != UNMARKED).any())


def _fail(path: Path, line: int, problem: str, fix: str) -> PredictionError:
    return PredictionError(f"{path}:{line}: {problem}; {fix}")


def align(predictions: str | Path, split: VisDialSplit, expect_rounds: str = "all") -> Aligned:
    """Read `predictions` (shared.predictions.read_predictions) and match every row to a round of `split`."""
    path = Path(predictions)
    rows = read_predictions(path, num_options=split.num_options)
    if not rows:
        raise PredictionError(f"{path}: no predictions (empty file); run inference first")
    dialogs = split.dialog_by_image()
    n, k = len(rows), split.num_options
    line = np.arange(1, n + 1, dtype=np.int64)
    image_id = np.empty(n, np.int64)
    round_id = np.empty(n, np.int64)
    gt_index = np.full(n, -1, np.int64)
    kind = np.empty(n, dtype=object)
    scores, ranks = np.zeros((n, k), np.float64), np.zeros((n, k), np.int64)
    has_scores, has_ranks = np.zeros(n, bool), np.zeros(n, bool)
    answers: list[str] = []
    references: list[str | None] = []
    reminders: list[list[str]] = []
    counts = dict.fromkeys(["raw_with_blocks", "answers_with_blocks", "empty_answers"], 0)
    for i, row in enumerate(rows):
        img, rid = int(row["image_id"]), int(row["round_id"])
        dialog = dialogs.get(img)
        if dialog is None:
            raise _fail(path, i + 1, f"image_id {img} is not a dialog of {split.path}",
                        "evaluate against the split the predictions were made on (data=...)")
        if rid > dialog.num_rounds:
            raise _fail(path, i + 1, f"round_id {rid} not in 1..{dialog.num_rounds} (dialog of image {img})",
                        "round ids are 1-based turns of that dialog")
        if expect_rounds == "last" and rid != dialog.num_rounds:
            raise _fail(path, i + 1, f"round {rid} of image {img} but expect_rounds=last (only round "
                        f"{dialog.num_rounds} of that dialog)", "set expect_rounds=all to score every round")
        rnd = dialog.rounds[rid - 1]
        image_id[i], round_id[i] = img, rid
        kind[i] = rnd.kind or UNMARKED
        if "scores" in row or "ranks" in row:  # lengths and permutations were checked by read_predictions
            if rnd.options is None:
                raise _fail(path, i + 1, f"scores/ranks given for round {rid} of image {img}, which has no "
                            "answer_options", "rank only rounds that list candidate answers")
            if "scores" in row:
                scores[i], has_scores[i] = row["scores"], True
            if "ranks" in row:
                ranks[i], has_ranks[i] = row["ranks"], True
        gt_index[i] = -1 if rnd.gt_index is None else rnd.gt_index
        answer, stripped = strip_blocks(row["answer"])
        counts["answers_with_blocks"] += stripped
        counts["raw_with_blocks"] += strip_blocks(row.get("raw", ""))[1]
        counts["empty_answers"] += answer == ""
        answers.append(answer)
        references.append(rnd.answer)
        reminders.append(list(row["reminders"]) if "reminders" in row
                         else [render_line(item) for item in parse_reminder(row.get("raw", ""))])
    _check_coverage(path, split, image_id, round_id, expect_rounds)
    _check_scores_agree_with_ranks(path, scores, ranks, has_scores & has_ranks)
    rankings = OptionRankings(scores, ranks, has_scores, has_ranks) if (has_scores | has_ranks).any() else None
    _check_ranking_coverage(path, has_scores | has_ranks, gt_index)
    counts["predictions"] = n
    counts["dialogs"] = len(set(image_id.tolist()))
    hashes = sorted({r["config_hash"] for r in rows if "config_hash" in r})
    return Aligned(line, image_id, round_id, kind.astype(str), answers, references, gt_index, rankings, counts, hashes,
                   reminders)


def _check_coverage(path: Path, split: VisDialSplit, image_id: np.ndarray, round_id: np.ndarray, expect: str) -> None:
    present = set(zip(image_id.tolist(), round_id.tolist()))
    missing = [(d.image_id, r.round_id) for d in split.dialogs for r in d.rounds
               if (expect == "all" or r.round_id == d.num_rounds) and (d.image_id, r.round_id) not in present]
    if missing:
        shown = ", ".join(f"image_id={i} round_id={r}" for i, r in missing[:5])
        raise PredictionError(
            f"{path}: {len(missing)} round(s) of {split.path} have no prediction, e.g. {shown}; finish (resume) the "
            "inference run, or evaluate against the split it was made on"
        )


def _check_scores_agree_with_ranks(path: Path, scores: np.ndarray, ranks: np.ndarray, both: np.ndarray) -> None:
    """Rows giving scores AND ranks must agree with the contract's tie rule (else which one was meant?)."""
    if not both.any():
        return
    rows = np.flatnonzero(both)
    bad = (scores_to_ranks(scores[rows]) != ranks[rows]).any(axis=1)
    if bad.any():
        raise PredictionError(f"{path}:{int(rows[bad][0]) + 1}: ranks disagree with scores (ranks must be "
                              "scores_to_ranks(scores): descending score, ties to the lower option index); drop one "
                              "of the two or regenerate the file")


def _check_ranking_coverage(path: Path, ranked: np.ndarray, gt_index: np.ndarray) -> None:
    """Ranking metrics need every gradable round ranked, or none (a generation-only run)."""
    gradable = gt_index >= 0
    if ranked[gradable].any() and not ranked[gradable].all():
        first = int(np.flatnonzero(gradable & ~ranked)[0]) + 1
        raise PredictionError(f"{path}:{first}: no scores/ranks on this line while other lines have them; rerun "
                              "inference with option ranking on for every round")
