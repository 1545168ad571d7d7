"""The shared matching rules (`execution.matching`): every order type against hand-built bars.

Hand-built bars are fine here: these are rule tests of a pure function, not market data.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.execution.matching import (
    BarView,
    MatchResult,
    SlippageKind,
    SlippageModel,
    WorkingOrders,
    match_order,
)
from tessera.execution.orders import Liquidity, Order, OrderSide, OrderType, TimeInForce

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
T = OrderType
NO_SLIP = SlippageModel(SlippageKind.NONE)
_ids = itertools.count(1)


def order(
    otype: OrderType,
    side: OrderSide,
    qty: str = "1",
    price: str | Decimal | None = None,
    stop: str | Decimal | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    list_id: str = "",
) -> Order:
    return Order(
        client_order_id=f"o{next(_ids)}",
        symbol="BTCUSDT",
        side=side,
        type=otype,
        qty=D(qty),
        price=D(price) if price is not None else None,
        stop_price=D(stop) if stop is not None else None,
        time_in_force=tif,
        list_id=list_id,
    )


def bar(o: float, h: float, lo: float, c: float, v: float = 1e9) -> BarView:
    return BarView(o, h, lo, c, v)


def match(o: Order, b: BarView, first: bool = True, **kw: object) -> MatchResult:
    return match_order(o, b, first, NO_SLIP, **kw)  # type: ignore[arg-type]


# --- trigger direction: every stop type x side -----------------------------------------------

UP_ONLY = bar(100, 110, 99, 105)  # reaches 108 above, never 95 below
DOWN_ONLY = bar(100, 101, 90, 95)  # reaches 95 below, never 108 above

# (type, side, stop, limit, bar that triggers it, bar that does not)
TRIGGERS = [
    (T.STOP_LOSS, SELL, "95", None, DOWN_ONLY, UP_ONLY),
    (T.STOP_LOSS, BUY, "108", None, UP_ONLY, DOWN_ONLY),
    (T.STOP_LOSS_LIMIT, SELL, "95", "94", DOWN_ONLY, UP_ONLY),
    (T.STOP_LOSS_LIMIT, BUY, "108", "109", UP_ONLY, DOWN_ONLY),
    (T.TAKE_PROFIT, SELL, "108", None, UP_ONLY, DOWN_ONLY),
    (T.TAKE_PROFIT, BUY, "95", None, DOWN_ONLY, UP_ONLY),
    (T.TAKE_PROFIT_LIMIT, SELL, "108", "107", UP_ONLY, DOWN_ONLY),
    (T.TAKE_PROFIT_LIMIT, BUY, "95", "96", DOWN_ONLY, UP_ONLY),
]


@pytest.mark.parametrize(("otype", "side", "stop", "limit", "hits", "misses"), TRIGGERS)
def test_each_stop_type_triggers_only_in_its_own_direction(
    otype: OrderType,
    side: OrderSide,
    stop: str,
    limit: str | None,
    hits: BarView,
    misses: BarView,
) -> None:
    o = order(otype, side, price=limit, stop=stop)
    hit = match(o, hits)
    assert hit.triggered and hit.match is not None
    assert hit.match.price == D(stop)  # the bar opened at 100, short of the stop
    assert hit.match.liquidity is Liquidity.TAKER
    missed = match(o, misses)
    assert not missed.triggered and missed.match is None and not missed.expire


def test_a_stop_loss_sell_triggers_when_the_low_reaches_the_stop() -> None:
    o = order(T.STOP_LOSS, SELL, stop="95")
    assert match(o, bar(100, 101, 95, 96)).match is not None
    assert match(o, bar(100, 101, 95.01, 96)).match is None


def test_a_stop_loss_that_gaps_fills_at_the_open_the_worse_price() -> None:
    r = match(order(T.STOP_LOSS, SELL, stop="95"), bar(90, 92, 88, 91))
    assert r.match is not None and r.match.price == D("90")


def test_a_take_profit_sell_that_gaps_up_fills_at_the_open_the_better_price() -> None:
    r = match(order(T.TAKE_PROFIT, SELL, stop="108"), bar(112, 115, 111, 113))
    assert r.match is not None and r.match.price == D("112")


def test_stop_market_types_pay_slippage_against_them() -> None:
    slip = SlippageModel(SlippageKind.FIXED_BPS, D("10"))
    r = match_order(order(T.TAKE_PROFIT, SELL, stop="108"), UP_ONLY, True, slip)
    assert r.match is not None
    assert r.match.reference_price == D("108") and r.match.price == D("108") - D("0.108")


def test_a_take_profit_limit_not_marketable_at_its_trigger_rests_as_a_limit() -> None:
    o = order(T.TAKE_PROFIT_LIMIT, SELL, price="109", stop="108")
    r = match(o, UP_ONLY)  # triggers at 108 < limit 109: no fill on the trigger bar
    assert r.triggered and r.match is None
    later = match_order(o, bar(108, 109.5, 107, 109), False, NO_SLIP, triggered=True)
    assert later.match is not None and later.match.price == D("109")
    assert later.match.liquidity is Liquidity.MAKER


def test_a_limit_maker_that_would_take_on_arrival_is_rejected() -> None:
    r = match(order(T.LIMIT_MAKER, SELL, price="99"), bar(100, 101, 98, 100))
    assert r.reject is not None and r.match is None


def test_a_resting_limit_maker_fills_as_maker_at_its_price() -> None:
    o = order(T.LIMIT_MAKER, SELL, price="105")
    assert match(o, bar(100, 104, 99, 101)).match is None
    r = match(o, bar(101, 106, 100, 105), first=False)
    assert r.match is not None and r.match.price == D("105")
    assert r.match.liquidity is Liquidity.MAKER


def test_ioc_gets_only_its_first_bar() -> None:
    o = order(T.LIMIT, BUY, price="99", tif=TimeInForce.IOC)
    assert match(o, bar(100, 101, 98, 100)).expire  # not marketable at the open
    assert match(o, bar(98, 99, 97, 98), first=False).expire


# --- properties over random bars -------------------------------------------------------------

cents = st.integers(9_000, 21_000)


@st.composite
def bars(draw: st.DrawFn) -> BarView:
    a, b, c, d = (draw(cents) for _ in range(4))
    lo, hi = min(a, b, c, d), max(a, b, c, d)
    return BarView(a / 100, hi / 100, lo / 100, b / 100, float(draw(st.integers(0, 50))))


prices = cents.map(lambda n: D(n) / 100)
sides = st.sampled_from([BUY, SELL])
types = st.sampled_from(list(OrderType))
tifs = st.sampled_from(list(TimeInForce))


def _build(otype: OrderType, side: OrderSide, p: Decimal, s: Decimal, tif: TimeInForce) -> Order:
    return order(
        otype,
        side,
        qty="3",
        price=p if otype.has_price else None,
        stop=s if otype.has_stop else None,
        tif=tif,
    )


@settings(max_examples=600, deadline=None)
@given(bars(), types, sides, prices, prices, tifs, st.booleans(), st.booleans(), st.floats(0, 0.2))
def test_matching_invariants_hold_on_random_bars(
    b: BarView,
    otype: OrderType,
    side: OrderSide,
    p: Decimal,
    s: Decimal,
    tif: TimeInForce,
    first: bool,
    triggered: bool,
    participation: float,
) -> None:
    o = _build(otype, side, p, s, tif)
    r = match_order(o, b, first, NO_SLIP, participation, "touch", triggered and otype.has_stop)
    already = triggered and otype.has_stop
    lo, hi, op = D(repr(b.low)), D(repr(b.high)), D(repr(b.open))
    if tif is not TimeInForce.GTC and not first:
        assert r.match is None and r.expire  # IOC/FOK only get their first bar
    if r.match is None:
        return
    m = r.match
    assert lo <= m.price <= hi  # never a price the bar did not trade
    assert m.reference_price == m.price  # no slippage model: nothing added
    assert 0 < m.qty <= o.qty
    if tif is TimeInForce.FOK:
        assert m.qty == o.qty and not r.expire  # all or nothing
    if otype.has_price:
        assert o.price is not None
        # a limit (including a triggered stop- or take-profit-limit) never fills worse than it
        assert m.price <= o.price if side is BUY else m.price >= o.price
    if otype.is_market_on_trigger and already:
        assert m.price == op  # the remainder of a triggered stop-market: a market order
    elif otype.is_market_on_trigger:
        assert o.stop_price is not None
        above = otype.trigger_above(side)
        assert m.price == (max(op, o.stop_price) if above else min(op, o.stop_price))
        if otype is T.STOP_LOSS:  # the worse of open and stop for us
            worse = max if side is BUY else min
            assert m.price == worse(op, o.stop_price)
    if otype.has_stop and not already:
        assert r.triggered
        assert o.stop_price is not None
        # it only fills on a bar that reached its stop, in its own direction
        assert hi >= o.stop_price if otype.trigger_above(side) else lo <= o.stop_price


@settings(max_examples=300, deadline=None)
@given(bars(), sides, prices, st.integers(1, 30))
def test_fok_with_a_participation_cap_fills_everything_or_nothing(
    b: BarView, side: OrderSide, p: Decimal, volume: int
) -> None:
    o = order(T.LIMIT, side, qty="3", price=p, tif=TimeInForce.FOK)
    capped = BarView(b.open, b.high, b.low, b.close, float(volume))
    r = match_order(o, capped, True, NO_SLIP, max_participation=0.1)
    assert r.match is None or r.match.qty == o.qty
    if volume * 0.1 < 3:
        assert r.match is None and r.expire


# --- OCO through WorkingOrders ---------------------------------------------------------------


def oco(tp: str, sl: str, side: OrderSide = SELL, list_id: str = "L1") -> tuple[Order, Order]:
    if side is SELL:
        profit = order(T.LIMIT_MAKER, SELL, price=tp, list_id=list_id)
        loss = order(T.STOP_LOSS, SELL, stop=sl, list_id=list_id)
    else:
        profit = order(T.LIMIT_MAKER, BUY, price=tp, list_id=list_id)
        loss = order(T.STOP_LOSS, BUY, stop=sl, list_id=list_id)
    return profit, loss


def working(*orders: Order) -> WorkingOrders:
    w = WorkingOrders()
    for o in orders:
        w.add(o, active_from=0)
    return w


def run_bar(w: WorkingOrders, b: BarView, t: int = 0) -> list:  # type: ignore[type-arg]
    return w.match_bar("BTCUSDT", b, t, slippage=NO_SLIP)


def test_an_oco_profit_leg_filling_expires_the_stop_leg() -> None:
    profit, loss = oco("110", "90")
    w = working(profit, loss)
    assert [e.first_bar for e in run_bar(w, bar(100, 105, 95, 101))] == [True, True]
    events = run_bar(w, bar(101, 111, 99, 110))
    assert [(e.order, e.expired_by_list) for e in events] == [(profit, False), (loss, True)]
    assert events[0].result.match is not None and events[1].result.expire
    assert len(w) == 0  # both terminal: removed


def test_an_oco_partial_fill_expires_the_other_leg_and_keeps_the_remainder_working() -> None:
    profit, loss = oco("110", "90")
    w = working(profit, loss)
    events = w.match_bar(
        "BTCUSDT", bar(100, 111, 99, 110, v=5), 0, slippage=NO_SLIP, max_participation=0.1
    )
    assert events[0].order is profit and events[0].result.match is not None
    assert events[0].result.match.qty == D("0.5") and not events[0].terminal
    assert events[1].order is loss and events[1].expired_by_list
    assert w.orders() == [profit] and w.partner(profit.client_order_id) is None


def test_a_stop_limit_leg_that_triggers_expires_the_profit_leg_without_a_fill() -> None:
    profit = order(T.LIMIT_MAKER, SELL, price="110", list_id="L")
    loss = order(T.STOP_LOSS_LIMIT, SELL, price="96", stop="95", list_id="L")
    w = working(profit, loss)
    events = run_bar(w, bar(100, 101, 94, 95.5))  # triggers at 95, limit 96 not marketable
    assert events[0].order is loss and events[0].result.triggered
    assert events[0].result.match is None
    assert events[1].order is profit and events[1].expired_by_list
    assert w.orders() == [loss] and w.is_triggered(loss.client_order_id)


def test_when_both_legs_could_act_on_one_bar_the_stop_loss_wins() -> None:
    profit, loss = oco("110", "90")
    w = working(profit, loss)
    events = run_bar(w, bar(100, 111, 89, 100))
    assert events[0].order is loss and events[0].result.match is not None
    assert events[1].order is profit and events[1].expired_by_list


def test_when_both_legs_could_act_the_leg_the_open_is_through_wins() -> None:
    profit, loss = oco("110", "90")
    w = working(profit, loss)
    run_bar(w, bar(100, 101, 99, 100))  # arrival
    events = run_bar(w, bar(112, 113, 89, 95))  # opened above the take-profit, then fell
    assert events[0].order is profit and events[0].result.match is not None
    assert events[0].result.match.price == D("112")
    assert events[1].order is loss and events[1].expired_by_list


def test_a_buy_oco_protects_a_short_the_other_way_round() -> None:
    profit, loss = oco("90", "110", side=BUY)
    w = working(profit, loss)
    events = run_bar(w, bar(100, 112, 99, 111))
    assert events[0].order is loss and events[0].result.match is not None
    assert events[0].result.match.price == D("110")


def test_a_limit_maker_leg_that_would_take_rejects_the_whole_list() -> None:
    profit, loss = oco("99", "90")  # the sell limit-maker is below the open
    w = working(profit, loss)
    events = run_bar(w, bar(100, 101, 98, 100))
    assert all(e.result.reject for e in events) and len(events) == 2
    assert len(w) == 0


def test_removing_one_leg_leaves_the_other_without_partner() -> None:
    profit, loss = oco("110", "90")
    w = working(profit, loss)
    assert w.partner(profit.client_order_id) is loss
    assert w.remove(loss.client_order_id) is loss
    assert w.remove(loss.client_order_id) is None
    assert w.partner(profit.client_order_id) is None
    events = run_bar(w, bar(100, 101, 80, 85))  # the stop would have fired: it is gone
    assert [e.order for e in events] == [profit] and events[0].result.match is None


def test_orders_are_matched_only_from_their_active_time_and_by_arrival() -> None:
    late = order(T.MARKET, BUY)
    early = order(T.MARKET, SELL)
    other = Order("x", "ETHUSDT", BUY, T.MARKET, D("1"))
    w = WorkingOrders()
    w.add(late, active_from=50)
    w.add(early, active_from=10)
    w.add(other, active_from=0)
    assert run_bar(w, bar(100, 101, 99, 100), t=0) == []
    events = run_bar(w, bar(100, 101, 99, 100), t=60)
    assert [e.order for e in events] == [early, late]
    assert w.orders() == [other]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(bars(), min_size=1, max_size=8),
    prices,
    prices,
    st.sampled_from([T.LIMIT_MAKER, T.TAKE_PROFIT, T.TAKE_PROFIT_LIMIT]),
    st.sampled_from([T.STOP_LOSS, T.STOP_LOSS_LIMIT]),
    st.floats(0, 0.5),
)
def test_an_oco_never_fills_both_legs(
    path: list[BarView],
    a: Decimal,
    b: Decimal,
    profit_type: OrderType,
    loss_type: OrderType,
    participation: float,
) -> None:
    hi_level, lo_level = max(a, b), min(a, b)
    if hi_level == lo_level:
        return
    profit = order(
        profit_type,
        SELL,
        qty="3",
        price=hi_level if profit_type.has_price else None,
        stop=hi_level if profit_type.has_stop else None,
        list_id="L",
    )
    loss = order(
        loss_type,
        SELL,
        qty="3",
        price=lo_level - D(1) if loss_type.has_price else None,
        stop=lo_level,
        list_id="L",
    )
    w = working(profit, loss)
    filled: set[str] = set()
    expired_by_list: set[str] = set()
    for i, bv in enumerate(path):
        events = w.match_bar("BTCUSDT", bv, i, slippage=NO_SLIP, max_participation=participation)
        for e in events:
            cid = e.order.client_order_id
            if e.result.match is not None:
                assert cid not in expired_by_list
                filled.add(cid)
                e.order.filled_qty += e.result.match.qty  # the caller books the fill
            if e.expired_by_list:
                expired_by_list.add(cid)
                assert e.result.expire and e.result.match is None
    assert len(filled) <= 1
    if filled:
        assert expired_by_list == {profit.client_order_id, loss.client_order_id} - filled


def _copy(o: Order, cid: str) -> Order:
    return Order(
        client_order_id=cid,
        symbol=o.symbol,
        side=o.side,
        type=o.type,
        qty=o.qty,
        price=o.price,
        stop_price=o.stop_price,
        time_in_force=o.time_in_force,
    )


@settings(max_examples=400, deadline=None)
@given(
    st.lists(bars(), min_size=1, max_size=4),
    types,
    sides,
    prices,
    prices,
    tifs,
    st.floats(0, 0.5),
    st.sampled_from(["touch", "through"]),
)
def test_a_lone_order_is_matched_as_the_many_order_path_matches_it(
    bs: list[BarView],
    otype: OrderType,
    side: OrderSide,
    p: Decimal,
    s: Decimal,
    tif: TimeInForce,
    participation: float,
    limit_fill: str,
) -> None:
    """`match_bar` takes a shortcut for one order alone on its symbol (most bars of a
    backtest); the same order beside a second one goes the general way. Bar after bar, both
    give the same event (fill, flags) and keep or remove the order alike."""
    alone, crowd = WorkingOrders(), WorkingOrders()
    o = _build(otype, side, p, s, tif)
    twin = _copy(o, f"twin{next(_ids)}")
    other = order(T.LIMIT, BUY, qty="1", price="1")  # rests far below: never fills
    alone.add(o)
    crowd.add(twin)
    crowd.add(other)
    for t, b in enumerate(bs):
        kw = {"slippage": NO_SLIP, "max_participation": participation, "limit_fill": limit_fill}
        got = alone.match_bar("BTCUSDT", b, t, **kw)  # type: ignore[arg-type]
        ref = [e for e in crowd.match_bar("BTCUSDT", b, t, **kw) if e.order is twin]  # type: ignore[arg-type]
        assert [(e.result, e.first_bar, e.expired_by_list) for e in got] == [
            (e.result, e.first_bar, e.expired_by_list) for e in ref
        ]
        assert (o.client_order_id in alone) == (twin.client_order_id in crowd)
        assert alone.is_triggered(o.client_order_id) == crowd.is_triggered(twin.client_order_id)
        for e in got:  # book the fill into both orders, as a venue does before the next bar
            if e.result.match is not None:
                o.filled_qty += e.result.match.qty
                twin.filled_qty += e.result.match.qty
        if o.client_order_id not in alone:
            break
