"""Fixtures of the optimisation tests: the real BTC bars bundled in samples/ (the same file as
tests/backtest's ``btc_series``), a short slice of them for fast studies, and the default
backtest config (the costs ``tessera backtest`` applies)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tessera.backtest import BarSeries
from tessera.config import BacktestConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SLICE_BARS = 3000  # about two days of 1-minute bars: a trial takes a few milliseconds


@pytest.fixture(scope="session")
def btc_bars() -> pl.DataFrame:
    """The real 1-minute BTC-PERP bars bundled in samples/ (45,031 rows)."""
    df = pl.read_csv(SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz")
    return df.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time"))


@pytest.fixture(scope="session")
def btc_series(btc_bars: pl.DataFrame) -> BarSeries:
    return BarSeries.from_frame("BTCUSDT", btc_bars)


@pytest.fixture(scope="session")
def btc_slice(btc_series: BarSeries) -> BarSeries:
    """The first `SLICE_BARS` real bars: enough for a strategy to trade, quick to search."""
    return btc_series.slice(0, SLICE_BARS)


@pytest.fixture
def backtest_config() -> BacktestConfig:
    """The defaults of ``tessera backtest``: 10,000 USDT, its fees and slippage."""
    return BacktestConfig()


@pytest.fixture
def env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working folder whose data dir (``TESSERA_DATA_DIR``) is inside it, for the
    end-to-end CLI tests."""
    monkeypatch.setenv("TESSERA_DATA_DIR", str(clean_env / "data"))
    return clean_env
