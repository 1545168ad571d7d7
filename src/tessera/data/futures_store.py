"""Perpetual-futures series read from the store: funding rates and mark-price candles.

The backtest reads funding and mark prices from freqtrade's files through
`tessera.data.futures_files` today; these readers return the same shapes from the store, so a
caller can switch source without changing what it does with them:

- `load_mark_klines` gives what `read_mark_prices` gives (``open_time`` UTC ns, ``open, high,
  low, close`` as Float64, no volume: a mark price has none);
- `load_funding_rate_frame` gives what `read_funding_rates` gives (``open_time`` = the funding
  time as the source reported it, ``funding_rate`` Float64), to feed `funding_rates_from_frames`;
- `load_funding_rates` gives what `funding_rates_from_frames` gives (`FundingRate` records at
  the nominal hour, and how many have no mark), but exact: the store keeps Binance's decimals,
  so no float round trip is needed, and a stored ``markPrice`` (REST rows) is used as is.

Nothing is narrowed quietly: a venue, symbol or interval the store does not hold is
`FuturesStoreError` saying what it does hold (an empty window inside a held series is an empty
result, not an error).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from tessera.data.store import ParquetStore, rows_to_table

if TYPE_CHECKING:
    from tessera.execution.perp.funding import FundingRate


class FuturesStoreError(LookupError):
    """The store holds no such venue/symbol/interval series; the message says what it holds."""


HOUR_NS = 3_600_000_000_000


def funding_table(rows: Iterable[tuple[int, str, str | None, int | None]]) -> pa.Table:
    """``funding_rates`` rows from ``(reported time ns, rate, mark price or None, interval
    hours or None)``, decimals as text; the nominal ``funding_time`` is the reported time
    floored to the hour (`nominal_funding_time`)."""
    return rows_to_table(
        "funding_rates",
        (
            {
                "funding_time": reported - reported % HOUR_NS,
                "reported_time": reported,
                "funding_rate": rate,
                "mark_price": mark,
                "interval_hours": hours,
            }
            for reported, rate, mark, hours in rows
        ),
    )


def _held(store: ParquetStore, dataset: str, venue: str, symbol: str) -> ParquetStore:
    """The store of ``venue`` if it holds ``dataset`` for ``symbol``; else `FuturesStoreError`."""
    vstore = store.venue(venue)
    if not vstore.files(dataset, symbol):
        held = sorted(
            f"{p.parent.parent.name.removeprefix('exchange=')}:{p.name.removeprefix('symbol=')}"
            for p in store.root.glob(f"exchange=*/dataset={dataset}/symbol=*")
        )
        raise FuturesStoreError(
            f"the store at {store.root} holds no {dataset} of {symbol} on venue {venue!r}; "
            + (f"it holds {', '.join(held)}" if held else f"it holds no {dataset} at all")
            + " (import Binance's USDⓈ-M archives with `tessera data import`, or backfill with "
            "`tessera data download --venue binance-usdm`)"
        )
    return vstore


def load_mark_klines(
    store: ParquetStore,
    venue: str,
    symbol: str,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Mark-price candles of ``interval`` opening in ``[start, end)``: ``open_time`` and
    ``open, high, low, close`` (Float64), sorted — the frame `read_mark_prices` returns."""
    vstore = _held(store, "mark_klines", venue, symbol)
    frame = (
        vstore.scan("mark_klines", symbol, start, end)
        .filter(pl.col("interval") == interval)
        .collect()
    )
    if frame.is_empty():
        held = vstore.scan("mark_klines", symbol).select("interval").unique().collect()
        intervals = sorted(str(i) for i in held["interval"].to_list())
        if interval not in intervals:
            raise FuturesStoreError(
                f"the store holds mark-price candles of {venue}:{symbol} at "
                f"{', '.join(intervals)} only, not {interval}"
            )
    return frame.select(
        pl.col("open_time").cast(pl.Datetime("ns", "UTC")),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close")),
    )


def _funding_frame(
    store: ParquetStore,
    venue: str,
    symbol: str,
    start: datetime | None,
    end: datetime | None,
) -> pl.DataFrame:
    vstore = _held(store, "funding_rates", venue, symbol)
    return vstore.scan("funding_rates", symbol, start, end).collect()


def load_funding_rate_frame(
    store: ParquetStore,
    venue: str,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Funding rates whose nominal time is in ``[start, end)``: ``open_time`` (the funding
    time as reported, UTC ns) and ``funding_rate`` (Float64) — `read_funding_rates`' frame."""
    frame = _funding_frame(store, venue, symbol, start, end)
    return frame.select(
        pl.col("reported_time").cast(pl.Datetime("ns", "UTC")).alias("open_time"),
        pl.col("funding_rate").cast(pl.Float64),
    )


def load_funding_rates(
    store: ParquetStore,
    venue: str,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    mark_interval: str | None = None,
) -> tuple[list[FundingRate], int]:
    """`FundingRate`s (exact Decimals) at the nominal funding times in ``[start, end)``, and
    how many have no mark — what `funding_rates_from_frames` returns.

    The mark is the row's own ``mark_price`` (Binance's REST ``markPrice``) when stored, else the
    ``open`` of the stored mark-price candle opening at the funding hour (of ``mark_interval``,
    or of any stored interval, the shortest first), as `funding_rates_from_frames` takes it.
    """
    from tessera.execution.perp.funding import FundingRate

    frame = _funding_frame(store, venue, symbol, start, end)
    mark_at = _mark_opens(store.venue(venue), symbol, frame, mark_interval)
    out: list[FundingRate] = []
    missing = 0
    times = frame["funding_time"].dt.epoch("ns").to_list()
    for ts, rate, own in zip(
        times, frame["funding_rate"].to_list(), frame["mark_price"].to_list(), strict=True
    ):
        mark = own if own is not None else mark_at.get(int(ts))
        if mark is None:
            missing += 1
        out.append(FundingRate(int(ts), _dec(rate), None if mark is None else _dec(mark)))
    return out, missing


def _dec(value: object) -> Decimal:
    """A stored decimal128(38, 8) as a Decimal without the scale's trailing zeros."""
    assert isinstance(value, Decimal)
    return value.normalize() if value != 0 else Decimal(0)


def _mark_opens(
    vstore: ParquetStore, symbol: str, rates: pl.DataFrame, interval: str | None
) -> dict[int, Decimal]:
    """Mark opens by open time (ns) at the funding times of ``rates`` that carry no mark."""
    need = rates.filter(pl.col("mark_price").is_null())["funding_time"]
    if need.is_empty() or not vstore.files("mark_klines", symbol):
        return {}
    marks = vstore.scan("mark_klines", symbol).filter(pl.col("open_time").is_in(need.implode()))
    if interval is not None:
        marks = marks.filter(pl.col("interval") == interval)
    frame = marks.select("interval", "open_time", "open").collect()
    from tessera.data.intervals import INTERVAL_NS

    order = sorted(set(frame["interval"].to_list()), key=lambda i: INTERVAL_NS.get(i, 1 << 62))
    out: dict[int, Decimal] = {}
    for name in reversed(order):  # the shortest interval written last wins
        part = frame.filter(pl.col("interval") == name)
        for ts, value in zip(
            part["open_time"].dt.epoch("ns").to_list(), part["open"].to_list(), strict=True
        ):
            out[int(ts)] = value
    return out
