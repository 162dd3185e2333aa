"""VisDial ranking metrics: hand-computed ranks with ties, k = 0, a single example, and sklearn's NDCG."""
import math

import numpy as np
import pytest

from services.evaluate.ranking import (
    OptionRankings,
    RankingError,
    check_rank_matrix,
    gt_ranks_from_scores,
    ndcg_values,
    retrieval_metrics,
)
from shared.predictions import scores_to_ranks


def _round(k: int, ones: dict[int, float] | None = None) -> np.ndarray:
    s = np.zeros(k)
    for j, v in (ones or {}).items():
        s[j] = v
    return s


def test_ties_break_to_the_lower_option_index():
    ranks = scores_to_ranks(np.array([0.5, 0.9, 0.5, 0.1]))
    assert ranks.tolist() == [2, 1, 3, 4]
    assert scores_to_ranks(np.zeros(5)).tolist() == [1, 2, 3, 4, 5]


def test_retrieval_metrics_hand_computed_with_ties():
    scores = np.stack([
        _round(12, {1: 0.9, 0: 0.5, 2: 0.5}),  # gt 2: option 1, then 0 (tie with 2, lower index first), then 2 -> 3
        _round(12),  # all tied, gt 0 -> rank 1
        _round(12),  # all tied, gt 11 -> rank 12
        _round(12),  # all tied, gt 6 -> rank 7
    ])
    gt = np.array([2, 0, 11, 6])
    m = retrieval_metrics(scores_to_ranks(scores), gt)
    assert m["r@1"] == pytest.approx(1 / 4)
    assert m["r@5"] == pytest.approx(2 / 4)
    assert m["r@10"] == pytest.approx(3 / 4)
    assert m["mean_rank"] == pytest.approx((3 + 1 + 12 + 7) / 4)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 12 + 1 / 7) / 4)


def test_retrieval_metrics_single_example():
    m = retrieval_metrics(np.array([[3, 1, 2]]), np.array([2]))
    assert m == {"r@1": 0.0, "r@5": 1.0, "r@10": 1.0, "mean_rank": 2.0, "mrr": 0.5}


def test_ndcg_hand_computed():
    ranks = scores_to_ranks(np.array([[0.1, 0.9, 0.5, 0.0]]))  # -> [3, 1, 2, 4]
    rel = np.array([[1.0, 0.5, 0.0, 0.0]])  # k = 2 non-zero relevances
    ndcg, zero = ndcg_values(ranks, rel)
    dcg = 0.5 / math.log2(2) + 0.0 / math.log2(3)  # model's top 2: option 1 (0.5), option 2 (0)
    ideal = 1.0 / math.log2(2) + 0.5 / math.log2(3)
    assert ndcg[0] == pytest.approx(dcg / ideal) and not zero[0]
    perfect, _ = ndcg_values(np.array([[3, 1, 4, 2]]), np.array([[0.2, 1.0, 0.0, 0.5]]))
    assert perfect[0] == pytest.approx(1.0)


def test_ndcg_all_zero_round_is_flagged_not_averaged():
    ndcg, zero = ndcg_values(np.array([[1, 2, 3], [2, 1, 3]]), np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert zero.tolist() == [True, False]
    assert math.isnan(ndcg[0]) and ndcg[1] == pytest.approx(1.0)


def test_ndcg_matches_sklearn_ndcg_score_per_round():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(1)
    scores = rng.random((40, 30))
    rel = rng.choice([0.0, 0.0, 0.0, 0.5, 1.0], size=(40, 30))
    rel[0] = 0.0  # one k = 0 round
    ndcg, zero = ndcg_values(scores_to_ranks(scores), rel)
    for i in range(40):
        k = int((rel[i] != 0).sum())
        if k == 0:
            assert zero[i]
            continue
        expected = ndcg_score(rel[i : i + 1], scores[i : i + 1], k=k)  # linear gain, log2 discount, top k
        assert ndcg[i] == pytest.approx(expected, abs=1e-12)


def test_rank_matrix_must_hold_permutations():
    with pytest.raises(RankingError, match="row 1 .* not a permutation of 1..3"):
        check_rank_matrix(np.array([[1, 2, 3], [1, 1, 3]]))
    with pytest.raises(RankingError, match="row 0"):
        check_rank_matrix(np.array([[0, 1, 2]]))


def test_gt_rank_from_scores_equals_scores_to_ranks_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(500, 20)).astype(float)  # heavy ties
    gt = rng.integers(0, 20, 500)
    expected = scores_to_ranks(scores)[np.arange(500), gt]
    assert np.array_equal(gt_ranks_from_scores(scores, gt), expected)


def test_option_rankings_mix_scores_and_explicit_ranks():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0]])
    ranks = np.array([[0, 0, 0, 0], [4, 3, 2, 1]])
    r = OptionRankings(scores, ranks, np.array([True, False]), np.array([False, True]))
    assert r.gt_rank(np.array([0, 1]), np.array([2, 0])).tolist() == [3, 4]
    assert r.rank_matrix(np.array([0, 1])).tolist() == [[2, 1, 3, 4], [4, 3, 2, 1]]
