"""Signal metrics, checked against SciPy's and NumPy's implementations and by definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tessera.models.dataset import Dataset
from tessera.models.evaluation import (
    hit_rate,
    information_coefficient,
    log_loss,
    mean_squared_error,
    rank_information_coefficient,
    row_log_loss,
    summarize,
)


def test_ic_and_rank_ic_match_scipy_on_real_returns(real_dataset: Dataset) -> None:
    x = real_dataset.features()
    realized = real_dataset.forward_returns()
    score = x[:, 0]  # last 1-bar return as a (mean-reversion?) score
    assert information_coefficient(score, realized) == pytest.approx(
        stats.pearsonr(score, realized).statistic, abs=1e-12
    )
    assert rank_information_coefficient(score, realized) == pytest.approx(
        stats.spearmanr(score, realized).statistic, abs=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=3, max_size=60))
def test_rank_ic_with_ties_matches_scipy(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs], dtype=float)
    b = np.array([p[1] for p in pairs], dtype=float)
    ours = rank_information_coefficient(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-9)


def test_hit_rate_excludes_the_dead_zone_and_counts_zero_scores_as_misses() -> None:
    realized = np.array([0.01, -0.02, 0.0001, -0.00005, 0.03, -0.04])
    score = np.array([1.0, 1.0, -1.0, 1.0, 0.0, -2.0])
    # |r| > 2e-4: rows 0, 1, 4, 5 -> hit, miss, miss (zero score), hit
    assert hit_rate(score, realized, dead_zone=2e-4) == 0.5
    assert hit_rate(score, realized, dead_zone=0.0) == pytest.approx(2 / 6)
    assert math.isnan(hit_rate(score, realized, dead_zone=1.0))


def test_losses() -> None:
    assert mean_squared_error([1.0, 2.0], [0.0, 4.0]) == 2.5
    proba = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    classes = np.array([-1, 0, 1])
    assert log_loss(proba, classes, [1, -1]) == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2)
    # A label the model never saw costs the clipped maximum instead of being skipped.
    losses = row_log_loss(proba[:, :2], np.array([-1, 0]), [0, 1])
    assert losses[0] == pytest.approx(-math.log(0.3))
    assert losses[1] == pytest.approx(-math.log(1e-15))


def test_undefined_is_nan_not_zero() -> None:
    assert math.isnan(information_coefficient([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(information_coefficient([1.0, 2.0], [1.0, 2.0]))
    m = summarize([], [], [], "mse")
    assert m["rows"] == 0 and math.isnan(m["ic"]) and math.isnan(m["mse"])
