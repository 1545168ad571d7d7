"""Monte Carlo resampling, checked on constructed series whose answer is known by construction.

Synthetic returns are fine here: the statistics under test (compounding, drawdown, time under
water, bootstrap distributions) have exact answers for series built to have them — all-equal
trades, a monotone path, iid draws whose log-growth is known, streaks that only blocks keep.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.optimize import montecarlo
from tessera.optimize.montecarlo import (
    PERCENTILES,
    Distribution,
    MonteCarlo,
    block_bootstrap,
    path_figures,
    resample_trades,
)


def _iid(n: int, seed: int, mean: float = 0.0004, sd: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


def _streaky(streak: int = 40, repeats: int = 9) -> np.ndarray:
    """Winning and losing streaks of equal length that undo each other, repeated."""
    up, down = np.full(streak, 0.01), np.full(streak, 1 / 1.01 - 1)
    return np.concatenate([np.concatenate([up, down]) for _ in range(repeats)])


# --- known answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.02, -0.015, 0.0])
@pytest.mark.parametrize("replace", [True, False])
def test_all_equal_trade_returns_give_identical_runs_equal_to_the_observed(
    value: float, replace: bool
) -> None:
    mc = resample_trades([value] * 30, runs=200, seed=3, replace=replace)
    for dist in mc.distributions():
        assert np.all(dist.values == dist.values[0]), dist.name
        assert dist.values[0] == pytest.approx(mc.observed[dist.name], abs=1e-15)
    assert mc.observed["final_return"] == pytest.approx((1 + value) ** 30 - 1, rel=1e-12)
    expected_dd = 1 - (1 + value) ** 30 if value < 0 else 0.0
    assert mc.observed["max_drawdown"] == pytest.approx(expected_dd, abs=1e-15)
    assert mc.observed["time_under_water"] == (1.0 if value < 0 else 0.0)
    for q in PERCENTILES:
        np.testing.assert_allclose(mc.bands[q], (1 + value) ** np.arange(31), rtol=1e-12)


def test_a_monotone_up_path_has_no_drawdown_and_no_time_under_water() -> None:
    mc = block_bootstrap(np.linspace(0.001, 0.02, 100), runs=50, seed=1)
    assert mc.observed["max_drawdown"] == 0.0
    assert mc.observed["time_under_water"] == 0.0
    assert np.all(mc.max_drawdown.values == 0.0)  # any resample of gains only also rises
    assert np.all(mc.time_under_water.values == 0.0)


def test_drawdown_and_time_under_water_of_a_hand_worked_path() -> None:
    # 1.0 -> 1.1 -> 0.88 -> 0.968 -> 1.1616: peak 1.1 until the last step
    _, final, dd, under = path_figures(np.array([[0.10, -0.20, 0.10, 0.20]]))
    assert final[0] == pytest.approx(1.1 * 0.8 * 1.1 * 1.2 - 1)
    assert dd[0] == pytest.approx(0.2)
    assert under[0] == pytest.approx(2 / 4)


def test_a_first_losing_trade_is_a_drawdown_from_the_starting_capital() -> None:
    _, _, dd, under = path_figures(np.array([[-0.1, 0.05]]))
    assert dd[0] == pytest.approx(0.1)
    assert under[0] == 1.0


def test_a_path_recovering_exactly_to_its_high_is_not_counted_under_water_by_rounding() -> None:
    # 1.1 * 0.97 * (1 + 0.03 / 0.97) is 1.1 on paper and 1.1 - 2e-16 in floats
    returns = np.array([[0.1, -0.03, 0.03 / 0.97]])
    equity, _, dd, under = path_figures(returns)
    assert equity[0, 3] < equity[0, 1]  # the rounding this test is about
    assert under[0] == pytest.approx(1 / 3)  # only the step at 1.067 is under water
    assert dd[0] == pytest.approx(0.03)


def test_the_median_bootstrap_final_return_is_near_the_observed_compounding() -> None:
    r = _iid(720, seed=11)
    observed = float(np.prod(1 + r) - 1)
    for mc in (resample_trades(r, runs=2000, seed=5), block_bootstrap(r, runs=2000, seed=5)):
        assert mc.observed["final_return"] == pytest.approx(observed, rel=1e-12)
        # the log-growth of a resample is a sum of 720 draws whose mean is the observed one:
        # its sd is ~0.27, the median of 2000 runs is off by ~0.008 at 1 sd
        gap = np.log1p(mc.final_return.percentile(50)) - np.log1p(observed)
        assert abs(gap) < 0.03, mc.method


def test_shuffling_the_trades_keeps_the_final_return_and_varies_the_drawdown() -> None:
    r = _iid(200, seed=2, mean=0.001, sd=0.03)
    mc = resample_trades(r, runs=500, seed=9, replace=False)
    assert mc.method == "trades (shuffled)"
    np.testing.assert_allclose(mc.final_return.values, mc.observed["final_return"], rtol=1e-12)
    assert mc.max_drawdown.values.std() > 0.01
    assert mc.max_drawdown.percentile(5) < mc.observed["max_drawdown"] * 2
    replaced = resample_trades(r, runs=500, seed=9)
    assert replaced.method == "trades"
    assert replaced.final_return.values.std() > 0.1  # with replacement, the outcome spreads


def test_a_seed_reproduces_a_result_and_another_seed_differs() -> None:
    r = _iid(300, seed=4)
    runs: list[Callable[[int], MonteCarlo]] = [
        lambda s: resample_trades(r, runs=100, seed=s),
        lambda s: resample_trades(r, runs=100, seed=s, replace=False),
        lambda s: block_bootstrap(r, runs=100, seed=s),
    ]
    for run in runs:
        a, b, c = run(7), run(7), run(8)
        np.testing.assert_array_equal(a.max_drawdown.values, b.max_drawdown.values)
        np.testing.assert_array_equal(a.bands[50], b.bands[50])
        assert not np.array_equal(a.max_drawdown.values, c.max_drawdown.values)


def test_block_one_is_an_iid_bootstrap_in_distribution() -> None:
    r = _iid(400, seed=21, sd=0.02)
    blocks = block_bootstrap(r, runs=3000, block=1, seed=1)
    iid = resample_trades(r, runs=3000, seed=2)
    assert blocks.method == "returns (block bootstrap, block=1)"
    for a, b in zip(blocks.distributions(), iid.distributions(), strict=True):
        spread = b.percentile(75) - b.percentile(25)
        for q in (10, 25, 50, 75, 90):
            assert abs(a.percentile(q) - b.percentile(q)) < 0.1 * spread, (a.name, q)


def test_blocks_keep_losing_streaks_that_an_iid_draw_breaks_apart() -> None:
    r = _streaky()  # each losing streak of 40 undoes the +1% streak: a 33% drawdown
    observed_dd = 1 - 1.01**-40
    blocks = block_bootstrap(r, runs=500, block=40, seed=3)
    iid = block_bootstrap(r, runs=500, block=1, seed=3)
    assert blocks.observed["max_drawdown"] == pytest.approx(observed_dd)
    assert blocks.max_drawdown.percentile(50) > 0.9 * observed_dd
    assert iid.max_drawdown.percentile(50) < 0.75 * blocks.max_drawdown.percentile(50)


def test_the_default_block_is_the_cube_root_of_the_length() -> None:
    assert block_bootstrap(_iid(720, 1), runs=10).method == "returns (block bootstrap, block=9)"
    assert block_bootstrap(_iid(5, 1), runs=10).method == "returns (block bootstrap, block=2)"
    assert block_bootstrap([0.01], runs=10).method == "returns (block bootstrap, block=1)"


def test_bands_start_at_one_and_the_median_band_follows_the_runs() -> None:
    mc = resample_trades(_iid(50, 3), runs=400, seed=1)
    assert set(mc.bands) == set(PERCENTILES)
    np.testing.assert_array_equal(mc.band_steps, np.arange(51))
    for q in PERCENTILES:
        assert mc.bands[q].shape == (51,)
        assert mc.bands[q][0] == 1.0
    assert mc.bands[50][-1] == pytest.approx(1 + mc.final_return.percentile(50), rel=1e-12)
    assert mc.bands[95][-1] == pytest.approx(1 + mc.final_return.percentile(95), rel=1e-12)


def test_long_series_keep_a_bounded_number_of_band_points_with_their_steps() -> None:
    mc = block_bootstrap(_iid(20_000, 5, sd=0.001), runs=20, seed=1)
    assert mc.band_steps[0] == 0 and mc.band_steps[-1] == 20_000
    assert 900 < mc.band_steps.size <= 1000
    assert mc.bands[50].shape == mc.band_steps.shape
    assert mc.bands[5][-1] == pytest.approx(1 + mc.final_return.percentile(5), rel=1e-12)


def test_runs_simulated_in_chunks_fill_every_run_and_band(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(montecarlo, "_CHUNK_ELEMENTS", 1000)  # 100 periods: 10 runs a chunk
    mc = block_bootstrap(_iid(100, 6), runs=95, seed=2)
    assert mc.final_return.values.size == 95
    assert np.unique(mc.final_return.values).size > 90  # no chunk left empty or repeated
    assert mc.bands[50][-1] == pytest.approx(1 + mc.final_return.percentile(50), rel=1e-12)
    _check_invariants(mc)


def test_a_thousand_runs_of_a_month_of_hours_take_well_under_a_second() -> None:
    r = _iid(720, 8)
    best = min(_timed(lambda: block_bootstrap(r, runs=1000, seed=1)) for _ in range(3))
    best_trades = min(_timed(lambda: resample_trades(r, runs=1000, seed=1)) for _ in range(3))
    assert best < 0.5 and best_trades < 0.5, (best, best_trades)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_the_summary_names_the_method_the_median_and_the_actual_figures() -> None:
    mc = resample_trades([0.01] * 10, runs=5, seed=0)
    line = mc.summary()
    assert line.startswith("trades, 5 runs: final return +10.5%")
    assert "actual +10.5%" in line and "max drawdown 0.0%" in line


def test_distribution_percentiles_are_the_five_reported_ones() -> None:
    dist = Distribution("x", np.arange(101, dtype=float))
    assert dist.percentiles() == {5: 5.0, 25: 25.0, 50: 50.0, 75: 75.0, 95: 95.0}
    with pytest.raises(ValueError, match="between 0 and 100"):
        dist.percentile(101)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resample_trades([]), "trade_returns is empty"),
        (lambda: resample_trades([0.1, float("nan")]), r"NaN or infinite value\(s\), at position"),
        (lambda: resample_trades([0.1, float("inf")]), "NaN or infinite"),
        (lambda: resample_trades([0.1, -1.5]), "below -100%"),
        (lambda: resample_trades([0.1], runs=0), "runs must be a whole number of at least 1"),
        (lambda: resample_trades([0.1], runs=2.5), "runs must be"),  # type: ignore[arg-type]
        (lambda: resample_trades([0.1], seed=-1), "seed must be a non-negative"),
        (lambda: resample_trades(["a"]), "must be a sequence of numbers"),  # type: ignore[list-item]
        (lambda: block_bootstrap(np.empty(0)), "returns is empty"),
        (lambda: block_bootstrap(np.ones((3, 2))), "one-dimensional"),
        (lambda: block_bootstrap(np.array([0.1, np.nan])), "NaN"),
        (lambda: block_bootstrap(np.zeros(10), block=0), r"block must lie between 1 and .*\(10\)"),
        (lambda: block_bootstrap(np.zeros(10), block=11), "got 11"),
        (lambda: block_bootstrap(np.zeros(10), runs=-3), "runs must be"),
    ],
)
def test_bad_input_is_refused_with_a_sentence_naming_the_field(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


# --- properties ---------------------------------------------------------------------------------

_returns = st.lists(
    st.floats(min_value=-0.99, max_value=1.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=60,
)


def _check_invariants(mc: MonteCarlo) -> None:
    for dist in mc.distributions():
        p = dist.percentiles()
        assert all(p[a] <= p[b] for a, b in itertools.pairwise(PERCENTILES))
    for name in ("max_drawdown", "time_under_water"):
        values = getattr(mc, name).values
        assert np.all((values >= 0.0) & (values <= 1.0)), name
        assert 0.0 <= mc.observed[name] <= 1.0
    assert np.all(mc.final_return.values >= -1.0)
    for lo, hi in itertools.pairwise(PERCENTILES):
        assert np.all(mc.bands[lo] <= mc.bands[hi] * (1 + 1e-12))


@settings(max_examples=60, deadline=None)
@given(returns=_returns, seed=st.integers(0, 2**32), replace=st.booleans())
def test_trade_resamples_keep_percentiles_ordered_and_fractions_in_range(
    returns: list[float], seed: int, replace: bool
) -> None:
    _check_invariants(resample_trades(returns, runs=40, seed=seed, replace=replace))


@settings(max_examples=60, deadline=None)
@given(returns=_returns, seed=st.integers(0, 2**32), data=st.data())
def test_block_resamples_keep_percentiles_ordered_and_fractions_in_range(
    returns: list[float], seed: int, data: st.DataObject
) -> None:
    block = data.draw(st.integers(1, len(returns)))
    _check_invariants(block_bootstrap(np.array(returns), runs=40, block=block, seed=seed))
