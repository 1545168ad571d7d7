"""Per-symbol attribution of a backtest: what each symbol of a portfolio run contributed.

One row per symbol and a ``total`` row for the whole account:

* ``realized_pnl`` — price PnL of the closed quantity (FIFO lots, `execution.position`, the
  books the engine keeps) minus every fee the symbol's fills paid;
* ``unrealized_pnl`` — the open lots valued at the symbol's last close;
* ``pnl`` — their sum; ``fees`` — fees paid; ``fills``; ``trades`` and ``win_rate`` — round
  trips an order closed (as the run's metrics count them);
* ``exposure_share`` — the symbol's share of the account's gross exposure summed over the
  run's timeline (|position| x close at each step: where the capital was, over time);
* ``time_in_market`` — fraction of the timeline's steps with a position in it;
* ``contribution`` — ``pnl`` / initial cash: the symbols' contributions add up to the run's
  total return.

Why the whole is computed apart: the ``total`` row's PnL is the engine's final equity minus
the initial cash, its ``time_in_market`` the engine's own exposure curve — not sums of the
symbol rows. The symbols adding up to it (exactly, in Decimal: `attribution_rows`) is what
shows the attribution loses or invents nothing; the identity holds because cash moves only
by fills and Position's FIFO lots make realized + unrealized equal the cash flows plus the
marked inventory without rounding. The initial cash is recovered from the result exactly
(final cash minus what the fills moved), so no config is needed.

A perpetual's cash does not move by the notional: its initial wallet is recovered from the
perpetual summary (final wallet − realized PnL + fees − funding), each symbol's funding is in
its ``realized_pnl``, and open lots are marked at the final **mark** price, as the engine marks
them, so the rows still add up to the account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.backtest.data import BarSeries
from tessera.backtest.results import BacktestResult
from tessera.execution.position import Position

ZERO = Decimal(0)
TOTAL = "total"
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SymbolAttribution:
    """One row of `symbol_attribution`, money exact."""

    symbol: str
    realized_pnl: Decimal  # net of fees
    unrealized_pnl: Decimal
    fees: Decimal
    fills: int
    trades: int
    wins: int
    exposure_share: float
    time_in_market: float
    initial_cash: Decimal

    @property
    def pnl(self) -> Decimal:
        return self.realized_pnl + self.unrealized_pnl

    @property
    def contribution(self) -> Decimal:
        return self.pnl / self.initial_cash

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else float("nan")


def _d(x: float) -> Decimal:
    return Decimal(repr(x))  # as the engine marks a float close


def initial_cash(result: BacktestResult) -> Decimal:
    """The cash the run started with: final cash minus what every fill moved (exact); for a
    perpetual, the initial wallet from the perpetual summary."""
    if result.perp is not None:
        p = result.perp
        return p.final_wallet - p.realized_pnl + p.fees_paid - p.funding_total
    moved = ZERO
    for rec in result.fills:
        f = rec.fill
        moved -= f.qty * f.side.sign * f.price + f.fee
    return result.final_cash - moved


def attribution_rows(
    result: BacktestResult, series: Sequence[BarSeries]
) -> list[SymbolAttribution]:
    """The rows of `symbol_attribution` in Decimal: one per series, in their order, then
    ``total``. ``series`` are the bars the run was given (their last closes mark the open
    lots, as the engine marked them)."""
    by_symbol = {s.symbol: s for s in series}
    if len(by_symbol) != len(series):
        raise ValueError("a symbol appears twice in the series")
    quotes = {rec.fill.fee_asset for rec in result.fills}
    if len(quotes) > 1:
        raise ValueError(f"fees in several assets {sorted(quotes)}: attribution needs one")
    strays = sorted({rec.fill.symbol for rec in result.fills} - set(by_symbol))
    if strays:
        raise ValueError(f"the result has fills of {strays}, which have no series here")
    start = initial_cash(result)
    times = result.times
    gross = np.zeros((len(series), len(times)), dtype=np.float64)
    rows: list[SymbolAttribution] = []
    for k, s in enumerate(series):
        pos = Position(s.symbol)
        fees = ZERO
        fill_ts: list[int] = []
        fill_qty: list[float] = []
        for rec in result.fills:
            f = rec.fill
            if f.symbol != s.symbol:
                continue
            signed = f.qty * f.side.sign
            pos.apply(signed, f.price, f.ts_event)
            fees += f.fee
            fill_ts.append(f.ts_event)
            fill_qty.append(float(signed))
        last = _d(float(s.close[-1])) if len(s) else None
        funding = ZERO
        if result.perp is not None:  # marked at the mark; funding is the symbol's own PnL
            last = result.perp.final_marks.get(s.symbol, last)
            funding = result.perp.funding_by_symbol.get(s.symbol, ZERO)
        unrealized = pos.unrealized_pnl(last) if last is not None and pos.lots else ZERO
        gross[k] = _gross_exposure(s, np.asarray(fill_ts, np.int64), np.asarray(fill_qty), times)
        closed = [t for t in result.trades if t.symbol == s.symbol and t.closed_by_order]
        rows.append(
            SymbolAttribution(
                symbol=s.symbol,
                realized_pnl=pos.realized_pnl - fees + funding,
                unrealized_pnl=unrealized,
                fees=fees,
                fills=len(fill_ts),
                trades=len(closed),
                wins=sum(1 for t in closed if t.pnl > 0),
                exposure_share=0.0,
                time_in_market=float(np.mean(gross[k] > 0)) if len(times) else 0.0,
                initial_cash=start,
            )
        )
    summed = float(gross.sum())
    shares = gross.sum(axis=1) / summed if summed > 0 else np.zeros(len(series))
    rows = [replace(r, exposure_share=float(sh)) for r, sh in zip(rows, shares, strict=True)]
    realized = sum((r.realized_pnl for r in rows), ZERO)
    closed_all = [t for t in result.trades if t.closed_by_order]
    rows.append(
        SymbolAttribution(
            symbol=TOTAL,
            realized_pnl=realized,
            # the whole's PnL is the engine's: final equity over the initial cash
            unrealized_pnl=result.final_equity - start - realized,
            fees=sum((rec.fill.fee for rec in result.fills), ZERO),
            fills=len(result.fills),
            trades=len(closed_all),
            wins=sum(1 for t in closed_all if t.pnl > 0),
            exposure_share=1.0 if summed > 0 else 0.0,
            time_in_market=float(np.mean(result.exposure > 0)) if len(times) else 0.0,
            initial_cash=start,
        )
    )
    return rows


def _gross_exposure(
    s: BarSeries, fill_ts: npt.NDArray[np.int64], fill_qty: F64, times: npt.NDArray[np.int64]
) -> F64:
    """|position| x last close at each step of the run's timeline: the position after every
    fill up to the step, the close of the symbol's last bar closed by then (0 before its
    first bar: no price, no position possible)."""
    held = np.zeros(len(times))
    if len(fill_ts):
        cum = np.cumsum(fill_qty)
        i = np.searchsorted(fill_ts, times, side="right") - 1
        held = np.where(i >= 0, cum[np.maximum(i, 0)], 0.0)
    j = np.searchsorted(s.close_time, times, side="right") - 1
    close = np.where(j >= 0, s.close[np.maximum(j, 0)], 0.0) if len(s) else np.zeros(len(times))
    out: F64 = np.abs(held) * close
    return out


def symbol_attribution(result: BacktestResult, series: Sequence[BarSeries]) -> pl.DataFrame:
    """One row per symbol and a ``total`` row (see the module docstring); money as float64
    for display — `attribution_rows` has the exact values."""
    rows = attribution_rows(result, series)
    return pl.DataFrame(
        {
            "symbol": [r.symbol for r in rows],
            "realized_pnl": [float(r.realized_pnl) for r in rows],
            "unrealized_pnl": [float(r.unrealized_pnl) for r in rows],
            "pnl": [float(r.pnl) for r in rows],
            "fees": [float(r.fees) for r in rows],
            "fills": [r.fills for r in rows],
            "trades": [r.trades for r in rows],
            "win_rate": [r.win_rate for r in rows],
            "exposure_share": [r.exposure_share for r in rows],
            "time_in_market": [r.time_in_market for r in rows],
            "contribution": [float(r.contribution) for r in rows],
        },
        schema={
            "symbol": pl.String,
            "realized_pnl": pl.Float64,
            "unrealized_pnl": pl.Float64,
            "pnl": pl.Float64,
            "fees": pl.Float64,
            "fills": pl.Int64,
            "trades": pl.Int64,
            "win_rate": pl.Float64,
            "exposure_share": pl.Float64,
            "time_in_market": pl.Float64,
            "contribution": pl.Float64,
        },
    )
