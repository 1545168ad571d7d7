"""Tests of the Deflated Sharpe Ratio and the Probability of Backtest Overfitting.

Every case has an answer known without this module: the papers' worked example, closed forms
(PSR at the benchmark is 1/2; Lo's variance for normal returns), a brute-force CSCV written
out loop by loop with SciPy's ranks, a Monte Carlo maximum of normals, and constructed return
matrices — pure noise (no trial has an edge, so picking the in-sample best is a coin flip out
of sample: PBO near 1/2, a DSR that does not pass) and a planted edge (one trial's mean is
several standard errors above zero: PBO near 0, a DSR that passes). Synthetic returns are
fine here: the statistics' answers are known by construction, not from market data.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tessera.optimize.overfit import (
    MIN_OBSERVATIONS,
    DeflatedSharpe,
    deflated_sharpe,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    sharpe_ratios,
)

HOURS_PER_YEAR = 24 * 365


def noise(seed: int, periods: int, trials: int, sigma: float = 0.01) -> np.ndarray:
    """iid normal returns with zero mean: N strategies without any edge."""
    return np.random.default_rng(seed).normal(0.0, sigma, size=(periods, trials))


def planted(seed: int, periods: int, trials: int, edge_sigmas: float = 8.0) -> np.ndarray:
    """Noise, plus one trial (column 3) whose mean is ``edge_sigmas`` standard errors above 0:
    its true per-period Sharpe is edge_sigmas / sqrt(T), far beyond what noise reaches."""
    sigma = 0.01
    matrix = noise(seed, periods, trials, sigma)
    matrix[:, 3] += edge_sigmas * sigma / math.sqrt(periods)
    return matrix


def dsr_of_best(matrix: np.ndarray) -> DeflatedSharpe:
    sharpes = sharpe_ratios(matrix)
    return deflated_sharpe(matrix[:, int(np.argmax(sharpes))], sharpes, HOURS_PER_YEAR)


# --- the papers' worked examples and closed forms -------------------------------------------


def test_dsr_reproduces_the_papers_numerical_example() -> None:
    """Bailey & López de Prado, "The Deflated Sharpe Ratio" (JPM 40(5), 2014; SSRN 2460551),
    section "A numerical example": an annualised Sharpe of 2.5 from five years of daily returns
    (T = 1,250, 250 a year), the best of N = 100 trials whose annualised Sharpes have variance
    1/2, returns with skew -3 and kurtosis 10. Non-annualised: SR = 2.5/sqrt(250) = 0.1581,
    V = 0.5/250; the paper finds SR0 = 0.1132 and DSR = 0.9004 (the PSR against 0 is near 1,
    but after 100 trials the 95% bar is missed)."""
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_psr_for_normal_returns_uses_los_standard_error() -> None:
    """With skew 0 and kurtosis 3 the PSR's denominator is Lo's (2002) 1 + SR²/2 (the PSR of
    Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier", J. Risk 15(2), 2012, is
    Phi of the Sharpe's distance from the benchmark in standard errors); checked against
    SciPy's normal CDF."""
    sr, bench, n_obs = 0.08, 0.02, 500
    expected = stats.norm.cdf((sr - bench) * math.sqrt(n_obs - 1) / math.sqrt(1 + sr * sr / 2))
    assert probabilistic_sharpe_ratio(sr, bench, n_obs, 0.0, 3.0) == pytest.approx(expected)


def test_negative_skew_and_fat_tails_lower_the_psr_of_a_positive_sharpe() -> None:
    normal = probabilistic_sharpe_ratio(0.1, 0.0, 250, 0.0, 3.0)
    skewed = probabilistic_sharpe_ratio(0.1, 0.0, 250, -1.5, 3.0 + 1.5**2 + 4)
    assert 0.5 < skewed < normal


@given(
    sharpe=st.floats(-1.0, 1.0),
    n_obs=st.integers(2, 100_000),
    skew=st.floats(-3.0, 3.0),
    extra_kurtosis=st.floats(0.0, 20.0),
)
def test_psr_with_the_sharpe_equal_to_its_benchmark_is_one_half(
    sharpe: float, n_obs: int, skew: float, extra_kurtosis: float
) -> None:
    kurtosis = 1.0 + skew * skew + extra_kurtosis
    assert probabilistic_sharpe_ratio(sharpe, sharpe, n_obs, skew, kurtosis) == 0.5


def test_expected_max_sharpe_approximates_the_maximum_of_normal_draws() -> None:
    """The paper's SR0 is an extreme-value approximation of E[max of N normals]: against a
    Monte Carlo mean of the maximum it is within a few per cent (and a little above it)."""
    rng = np.random.default_rng(7)
    for trials in (10, 100, 1000):
        simulated = rng.standard_normal((2000, trials)).max(axis=1).mean()
        assert expected_max_sharpe(trials, 1.0) == pytest.approx(simulated, rel=0.05)
    # it scales with the standard deviation of the Sharpes, not their variance
    assert expected_max_sharpe(50, 4.0) == pytest.approx(2 * expected_max_sharpe(50, 1.0))


def test_expected_max_sharpe_grows_with_the_number_of_trials() -> None:
    values = [expected_max_sharpe(n, 0.01) for n in (1, 2, 3, 5, 10, 100, 1000, 10**6)]
    assert values[0] == 0.0  # one trial: nothing selected
    assert all(a < b for a, b in itertools.pairwise(values))


@settings(max_examples=60, deadline=None)
@given(
    sharpe=st.floats(0.0, 0.3),
    variance=st.floats(1e-6, 1e-2),
    n_obs=st.integers(20, 20_000),
    skew=st.floats(-2.0, 2.0),
    extra_kurtosis=st.floats(0.0, 10.0),
    trials=st.integers(1, 5000),
    more=st.integers(1, 5000),
)
def test_dsr_never_rises_as_the_number_of_trials_grows(
    sharpe: float,
    variance: float,
    n_obs: int,
    skew: float,
    extra_kurtosis: float,
    trials: int,
    more: int,
) -> None:
    kurtosis = 1.0 + skew * skew + extra_kurtosis

    def dsr(n: int) -> float:
        return probabilistic_sharpe_ratio(
            sharpe, expected_max_sharpe(n, variance), n_obs, skew, kurtosis
        )

    assert dsr(trials + more) <= dsr(trials)


# --- DSR on constructed return series --------------------------------------------------------


def test_deflated_sharpe_measures_the_chosen_trials_moments_like_scipy() -> None:
    rng = np.random.default_rng(3)
    returns = rng.standard_t(4, size=2000) * 0.01 + 0.001
    result = deflated_sharpe(returns, [0.01, 0.05, 0.1], 365.0)
    assert result.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert result.annualised_sharpe == pytest.approx(result.sharpe * math.sqrt(365))
    assert result.skew == pytest.approx(stats.skew(returns))
    assert result.kurtosis == pytest.approx(stats.kurtosis(returns, fisher=False))
    assert result.sharpe_variance == pytest.approx(np.var([0.01, 0.05, 0.1], ddof=1))
    assert result.trials == 3 and result.n_obs == 2000
    assert result.expected_max_sharpe == pytest.approx(
        expected_max_sharpe(3, result.sharpe_variance)
    )
    assert result.dsr == pytest.approx(
        probabilistic_sharpe_ratio(
            result.sharpe, result.expected_max_sharpe, 2000, result.skew, result.kurtosis
        )
    )


def test_deflated_sharpe_of_a_single_trial_is_its_psr_against_zero() -> None:
    returns = noise(11, 500, 1)[:, 0] + 0.002
    result = deflated_sharpe(returns, [float(sharpe_ratios(returns)[0])], HOURS_PER_YEAR)
    assert result.expected_max_sharpe == 0.0
    assert result.dsr == pytest.approx(
        probabilistic_sharpe_ratio(result.sharpe, 0.0, 500, result.skew, result.kurtosis)
    )
    assert "one trial" in result.verdict()


def test_trials_stopped_early_raise_the_bar_the_chosen_trial_must_beat() -> None:
    """Pruned trials were tried too: counting them (N = every trial attempted) raises SR0
    and lowers the DSR, with the spread of Sharpes still taken from the complete trials."""
    matrix = noise(4, 720, 40)
    sharpes = sharpe_ratios(matrix)
    best = matrix[:, int(np.argmax(sharpes))]
    complete_only = deflated_sharpe(best, sharpes, HOURS_PER_YEAR)
    with_pruned = deflated_sharpe(best, sharpes, HOURS_PER_YEAR, trials=100)
    assert with_pruned.trials == 100 and complete_only.trials == 40
    assert with_pruned.sharpe_variance == complete_only.sharpe_variance
    assert with_pruned.expected_max_sharpe > complete_only.expected_max_sharpe
    assert with_pruned.dsr < complete_only.dsr
    with pytest.raises(ValueError, match="at least the 40 trials"):
        deflated_sharpe(best, sharpes, HOURS_PER_YEAR, trials=39)


def test_the_best_of_pure_noise_strategies_does_not_pass_the_dsr() -> None:
    """Under the null the best of N noise Sharpes lands near SR0, the expected maximum of N
    noise Sharpes, so its DSR centres near 1/2 and rarely comes close to 0.95 (over these 30
    independent searches of 100 strategies it peaks near 0.8)."""
    results = [dsr_of_best(noise(seed, 720, 100)) for seed in range(30)]
    assert sum(r.passes() for r in results) <= 1
    assert 0.25 < float(np.median([r.dsr for r in results])) < 0.75
    # and yet the undeflated best Sharpe looks impressive: that is the selection bias
    assert min(r.annualised_sharpe for r in results) > 3.0


def test_a_planted_edge_passes_the_dsr() -> None:
    for seed in range(5):
        result = dsr_of_best(planted(seed, 720, 100))
        assert result.passes(), result
        assert result.sharpe > result.expected_max_sharpe


def test_dsr_verdicts_are_one_line_and_say_whether_it_is_luck() -> None:
    luck = dsr_of_best(noise(0, 720, 120))
    edge = dsr_of_best(planted(0, 720, 120))
    for result in (luck, edge):
        line = result.verdict()
        assert "\n" not in line and f"DSR {result.dsr:.2f}" in line
        assert "120 trials of noise" in line
    assert "treat it as luck" in luck.verdict() and "< 0.95" in luck.verdict()
    assert "unlikely luck" in edge.verdict() and ">= 0.95" in edge.verdict()
    assert f"{luck.annualised_expected_max_sharpe:.2f}" in luck.verdict()


# --- PBO on constructed return matrices ------------------------------------------------------


def brute_force_pbo(matrix: np.ndarray, splits: int) -> tuple[float, np.ndarray]:
    """CSCV written out as in the paper, one combination at a time, with SciPy's ranks."""
    rows = matrix.shape[0] // splits
    used = matrix[matrix.shape[0] - rows * splits :]
    blocks = [used[i * rows : (i + 1) * rows] for i in range(splits)]
    logits = []
    for chosen in itertools.combinations(range(splits), splits // 2):
        train = np.vstack([blocks[i] for i in chosen])
        test = np.vstack([blocks[i] for i in range(splits) if i not in chosen])
        is_sr = train.mean(axis=0) / train.std(axis=0, ddof=1)
        oos_sr = test.mean(axis=0) / test.std(axis=0, ddof=1)
        best = int(np.argmax(is_sr))
        w = stats.rankdata(oos_sr)[best] / (matrix.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    arr = np.array(logits)
    return float(np.mean(arr <= 0)), arr


def test_pbo_matches_a_brute_force_cscv() -> None:
    matrix = noise(5, 103, 7)  # 103 rows in 6 blocks: the oldest row is dropped
    pbo, logits = brute_force_pbo(matrix, 6)
    result = pbo_cscv(matrix, splits=6)
    assert result.combinations == math.comb(6, 3) == len(result.logits)
    assert result.splits == 6
    np.testing.assert_allclose(result.logits, logits, rtol=1e-9)
    assert result.pbo == pbo


def test_a_custom_metric_gives_the_same_pbo_as_the_built_in_sharpe() -> None:
    matrix = noise(9, 240, 30)
    built_in = pbo_cscv(matrix, splits=8)
    custom = pbo_cscv(matrix, splits=8, metric=sharpe_ratios)
    np.testing.assert_allclose(custom.logits, built_in.logits, rtol=1e-9)
    np.testing.assert_allclose(custom.is_best, built_in.is_best, rtol=1e-9)
    np.testing.assert_allclose(custom.oos_of_is_best, built_in.oos_of_is_best, rtol=1e-9)


def test_a_custom_metric_ranks_by_what_it_measures() -> None:
    """Total return as the metric: the trial with a planted mean wins in-sample and keeps its
    rank out of sample, so nothing is overfit and it never loses out of sample."""
    matrix = planted(2, 480, 40, edge_sigmas=10.0)
    result = pbo_cscv(matrix, splits=8, metric=lambda m: m.sum(axis=0))
    assert result.pbo == 0.0 and result.prob_oos_loss == 0.0
    assert np.all(result.is_best > 0)


def test_pure_noise_strategies_give_a_pbo_near_one_half() -> None:
    """With no edge anywhere the in-sample best is a random pick out of sample. One search's
    PBO scatters widely (about 0.1 to 0.7 here: its splits all share the same data), so the
    PBOs of 24 independent searches are averaged (standard error about 0.04)."""
    values = [pbo_cscv(noise(seed, 480, 50), splits=12).pbo for seed in range(24)]
    assert 0.40 < float(np.mean(values)) < 0.60
    assert 0.35 < float(np.median(values)) < 0.65


def test_pure_noise_at_the_papers_size_gives_a_pbo_near_one_half() -> None:
    result = pbo_cscv(noise(1, 720, 200), splits=16)
    assert result.combinations == 12_870
    assert 0.35 < result.pbo < 0.65
    assert (
        0.35 < result.prob_oos_loss < 0.65
    )  # the in-sample best loses out of sample half the time
    # performance degrades: the in-sample best's Sharpe is far above its out-of-sample one
    assert np.mean(result.is_best) > 0.05 > abs(np.mean(result.oos_of_is_best))
    assert "fitting noise" in result.verdict() or "real risk" in result.verdict()


def test_a_planted_edge_gives_a_pbo_near_zero() -> None:
    for seed in range(3):
        result = pbo_cscv(planted(seed, 720, 100), splits=16)
        assert result.pbo < 0.02, result.pbo
        assert result.prob_oos_loss < 0.02
        assert float(np.median(result.logits)) > 3.0  # log(100/1) ~ 4.6 at the top rank
        assert "holds up" in result.verdict()


def test_pbo_verdict_is_one_line_naming_the_splits() -> None:
    line = pbo_cscv(noise(4, 320, 20), splits=10).verdict()
    assert "\n" not in line and line.startswith("PBO 0.")
    assert f"{math.comb(10, 5):,} splits" in line


def test_trials_that_never_trade_score_zero_and_do_not_break_the_ranking() -> None:
    matrix = noise(6, 160, 10)
    matrix[:, 0] = 0.0
    matrix[:, 1] = 0.1  # constant, not exactly representable: mean - value is not exactly 0
    matrix[:80, 2] = 0.0  # flat for the first half only
    np.testing.assert_array_equal(sharpe_ratios(matrix)[:2], [0.0, 0.0])
    result = pbo_cscv(matrix, splits=4)
    reference = pbo_cscv(matrix, splits=4, metric=sharpe_ratios)
    np.testing.assert_allclose(result.logits, reference.logits)
    assert np.all(np.isfinite(result.is_best)) and np.all(np.abs(result.is_best) < 10)


def test_pbo_at_the_papers_size_runs_well_under_a_second() -> None:
    matrix = noise(0, 720, 200)
    pbo_cscv(matrix, splits=16)  # warm caches
    started = time.perf_counter()
    pbo_cscv(matrix, splits=16)
    # 0.25-0.5 s here; a per-combination loop takes several seconds. Generous for a busy CI.
    assert time.perf_counter() - started < 2.0


# --- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"splits": 7}, "even integer"),
        ({"splits": 0}, "even integer"),
        ({"splits": 22}, "at most 20"),
        ({"returns": np.zeros((10, 3)) + np.arange(3), "splits": 12}, "more than the 10 periods"),
        ({"returns": noise(0, 100, 1)}, "at least 2 trials"),
        ({"returns": noise(0, 100, 3)[:, 0]}, "matrix"),
        ({"returns": noise(0, 2, 3), "splits": 2}, "at least 2"),
    ],
)
def test_pbo_rejects_unusable_input_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"returns": noise(0, 100, 5), **kwargs}
    with pytest.raises(ValueError, match=message):
        pbo_cscv(**arguments)  # type: ignore[arg-type]


def test_pbo_rejects_non_finite_returns_and_metric_values() -> None:
    matrix = noise(0, 100, 5)
    matrix[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"returns\[17, 2\] is nan"):
        pbo_cscv(matrix, splits=4)
    with pytest.raises(ValueError, match="one value per column"):
        pbo_cscv(noise(0, 100, 5), splits=4, metric=lambda m: m.sum())
    with pytest.raises(ValueError, match="non-finite"):
        pbo_cscv(noise(0, 100, 5), splits=4, metric=lambda m: np.full(m.shape[1], np.nan))


def test_deflated_sharpe_rejects_unusable_input_with_a_clear_message() -> None:
    good = noise(0, 100, 1)[:, 0]
    with pytest.raises(ValueError, match=f"at least {MIN_OBSERVATIONS}"):
        deflated_sharpe(good[: MIN_OBSERVATIONS - 1], [0.1, 0.2], 365)
    with pytest.raises(ValueError, match="1-D"):
        deflated_sharpe(noise(0, 100, 2), [0.1, 0.2], 365)
    with pytest.raises(ValueError, match="every trial"):
        deflated_sharpe(good, [], 365)
    with pytest.raises(ValueError, match=r"trial_sharpes\[1\] is nan"):
        deflated_sharpe(good, [0.1, float("nan")], 365)
    with pytest.raises(ValueError, match="periods_per_year must be positive"):
        deflated_sharpe(good, [0.1, 0.2], 0)
    with pytest.raises(ValueError, match="constant"):
        deflated_sharpe(np.full(50, 0.001), [0.1, 0.2], 365)
    bad = good.copy()
    bad[4] = np.inf
    with pytest.raises(ValueError, match=r"returns\[4\] is inf"):
        deflated_sharpe(bad, [0.1, 0.2], 365)


def test_deflated_sharpe_refuses_annualised_trial_sharpes() -> None:
    """Annualised Sharpes (a backtest's metrics) inflate V by the periods per year and turn
    every DSR into 0; the chosen trial's annualised Sharpe among them gives the mistake away."""
    matrix = noise(8, 500, 20)
    annualised = sharpe_ratios(matrix) * math.sqrt(HOURS_PER_YEAR)
    best = int(np.argmax(annualised))
    with pytest.raises(ValueError, match="look annualised"):
        deflated_sharpe(matrix[:, best], list(annualised), HOURS_PER_YEAR)


def test_psr_and_sr0_reject_impossible_arguments() -> None:
    with pytest.raises(ValueError, match="kurtosis >= 1 \\+ skew²"):
        probabilistic_sharpe_ratio(0.1, 0.0, 100, -3.0, 3.0)
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ValueError, match="finite"):
        probabilistic_sharpe_ratio(float("nan"), 0.0, 100, 0.0, 3.0)
    with pytest.raises(ValueError, match="positive integer"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        expected_max_sharpe(10, -1.0)
    result = dsr_of_best(noise(0, 100, 5))
    with pytest.raises(ValueError, match="confidence"):
        result.passes(95)
