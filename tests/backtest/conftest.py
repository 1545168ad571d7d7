from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tessera.backtest import BarSeries

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="session")
def btc_bars() -> pl.DataFrame:
    """The real 1-minute BTC-PERP bars bundled in samples/ (45,031 rows)."""
    df = pl.read_csv(SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz")
    return df.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time"))


@pytest.fixture(scope="session")
def btc_series(btc_bars: pl.DataFrame) -> BarSeries:
    return BarSeries.from_frame("BTCUSDT", btc_bars)
