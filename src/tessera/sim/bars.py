"""OHLCV bar files as data the simulator replays (closed ``@kline_<interval>`` events and REST
klines; the interval is the file's own, read from its open times: 1m for research bars, 1h for
freqtrade's perpetual candles; finer intervals than the file's are not served).

For bar data without trades or a book: research bars (the bundled month of 1m BTC bars, any
exported store query) replayed so that the bot's 1m strategies and models can run on them.
With a `TradingEngine` on the simulator, orders on such a market are matched in bar mode
(`tessera.sim.bar_matching`): on the replayed bars, by the backtest's rules and timing, so that
a dev bot and a backtest on the same bars get the same fills.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from tessera.backtest.bars_io import read_bar_file
from tessera.sim.market import SimMarket
from tessera.sim.payloads import INTERVAL_MS


def kline_table(frame: pl.DataFrame, interval: str = "1m") -> pa.Table:
    """OHLCV bars of ``interval`` (default 1m) as a ``KLINES`` Arrow table for
    `SimMarket.from_tables`.

    Columns a generic bar file lacks are derived or zero: quote volume = volume x close,
    trade count and taker volumes 0.
    """
    dec = pl.Decimal(38, 8)
    span = INTERVAL_MS.get(interval)
    if span is None:  # 1M bars have no fixed length; 1s is not a bar file's
        raise ValueError(f"bars of {interval!r} cannot be replayed (use 1m to 1w)")
    cols = set(frame.columns)
    quote = (
        pl.col("quote_volume").cast(dec)
        if "quote_volume" in cols
        else (pl.col("volume") * pl.col("close")).round(8).cast(dec)
    )
    return frame.select(
        pl.lit(interval).alias("interval"),
        pl.col("open_time").cast(pl.Datetime("ns", "UTC")),
        (pl.col("open_time") + pl.duration(milliseconds=span - 1))
        .cast(pl.Datetime("ns", "UTC"))  # the schema's unit (the sum would be in µs)
        .alias("close_time"),
        *(pl.col(c).cast(dec) for c in ("open", "high", "low", "close", "volume")),
        quote.alias("quote_volume"),
        pl.lit(0, dtype=pl.Int64).alias("trades"),
        pl.lit(0).cast(dec).alias("taker_buy_base"),
        pl.lit(0).cast(dec).alias("taker_buy_quote"),
    ).to_arrow()


def market_from_bar_file(path: Path, symbol: str) -> SimMarket:
    """A market replaying the bars of ``path`` as ``symbol`` (a symbol exchangeInfo lists), at
    their own interval (`bar_interval`: 1m for the bundled BTC month)."""
    frame = read_bar_file(path).drop_nulls(["open", "high", "low", "close"])
    frame = frame.with_columns(pl.col("volume").fill_null(0.0))
    interval = bar_interval(Path(path), frame) if len(frame) > 1 else "1m"
    return SimMarket.from_tables(klines={symbol.upper(): kline_table(frame, interval)})


def bar_interval(path: Path, frame: pl.DataFrame) -> str:
    """The candles' interval: the smallest step between two open times, one of Binance's."""
    steps = frame["open_time"].dt.epoch("ms").diff().drop_nulls()
    if steps.is_empty():
        raise ValueError(f"{path}: fewer than two bars; the interval cannot be told")
    step = int(steps.min())  # type: ignore[arg-type]
    names = [k for k, v in INTERVAL_MS.items() if v == step and k != "1s"]
    if not names:
        raise ValueError(
            f"{path}: bars {step} ms apart, which is not one of Binance's kline intervals"
        )
    return names[0]
