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
