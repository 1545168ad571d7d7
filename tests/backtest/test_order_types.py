"""Every order type, OCO lists, brackets, trailing stops, spot refusals and exit reasons in the
event engine, on the real bundled BTC bars (samples/, see SOURCES.md)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from loose_risk import LOOSE_RISK

from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig, RiskConfig
from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.strategies import Strategy
from tessera.strategies.base import Bar, StrategyContext
from tessera.strategies.guard import StrategyError

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
S = OrderStatus
Hook = Callable[["Script", Any, StrategyContext], None]


def cfg(**kw: Any) -> BacktestConfig:
    base: dict[str, Any] = {"fees": {"maker_bps": 0, "taker_bps": 0}, "slippage": {"kind": "none"}}
    base.update(kw)
    return BacktestConfig.model_validate(base)


def px(x: float) -> Decimal:
    return D(repr(x))


class Script(Strategy):
    """Runs ``plan[i](self, bar, ctx)`` at bar i and ``fill_hook`` on fills; records every
    order event (client id, status) it hears through on_order."""

    name = "script"

    def __init__(
        self, symbols: list[str], plan: dict[int, Hook], fill_hook: Hook | None = None
    ) -> None:
        super().__init__(symbols)
        self.plan = plan
        self.fill_hook = fill_hook
        self.i = -1
        self.fills: list[Fill] = []
        self.events: list[tuple[str, OrderStatus]] = []
        self.sent: dict[str, Any] = {}

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.i += 1
        if self.i in self.plan:
            self.plan[self.i](self, bar, ctx)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fills.append(fill)
        if self.fill_hook is not None:
            self.fill_hook(self, fill, ctx)

    def on_order(self, order: Order, ctx: StrategyContext) -> None:
        self.events.append((order.client_order_id, order.status))


def run(
    series: BarSeries,
    plan: dict[int, Hook],
    fill_hook: Hook | None = None,
    risk: RiskConfig = LOOSE_RISK,
    filters: dict[str, SymbolFilters] | None = None,
    **kw: Any,
) -> tuple[Any, Script]:
    strat = Script([series.symbol], plan, fill_hook)
    engine = BacktestEngine(cfg(**kw), risk, filters=filters or {})
    return engine.run([series], [strat]), strat


def buy(qty: str = "0.01") -> Hook:
    def act(s: Script, bar: Bar, ctx: StrategyContext) -> None:
        s.sent["buy"] = ctx.submit_order(bar.symbol, BUY, D(qty))

    return act


def first_bar(series: BarSeries, start: int, hit: Callable[[int], bool]) -> int:
    return next(j for j in range(start, len(series)) if hit(j))


def statuses(strat: Script, order: Order) -> list[OrderStatus]:
    return [st for cid, st in strat.events if cid == order.client_order_id]


# --- single orders of each type -------------------------------------------------------------


def test_a_take_profit_sell_triggers_when_the_high_reaches_it_and_exits_as_take_profit(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 3000)
    level = px(float(s.close[5])) + D(60)

    def place(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["tp"] = ctx.submit_order(
            bar.symbol, SELL, D("0.01"), OrderType.TAKE_PROFIT, stop_price=level
        )

    res, strat = run(s, {2: buy(), 5: place})
    tp = strat.sent["tp"]
    j = first_bar(s, 6, lambda j: px(float(s.high[j])) >= level)
    (fill,) = [f for f in strat.fills if f.client_order_id == tp.client_order_id]
    assert fill.ts_event == int(s.open_time[j])
    assert fill.price == max(px(float(s.open[j])), level)  # a gap up fills at the better open
    assert tp.reason is ExitReason.TAKE_PROFIT
    assert statuses(strat, tp) == [S.ACCEPTED, S.FILLED]
    (trade,) = res.trades
    assert trade.exit_reason == "take_profit" and trade.exit_time == fill.ts_event
    assert [r.reason for r in res.fills] == [ExitReason.SIGNAL, ExitReason.TAKE_PROFIT]


def test_a_take_profit_limit_never_sells_below_its_limit(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 3000)
    level = px(float(s.close[5])) + D(40)

    def place(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["tpl"] = ctx.submit_order(
            bar.symbol,
            SELL,
            D("0.01"),
            OrderType.TAKE_PROFIT_LIMIT,
            price=level + D(5),
            stop_price=level,
        )

    _, strat = run(s, {2: buy(), 5: place})
    order = strat.sent["tpl"]
    assert order.status is S.FILLED
    (fill,) = [f for f in strat.fills if f.client_order_id == order.client_order_id]
    assert fill.price >= level + D(5)


def test_a_stop_loss_limit_sells_at_or_above_its_limit_once_triggered(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 3000)
    level = px(float(s.close[5])) - D(40)

    def place(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["sl"] = ctx.submit_order(
            bar.symbol,
            SELL,
            D("0.01"),
            OrderType.STOP_LOSS_LIMIT,
            price=level - D(10),
            stop_price=level,
        )

    _, strat = run(s, {2: buy(), 5: place})
    order = strat.sent["sl"]
    assert order.status is S.FILLED and order.reason is ExitReason.STOP_LOSS
    (fill,) = [f for f in strat.fills if f.client_order_id == order.client_order_id]
    assert fill.price >= level - D(10)
    j = first_bar(s, 6, lambda j: px(float(s.low[j])) <= level)
    assert fill.ts_event >= int(s.open_time[j])


def test_a_limit_maker_that_would_take_is_rejected_and_the_strategy_hears_it(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 50)

    def place(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        far_above = px(float(s.open[6])) + D(1000)  # a buy far above the market would take
        st.sent["lm"] = ctx.submit_order(
            bar.symbol, BUY, D("0.01"), OrderType.LIMIT_MAKER, far_above
        )

    _, strat = run(s, {5: place})
    order = strat.sent["lm"]
    assert order.status is S.REJECTED and order.reject_reason
    assert statuses(strat, order) == [S.REJECTED] and not strat.fills


def test_a_fok_that_the_bar_cannot_fill_whole_expires_without_a_fill(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 50)

    def place(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["fok"] = ctx.submit_order(
            bar.symbol,
            BUY,
            D("0.5"),
            OrderType.LIMIT,
            px(float(s.open[6])) + D(100),
            time_in_force=TimeInForce.FOK,
        )

    frac = 0.1 / float(s.volume[6])  # the next bar fills at most 0.1 of the 0.5 asked
    _, strat = run(s, {5: place}, initial_cash=100_000)
    strat2 = Script([s.symbol], {5: place})
    BacktestEngine(cfg(initial_cash=100_000), LOOSE_RISK, max_participation=frac).run([s], [strat2])
    assert strat.sent["fok"].status is S.FILLED  # without a cap it fills whole
    assert strat2.sent["fok"].status is S.EXPIRED and not strat2.fills
    assert statuses(strat2, strat2.sent["fok"]) == [S.ACCEPTED, S.EXPIRED]


# --- OCO ------------------------------------------------------------------------------------


def oco(tp: Decimal, sl: Decimal, qty: str = "0.01", **kw: Any) -> Hook:
    def act(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["oco"] = ctx.submit_oco(
            bar.symbol, SELL, D(qty), take_profit=tp, stop_loss=sl, **kw
        )

    return act


def test_an_oco_exits_by_one_leg_and_expires_the_other(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 5000)
    close = px(float(s.close[5]))
    res, strat = run(s, {2: buy(), 5: oco(close + D(50), close - D(50))})
    legs = strat.sent["oco"]
    assert legs is not None and legs.above.list_id == legs.below.list_id == legs.list_id
    above, below = legs.above, legs.below
    assert above.type is OrderType.LIMIT_MAKER and below.type is OrderType.STOP_LOSS
    done = sorted([above.status, below.status])
    assert done == sorted([S.FILLED, S.EXPIRED])
    winner, loser = (above, below) if above.status is S.FILLED else (below, above)
    assert statuses(strat, loser) == [S.ACCEPTED, S.EXPIRED]
    assert statuses(strat, winner) == [S.ACCEPTED, S.FILLED]
    assert winner.reason is ExitReason.OCO  # placed by the strategy itself, no reason given
    assert [t.exit_reason for t in res.trades] == ["oco"]
    # the first bar that reached either level decided it
    j = first_bar(
        s,
        6,
        lambda j: px(float(s.high[j])) >= close + D(50) or px(float(s.low[j])) <= close - D(50),
    )
    (fill,) = [f for f in strat.fills if f.client_order_id == winner.client_order_id]
    assert fill.ts_event == int(s.open_time[j])


def test_an_oco_leg_keeps_a_reason_the_strategy_gives(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 5000)
    close = px(float(s.close[5]))
    _, strat = run(s, {2: buy(), 5: oco(close + D(50), close - D(50), reason=ExitReason.STOP_LOSS)})
    assert {leg.reason for leg in strat.sent["oco"].legs} == {ExitReason.STOP_LOSS}


def test_cancelling_one_leg_cancels_the_whole_list(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    close = px(float(s.close[5]))

    def cancel(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        ctx.cancel_order(st.sent["oco"].above.client_order_id)

    _, strat = run(s, {2: buy(), 5: oco(close + D(5000), close - D(5000)), 7: cancel})
    legs = strat.sent["oco"]
    assert legs.above.status is S.CANCELED and legs.below.status is S.CANCELED


def test_an_oco_is_checked_leg_by_leg_by_filters_and_risk(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    close = px(float(s.close[5]))
    filters = {
        s.symbol: SymbolFilters(s.symbol, "BTC", "USDT", tick_size=D("0.1"), step_size=D("0.001"))
    }
    off_tick = oco(close.quantize(D("0.1")) + D("50.05"), close.quantize(D("0.1")) - D(50))
    res, strat = run(s, {2: buy(), 5: off_tick}, filters=filters)
    assert strat.sent["oco"] is None and (res.denials[-1][2] == "filter:PRICE_FILTER")
    banded = LOOSE_RISK.model_copy(update={"price_band_pct": 1.0})
    far = oco(close * D("1.05"), close - D(50))  # the take-profit 5% away: outside the band
    res, strat = run(s, {2: buy(), 5: far}, risk=banded)
    assert strat.sent["oco"] is None and res.denials[-1][2] == "price_band"
    assert [o.type for o in res.orders] == [OrderType.MARKET]  # no leg was sent


# --- brackets and trailing stops (OrderHelpers in the backtest) -----------------------------


def test_a_bracket_enters_then_exits_by_its_oco_with_take_profit_or_stop_loss(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 5000)
    close = px(float(s.close[5]))

    def enter(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["entry"] = ctx.submit_bracket(
            bar.symbol, BUY, D("0.01"), stop_loss=close - D(40), take_profit=close + D(40)
        )

    res, strat = run(s, {5: enter})
    entry = strat.sent["entry"]
    assert entry.status is S.FILLED and entry.type is OrderType.MARKET
    exits = [o for o in res.orders if o.list_id]
    assert len(exits) == 2 and all(o.qty == D("0.01") and o.side is SELL for o in exits)
    by_type = {o.type: o for o in exits}
    assert by_type[OrderType.LIMIT_MAKER].reason is ExitReason.TAKE_PROFIT
    assert by_type[OrderType.STOP_LOSS].reason is ExitReason.STOP_LOSS
    (trade,) = res.trades
    filled = next(o for o in exits if o.status is S.FILLED)
    assert trade.exit_reason == filled.reason.value in ("take_profit", "stop_loss")
    assert res.exit_reasons() == {trade.exit_reason: 1}


def _round_down(x: Decimal, tick: Decimal) -> Decimal:
    return (x / tick).to_integral_value(rounding=ROUND_DOWN) * tick


def test_a_trailing_stop_follows_the_highs_and_exits_as_trailing_stop(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 20_000)
    tick = D("0.1")
    filters = {s.symbol: SymbolFilters(s.symbol, "BTC", "USDT", tick_size=tick)}
    pct = D("0.5")

    def trail(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["trail"] = ctx.trail_stop(bar.symbol, D("0.01"), trail_pct=pct)

    res, strat = run(s, {2: buy(), 4: trail}, filters=filters)
    stops = [o for o in res.orders if o.type is OrderType.STOP_LOSS]
    assert len(stops) > 3  # it moved
    assert all(o.reason is ExitReason.TRAILING_STOP and o.reduce_only for o in stops)
    levels = [o.stop_price for o in stops]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(levels))
    assert all(o.status is S.CANCELED for o in stops[:-1])
    # each level is the high-water mark since placement, less pct, rounded down to the tick
    start = px(float(s.close[4]))
    assert levels[0] == _round_down(start * (1 - pct / 100), tick)
    idx = {int(t): i for i, t in enumerate(s.close_time)}
    for o in stops[1:]:
        k = idx[o.ts_created]  # moved at bar k's close, from the highs of bars 5..k
        hwm = max(start, max(px(float(h)) for h in s.high[5 : k + 1]))
        assert o.stop_price == _round_down(hwm * (1 - pct / 100), tick)
    last = stops[-1]
    assert last.status is S.FILLED
    (fill,) = [f for f in strat.fills if f.client_order_id == last.client_order_id]
    bar_i = next(i for i, t in enumerate(s.open_time) if int(t) == fill.ts_event)
    assert last.stop_price is not None
    assert fill.price == min(px(float(s.open[bar_i])), last.stop_price)  # a gap: the open
    assert [t.exit_reason for t in res.trades] == ["trailing_stop"]


# --- spot: no shorts; reduce-only; kill-switch; end of data ----------------------------------


def test_a_short_target_is_refused_as_no_borrow_and_the_long_is_closed(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 50)

    def long_(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        ctx.target_position(bar.symbol, D("0.02"))

    def short(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["flip"] = ctx.target_position(bar.symbol, D("-0.03"))

    res, strat = run(s, {2: long_, 5: short})
    assert (int(s.close_time[5]), "script", "no_borrow") in res.denials
    close = strat.sent["flip"]
    assert close.side is SELL and close.qty == D("0.02") and close.reduce_only
    assert [o.side for o in res.orders] == [BUY, SELL]  # the opening leg was never sent
    assert res.final_equity == res.final_cash  # flat, not short


def test_a_sell_beyond_the_held_base_is_refused_and_a_reduce_only_one_is_cut(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 50)

    def sells(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["naked"] = ctx.submit_order(bar.symbol, SELL, D("0.05"))
        st.sent["cut"] = ctx.submit_order(bar.symbol, SELL, D("0.05"), reduce_only=True)

    res, strat = run(s, {2: buy("0.02"), 5: sells})
    assert strat.sent["naked"] is None
    assert strat.sent["cut"].qty == D("0.02") and strat.sent["cut"].status is S.FILLED
    # refused outright; the reduce-only one is cut to the position it reduces
    assert [d[2] for d in res.denials] == ["no_borrow"]


def test_a_resting_sell_locks_its_base_as_binance_does(btc_series: BarSeries) -> None:
    s = btc_series.slice(0, 50)
    close = px(float(s.close[5]))

    def two_sells(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        st.sent["stop"] = ctx.submit_order(
            bar.symbol, SELL, D("0.01"), OrderType.STOP_LOSS, stop_price=close - D(5000)
        )
        st.sent["second"] = ctx.submit_order(
            bar.symbol, SELL, D("0.01"), OrderType.LIMIT, close + D(5000)
        )

    res, strat = run(s, {2: buy(), 5: two_sells})
    assert strat.sent["stop"] is not None and strat.sent["second"] is None
    assert res.denials[-1][2] == "no_borrow"


def test_the_kill_switch_flattens_with_reduce_only_orders_whose_exit_reason_is_kill_switch(
    btc_series: BarSeries,
) -> None:
    risk = LOOSE_RISK.model_copy(update={"max_drawdown_pct": 0.5, "flatten_on_halt": True})

    def all_in(st: Script, bar: Bar, ctx: StrategyContext) -> None:
        ctx.target_position(bar.symbol, D("0.2"))

    res, _ = run(btc_series, {2: all_in}, risk=risk)
    assert res.halted_at is not None
    flatten = [o for o in res.orders if o.reason is ExitReason.KILL_SWITCH]
    assert len(flatten) == 1 and flatten[0].reduce_only and flatten[0].status is S.FILLED
    assert [t.exit_reason for t in res.trades] == ["kill_switch"]
    assert res.final_equity == res.final_cash


def test_an_open_position_is_listed_closed_at_the_last_close_as_end_of_data(
    btc_series: BarSeries,
) -> None:
    s = btc_series.slice(0, 500)
    res, _ = run(s, {2: buy("0.1")})
    assert len(res.fills) == 1  # no fill invented
    (trade,) = res.trades
    assert trade.exit_reason == "end_of_data" and not trade.closed_by_order
    assert trade.exit_time == int(s.close_time[-1])
    assert trade.exit_price == px(float(s.close[-1]))
    assert trade.pnl == res.final_equity - D(10_000)  # marked to market, no fees here
    assert res.metrics["trades"] == 0  # not a closed trade in the statistics
    frame = res.trades_frame()
    assert frame["exit_reason"].to_list() == ["end_of_data"]
    assert res.fills_frame()["reason"].to_list() == ["signal"]


def test_a_strategy_error_in_on_order_names_the_hook(btc_series: BarSeries) -> None:
    class Raises(Script):
        def on_order(self, order: Order, ctx: StrategyContext) -> None:
            raise RuntimeError("boom")

    strat = Raises([btc_series.symbol], {2: buy()})
    with pytest.raises(StrategyError, match="on_order"):
        BacktestEngine(cfg(), LOOSE_RISK).run([btc_series.slice(0, 20)], [strat])
