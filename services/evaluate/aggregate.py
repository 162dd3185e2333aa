"""One way to aggregate every metric: overall, per group (round, kind) and over bootstrap resamples.

Each metric is a function of the SUM of per-item statistic vectors and the item count: a plain average (R@k, MRR,
BERTScore, METEOR, ROUGE-L, CIDEr-D) has one statistic per item and divides its sum by n; corpus BLEU has the clipped
n-gram counts, n-gram totals and lengths of every item, and its reduction turns their sums into BLEU exactly as
nltk's corpus_bleu does.
So the headline value, a per-round value and a bootstrap replicate are the same reduction over different item
weights, and the bootstrap is one matrix product per chunk of replicates instead of a Python loop.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Reduce = Callable[[np.ndarray, int], np.ndarray]  # (summed statistics [..., d], item count) -> metric value [...]


def _mean_of_first_column(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[..., 0] / n


@dataclass
class ItemMetric:
    """A metric over a population of items: `stats` float64 [n, d] and the reduction of their sum."""

    name: str
    stats: np.ndarray
    reduce: Reduce = _mean_of_first_column

    @classmethod
    def mean_of(cls, name: str, values: np.ndarray) -> "ItemMetric":
        """A metric that is the plain mean of one value per item."""
        return cls(name, np.asarray(values, dtype=np.float64).reshape(-1, 1))

    def value(self, mask: np.ndarray | None = None) -> float | None:
        """The metric over all items, or over `mask` (None when the mask selects nothing)."""
        stats = self.stats if mask is None else self.stats[mask]
        if len(stats) == 0:
            return None
        return float(self.reduce(stats.sum(axis=0), len(stats)))


def group_values(metrics: list[ItemMetric], groups: np.ndarray) -> dict[str, dict[str, float | None]]:
    """{group label: {metric: value}} for every distinct value of `groups` (aligned with the items), sorted."""
    groups = np.asarray(groups)
    table: dict[str, dict[str, float | None]] = {}
    for label in sorted(set(groups.tolist()), key=lambda g: (str(type(g)), g)):
        mask = groups == label
        table[str(label)] = {m.name: m.value(mask) for m in metrics} | {"n": int(mask.sum())}
    return table


def resample_weights(n: int, samples: int, seed: int, chunk: int = 100):
    """Yield [c, n] matrices of bootstrap weights (how often each item was drawn into a replicate), seeded."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < samples:
        c = min(chunk, samples - done)
        draws = rng.integers(0, n, size=(c, n))
        counts = np.bincount((draws + (np.arange(c) * n)[:, None]).ravel(), minlength=c * n).reshape(c, n)
        yield counts.astype(np.float64)
        done += c


def bootstrap_intervals(
    metrics: list[ItemMetric], samples: int, confidence: float, seed: int
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric; all metrics share one set of resamples of their items.

    Every metric in `metrics` must cover the same items (same n), so the intervals come from the same replicates.
    """
    if not metrics:
        return {}
    n = len(metrics[0].stats)
    if any(len(m.stats) != n for m in metrics):
        raise ValueError("bootstrap_intervals: metrics cover different numbers of items; group them by population")
    if n == 0 or samples <= 0:
        return {}
    replicates: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
    for weights in resample_weights(n, samples, seed):
        for m in metrics:
            replicates[m.name].append(m.reduce(weights @ m.stats, n))
    tail = (1.0 - confidence) / 2.0
    intervals = {}
    for name, parts in replicates.items():
        low, high = np.quantile(np.concatenate(parts), [tail, 1.0 - tail])
        intervals[name] = (float(low), float(high))
    return intervals
