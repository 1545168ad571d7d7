"""Real bars for the feature tests (nothing here is invented).

* ``real_bars``: the bundled month of 1-minute BTC bars (45,031 bars).
* ``flow_bars``: 1-minute bars with taker-buy volume, resampled from 12,477 real Binance XRP/ETH
  aggregate trades (freqtrade's test data); bars exist only where trades happened.
* ``book_bars``: 1-second bars of the real Binance BTCUSDT bookTicker stream (hftbacktest
  recordings, 2024-08-08 23:54 to 2024-08-09 00:05): the top of book at each second's last
  update, mid-price OHLC.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import polars as pl
import pytest

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.data.resample import time_bars
from tessera.sim.recording import load_recording

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="session")
def real_bars() -> pl.DataFrame:
    return read_bar_file(SAMPLE_BARS)


@pytest.fixture(scope="session")
def flow_bars() -> pl.DataFrame:
    with gzip.open(SAMPLES / "freqtrade" / "XRP_OLD-trades.json.gz") as fh:
        raw = json.loads(fh.read())
    trades = pl.DataFrame(
        {
            "trade_time": [t["info"]["T"] for t in raw],
            "price": [float(t["info"]["p"]) for t in raw],
            "qty": [float(t["info"]["q"]) for t in raw],
            "is_buyer_maker": [bool(t["info"]["m"]) for t in raw],
        }
    ).with_columns(pl.col("trade_time").cast(pl.Datetime("ms", "UTC")))
    bars = time_bars(trades, "1m")
    return bars.with_columns(pl.col("open_time").cast(pl.Datetime("ns", "UTC")))


@pytest.fixture(scope="session")
def book_bars() -> pl.DataFrame:
    spot = SAMPLES / "binance-raw-ws" / "spot"
    rec = load_recording([spot / "btcusdt_20240808.gz", spot / "btcusdt_20240809.gz"])
    rows = []
    for f in rec.frames:
        if f.kind != "bookTicker":
            continue
        d = orjson.loads(f.data)
        rows.append((f.recv_ns, float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    ticks = pl.DataFrame(
        rows, schema=["recv_ns", "bid_price", "bid_qty", "ask_price", "ask_qty"], orient="row"
    ).with_columns(
        pl.from_epoch("recv_ns", "ns").dt.replace_time_zone("UTC").alias("t"),
        ((pl.col("bid_price") + pl.col("ask_price")) / 2).alias("mid"),
    )
    return (
        ticks.group_by_dynamic("t", every="1s", label="left", closed="left")
        .agg(
            pl.col("mid").first().alias("open"),
            pl.col("mid").max().alias("high"),
            pl.col("mid").min().alias("low"),
            pl.col("mid").last().alias("close"),
            pl.len().cast(pl.Float64).alias("volume"),  # updates per second, a tick volume
            pl.col("bid_price").last(),
            pl.col("bid_qty").last(),
            pl.col("ask_price").last(),
            pl.col("ask_qty").last(),
        )
        .rename({"t": "open_time"})
        .with_columns(pl.col("open_time").cast(pl.Datetime("ns", "UTC")))
    )
