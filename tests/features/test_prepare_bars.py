"""`prepare_bars` still refuses what would corrupt features, on its fast path and its slow one.

Its common case is one scan (times strictly increasing, every price column's sum finite); the
precise checks run only when that scan fails. Each refusal below must come out of that split.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tessera.features import FeatureError, prepare_bars

N = 8


def _bars() -> pl.DataFrame:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "open_time": [t0 + timedelta(minutes=i) for i in range(N)],
            "open": [100.0 + i for i in range(N)],
            "high": [101.0 + i for i in range(N)],
            "low": [99.0 + i for i in range(N)],
            "close": [100.5 + i for i in range(N)],
            "volume": list(range(1, N + 1)),  # integers: cast to floats
        }
    )


def test_sorted_unique_bars_come_back_unchanged_with_float_columns() -> None:
    bars = _bars()
    out = prepare_bars(bars)
    assert out["open_time"].to_list() == bars["open_time"].to_list()
    assert out["volume"].dtype == pl.Float64
    assert out["volume"].to_list() == [float(v) for v in bars["volume"]]


def test_unsorted_unique_bars_are_sorted_by_time() -> None:
    bars = _bars()
    out = prepare_bars(bars.reverse())
    assert out["open_time"].to_list() == bars["open_time"].to_list()
    assert out["close"].to_list() == bars["close"].to_list()


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_repeated_bar_time_is_refused_sorted_or_not(shuffled: bool) -> None:
    bars = pl.concat([_bars(), _bars().slice(3, 1)])
    if shuffled:
        bars = bars.reverse()
    with pytest.raises(FeatureError, match="duplicate open_time"):
        prepare_bars(bars)


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("hole", [None, math.nan])
def test_a_null_or_nan_in_any_ohlcv_column_is_refused(column: str, hole: float | None) -> None:
    bars = _bars().with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit(hole, dtype=pl.Float64))
        .otherwise(pl.col(column).cast(pl.Float64))
        .alias(column)
    )
    with pytest.raises(FeatureError, match=r"missing \(null or NaN\)"):
        prepare_bars(bars)


def test_an_infinite_price_is_not_mistaken_for_a_hole() -> None:
    """The fast check's sum is not finite here; the precise one finds no NaN or null."""
    bars = _bars().with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(math.inf).otherwise(pl.col("high")).alias("high")
    )
    assert prepare_bars(bars)["high"][2] == math.inf
