"""VisDial ranking metrics, vectorised over all rounds at once (numpy only).

A round's ranking comes from its `scores` (higher = better) or explicit `ranks` (1 = best, a permutation of
1..K). Scores become ranks by `shared.predictions.scores_to_ranks`: descending score, equal scores ordered by the
lower option index, so a tie can never help or hurt a model by chance. The rank of the ground-truth option is
computed without sorting: 1 + #options scoring higher + #options scoring the same with a lower index, which is
exactly `scores_to_ranks(scores)[gt]` (tests and bench/evaluate.py check it) at a fraction of the cost.

- R@k: share of rounds whose ground-truth option has rank <= k (k = 1, 5, 10).
- Mean rank: mean rank of the ground-truth option. MRR: mean of 1 / that rank.
- NDCG (the VisDial challenge definition): for a densely annotated round with relevances `rel` (>= 0),
  k = number of options with non-zero relevance, DCG@k = sum_{p=1..k} rel(option at position p) / log2(p + 1)
  (linear gain), NDCG = DCG@k / ideal DCG@k (the same sum over the relevances sorted in decreasing order).
  A round whose relevances are all zero has no ideal ranking (0/0): it is flagged, reported and skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.errors import InputError
from shared.predictions import scores_to_ranks

RECALL_CUTOFFS = (1, 5, 10)
TIE_RULE = "descending score; equal scores are ordered by option index (lower index ranks first)"


class RankingError(InputError):
    """Rank / relevance arrays that do not describe a valid ranking (wrong shape, not a permutation)."""


def check_rank_matrix(ranks: np.ndarray) -> np.ndarray:
    """Return `ranks` as int64 [N, K] after checking every row is a permutation of 1..K (vectorised)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or ranks.shape[1] == 0:
        raise RankingError(f"ranks must be a [rounds, options] matrix, got shape {ranks.shape}")
    ranks = ranks.astype(np.int64, copy=False)
    k = ranks.shape[1]
    bad = (np.sort(ranks, axis=1) != np.arange(1, k + 1)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise RankingError(f"row {row} of the rank matrix is not a permutation of 1..{k}: "
                           f"{ranks[row].tolist()[:12]}...")
    return ranks


def _check_gt(gt_index: np.ndarray, n: int, k: int) -> np.ndarray:
    gt_index = np.asarray(gt_index, dtype=np.int64)
    if gt_index.shape != (n,):
        raise RankingError(f"gt_index has shape {gt_index.shape}, expected ({n},)")
    if ((gt_index < 0) | (gt_index >= k)).any():
        raise RankingError(f"gt_index values must lie in 0..{k - 1}")
    return gt_index


def gt_ranks(ranks: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
    """Rank of the ground-truth option of every round, from a rank matrix: int64 [N]."""
    gt_index = _check_gt(gt_index, ranks.shape[0], ranks.shape[1])
    return ranks[np.arange(ranks.shape[0]), gt_index].astype(np.int64)


def gt_ranks_from_scores(scores: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
    """Rank of the ground-truth option under the tie rule, straight from scores [N, K] (no sort): int64 [N]."""
    n, k = scores.shape
    gt_index = _check_gt(gt_index, n, k)
    gt_score = scores[np.arange(n), gt_index][:, None]
    ahead = scores > gt_score
    ahead |= (scores == gt_score) & (np.arange(k)[None, :] < gt_index[:, None])  # ties: lower index first
    return np.count_nonzero(ahead, axis=1).astype(np.int64) + 1


def retrieval_item_values(gt_rank: np.ndarray) -> dict[str, np.ndarray]:
    """Per-round values whose means are the retrieval metrics (float64 [N] each)."""
    gt_rank = np.asarray(gt_rank, dtype=np.float64)
    values = {f"r@{k}": (gt_rank <= k).astype(np.float64) for k in RECALL_CUTOFFS}
    values["mean_rank"] = gt_rank
    values["mrr"] = 1.0 / gt_rank
    return values


def retrieval_metrics(ranks: np.ndarray, gt_index: np.ndarray) -> dict[str, float]:
    """R@1/5/10, mean rank and MRR over all rounds (means of `retrieval_item_values`)."""
    values = retrieval_item_values(gt_ranks(check_rank_matrix(ranks), gt_index))
    return {name: float(v.mean()) for name, v in values.items()}


def ndcg_from_ranks(ranks: np.ndarray, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDCG per round from rank rows that are already known to be permutations (no check, no sort of the ranks).

    DCG@k is summed over options instead of positions: option j contributes rel_j / log2(rank_j + 1) when
    rank_j <= k, which needs no inversion of the ranking.
    Returns (ndcg float64 [M] with NaN where all relevances are zero, all_zero bool [M]).
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    if relevance.shape != ranks.shape:
        raise RankingError(f"relevance has shape {relevance.shape}, ranks {ranks.shape}")
    if (relevance < 0).any() or not np.isfinite(relevance).all():
        raise RankingError("relevances must be finite and >= 0")
    k_options = ranks.shape[1]
    k = np.count_nonzero(relevance, axis=1)[:, None]
    discount = 1.0 / np.log2(np.arange(k_options, dtype=np.float64) + 2.0)  # by 0-based position
    dcg = (relevance * np.where(ranks <= k, discount[ranks - 1], 0.0)).sum(axis=1)
    ideal = (np.sort(relevance, axis=1)[:, ::-1] * np.where(np.arange(k_options) < k, discount, 0.0)).sum(axis=1)
    all_zero = k[:, 0] == 0
    ndcg = np.full(len(ranks), np.nan)
    ndcg[~all_zero] = dcg[~all_zero] / ideal[~all_zero]
    return ndcg, all_zero


def ndcg_values(ranks: np.ndarray, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDCG of every densely annotated round from a rank matrix (validated); see `ndcg_from_ranks`."""
    return ndcg_from_ranks(check_rank_matrix(ranks), relevance)


@dataclass
class OptionRankings:
    """The rankings of N rounds as read: scores for some rounds, explicit ranks for others (rows of zeros = absent)."""

    scores: np.ndarray  # float64 [N, K]
    ranks: np.ndarray  # int64 [N, K]; explicit ranks (already checked to be permutations)
    has_scores: np.ndarray  # bool [N]
    has_ranks: np.ndarray  # bool [N]

    @property
    def ranked(self) -> np.ndarray:
        return self.has_scores | self.has_ranks

    def gt_rank(self, rows: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
        """Ground-truth rank of the given rows: explicit ranks where given, else from scores (same tie rule)."""
        rows = np.asarray(rows, dtype=np.int64)
        explicit = self.has_ranks[rows]
        if not explicit.any():  # the common case: all scores; skip copying the matrix when every row is asked for
            every_row = len(rows) == len(self.scores) and np.array_equal(rows, np.arange(len(rows)))
            return gt_ranks_from_scores(self.scores if every_row else self.scores[rows], gt_index)
        out = np.empty(len(rows), dtype=np.int64)
        out[explicit] = gt_ranks(self.ranks[rows[explicit]], gt_index[explicit])
        out[~explicit] = gt_ranks_from_scores(self.scores[rows[~explicit]], gt_index[~explicit])
        return out

    def rank_matrix(self, rows: np.ndarray) -> np.ndarray:
        """Ranks of the given rows (for NDCG): explicit ranks where given, else scores_to_ranks(scores)."""
        rows = np.asarray(rows, dtype=np.int64)
        ranks = self.ranks[rows]
        from_scores = ~self.has_ranks[rows]
        if from_scores.any():
            ranks[from_scores] = scores_to_ranks(self.scores[rows[from_scores]])
        return ranks
