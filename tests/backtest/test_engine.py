"""The event-driven engine on the real bundled bars: conventions, determinism, risk."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from loose_risk import LOOSE_RISK

from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig
from tessera.execution.orders import OrderSide, OrderStatus, OrderType, TimeInForce
from tessera.strategies import SmaCross, Strategy
from tessera.strategies.base import Bar, StrategyContext

D = Decimal


def cfg(**kw: Any) -> BacktestConfig:
    base: dict[str, Any] = {"fees": {"maker_bps": 0, "taker_bps": 0}, "slippage": {"kind": "none"}}
    base.update(kw)
    return BacktestConfig.model_validate(base)


class Scripted(Strategy):
    """Submits given orders at given bar indices; records what it saw."""

    name = "scripted"

    def __init__(self, symbols: list[str], plan: dict[int, list[dict[str, Any]]]) -> None:
        super().__init__(symbols)
        self.plan = plan
        self.i = -1
        self.orders: list[Any] = []
        self.fills: list[Any] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.i += 1
        for spec in self.plan.get(self.i, []):
            self.orders.append(ctx.submit_order(bar.symbol, **spec))

    def on_fill(self, fill: Any, ctx: StrategyContext) -> None:
        self.fills.append(fill)


def run(
    series: BarSeries, plan: dict[int, list[dict[str, Any]]], **kw: Any
) -> tuple[Any, Scripted]:
    strat = Scripted([series.symbol], plan)
    res = BacktestEngine(cfg(**kw), LOOSE_RISK).run([series], [strat])
    return res, strat


def test_market_order_fills_at_next_open(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    _, strat = run(s, {5: [{"side": OrderSide.BUY, "qty": D("0.01")}]})
    (fill,) = strat.fills
    assert fill.price == D(repr(float(s.open[6])))
    assert fill.ts_event == int(s.open_time[6])
    assert strat.orders[0].status is OrderStatus.FILLED


def test_fill_at_close_convention(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    _, strat = run(s, {5: [{"side": OrderSide.BUY, "qty": D("0.01")}]}, fill_at="close")
    assert strat.fills[0].price == D(repr(float(s.close[5])))


def test_latency_delays_arrival(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    _, strat = run(s, {5: [{"side": OrderSide.BUY, "qty": D("0.01")}]}, latency_ms=90_000)
    # decided at bar 5's close (open+60 s), arrives 90 s later, in the middle of bar 7: the
    # price inside bar 7 at that moment is unknown, so the first bar it can fill on is bar 8
    assert strat.fills[0].ts_event == int(s.open_time[8])


def test_limit_and_stop_orders_on_real_bars(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 400)
    i = 10
    low_ahead = float(s.low[i + 1 : i + 200].min())
    limit = D(repr(low_ahead)) + D("0.5")
    _, strat = run(
        s,
        {
            # spot: the stop sells what a market buy bought before (a stop-loss sell without
            # a holding is a short and is refused, see below)
            i - 2: [{"side": OrderSide.BUY, "qty": D("0.01")}],
            i: [
                {
                    "side": OrderSide.BUY,
                    "qty": D("0.01"),
                    "order_type": OrderType.LIMIT,
                    "price": limit,
                },
                {
                    "side": OrderSide.BUY,
                    "qty": D("0.01"),
                    "order_type": OrderType.LIMIT,
                    "price": D(repr(low_ahead)) - D("1000"),
                },  # never reached
                {
                    "side": OrderSide.SELL,
                    "qty": D("0.01"),
                    "order_type": OrderType.STOP_LOSS,
                    "stop_price": D(repr(low_ahead)) + D("1"),
                },
            ],
        },
    )
    _, limit_order, far_order, stop_order = strat.orders
    assert limit_order.status is OrderStatus.FILLED
    fill = next(f for f in strat.fills if f.client_order_id == limit_order.client_order_id)
    assert fill.price <= limit and fill.liquidity.value == "maker"
    first_touch = next(j for j in range(i + 1, len(s)) if D(repr(float(s.low[j]))) <= limit)
    assert fill.ts_event == int(s.open_time[first_touch])
    assert far_order.status is OrderStatus.ACCEPTED  # still resting at the end
    stop_fill = next(f for f in strat.fills if f.client_order_id == stop_order.client_order_id)
    assert stop_fill.liquidity.value == "taker"
    assert stop_fill.price <= D(repr(low_ahead)) + D("1")


def test_ioc_expires_when_not_marketable(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 30)
    _, strat = run(
        s,
        {
            3: [
                {
                    "side": OrderSide.BUY,
                    "qty": D("0.01"),
                    "order_type": OrderType.LIMIT,
                    "price": D(repr(float(s.open[4]))) - D("50"),
                    "time_in_force": TimeInForce.IOC,
                }
            ]
        },
    )
    assert strat.orders[0].status is OrderStatus.EXPIRED and not strat.fills


def test_partial_fills_with_participation_cap(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 30)
    strat = Scripted(["BTCUSDT"], {2: [{"side": OrderSide.BUY, "qty": D("0.3")}]})
    # volume of this file is in quote units; use a tiny participation so fills split
    frac = 0.05 / float(s.volume[3:].max())  # every bar fills at most 0.05
    BacktestEngine(cfg(initial_cash=100000), LOOSE_RISK, max_participation=frac).run([s], [strat])
    assert len(strat.fills) >= 6
    by_time = {int(t): float(v) for t, v in zip(s.open_time, s.volume, strict=True)}
    for f in strat.fills:
        assert float(f.qty) <= by_time[f.ts_event] * frac * (1 + 1e-12)
    assert sum(f.qty for f in strat.fills) == D("0.3")
    assert strat.orders[0].status is OrderStatus.FILLED


def test_deterministic_byte_for_byte(btc_series: BarSeries) -> None:
    def once() -> str:
        strat = SmaCross(["BTCUSDT"], fast=10, slow=30)
        return BacktestEngine(BacktestConfig(), LOOSE_RISK).run([btc_series], [strat]).to_json()

    assert once() == once()


def test_accounting_is_exact(btc_series: BarSeries) -> None:
    res = BacktestEngine(BacktestConfig(), LOOSE_RISK).run(
        [btc_series.slice(0, 5000)], [SmaCross(["BTCUSDT"], fast=5, slow=20)]
    )
    cash = D("10000")
    for rec in res.fills:
        f = rec.fill
        cash -= f.qty * f.price * f.side.sign + f.fee
    assert res.final_cash == cash
    pos = sum((r.fill.qty * r.fill.side.sign for r in res.fills), D(0))
    assert res.final_equity == cash + pos * D(repr(float(btc_series.close[4999])))
    assert res.equity[-1] == pytest.approx(float(res.final_equity))


def test_kill_switch_halts_the_backtest(btc_series: BarSeries) -> None:
    risk = LOOSE_RISK.model_copy(update={"max_drawdown_pct": 5.0, "flatten_on_halt": True})
    res = BacktestEngine(BacktestConfig(), risk).run(
        [btc_series], [SmaCross(["BTCUSDT"], fast=10, slow=30)]
    )
    assert res.halted_at is not None
    after = [r for r in res.fills if r.fill.ts_event > res.halted_at]
    # the only trading after the halt is the flattening order, then nothing
    assert len(after) <= 1
    assert res.final_equity == res.final_cash  # flat
    peak = np.maximum.accumulate(res.equity)
    i = int(np.searchsorted(res.times, res.halted_at))
    assert (peak[i] - res.equity[i]) / peak[i] * 100 >= 5.0
    assert {d[2] for d in res.denials if d[0] > res.halted_at} <= {"kill_switch"}


def test_two_symbols_two_strategies_share_one_account(btc_series: BarSeries) -> None:
    """Real 1m BTC-PERP bars and real hourly Coinbase BTC/USD bars in one run: each strategy's
    fills equal those of running it alone (fixed sizes, ample cash), attributed to it."""
    import gzip
    from pathlib import Path

    import polars as pl

    samples = Path(__file__).resolve().parents[2] / "samples"

    with gzip.open(samples / "bars" / "Coinbase_BTCUSD_1h.csv.gz", "rt") as fh:
        next(fh)  # source banner
        hourly = pl.read_csv(fh.read().encode())
    hourly = hourly.with_columns(
        pl.col("date")
        .str.replace(r"-(AM|PM)$", ":00 $1")
        .str.to_datetime("%Y-%m-%d %I:%M %p", time_zone="UTC")
        .alias("open_time"),
        pl.col("volume_btc").alias("volume"),
    ).sort("open_time")
    coinbase = BarSeries.from_frame("BTCUSD", hourly, interval="1h")
    minute = btc_series.slice(0, 20_000)
    cfg = BacktestConfig.model_validate({"initial_cash": 10_000_000})

    def alone(series: BarSeries, sid: str) -> list[tuple[object, ...]]:
        strat = SmaCross([series.symbol], strategy_id=sid, fast=10, slow=30, qty="0.5")
        res = BacktestEngine(cfg, LOOSE_RISK).run([series], [strat])
        return [(r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price) for r in res.fills]

    a = SmaCross(["BTCUSDT"], strategy_id="minute", fast=10, slow=30, qty="0.5")
    b = SmaCross(["BTCUSD"], strategy_id="hourly", fast=10, slow=30, qty="0.5")
    both = BacktestEngine(cfg, LOOSE_RISK).run([minute, coinbase], [a, b])
    by = {
        sid: [
            (r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price)
            for r in both.fills
            if r.fill.strategy == sid
        ]
        for sid in ("minute", "hourly")
    }
    assert by["minute"] == alone(minute, "minute")
    assert by["hourly"] == alone(coinbase, "hourly")
    assert len(both.times) == len(
        set(minute.close_time.tolist()) | set(coinbase.close_time.tolist())
    )
    assert np.all(np.diff(both.times) > 0)


class CancelsOnFill(Scripted):
    """An OCO by hand: when one of its two resting orders fills, cancel everything open."""

    def on_fill(self, fill: Any, ctx: StrategyContext) -> None:
        super().on_fill(fill, ctx)
        ctx.cancel_all()


def test_cancel_all_inside_on_fill_cancels_the_others_and_leaves_the_filled_order_alone(
    btc_series: BarSeries,
) -> None:
    close = float(btc_series.close[10])
    plan = {
        8: [{"side": OrderSide.BUY, "qty": D("0.01")}],  # spot: the limit sells what this buys
        10: [
            {"side": OrderSide.BUY, "qty": D("0.01"), "order_type": OrderType.MARKET},
            {"side": OrderSide.SELL, "qty": D("0.01"), "order_type": OrderType.LIMIT,
             "price": D(str(round(close * 2, 2)))},
        ]
    }  # fmt: skip
    strat = CancelsOnFill([btc_series.symbol], plan)
    BacktestEngine(cfg(), LOOSE_RISK).run([btc_series], [strat])
    _, market, limit = strat.orders
    assert market.status is OrderStatus.FILLED
    assert limit.status is OrderStatus.CANCELED
    assert len(strat.fills) == 2
