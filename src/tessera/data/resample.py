"""Bars from trades: time bars of any interval (Binance kline semantics), volume and dollar bars.

Time bars follow the exchange's klines: ``open_time`` aligned to the interval (UTC), OHLC from
the first/max/min/last trade, volume and quote volume summed, trade count, and taker-buy volume
(trades where the buyer was the taker, i.e. ``is_buyer_maker`` is false). Bars exist only where
trades do unless ``fill_empty`` (then empty bars repeat the previous close with zero volume).
Sums are exact (decimal arithmetic) when the input is decimal.
"""

from __future__ import annotations

import polars as pl

TIME_COLUMN = "trade_time"


def time_bars(
    trades: pl.DataFrame | pl.LazyFrame, every: str = "1m", fill_empty: bool = False
) -> pl.DataFrame:
    """Trades (``trade_time``, ``price``, ``qty``, ``is_buyer_maker``) -> OHLCV bars."""
    lf = trades.lazy().sort(TIME_COLUMN)
    quote = pl.col("price") * pl.col("qty")
    taker = ~pl.col("is_buyer_maker")
    bars = (
        lf.group_by_dynamic(TIME_COLUMN, every=every, closed="left", label="left")
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("qty").sum().alias("volume"),
            quote.sum().alias("quote_volume"),
            pl.len().cast(pl.Int64).alias("trades"),
            pl.col("qty").filter(taker).sum().alias("taker_buy_base"),
            quote.filter(taker).sum().alias("taker_buy_quote"),
        )
        .rename({TIME_COLUMN: "open_time"})
        .collect()
    )
    if fill_empty and len(bars) > 1:
        full = pl.datetime_range(
            bars["open_time"][0], bars["open_time"][-1], every, eager=True, time_zone="UTC"
        ).alias("open_time")
        bars = (
            pl.DataFrame(full)
            .join(bars, on="open_time", how="left")
            .with_columns(pl.col("close").forward_fill())
            .with_columns(
                pl.col("open").fill_null(pl.col("close")),
                pl.col("high").fill_null(pl.col("close")),
                pl.col("low").fill_null(pl.col("close")),
                pl.col("trades").fill_null(0),
            )
        )
    return bars


def _threshold_bars(
    trades: pl.DataFrame | pl.LazyFrame, measure: pl.Expr, threshold: float
) -> pl.DataFrame:
    if threshold <= 0:
        raise ValueError("threshold must be > 0")
    lf = trades.lazy().sort(TIME_COLUMN).with_columns(measure.cast(pl.Float64).alias("_m"))
    # A bar closes with the trade that takes the running total past the next multiple.
    lf = lf.with_columns(
        ((pl.col("_m").cum_sum() - pl.col("_m")) / threshold).floor().cast(pl.Int64).alias("_bar")
    )
    return (
        lf.group_by("_bar", maintain_order=True)
        .agg(
            pl.col(TIME_COLUMN).first().alias("open_time"),
            pl.col(TIME_COLUMN).last().alias("close_time"),
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("qty").sum().alias("volume"),
            (pl.col("price") * pl.col("qty")).sum().alias("quote_volume"),
            pl.len().cast(pl.Int64).alias("trades"),
        )
        .drop("_bar")
        .collect()
    )


def volume_bars(trades: pl.DataFrame | pl.LazyFrame, threshold: float) -> pl.DataFrame:
    """A new bar every ``threshold`` base units traded."""
    return _threshold_bars(trades, pl.col("qty"), threshold)


def dollar_bars(trades: pl.DataFrame | pl.LazyFrame, threshold: float) -> pl.DataFrame:
    """A new bar every ``threshold`` quote units (e.g. USDT) traded."""
    return _threshold_bars(trades, pl.col("price") * pl.col("qty"), threshold)


def resample_klines(frame: pl.DataFrame, stored: str, every: str) -> tuple[pl.DataFrame, int]:
    """Shorter klines -> ``every`` klines, by Binance's rules; and the count of partial bars.

    A bar opens at the interval's UTC boundary; open is the first bar's open, high the highest
    high, low the lowest low, close the last close; volumes, quote volumes, trade counts and
    taker-buy volumes are summed (exactly, when the store's decimals come in). A bar whose base
    bars do not all exist is *partial*: the first and last ones (a window's edge cut them) are
    dropped, inner ones (gaps in the data) are kept and counted, for the caller to report.
    """
    from tessera.data.intervals import INTERVAL_NS

    width = INTERVAL_NS[every]
    base = INTERVAL_NS[stored]
    if frame.is_empty():
        return frame.select([c for c in frame.columns if c != "interval"]), 0
    sums = [
        c
        for c in ("volume", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
        if c in frame.columns
    ]
    lf = frame.lazy().sort("open_time")
    out = (
        lf.group_by_dynamic("open_time", every=_polars_every(every), closed="left", label="left")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            *[pl.col(c).sum() for c in sums],
            pl.len().alias("_n"),
        )
        .collect()
    )
    full = width // base
    n = out["_n"]
    keep = pl.Series([True] * len(out))
    if len(out) and int(n[0]) < full:
        keep[0] = False
    if len(out) > 1 and int(n[-1]) < full:
        keep[len(out) - 1] = False
    out = out.filter(keep)
    partial = int((out["_n"] < full).sum())
    close_time = (pl.col("open_time").dt.epoch("ns") + (width - 1)).cast(pl.Datetime("ns", "UTC"))
    return out.drop("_n").with_columns(close_time.alias("close_time")), partial


def _polars_every(interval: str) -> str:
    """Binance interval -> polars duration ("1m" is a minute there, "1mo" a month in polars)."""
    unit = interval[-1]
    return interval[:-1] + {"s": "s", "m": "m", "h": "h", "d": "d"}[unit]
