"""Fixtures on the real bundled 1-minute BTC bars (45,031 bars, 2021-12-31 → 2022-02-01)."""

from __future__ import annotations

import polars as pl
import pytest

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.models.dataset import Dataset

HORIZON = 15


@pytest.fixture(scope="session")
def real_bars() -> pl.DataFrame:
    return read_bar_file(SAMPLE_BARS)


def simple_dataset_frame(bars: pl.DataFrame, horizon: int = HORIZON) -> pl.DataFrame:
    """A few causal features and a forward-return label, computed here with polars.

    Independent of the feature library on purpose: these tests are about the models.
    """
    logc = pl.col("close").log()
    ret = logc.diff()
    return bars.select(
        "open_time",
        ret.alias("ret_1"),
        (logc - logc.shift(5)).alias("ret_5"),
        (logc - logc.shift(15)).alias("ret_15"),
        ret.rolling_std(30).alias("vol_30"),
        (
            (pl.col("close") - pl.col("close").rolling_mean(60)) / pl.col("close").rolling_std(60)
        ).alias("z_60"),
        (pl.col("volume").log1p() - pl.col("volume").log1p().rolling_mean(60)).alias("vlm_60"),
        (logc.shift(-horizon) - logc).alias("forward_return"),
        pl.col("open_time").shift(-horizon).alias("event_end"),
    ).with_columns(pl.col("forward_return").alias("label"))


@pytest.fixture(scope="session")
def real_frame(real_bars: pl.DataFrame) -> pl.DataFrame:
    return simple_dataset_frame(real_bars)


@pytest.fixture(scope="session")
def real_dataset(real_frame: pl.DataFrame) -> Dataset:
    return Dataset.from_frame(real_frame)


@pytest.fixture(scope="session")
def sign_dataset(real_frame: pl.DataFrame) -> Dataset:
    """Sign of the forward return with a 2 bps dead zone: classes -1, 0, +1."""
    r = pl.col("forward_return")
    frame = real_frame.with_columns(
        pl.when(r > 2e-4)
        .then(1)
        .when(r < -2e-4)
        .then(-1)
        .otherwise(0)
        .cast(pl.Int64)
        .alias("label")
    )
    return Dataset.from_frame(frame)
