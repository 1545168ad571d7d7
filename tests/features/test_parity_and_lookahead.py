"""Every registered feature: causal (no look-ahead) and live == batch to 1e-9, on real data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from feature_samples import bars_for

from tessera.config.models import FeatureConfig, FeatureSpec
from tessera.features import (
    FeatureError,
    IncrementalFeatures,
    build_features,
    make_feature,
    registered,
    run_incremental,
)
from tessera.features.checks import check_lookahead, check_parity
from tessera.features.library import C, ZScore

ALL = sorted(registered())
# Parameter variants beyond the defaults, so that windows of several sizes are exercised.
VARIANTS = [
    ("log_return", {"window": 60}),
    ("simple_return", {"window": 5}),
    ("realized_vol", {"window": 240}),
    ("zscore", {"window": 20}),
    ("rsi", {"window": 2}),
    ("macd", {"fast": 5, "slow": 35, "signal": 5}),
    ("bbands", {"window": 50, "k": 1.5}),
    ("atr", {"window": 30}),
    ("vwap_distance", {"window": 5}),
    ("taker_imbalance", {"window": 5}),
    ("book_imbalance", {"window": 10}),
    ("spread_bps", {"window": 30}),
]
CASES = [(n, {}) for n in ALL] + VARIANTS


def test_every_builtin_is_covered() -> None:
    expected = {
        "log_return", "simple_return", "realized_vol", "zscore", "rsi", "macd", "bbands", "atr",
        "vwap_distance", "volume_zscore", "taker_imbalance", "book_imbalance", "spread_bps",
        "hour", "weekday",
    }  # fmt: skip
    assert expected <= set(ALL)


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_incremental_equals_batch_on_the_full_real_dataset(
    name: str,
    params: dict[str, int | float],
    real_bars: pl.DataFrame,
    flow_bars: pl.DataFrame,
    book_bars: pl.DataFrame,
) -> None:
    feat = make_feature(FeatureSpec(name=name, params=params))
    bars = bars_for(feat.requires, real_bars, flow_bars, book_bars)
    ok, _err, detail = check_parity(feat, bars, tolerance=1e-9)
    assert ok, detail
    values = feat.batch(bars).to_numpy()
    # the features have values (not NaN throughout), from the declared warm-up on
    assert np.isfinite(values[feat.warmup + 1 :]).mean() > 0.99
    assert np.isnan(values[: feat.warmup]).all()


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_no_feature_looks_ahead(
    name: str,
    params: dict[str, int | float],
    real_bars: pl.DataFrame,
    flow_bars: pl.DataFrame,
    book_bars: pl.DataFrame,
) -> None:
    feat = make_feature(FeatureSpec(name=name, params=params))
    ok, detail, cuts = check_lookahead(
        feat, bars_for(feat.requires, real_bars, flow_bars, book_bars)
    )
    assert ok, detail
    assert cuts >= 10


class _WholeSampleZ(ZScore):
    """Normalised with the mean of the whole column: the classic research leak."""

    def expressions(self) -> list[pl.Expr]:
        return [(C - C.mean()) / C.std()]


class _Centred(ZScore):
    def expressions(self) -> list[pl.Expr]:
        return [C.rolling_mean(self.window, center=True)]


class _NextBar(ZScore):
    def expressions(self) -> list[pl.Expr]:
        return [C.shift(-1) / C - 1]


class _SubtlyLate(ZScore):
    """Looks one bar ahead only in the last row before a cut: still caught."""

    def expressions(self) -> list[pl.Expr]:
        return [C.rolling_max(self.window).shift(-1).fill_null(C)]


@pytest.mark.parametrize("leaky", [_WholeSampleZ, _Centred, _NextBar, _SubtlyLate])
def test_the_check_catches_leaks(leaky: type[ZScore], real_bars: pl.DataFrame) -> None:
    ok, detail, _ = check_lookahead(leaky({"window": 20}), real_bars)
    assert not ok
    assert "changed row" in detail


def test_the_parity_check_catches_a_live_path_that_differs(real_bars: pl.DataFrame) -> None:
    class _OffByOne(ZScore):
        def expressions(self) -> list[pl.Expr]:
            return [C.rolling_mean(self.window + 1, min_samples=self.window)]

    ok, _err, detail = check_parity(_OffByOne({"window": 20}), real_bars.head(2000))
    assert not ok and "row" in detail


def test_feature_set_batch_and_live_agree_row_by_row(real_bars: pl.DataFrame) -> None:
    spec = FeatureConfig()
    head = real_bars.head(3000)
    batch = build_features(head, spec)
    live = run_incremental(head, spec)
    assert batch.columns == live.columns
    a, b = batch.drop("open_time").to_numpy(), live.drop("open_time").to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    assert np.max(np.abs(a[ok] - b[ok]) / np.maximum(1, np.abs(a[ok]))) < 1e-9
    inc = IncrementalFeatures(spec)
    assert inc.warmup == 59  # the 60-bar windows (zscore, vwap_distance) warm up longest
    for i, bar in enumerate(head.head(40).iter_rows(named=True)):
        row = inc.update(bar)
        assert inc.ready == (i >= inc.warmup)
        assert list(row) == batch.columns[1:]


def test_bad_feature_configs_say_what_is_wrong(real_bars: pl.DataFrame) -> None:
    with pytest.raises(FeatureError, match="unknown feature 'rsii'"):
        make_feature(FeatureSpec(name="rsii"))
    with pytest.raises(FeatureError, match="unknown parameter"):
        make_feature(FeatureSpec(name="rsi", params={"period": 14}))
    with pytest.raises(FeatureError, match="window must be an integer >= 1"):
        make_feature(FeatureSpec(name="rsi", params={"window": 0}))
    with pytest.raises(FeatureError, match=r"fast .* must be < slow"):
        make_feature(FeatureSpec(name="macd", params={"fast": 30}))
    with pytest.raises(FeatureError, match="taker_buy_base"):
        build_features(real_bars, [FeatureSpec(name="taker_imbalance")])
    with pytest.raises(FeatureError, match="produced twice"):
        build_features(real_bars, [FeatureSpec(name="rsi"), FeatureSpec(name="rsi")])
    dup = pl.concat([real_bars.head(5), real_bars.head(1)])
    with pytest.raises(FeatureError, match="duplicate open_time"):
        build_features(dup, [FeatureSpec(name="rsi")])
    holes = real_bars.head(50).with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(None).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(FeatureError, match="missing"):
        build_features(holes, [FeatureSpec(name="rsi")])
