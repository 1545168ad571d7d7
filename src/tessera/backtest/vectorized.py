"""The vectorized fast path: `SmaCross` over parameter grids, in NumPy — only where it provably
equals the event engine.

Signals are computed for the whole history at once; the simulation then walks the *trades*
(not the bars) with the event engine's own objects and conventions — market orders at the next
bar's open (or at the signal bar's close), the engine's `FeeSchedule` and `SlippageModel`, the
spot cash check, equity-fraction sizing rounded down to the lot step, cash booked in the
`Portfolio`'s order of operations — so a point gives the fills of `BacktestEngine`, and
`backtest_sma_cross` builds its `BacktestResult` with the results module's own `build_result`
(same metric names, units and float operations).

Where it may run (checked at run time; `NotProvablyEqualError` says why not):

* the strategy is the built-in `sma_cross`, long/flat (``allow_short`` false);
* ``latency_ms`` is 0 and the slippage kind is ``none`` or ``fixed_bps``; no exchange filters
  (the sweep runs the engine without them);
* no risk limit binds on this point's trajectory. The trajectory is replayed through a real
  `RiskEngine`: every order the engine would send goes through `pretrade_denial` with the
  account the engine would show (in its order, with the order-rate window), and the equity of
  every bar the engine marks in position goes through `drawdown_breach`, `RiskEngine.
  update_equity`'s drawdown rule in NumPy (a test holds the two equal). A denial, a
  kill-switch halt or a reduce-only state anywhere refuses the point. As long as neither
  happens the engine's risk engine stays ACTIVE, so its checks saw exactly what the replay
  saw, and the event run takes the same actions.

A refused point runs on the event engine (`tessera.backtest.sweep`); nothing is approximated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.backtest.data import BarSeries
from tessera.backtest.results import BacktestResult, FillRecord, build_result
from tessera.config.models import BacktestConfig, RiskConfig
from tessera.execution.fees import FeeSchedule
from tessera.execution.matching import SlippageKind, SlippageModel
from tessera.execution.orders import ExitReason, Fill, Liquidity, OrderSide, OrderType
from tessera.execution.portfolio import Instrument, Portfolio
from tessera.execution.pretrade import pretrade_denial
from tessera.risk.engine import AccountView, OrderIntent, RiskEngine
from tessera.strategies.builtin import SIZING_BUFFER, SmaCross

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ZERO = Decimal(0)


class NotProvablyEqualError(Exception):
    """The vectorized path would not give the event engine's result here; the message says
    why (a short reason a sweep can count, e.g. ``risk: kill_switch``)."""


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
    reference_price: Decimal  # before slippage
    ts: int  # the fill's time, ns: the bar's open (next_open) or the deciding bar's close


@dataclass(frozen=True)
class VectorResult:
    fills: list[VectorFill]
    final_cash: Decimal
    final_qty: Decimal
    final_equity: Decimal
    equity: F64  # per bar, as the engine marks it
    exposure: F64  # |position| x close per bar, as the engine records it
    denials: list[tuple[int, str, str]]  # buys the cash could not pay, as the engine lists them


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def static_refusal(config: BacktestConfig) -> str | None:
    """Why the configuration alone keeps the vectorized path from equalling the event engine
    (None: it may run, point by point)."""
    if config.latency_ms != 0:
        return "latency_ms > 0"
    if config.slippage.kind not in ("none", "fixed_bps"):
        return f"slippage {config.slippage.kind}"
    return None


def simulate_signals(
    series: BarSeries,
    entries: BoolArray,
    exits: BoolArray,
    config: BacktestConfig,
    size: float = 1.0,
    qty: Decimal | None = None,
    qty_step: Decimal = Decimal("0.00001"),
    *,
    risk: RiskConfig | None = None,
    strategy_id: str = SmaCross.name,
) -> VectorResult:
    """Long/flat simulation of entry/exit signals known at each bar's close, as `SmaCross`
    trades them in the event engine. With ``risk``, raises `NotProvablyEqualError` where a risk
    limit would bind (see the module docstring)."""
    refusal = static_refusal(config)
    if refusal is not None:
        raise NotProvablyEqualError(refusal)
    n = len(series)
    fees = FeeSchedule(config.fees.maker_bps, config.fees.taker_bps)
    slippage = SlippageModel(
        SlippageKind(config.slippage.kind), config.slippage.bps, config.slippage.vol_mult
    )
    guard = RiskEngine(risk) if risk is not None else None
    at_close = config.fill_at == "close"
    taker = Liquidity.TAKER
    buy, sell = OrderSide.BUY, OrderSide.SELL
    size_d = Decimal(str(size))
    close, open_ = series.close, series.open
    close_time, open_time = series.close_time, series.open_time
    cash = config.initial_cash
    held = ZERO
    fills: list[VectorFill] = []
    cash_after: list[float] = []  # the engine's float cash after each fill
    denials: list[tuple[int, str, str]] = []
    bars = np.flatnonzero(entries | exits)
    signals = zip(bars.tolist(), entries[bars].tolist(), exits[bars].tolist(), strict=True)
    for i, entry, exit_ in signals:
        if entry and held == 0:
            side = buy
            if qty is not None:
                want = qty
            else:
                # `_Sized.target_qty`: equity (flat: the cash) x size x buffer / close
                budget = cash * size_d * SIZING_BUFFER
                units = (budget / Decimal(str(float(close[i]))) / qty_step).to_integral_value(
                    ROUND_DOWN
                )
                want = units * qty_step
            if want <= 0:
                continue  # a zero target sends no order
        elif exit_ and held > 0:
            side, want = sell, held
        else:
            continue
        if guard is not None:
            _check_order(guard, series, i, side, want, held, cash, strategy_id)
        fill_bar = i if at_close else i + 1
        if fill_bar >= n:
            break  # sent on the last bar: it never fills
        ref = _d(float(close[i] if at_close else open_[fill_bar]))
        price = slippage.adjust(side, ref, 0.0)
        notional = want * price
        fee = fees.fee(notional, taker)
        # `Portfolio.apply_fill` books ``cash - (qty x sign) x price``, then ``- fee``: for a
        # sell that is ``cash + qty x price`` to the same Decimal (negation is exact)
        if side is buy:
            if notional + fee > cash:
                # the event engine's spot cash check expires such an order
                denials.append((int(close_time[fill_bar]), strategy_id, "insufficient_balance"))
                continue
            cash = cash - notional - fee
            held = want
        else:
            cash = cash + notional - fee
            held = ZERO
        ts = int(close_time[i]) if at_close else int(open_time[fill_bar])
        fills.append(VectorFill(fill_bar, side.value, want, price, fee, ref, ts))
        cash_after.append(float(cash))
    equity, exposure, position = _curves(series, fills, cash_after, config.initial_cash)
    if guard is not None:
        _check_drawdown(guard.config, equity, position)
    final = cash + held * _d(float(series.close[-1])) if n else cash
    return VectorResult(fills, cash, held, final, equity, exposure, denials)


def _check_order(
    guard: RiskEngine,
    series: BarSeries,
    i: int,
    side: OrderSide,
    qty: Decimal,
    held: Decimal,
    cash: Decimal,
    strategy_id: str,
) -> None:
    """The engine's pre-trade step for this order, on the account it would show: no order is
    working (each filled before the next decision), the position held, the bar's close, the
    equity marked at it."""
    now = int(series.close_time[i])
    last = _d(float(series.close[i]))
    account = AccountView(
        positions={series.symbol: held} if held else {},
        last_prices={series.symbol: last},
        open_orders=0,
        equity=cash + held * last,  # as the engine gives it: fractional caps resolve on it
    )
    intent = OrderIntent(
        series.symbol,
        side,
        qty,
        OrderType.MARKET,
        None,
        strategy_id,
        reduce_only=side is OrderSide.SELL,  # an exit: `orders_for_target` reduces
    )
    denial = pretrade_denial(intent, None, guard, account, None, last, now)
    if denial is not None:
        raise NotProvablyEqualError(denial.removeprefix("risk:").removeprefix("filter:"))
    guard.record_sent(now)


def drawdown_breach(equity: F64, risk: RiskConfig) -> int | None:
    """The first index of ``equity`` at which `RiskEngine.update_equity`, fed these values
    in order, leaves ACTIVE (kill-switch or reduce-only drawdown), or None.

    `RiskEngine.update_equity` in NumPy, with its float operations: the peak starts at 0 and
    rises to each higher equity; the drawdown is ``max((peak - eq) / peak * 100, 0)`` (0 while
    the peak is not positive); it is compared with ``>=`` to each threshold that is set. A test
    feeds the same sequences to a `RiskEngine` and requires the same answer.
    """
    limits = [x for x in (risk.max_drawdown_pct, risk.reduce_only_drawdown_pct) if x is not None]
    if not limits or not len(equity):
        return None
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dd = np.where(peak > 0, np.maximum((peak - equity) / peak * 100.0, 0.0), 0.0)
    hits = np.flatnonzero(dd >= min(limits))
    return int(hits[0]) if len(hits) else None


def _check_drawdown(risk: RiskConfig, equity: F64, position: F64) -> None:
    """The engine feeds `RiskEngine.update_equity` the equity of every bar it holds a
    position at; any breach there changes what it does."""
    if drawdown_breach(equity[position != 0], risk) is not None:
        # reduce_only_drawdown_pct is below max_drawdown_pct (the config says so): first
        raise NotProvablyEqualError(
            "kill_switch" if risk.reduce_only_drawdown_pct is None else "reduce_only_drawdown"
        )


def _curves(
    series: BarSeries, fills: list[VectorFill], cash_after: list[float], initial: Decimal
) -> tuple[F64, F64, F64]:
    """Equity, exposure and the float position per bar, as the engine records them: cash is
    the float of the exact cash after each fill, the position a float sum of the fills
    (long/flat: the bought quantity, then exactly 0.0)."""
    n = len(series)
    if not fills:
        return np.full(n, float(initial)), np.zeros(n), np.zeros(n)
    idx = np.fromiter((f.index for f in fills), dtype=np.int64, count=len(fills))
    pos_after = np.array([float(f.qty) if f.side == "BUY" else 0.0 for f in fills])
    # For every bar, the last fill at or before it (-1: none yet).
    last = np.searchsorted(idx, np.arange(n), side="right") - 1
    has = last >= 0
    cash = np.where(has, np.asarray(cash_after)[np.maximum(last, 0)], float(initial))
    pos = np.where(has, pos_after[np.maximum(last, 0)], 0.0)
    equity = np.where(pos != 0, cash + pos * series.close, cash)
    exposure = np.where(pos != 0, np.abs(pos) * series.close, 0.0)
    return equity, exposure, pos


def sma_cross(
    series: BarSeries,
    fast: int,
    slow: int,
    config: BacktestConfig,
    *,
    risk: RiskConfig | None = None,
    **sizing: Any,
) -> VectorResult:
    """`SmaCross(fast, slow, **sizing)` simulated; ``sizing``: size, qty, qty_step."""
    up, down = crossings(sma(series.close, fast), sma(series.close, slow))
    return simulate_signals(series, up, down, config, risk=risk, **sizing)


def backtest_sma_cross(
    series: BarSeries,
    params: Mapping[str, Any],
    config: BacktestConfig,
    risk: RiskConfig | None = None,
) -> BacktestResult:
    """The `BacktestResult` `BacktestEngine(config, risk)` gives for ``SmaCross(**params)`` on
    ``series`` — its metrics equal to the last bit — or `NotProvablyEqualError` where this path
    cannot promise that. The result carries no orders (the fills, trades, equity and metrics
    are the engine's, and its denials: buys the cash could not pay)."""
    strat = SmaCross([series.symbol], **params)  # the strategy's own validation
    if strat.allow_short:
        raise NotProvablyEqualError("allow_short")
    vec = sma_cross(
        series,
        strat.fast,
        strat.slow,
        config,
        risk=risk,
        size=strat.size,
        qty=strat.qty,
        qty_step=strat.qty_step,
    )
    return to_result(series, vec, config, strat.strategy_id, risk)


def to_result(
    series: BarSeries,
    vec: VectorResult,
    config: BacktestConfig,
    strategy_id: str,
    risk: RiskConfig | None = None,
) -> BacktestResult:
    """A `BacktestResult` from a vectorized run: the fills booked in a `Portfolio` (realized
    PnL per fill, as the engine books them), metrics and the risk summary (limits applied,
    none acted) by `build_result`."""
    quote = config.quote_currency
    base = series.symbol.removesuffix(quote)
    portfolio = Portfolio.with_cash(
        quote, config.initial_cash, [Instrument(series.symbol, base, quote)]
    )
    records: list[FillRecord] = []
    for k, f in enumerate(vec.fills, start=1):
        fill = Fill(
            trade_id=str(k),
            client_order_id=f"vectorized-{k}",
            symbol=series.symbol,
            side=OrderSide(f.side),
            price=f.price,
            qty=f.qty,
            fee=f.fee,
            fee_asset=quote,
            liquidity=Liquidity.TAKER,
            ts_event=f.ts,
            strategy=strategy_id,
        )
        realized = portfolio.apply_fill(fill)
        records.append(FillRecord(fill, f.reference_price, realized, ExitReason.SIGNAL))
    if len(series):
        portfolio.mark(series.symbol, _d(float(series.close[-1])))
    if portfolio.cash[quote] != vec.final_cash:  # the simulation's books are the Portfolio's
        raise AssertionError(f"vectorized cash {vec.final_cash} != booked {portfolio.cash[quote]}")
    return build_result(
        config=config,
        times=series.close_time.astype(np.int64, copy=True),
        equity=vec.equity,
        exposure=vec.exposure,
        fills=records,
        orders=[],
        portfolio=portfolio,
        denials=list(vec.denials),
        halted_at=None,
        risk_config=risk,
    )


def sweep_sma_cross(
    series: BarSeries,
    grid: Iterable[tuple[int, int]],
    config: BacktestConfig,
    workers: int = 1,
    risk: RiskConfig | None = None,
) -> pl.DataFrame:
    """Every (fast, slow) pair with fast < slow, best total return first: `run_sweep`'s rows
    (vectorized where it provably equals the event engine, the event engine elsewhere)."""
    from tessera.backtest.sweep import run_sweep

    points: list[dict[str, Any]] = [{"fast": f, "slow": s} for f, s in grid if f < s]
    return run_sweep(
        series,
        "sma_cross",
        points,
        config,
        risk,
        workers=workers,
        sort_by="total_return",
        engine="vectorized",
    )
