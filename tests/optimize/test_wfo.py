"""Walk-forward optimisation on the real bundled bars: the windows tile the timeline as
specified, each window's choice depends on its in-sample bars only, its out-of-sample run is the
plain backtest of that choice (warm-up history in front, no order before the out-of-sample
start), and the stitched curve is those runs chained from the initial cash.

Short slices of the bundled one-minute BTC month and few trials keep the file fast; the model
test retrains a tiny LightGBM per window, as tests/backtest/test_walkforward.py does.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tessera.backtest import BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.backtest.results import compute_metrics
from tessera.config import BacktestConfig
from tessera.config.models import FeatureConfig, LightGBMParams, ModelConfig, ValidationConfig
from tessera.models.registry import ModelRegistry
from tessera.optimize.space import FloatRange, IntRange
from tessera.optimize.study import backtest_point
from tessera.optimize.wfo import (
    WalkForward,
    WfoWindow,
    out_of_sample_part,
    split_windows,
    trade_out_of_sample,
    walk_forward_optimize,
    warmup_bars,
)

BARS = 6_000
SPACE = [IntRange("fast", 5, 20), IntRange("slow", 30, 90)]
CONFIG = BacktestConfig()
TRIALS = 6


def _series(frame: pl.DataFrame) -> BarSeries:
    return BarSeries.from_frame("BTCUSDT", frame)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    """The first bars of the real one-minute BTC-PERP month bundled in samples/."""
    return read_bar_file(SAMPLE_BARS).head(BARS)


@pytest.fixture(scope="module")
def series(bars: pl.DataFrame) -> BarSeries:
    return _series(bars)


def _wfo(
    series: BarSeries,
    mode: str = "rolling",
    windows: int = 3,
    on_window: Callable[[WfoWindow], None] | None = None,
) -> WalkForward:
    return walk_forward_optimize(
        [series],
        "sma_cross",
        SPACE,
        CONFIG,
        windows=windows,
        mode=mode,
        trials=TRIALS,
        seed=7,
        on_window=on_window,
    )


@pytest.fixture(scope="module")
def rolling(series: BarSeries) -> WalkForward:
    return _wfo(series, "rolling")


@pytest.fixture(scope="module")
def anchored(series: BarSeries) -> WalkForward:
    return _wfo(series, "anchored")


# --- the windows ---------------------------------------------------------------------------------


def test_rolling_windows_slide_a_fixed_in_sample_part_and_tile_the_rest_out_of_sample() -> None:
    spans = split_windows(1_000, windows=3, mode="rolling", in_sample_fraction=0.75)
    oos = 1_000 // 6  # 3 windows + 0.75 / 0.25 in-sample parts' worth
    assert [s.oos_end - s.oos_start for s in spans] == [oos] * 3
    assert [s.is_end - s.is_start for s in spans] == [1_000 - 3 * oos] * 3
    assert [s.is_start for s in spans] == [0, oos, 2 * oos]
    assert all(s.is_end == s.oos_start for s in spans)
    assert all(a.oos_end == b.oos_start for a, b in itertools.pairwise(spans))
    assert spans[-1].oos_end == 1_000


def test_anchored_windows_grow_from_the_first_bar_over_the_same_out_of_sample_parts() -> None:
    rolling = split_windows(1_000, windows=3, mode="rolling", in_sample_fraction=0.6)
    anchored = split_windows(1_000, windows=3, mode="anchored", in_sample_fraction=0.6)
    assert [s.is_start for s in anchored] == [0, 0, 0]
    assert [(s.oos_start, s.oos_end) for s in anchored] == [
        (s.oos_start, s.oos_end) for s in rolling
    ]
    assert [s.is_end for s in anchored] == [s.oos_start for s in anchored]
    assert anchored[0].is_end - anchored[0].is_start == rolling[0].is_end - rolling[0].is_start


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"windows": 60}, "in-sample parts of 100 bars and out-of-sample parts of 15 bars"),
        ({"in_sample_fraction": 0.99}, r"out-of-sample parts of 9 bars"),
        ({"windows": 0}, "at least one window"),
        ({"mode": "expanding"}, "'expanding' is neither"),
        ({"in_sample_fraction": 1.0}, "between 0 and 1"),
    ],
)
def test_impossible_windows_are_refused_with_the_numbers(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        split_windows(1_000, **kwargs)  # type: ignore[arg-type]


# --- a walk on real bars ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_the_windows_cover_the_bars_and_each_out_of_sample_part_follows_its_in_sample_part(
    mode: str, rolling: WalkForward, anchored: WalkForward, series: BarSeries
) -> None:
    wf = rolling if mode == "rolling" else anchored
    t = series.open_time
    assert wf.mode == mode and [w.index for w in wf.windows] == [0, 1, 2]
    oos = [w.out_of_sample for w in wf.windows]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(oos))  # consecutive, disjoint
    assert oos[-1][1] == t[-1] + 1  # the last out-of-sample part ends with the bars
    for w in wf.windows:
        assert w.in_sample[0] < w.in_sample[1] == w.out_of_sample[0] < w.out_of_sample[1]
    starts = [w.in_sample[0] for w in wf.windows]
    if mode == "anchored":
        assert starts == [t[0]] * 3
    else:  # a fixed number of in-sample bars, sliding by one out-of-sample part
        counts = {int(((t >= a) & (t < b)).sum()) for a, b in (w.in_sample for w in wf.windows)}
        assert len(counts) == 1
        oos_bars = int(((t >= oos[0][0]) & (t < oos[0][1])).sum())
        assert np.searchsorted(t, starts).tolist() == [0, oos_bars, 2 * oos_bars]


def test_the_stitched_curve_starts_at_the_initial_cash_and_chains_the_windows(
    rolling: WalkForward, series: BarSeries
) -> None:
    assert rolling.oos_equity[0] == float(CONFIG.initial_cash)
    assert rolling.is_equity[0] == float(CONFIG.initial_cash)
    assert np.all(np.diff(rolling.oos_times) > 0) and np.all(np.diff(rolling.is_times) > 0)
    first_oos = rolling.windows[0].out_of_sample[0]
    assert len(rolling.oos_equity) == 1 + int((series.open_time >= first_oos).sum())
    # each window starts with the account the previous one ended with
    assert rolling.windows[0].oos_cash == CONFIG.initial_cash
    assert all(isinstance(w.oos_cash, Decimal) for w in rolling.windows)
    for a, b in itertools.pairwise(rolling.windows):
        assert b.oos_metrics["initial_equity"] == pytest.approx(a.oos_metrics["final_equity"])
    assert rolling.oos_equity[-1] == rolling.windows[-1].oos_metrics["final_equity"]
    assert rolling.oos_metrics["final_equity"] == rolling.oos_equity[-1]
    assert rolling.oos_metrics["total_return"] == pytest.approx(
        rolling.oos_equity[-1] / float(CONFIG.initial_cash) - 1
    )
    assert rolling.oos_metrics["trades"] == sum(w.oos_metrics["trades"] for w in rolling.windows)
    ann_oos = rolling.oos_metrics["annualized_return"]
    ann_is = rolling.is_metrics["annualized_return"]
    expected = ann_oos / ann_is if ann_is > 0 else math.nan
    assert rolling.efficiency == pytest.approx(expected, nan_ok=True)


def test_a_window_s_out_of_sample_run_is_the_plain_backtest_of_its_choice(
    rolling: WalkForward, series: BarSeries
) -> None:
    for w in rolling.windows:
        start, end = w.out_of_sample
        first = int(np.searchsorted(series.open_time, start))
        assert w.warmup_bars == warmup_bars("sma_cross", w.params, ["BTCUSDT"]) == w.params["slow"]
        bars = series.slice(first - w.warmup_bars, int(np.searchsorted(series.open_time, end)))
        assert w.oos_cash is not None
        cfg = CONFIG.model_copy(update={"initial_cash": w.oos_cash})
        direct = backtest_point([bars], "sma_cross", w.params, cfg)
        # the warm-up sufficed: the plain run placed no order on its history bars either
        assert all(o.ts_created >= start for o in direct.orders)
        times, equity, exposure = out_of_sample_part(direct, start)
        assert times[0] > start and len(times) == len(bars) - w.warmup_bars
        metrics = compute_metrics(
            times, equity, exposure, direct.trades, direct.fills, float(w.oos_cash)
        )
        assert metrics == pytest.approx(w.oos_metrics, nan_ok=True)
        at = np.searchsorted(rolling.oos_times, times)
        np.testing.assert_array_equal(rolling.oos_times[at], times)
        np.testing.assert_array_equal(rolling.oos_equity[at], equity)


def test_the_chosen_trial_s_in_sample_run_is_the_value_it_was_chosen_by(
    rolling: WalkForward, series: BarSeries
) -> None:
    for w in rolling.windows:
        assert w.in_sample_metrics["sharpe"] == w.in_sample_value
        a, b = (int(np.searchsorted(series.open_time, x)) for x in w.in_sample)
        direct = backtest_point([series.slice(a, b)], "sma_cross", w.params, CONFIG)
        assert direct.metrics == pytest.approx(w.in_sample_metrics, nan_ok=True)
    # window 0's in-sample run is the start of the in-sample curve, as it was
    w0 = rolling.windows[0]
    a, b = (int(np.searchsorted(series.open_time, x)) for x in w0.in_sample)
    run = backtest_point([series.slice(a, b)], "sma_cross", w0.params, CONFIG)
    np.testing.assert_allclose(rolling.is_equity[1 : 1 + len(run.equity)], run.equity)


def test_a_window_s_choice_depends_on_its_in_sample_bars_only(
    bars: pl.DataFrame, rolling: WalkForward
) -> None:
    """Bars after a window's in-sample end are replaced by another random walk: the window's
    chosen parameters (and their in-sample figures) stay; its out-of-sample result moves. Bars
    after its out-of-sample end change nothing of the window at all."""
    w0 = rolling.windows[0]
    times = _series(bars).open_time

    def changed_from(t_ns: int) -> BarSeries:
        cut = int(np.searchsorted(times, t_ns))
        rng = np.random.default_rng(0)
        scale = pl.Series(np.exp(np.cumsum(rng.normal(0, 0.002, len(bars) - cut))))
        tail = bars.slice(cut).with_columns(
            *(pl.col(c) * scale for c in ("open", "high", "low", "close")),
            pl.col("volume") * 3.0,
        )
        return _series(pl.concat([bars.head(cut), tail]))

    after_is = _wfo(changed_from(w0.in_sample[1]), windows=3)
    v0 = after_is.windows[0]
    assert v0.params == w0.params and v0.in_sample_value == w0.in_sample_value
    assert v0.in_sample_metrics == w0.in_sample_metrics
    assert v0.oos_metrics["final_equity"] != w0.oos_metrics["final_equity"]

    after_oos = _wfo(changed_from(w0.out_of_sample[1]), windows=3)
    u0 = after_oos.windows[0]
    assert (u0.params, u0.in_sample_value) == (w0.params, w0.in_sample_value)
    assert u0.oos_metrics == pytest.approx(w0.oos_metrics, nan_ok=True)


def test_no_order_is_sent_from_the_warm_up_history(series: BarSeries) -> None:
    """buy_and_hold buys on the first bar it sees: with 100 bars of history in front of the
    start, that first bar is history, so the order is held back (and it never buys again)."""
    bars = series.slice(0, 400)
    start = int(bars.open_time[100])
    plain = backtest_point([bars], "buy_and_hold", {}, CONFIG)
    assert plain.orders and plain.orders[0].ts_created < start
    held = trade_out_of_sample([bars], "buy_and_hold", {}, CONFIG, None, start)
    assert held.orders == [] and set(held.equity.tolist()) == {float(CONFIG.initial_cash)}
    # with its orders from the start on, the same strategy trades
    sma = trade_out_of_sample([bars], "sma_cross", {"fast": 5, "slow": 30}, CONFIG, None, start)
    assert sma.orders and all(o.ts_created >= start for o in sma.orders)


def test_each_window_is_reported_as_it_is_done_and_no_study_files_stay(
    series: BarSeries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[WfoWindow] = []
    before = set(Path(tempfile.gettempdir()).glob("tessera-wfo-*"))
    wf = _wfo(series.slice(0, 3_000), windows=2, on_window=seen.append)
    assert seen == wf.windows and [w.index for w in seen] == [0, 1]
    assert set(Path(tempfile.gettempdir()).glob("tessera-wfo-*")) == before
    assert list(tmp_path.iterdir()) == []


def test_several_symbols_walk_one_timeline() -> None:
    """Daily Bitstamp BTC and ETH bars (ETH starts years later): the windows are cut on the
    union of their open times and each symbol trades its own bars of each part."""
    from tessera.backtest.bars_io import REPO_ROOT

    frames = {
        sym: read_bar_file(REPO_ROOT / "samples" / "bars" / f"bitstamp_{sym[:3]}USD_1d.csv.gz")
        for sym in ("BTCUSD", "ETHUSD")
    }
    data = [BarSeries.from_frame(sym, f, "1d") for sym, f in frames.items()]
    wf = walk_forward_optimize(
        data,
        "sma_cross",
        [IntRange("fast", 3, 10), IntRange("slow", 20, 40)],
        BacktestConfig(quote_currency="USD"),
        windows=2,
        trials=4,
        seed=1,
    )
    union = np.unique(np.concatenate([s.open_time for s in data]))
    assert wf.windows[-1].out_of_sample[1] == union[-1] + 1
    assert wf.oos_equity[0] == float(CONFIG.initial_cash) and len(wf.windows) == 2


# --- a model-driven strategy ----------------------------------------------------------------------

SMALL = ModelConfig(
    name="wfo",
    lightgbm=LightGBMParams(n_estimators=30, num_leaves=15),
    validation=ValidationConfig(n_splits=2, min_train_bars=2_000),
)


def test_a_model_strategy_trades_scores_of_a_model_retrained_before_each_window(
    tmp_path: Path,
) -> None:
    frame = read_bar_file(SAMPLE_BARS).head(8_000)
    series = _series(frame)
    wf = walk_forward_optimize(
        [series],
        "model_signal",
        [FloatRange("long_threshold", -0.0005, 0.0005)],
        CONFIG,
        windows=2,
        trials=4,
        seed=3,
        model=SMALL,
        features=FeatureConfig(),
        registry_dir=tmp_path,
    )
    reg = ModelRegistry(tmp_path)
    assert [w.model for w in wf.windows] == ["wfo:v0001", "wfo:v0002"]
    times = frame["open_time"]
    for w in wf.windows:
        assert w.model is not None
        data = reg.resolve_ref(w.model).manifest()["data"]
        oos_first = int(np.searchsorted(series.open_time, w.out_of_sample[0]))
        # trained on every bar before the out-of-sample start, and on none after it
        assert data["bars"] == oos_first
        assert times[oos_first - 1].isoformat() <= data["last_bar"] < times[oos_first].isoformat()
        assert w.oos_metrics["trades"] > 0
    assert wf.oos_equity[0] == float(CONFIG.initial_cash)


@pytest.mark.parametrize(
    ("strategy", "objective", "model", "symbols", "message"),
    [
        ("nope", "sharpe", None, 1, "unknown strategy 'nope'"),
        ("model_signal", "sharp", None, 1, "unknown objective 'sharp'"),
        ("model_signal", "sharpe", SMALL, 2, "one symbol's bars; got 2 symbols"),
        ("model_signal", "sharpe", SMALL, 1, "window 0: training the model on the 900 bars"),
    ],
)
def test_bad_walks_are_refused_with_a_sentence(
    series: BarSeries,
    strategy: str,
    objective: str,
    model: ModelConfig | None,
    symbols: int,
    message: str,
) -> None:
    bars = series.slice(0, 1_500)
    other = BarSeries.from_frame("ETHUSDT", read_bar_file(SAMPLE_BARS).head(10))
    with pytest.raises(ValueError, match=message):
        walk_forward_optimize(
            [bars, other][:symbols],
            strategy,
            [FloatRange("long_threshold", -0.001, 0.001)],
            CONFIG,
            windows=2,
            trials=2,
            objectives=(objective,),
            model=model,
        )
