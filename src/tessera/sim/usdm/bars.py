"""USDⓈ-M bar mode: a perpetual replayed from candles, with its mark klines and funding history.

Why: the bundled USDⓈ-M recording is 120 s long, has no ``@markPrice`` stream and no funding time
inside, so the simulator could not settle funding on it. Bars can: the bundled real Binance
XRP/USDT perpetual data (``samples/freqtrade/futures/``: 1h candles, 1h and 8h mark klines, a
month of 8h funding rates) span several funding times. This module turns those files into a
`UsdmBarMarket`: the candles are replayed as closed ``@kline_<interval>`` events exactly as the
spot bar mode replays its bars (`tessera.sim.bars`), so our orders are matched bar by bar by
the same `tessera.sim.bar_matching` rules, and the mark and funding files ride along:

* **mark**: one sample per candle, released with it: the close of the mark kline opening at the
  candle's open (its high and low are what the liquidation check looks at). A candle the mark
  file does not cover (the bundled 1h mark file ends 2021-11-19 09:00, the candles 2021-11-21
  04:00) is marked at the candle's own close, and `UsdmBarMarket.mark_source` says so; without
  a mark file every candle is marked at its close.
* **funding**: the rows of the funding file as `FundingRate` records (`funding_rates_from_frames`:
  the nominal funding hour, and the mark at it from the mark file, the open of the mark kline
  opening at that hour). The replay settles one when its clock passes the funding time
  (`tessera.sim.usdm.trading`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    as_decimal,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.execution.perp.funding import FundingRate
from tessera.sim.bars import bar_interval, kline_table
from tessera.sim.market import SimMarket
from tessera.sim.payloads import INTERVAL_MS
from tessera.sim.usdm.market import usdm_exchange_info

SAMPLE_BARS = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"
SAMPLE_SYMBOL = "XRPUSDT"
NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class MarkBar:
    """The mark over one candle: its close is the mark after the candle, high/low its range."""

    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    from_mark_file: bool


class UsdmBarMarket(SimMarket):
    """A `SimMarket` of perpetual candles (one symbol) with the mark per candle and the funding
    history; served with the fapi exchangeInfo entry of the symbol."""

    symbol: str
    interval: str
    mark_bars: list[MarkBar]  # one per candle, in candle order
    funding: list[FundingRate]  # ascending nominal funding times
    mark_source: str
    funding_source: str


def usdm_bar_market(
    bars: Path = SAMPLE_BARS,
    symbol: str = SAMPLE_SYMBOL,
    mark: Path | None = SAMPLE_MARK_1H,
    funding: Path | None = SAMPLE_FUNDING,
) -> UsdmBarMarket:
    """The perpetual ``symbol`` replayed from the candles of ``bars`` (.feather, .parquet, .csv;
    default: the bundled XRP/USDT 1h candles), marked from ``mark`` (mark klines; None = the
    candle closes) and funded from ``funding`` (freqtrade's funding-rate file; None = no
    funding). Errors name the file."""
    from tessera.data.barfile import read_bar_file

    symbol = symbol.upper()
    info = usdm_exchange_info([symbol])  # a symbol the fapi file lacks: an error naming it
    frame = read_bar_file(Path(bars)).drop_nulls(["open", "high", "low", "close"])
    frame = frame.with_columns(pl.col("volume").fill_null(0.0))
    interval = bar_interval(Path(bars), frame)
    base = SimMarket.from_tables(klines={symbol: kline_table(frame, interval)})
    market = UsdmBarMarket(base.frames, exchange_info=info)
    market.symbol, market.interval = symbol, interval
    step = INTERVAL_MS[interval]
    assert step is not None  # `bar_interval` names fixed-length intervals only
    marks: dict[int, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
    mark_frame = None
    if mark is not None:
        mark_frame = read_mark_prices(Path(mark))
        for t, o, h, lo, c in zip(
            mark_frame["open_time"].dt.epoch("ms").to_list(),
            mark_frame["open"].to_list(),
            mark_frame["high"].to_list(),
            mark_frame["low"].to_list(),
            mark_frame["close"].to_list(),
            strict=True,
        ):
            marks[int(t)] = (as_decimal(o), as_decimal(h), as_decimal(lo), as_decimal(c))
    market.mark_bars = []
    covered = 0
    for t, o, h, lo, c in zip(
        frame["open_time"].dt.epoch("ms").to_list(),
        frame["open"].to_list(),
        frame["high"].to_list(),
        frame["low"].to_list(),
        frame["close"].to_list(),
        strict=True,
    ):
        got = marks.get(int(t))
        if got is not None:
            covered += 1
            market.mark_bars.append(MarkBar(int(t), int(t) + step - 1, *got, True))
        else:
            market.mark_bars.append(
                MarkBar(int(t), int(t) + step - 1, as_decimal(o), as_decimal(h),
                        as_decimal(lo), as_decimal(c), False)
            )  # fmt: skip
    n = len(market.mark_bars)
    if mark is None:
        market.mark_source = "the candle closes (no mark file)"
    elif covered == n:
        market.mark_source = f"mark klines {Path(mark).name}"
    else:
        market.mark_source = (
            f"mark klines {Path(mark).name} for {covered} of {n} candles, the candle close "
            "for the others"
        )
    market.funding = []
    market.funding_source = "none (no funding file)"
    if funding is not None:
        rates, _ = funding_rates_from_frames(read_funding_rates(Path(funding)), mark_frame)
        market.funding = sorted(rates, key=lambda r: r.ts_ns)
        market.funding_source = f"{Path(funding).name} ({len(rates)} funding times)"
    return market


def symbol_from_file_name(path: Path) -> str | None:
    """``XRP_USDT_USDT-1h-futures.feather`` -> ``XRPUSDT`` (freqtrade's futures file names),
    else None."""
    head = Path(path).name.split("-", 1)[0]
    parts = head.split("_")
    if len(parts) == 3 and parts[1] == parts[2] and all(p.isalnum() for p in parts):
        return (parts[0] + parts[1]).upper()
    return None
