"""What the backtest report shows, computed on the full data (no plotting here).

The report's figures are downsampled for display (`minmax_indices`); everything a trader reads
as a number — metrics, trade PnL, MAE/MFE, per-symbol PnL, period returns — is computed here
from every bar and every fill, so it equals what the engine booked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.backtest.data import BarSeries
from tessera.backtest.results import BacktestResult, Trade, round_trips
from tessera.data.intervals import interval_ns
from tessera.execution.orders import ExitReason

ZERO = Decimal(0)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Period = Literal["1d", "1mo"]

# Runs shorter than this get a daily calendar, longer ones a monthly grid: a month of data in a
# monthly grid is one or two cells, mostly partial.
DAILY_CALENDAR_MAX_DAYS = 92
_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


def minmax_indices(values: npt.NDArray[np.float64], max_points: int) -> I64:
    """Indices of the points to plot: each bucket's lowest and highest, plus the first and last.

    Keeps every extreme of the curve (a drawdown's bottom, a price spike) exactly, unlike
    striding or averaging; ``max_points`` bounds the count (a bucket's min and max count two).
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    buckets = max(1, (max_points - 2) // 2)
    bucket = (np.arange(n, dtype=np.int64) * buckets) // n
    # sorted by bucket, then value: a bucket's first row is its min, its last its max
    order = np.lexsort((values, bucket))
    starts = np.searchsorted(bucket[order], np.arange(buckets), side="left")
    ends = np.searchsorted(bucket[order], np.arange(buckets), side="right") - 1
    keep = np.concatenate([[0, n - 1], order[starts], order[ends]])
    return np.unique(keep).astype(np.int64)


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A trade as the report lists it: PnL (open ones marked at the last close), its excursions
    and duration. MAE/MFE are the worst/best price move against/for the trade while it was on,
    from bar lows/highs, times the trade's largest size (gross of fees); ``None`` without bars."""

    trade: Trade
    is_open: bool  # open at the end of the data (end_of_data, or never marked)
    marked: bool  # its PnL includes the open rest at a last close
    duration_s: float | None
    mae: float | None  # quote, <= 0
    mfe: float | None  # quote, >= 0
    mae_pct: float | None  # of the entry price
    mfe_pct: float | None


def marked_trades(result: BacktestResult, series: Sequence[BarSeries]) -> list[Trade]:
    """``result.trades`` with every trade still open marked to the last close of its symbol.

    `build_result` already closes open positions on paper (reason ``end_of_data``); a result
    whose trades were grouped without marks lists an open trade with ``exit_time=None`` and a
    PnL of minus its fees only. Those are re-grouped here from the fills, marked at the last
    close of the bars given; a symbol without bars stays unmarked (shown as such).
    """
    if all(t.exit_time is not None for t in result.trades):
        return list(result.trades)
    marks = {s.symbol: Decimal(repr(float(s.close[-1]))) for s in series if len(s)}
    ends = [int(s.close_time[-1]) for s in series if len(s)]
    end = int(result.times[-1]) if len(result.times) else (max(ends) if ends else None)
    remarked = {
        (t.symbol, t.strategy, t.entry_time): t
        for t in round_trips(result.fills, marks, end)
        if t.exit_reason == ExitReason.END_OF_DATA.value
    }
    return [
        remarked.get((t.symbol, t.strategy, t.entry_time), t) if t.exit_time is None else t
        for t in result.trades
    ]


def trade_rows(result: BacktestResult, series: Sequence[BarSeries]) -> list[TradeRow]:
    by_symbol = {s.symbol: s for s in series}
    rows = []
    for t in marked_trades(result, series):
        is_open = t.exit_time is None or t.exit_reason == ExitReason.END_OF_DATA.value
        mae = mfe = mae_pct = mfe_pct = None
        bars = by_symbol.get(t.symbol)
        entry = float(t.entry_price)
        if bars is not None and entry > 0:
            end = t.exit_time if t.exit_time is not None else int(bars.close_time[-1]) + 1
            lo_i = int(np.searchsorted(bars.open_time, t.entry_time, side="left"))
            hi_i = int(np.searchsorted(bars.open_time, end, side="left"))
            # the bars the trade was on for (entry fill's bar up to, not including, the exit
            # fill's bar), plus its own fill prices
            prices = [entry] + ([float(t.exit_price)] if t.exit_price is not None else [])
            if hi_i > lo_i:
                low = min(float(bars.low[lo_i:hi_i].min()), *prices)
                high = max(float(bars.high[lo_i:hi_i].max()), *prices)
            else:
                low, high = min(prices), max(prices)
            sign = 1.0 if t.side == "long" else -1.0
            worst, best = (low, high) if sign > 0 else (high, low)
            qty = float(t.qty)
            mae_pct = min(0.0, sign * (worst - entry) / entry)
            mfe_pct = max(0.0, sign * (best - entry) / entry)
            mae, mfe = mae_pct * entry * qty, mfe_pct * entry * qty
        rows.append(
            TradeRow(
                trade=t,
                is_open=is_open,
                marked=t.exit_reason == ExitReason.END_OF_DATA.value,
                duration_s=(t.exit_time - t.entry_time) / 1e9 if t.exit_time is not None else None,
                mae=mae,
                mfe=mfe,
                mae_pct=mae_pct,
                mfe_pct=mfe_pct,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class SymbolPnl:
    """One symbol's PnL over the run, net of fees, in the quote currency: realized by fills
    plus the open position at the last close (unrealized). The backtest books fees in quote."""

    symbol: str
    fills: int
    closed_trades: int
    open_trades: int
    realized: Decimal  # closed parts, net of all the symbol's fees
    unrealized: Decimal  # the open position at the last close
    fees: Decimal
    times: I64  # the symbol's bar close times
    curve: F64  # realized + unrealized at each bar close (float, for the figure)

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def symbol_pnl(result: BacktestResult, bars: BarSeries, trades: Sequence[TradeRow]) -> SymbolPnl:
    recs = [r for r in result.fills if r.fill.symbol == bars.symbol]
    flow = ZERO
    pos = ZERO
    fees = ZERO
    realized_gross = ZERO
    for r in recs:
        signed = r.fill.qty * r.fill.side.sign
        flow -= signed * r.fill.price
        pos += signed
        fees += r.fill.fee
        realized_gross += r.realized_pnl
    mark = Decimal(repr(float(bars.close[-1]))) if len(bars) else ZERO
    total = flow + pos * mark - fees
    realized = realized_gross - fees
    # the curve, in floats: cumulative cash of the fills up to each bar's close plus the
    # position then at that close
    ts = np.array([r.fill.ts_event for r in recs], dtype=np.int64)
    signed_f = np.array([float(r.fill.qty * r.fill.side.sign) for r in recs], dtype=np.float64)
    cash_f = np.array(
        [float(-r.fill.qty * r.fill.side.sign * r.fill.price - r.fill.fee) for r in recs],
        dtype=np.float64,
    )
    upto = np.searchsorted(ts, bars.close_time, side="right")
    cum_pos = np.concatenate([[0.0], np.cumsum(signed_f)])[upto]
    cum_cash = np.concatenate([[0.0], np.cumsum(cash_f)])[upto]
    mine = [r for r in trades if r.trade.symbol == bars.symbol]
    return SymbolPnl(
        symbol=bars.symbol,
        fills=len(recs),
        closed_trades=sum(1 for r in mine if not r.is_open),
        open_trades=sum(1 for r in mine if r.is_open),
        realized=realized,
        unrealized=total - realized,
        fees=fees,
        times=bars.close_time,
        curve=cum_cash + cum_pos * bars.close,
    )


def _initial(result: BacktestResult) -> float:
    return float(result.metrics.get("initial_equity", result.equity[0]))


def drawdown_pct(result: BacktestResult) -> F64:
    """Drawdown in % (<= 0) from the running peak, the initial equity counted as the first
    peak — as `compute_metrics` measures ``max_drawdown``."""
    if not len(result.equity):
        return np.zeros(0, dtype=np.float64)
    peak = np.maximum.accumulate(np.concatenate([[_initial(result)], result.equity]))[1:]
    out: F64 = -(peak - result.equity) / peak * 100.0
    return out


def period_returns(result: BacktestResult, every: Period) -> pl.DataFrame:
    """Return per UTC calendar day or month, from the equity at each period's last bar (the
    first period from the initial equity); ``partial`` marks a period the run covers only
    in part."""
    frame = pl.DataFrame({"t": result.times, "equity": result.equity}).with_columns(
        pl.col("t").cast(pl.Datetime("ns", "UTC")).alias("time")
    )
    ends = (
        frame.group_by_dynamic("time", every=every)
        .agg(
            pl.col("equity").last().alias("close"),
            pl.col("t").first().alias("t_first"),
            pl.col("t").last().alias("t_last"),
        )
        .sort("time")
    )
    prev = pl.concat(
        [pl.Series([_initial(result)]), ends["close"].head(len(ends) - 1)], how="vertical"
    )
    step = int(np.median(np.diff(result.times))) if len(result.times) > 1 else 0
    start = ends["time"].dt.epoch("ns")
    stop = ends["time"].dt.offset_by(every).dt.epoch("ns")
    out = ends.with_columns(
        (pl.col("close") / prev - 1).alias("return"),
        pl.col("time").dt.year().alias("year"),
        pl.col("time").dt.month().alias("month"),
        pl.col("time").dt.day().alias("day"),
    )
    partial = (ends["t_first"] - step > start) | (ends["t_last"] + step < stop)
    return out.with_columns(partial.alias("partial")).drop("t_first", "t_last")


def monthly_returns(result: BacktestResult) -> pl.DataFrame:
    """Return per calendar month (UTC), from the equity at each month's last bar."""
    return period_returns(result, "1mo")


def run_days(result: BacktestResult) -> float:
    return float(result.times[-1] - result.times[0]) / 86_400e9 if len(result.times) > 1 else 0.0


def interval_label(series: Sequence[BarSeries]) -> str:
    """The bar interval(s), from the data's own spacing (median gap between bar opens)."""
    names = {interval_ns(n): n for n in _INTERVALS}
    labels = []
    for s in series:
        if len(s) < 2:
            continue
        step = int(np.median(np.diff(s.open_time)))
        label = names.get(step, f"{step / 1e9:g}s")
        if label not in labels:
            labels.append(label)
    return "/".join(labels)
