"""Headline / per-group values and the vectorised bootstrap against a plain per-replicate loop."""
import numpy as np
import pytest

from services.evaluate.aggregate import ItemMetric, bootstrap_intervals, group_values, resample_weights


def test_mean_metric_overall_and_by_group():
    m = ItemMetric.mean_of("r@1", np.array([1.0, 0.0, 1.0, 1.0]))
    assert m.value() == 0.75
    table = group_values([m], np.array([2, 1, 2, 10]))
    assert list(table) == ["1", "2", "10"]  # rounds sorted as numbers
    assert table["2"] == {"r@1": 1.0, "n": 2} and table["1"]["r@1"] == 0.0
    assert m.value(np.zeros(4, bool)) is None


def test_resample_weights_are_counts_of_draws_seeded():
    a = np.concatenate(list(resample_weights(7, 250, seed=3, chunk=100)))
    b = np.concatenate(list(resample_weights(7, 250, seed=3, chunk=100)))
    assert a.shape == (250, 7) and (a.sum(axis=1) == 7).all() and np.array_equal(a, b)


def test_bootstrap_matches_a_per_replicate_loop_on_the_same_draws():
    rng = np.random.default_rng(0)
    values = rng.random(50)
    m = ItemMetric.mean_of("x", values)
    low, high = bootstrap_intervals([m], samples=300, confidence=0.9, seed=5)["x"]
    # the same draws, one replicate at a time
    draws = np.random.default_rng(5)
    reps = []
    for _ in range(3):  # chunks of 100, as resample_weights draws them
        idx = draws.integers(0, 50, size=(100, 50))
        reps += [values[row].mean() for row in idx]
    assert (low, high) == pytest.approx(tuple(np.quantile(reps, [0.05, 0.95])))
    assert low < values.mean() < high


def test_bootstrap_of_a_constant_is_a_point():
    ci = bootstrap_intervals([ItemMetric.mean_of("c", np.full(20, 0.3))], 100, 0.95, 0)["c"]
    assert ci == pytest.approx((0.3, 0.3))


def test_bootstrap_refuses_metrics_over_different_items():
    with pytest.raises(ValueError, match="different numbers of items"):
        bootstrap_intervals([ItemMetric.mean_of("a", np.ones(3)), ItemMetric.mean_of("b", np.ones(4))], 10, 0.95, 0)
