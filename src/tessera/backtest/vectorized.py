"""The vectorized fast path: signal strategies over parameter grids, in NumPy.

Signals are computed for the whole history at once; the simulation then walks the *trades*
(not the bars) with the event engine's own conventions — market orders at the next bar's open
(or at the signal bar's close), taker fees and fixed-bps slippage, spot cash limits, equity-
fraction sizing rounded down to the lot step — so a sweep point can be re-run in the event
engine and give the same fills (the tests check this on the real data).

Scope: long-only (or long/flat) signal strategies driven by entry/exit booleans; anything with
limit or stop orders, partial fills, latency or risk interaction belongs in the event engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.backtest.data import BarSeries
from tessera.config.models import BacktestConfig
from tessera.strategies.builtin import SIZING_BUFFER

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BPS = Decimal("0.0001")
ZERO = Decimal(0)


def sma(close: F64, n: int) -> F64:
    """Rolling mean as ``(cumsum[i] - cumsum[i-n]) / n`` (NaN for the first n-1 bars)."""
    if n < 1:
        raise ValueError(f"window must be >= 1, got {n}")
    cs = np.concatenate([[0.0], np.cumsum(close)])
    out = np.full(len(close), np.nan)
    if len(close) >= n:
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


def crossings(fast: F64, slow: F64) -> tuple[BoolArray, BoolArray]:
    """Strict crossings: up where diff goes from < 0 to > 0, down from > 0 to < 0."""
    diff = fast - slow
    prev = np.concatenate([[np.nan], diff[:-1]])
    with np.errstate(invalid="ignore"):
        up = (prev < 0) & (diff > 0)
        down = (prev > 0) & (diff < 0)
    return up, down


@dataclass(frozen=True)
class VectorFill:
    index: int  # bar index of the fill
    side: str  # "BUY" | "SELL"
    qty: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class VectorResult:
    fills: list[VectorFill]
    final_cash: Decimal
    final_qty: Decimal
    final_equity: Decimal
    equity: F64


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def simulate_signals(
    series: BarSeries,
    entries: BoolArray,
    exits: BoolArray,
    config: BacktestConfig,
    size: float = 1.0,
    qty: Decimal | None = None,
    qty_step: Decimal = Decimal("0.00001"),
) -> VectorResult:
    """Long/flat simulation of entry/exit signals known at each bar's close."""
    if config.slippage.kind not in ("none", "fixed_bps"):
        raise ValueError("the vectorized path supports slippage kinds none and fixed_bps")
    n = len(series)
    slip = config.slippage.bps * BPS if config.slippage.kind == "fixed_bps" else ZERO
    rate = config.fees.taker_bps * BPS
    at_close = config.fill_at == "close"
    cash = config.initial_cash
    held = ZERO
    fills: list[VectorFill] = []
    signal_bars = np.flatnonzero(entries | exits)
    for i in signal_bars.tolist():
        fill_bar = i if at_close else i + 1
        if fill_bar >= n:
            break
        ref = _d(float(series.close[i] if at_close else series.open[fill_bar]))
        if entries[i] and held == 0:
            if qty is not None:
                want = qty
            else:
                equity = cash + held * _d(float(series.close[i]))
                budget = equity * Decimal(repr(size)) * SIZING_BUFFER
                units = (budget / _d(float(series.close[i])) / qty_step).to_integral_value(
                    ROUND_DOWN
                )
                want = units * qty_step
            if want <= 0:
                continue
            price = ref + ref * slip
            fee = want * price * rate
            if want * price + fee > cash:
                continue  # the event engine's spot cash check expires such an order
            cash -= want * price + fee
            held = want
            fills.append(VectorFill(fill_bar, "BUY", want, price, fee))
        elif exits[i] and held > 0:
            price = ref - ref * slip
            fee = held * price * rate
            cash += held * price - fee
            fills.append(VectorFill(fill_bar, "SELL", held, price, fee))
            held = ZERO
    curve = _equity_curve(series, fills, config.initial_cash)
    final = cash + held * _d(float(series.close[-1])) if n else cash
    return VectorResult(fills, cash, held, final, curve)


def _equity_curve(series: BarSeries, fills: list[VectorFill], initial: Decimal) -> F64:
    """cash + position * close per bar, with cash and position stepping at each fill."""
    n = len(series)
    if not fills:
        return np.full(n, float(initial))
    idx = np.fromiter((f.index for f in fills), dtype=np.int64, count=len(fills))
    cash_after = np.empty(len(fills))
    pos_after = np.empty(len(fills))
    c, q = initial, ZERO
    for k, f in enumerate(fills):
        sign = 1 if f.side == "BUY" else -1
        c -= sign * f.qty * f.price + f.fee
        q += sign * f.qty
        cash_after[k], pos_after[k] = float(c), float(q)
    # For every bar, the last fill at or before it (-1: none yet).
    last = np.searchsorted(idx, np.arange(n), side="right") - 1
    has = last >= 0
    cash = np.where(has, cash_after[np.maximum(last, 0)], float(initial))
    pos = np.where(has, pos_after[np.maximum(last, 0)], 0.0)
    return cash + pos * series.close


def sma_cross(
    series: BarSeries, fast: int, slow: int, config: BacktestConfig, **sizing: object
) -> VectorResult:
    up, down = crossings(sma(series.close, fast), sma(series.close, slow))
    return simulate_signals(series, up, down, config, **sizing)  # type: ignore[arg-type]


def _sweep_one(args: tuple[BarSeries, int, int, BacktestConfig]) -> dict[str, float]:
    series, fast, slow, config = args
    res = sma_cross(series, fast, slow, config)
    eq = res.equity
    peak = np.maximum.accumulate(eq)
    rets = np.diff(eq) / eq[:-1]
    std = float(np.std(rets)) if len(rets) > 1 else 0.0
    return {
        "fast": float(fast),
        "slow": float(slow),
        "final_equity": float(res.final_equity),
        "total_return": float(res.final_equity / config.initial_cash - 1),
        "trades": float(sum(1 for f in res.fills if f.side == "SELL")),
        "max_drawdown": float(((peak - eq) / peak).max()),
        "sharpe_per_bar": float(np.mean(rets) / std) if std else float("nan"),
    }


def sweep_sma_cross(
    series: BarSeries,
    grid: Iterable[tuple[int, int]],
    config: BacktestConfig,
    workers: int = 1,
) -> pl.DataFrame:
    """Run every (fast, slow) pair; ``workers > 1`` uses local processes."""
    jobs = [(series, f, s, config) for f, s in grid if f < s]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_sweep_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        rows = [_sweep_one(j) for j in jobs]
    return pl.DataFrame(rows).sort("total_return", descending=True)
