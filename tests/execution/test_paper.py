"""`PaperExchange` on real recorded Binance BTCUSDT quotes and trades, through `OrderManager`.

Every order type and OCO are placed on the recorded market of 2024-08-08 (it falls ~250 USDT,
then recovers): the levels are taken from the recording itself (a stop 30 USDT below the last
print, the first print that reaches it, ...), never invented. A restart is a new
`PaperExchange` (and `OrderManager`) on the same database.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tessera.execution.exchange import OrderRejectedError
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import SymbolFilters
from tessera.execution.manager import OrderManager
from tessera.execution.matching import SlippageModel
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.paper import PaperExchange
from tessera.execution.persistence import ExecutionStore, PaperBookTakenOverError
from tessera.execution.userdata import ExecutionReport
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol

SPOT = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
FILTERS = filters_by_symbol(recorded_exchange_info())
# the recorded exchangeInfo (2024) lists no STOP_LOSS / TAKE_PROFIT for BTCUSDT; a symbol that
# lists every type, as the simulator's does
ALL_TYPES = {
    "BTCUSDT": dataclasses.replace(
        FILTERS["BTCUSDT"], order_types=frozenset(t.value for t in OrderType)
    )
}
D = Decimal
BPS = D("0.0001")
HEAD = 500  # events before the first order: the book and the first prints
Event = tuple[str, Decimal, Decimal]


def events() -> list[tuple[str, Decimal, Decimal]]:
    """("quote", bid, ask) and ("trade", price, qty) in the order Binance sent them."""
    out = []
    with gzip.open(SPOT, "rt") as fh:
        for line in fh:
            doc = orjson.loads(line.split(" ", 1)[1])
            stream, d = doc.get("stream", ""), doc.get("data", {})
            if stream.endswith("@bookTicker"):
                out.append(("quote", Decimal(d["b"]), Decimal(d["a"])))
            elif stream.endswith("@trade"):
                out.append(("trade", Decimal(d["p"]), Decimal(d["q"])))
    return out


@pytest.fixture(scope="module")
def market() -> list[tuple[str, Decimal, Decimal]]:
    return events()


@dataclass
class Print:
    price: Decimal
    qty: Decimal
    fills: list[Fill]  # what this print filled


def status(order: Order) -> OrderStatus:
    """The order's status now (a call: the reports change it while the market is fed)."""
    return order.status


def feed(paper: PaperExchange, evs: Sequence[Event]) -> list[Print]:
    """The events into the paper exchange; returns each print with the fills it made."""
    out = []
    for kind, a, b in evs:
        if kind == "quote":
            paper.on_quote("BTCUSDT", a, b)
        else:
            n = len(paper.trades)
            paper.on_trade("BTCUSDT", a, b)
            out.append(Print(a, b, [t.fill for t in paper.trades[n:]]))
    return out


async def test_paper_fills_fees_balances_and_restart(
    market: list[tuple[str, Decimal, Decimal]], database_url: str
) -> None:
    store = ExecutionStore(database_url)
    paper = PaperExchange(
        FILTERS,
        store,
        initial_balances={"USDT": "10000", "BTC": "0"},
        fees=FeeSchedule(Decimal("2"), Decimal("10")),
        slippage=SlippageModel(bps=Decimal("1")),
    )
    om = OrderManager(store, paper, "run-paper")
    paper.on_report = om.on_execution_report
    head = 500
    feed(paper, market[:head])
    bid, ask = paper.quotes["BTCUSDT"]

    buy = Order("p-1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("0.01"))
    await om.submit(buy)
    assert buy.status is OrderStatus.FILLED
    px = ask * (1 + Decimal("0.0001"))  # the ask plus 1 bp of slippage, as taker
    assert buy.avg_price == px
    fee = px * Decimal("0.01") * Decimal("0.001")
    bal = await paper.balances()
    assert bal["BTC"].free == Decimal("0.01")
    assert bal["USDT"].free == Decimal("10000") - px * Decimal("0.01") - fee

    # a resting buy below the market fills at its limit, as maker, when a print reaches it
    later = [e for e in market[head:] if e[0] == "trade"]
    low = min(p for _, p, _ in later[:3000])
    limit = min(low, bid - 1)
    rest = Order("p-2", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.002"), price=limit)
    await om.submit(rest)
    assert rest.status is OrderStatus.ACCEPTED
    assert (await paper.balances())["USDT"].locked > 0
    feed(paper, market[head:])
    assert status(rest) is OrderStatus.FILLED and rest.avg_price == limit
    stored = store.get_order("p-2")
    assert stored is not None and stored.status is OrderStatus.FILLED
    maker_fees = [
        f.fill.fee for f in store.list_fills(limit=100) if f.fill.client_order_id == "p-2"
    ]
    assert sum(maker_fees) == limit * Decimal("0.002") * Decimal("0.0002")
    assert (await paper.balances())["USDT"].locked == 0

    with pytest.raises(OrderRejectedError) as err:
        await paper.submit(Order("p-3", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("5")))
    assert err.value.code == -2010

    # a restarted paper account continues where it stopped
    before = await paper.balances()
    again = PaperExchange(FILTERS, ExecutionStore(database_url), initial_balances={"USDT": "1"})
    assert await again.balances() == before
    store.close()


# --- every order type, OCO and restarts ------------------------------------------------------


@dataclass
class Desk:
    store: ExecutionStore
    paper: PaperExchange
    om: OrderManager
    reports: list[ExecutionReport]


def desk(
    url: str, filters: dict[str, SymbolFilters] | None = None, hear: bool = True, **balances: str
) -> Desk:
    """A paper exchange and the order manager it reports to (``hear=False``: the reports are
    lost, as in a crash before they arrived)."""
    store = ExecutionStore(url)
    paper = PaperExchange(
        filters or ALL_TYPES,
        store,
        initial_balances=balances,
        fees=FeeSchedule(D("2"), D("10")),
        slippage=SlippageModel(bps=D("1")),
    )
    om = OrderManager(store, paper, "run-paper")
    d = Desk(store, paper, om, [])

    def on_report(report: ExecutionReport) -> None:
        d.reports.append(report)
        if hear:
            om.on_execution_report(report)

    paper.on_report = on_report
    return d


def lowest(market: Sequence[Event]) -> int:
    """The event index of the lowest print of the recording (where it turns up)."""
    return min((i for i, e in enumerate(market) if e[0] == "trade"), key=lambda i: market[i][1])


def order(cid: str, typ: OrderType, side: OrderSide, qty: str = "0.002", **kw: object) -> Order:
    return Order(cid, "BTCUSDT", side, typ, D(qty), reason=ExitReason.for_type(typ), **kw)  # type: ignore[arg-type]


def fills_of(store: ExecutionStore, cid: str) -> list[tuple[str, ExitReason]]:
    return [
        (f.fill.trade_id, f.reason) for f in store.list_fills(1000) if f.fill.client_order_id == cid
    ]


T = OrderType
STOPS = [
    (T.STOP_LOSS, OrderSide.SELL, "falling"),
    (T.STOP_LOSS_LIMIT, OrderSide.SELL, "falling"),
    (T.TAKE_PROFIT, OrderSide.BUY, "falling"),
    (T.TAKE_PROFIT_LIMIT, OrderSide.BUY, "falling"),
    (T.STOP_LOSS, OrderSide.BUY, "rising"),
    (T.STOP_LOSS_LIMIT, OrderSide.BUY, "rising"),
    (T.TAKE_PROFIT, OrderSide.SELL, "rising"),
    (T.TAKE_PROFIT_LIMIT, OrderSide.SELL, "rising"),
]


@pytest.mark.parametrize(("typ", "side", "segment"), STOPS)
async def test_a_stop_or_take_profit_rests_until_a_print_reaches_its_stop_then_fills(
    market: list[Event], database_url: str, typ: OrderType, side: OrderSide, segment: str
) -> None:
    d = desk(database_url, USDT="100000", BTC="1")
    start = HEAD if segment == "falling" else lowest(market) + 1
    feed(d.paper, market[:start])
    above = typ.trigger_above(side)
    assert above == (segment == "rising")  # the case table says which way the market goes
    last = d.paper.last["BTCUSDT"]
    stop = last + 30 if above else last - 30
    sell = side is OrderSide.SELL
    limit = (stop - 5 if sell else stop + 5) if typ.has_price else None
    o = order("p-1", typ, side, price=limit, stop_price=stop)
    await d.om.submit(o)
    assert o.status is OrderStatus.ACCEPTED
    prints = feed(d.paper, market[start:])

    t = next(k for k, p in enumerate(prints) if (p.price >= stop if above else p.price <= stop))
    assert all(not p.fills for p in prints[:t])  # nothing before the market reached the stop
    trigger = prints[t].price
    if limit is None:  # STOP_LOSS / TAKE_PROFIT: a market order from the trigger on
        first = prints[t].fills[0]
        assert first.price == trigger * (1 - BPS if sell else 1 + BPS)
        assert first.liquidity is Liquidity.TAKER
    else:  # *_LIMIT: a limit order at its price from the trigger on
        if (trigger >= limit) if sell else (trigger <= limit):
            assert prints[t].fills[0].price == trigger
        for p in prints:
            assert all((f.price >= limit) if sell else (f.price <= limit) for f in p.fills)
    for p in prints:
        assert sum(f.qty for f in p.fills) <= p.qty  # a print fills at most its own size
    assert status(o) is OrderStatus.FILLED and o.filled_qty == D("0.002")
    stored = fills_of(d.store, "p-1")
    assert stored and {r for _, r in stored} == {ExitReason.for_type(typ)}
    assert (await d.paper.balances())["BTC"].locked == 0
    d.store.close()


async def test_resting_limits_fill_in_parts_by_print_size_shared_in_price_priority(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, USDT="100000")
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    better = order("p-1", T.LIMIT, OrderSide.BUY, "0.03", price=last - 20)
    worse = order("p-2", T.LIMIT, OrderSide.BUY, "0.03", price=last - 22)
    for o in (worse, better):
        await d.om.submit(o)
    prints = feed(d.paper, market[HEAD:])

    # the rule, walked over the same prints: a print at or below a buy's limit fills it at the
    # print's price as maker, up to what the print has left, the better-priced order first
    left_of = {"p-1": D("0.03"), "p-2": D("0.03")}
    limits = {"p-1": last - 20, "p-2": last - 22}
    expected, got = [], []
    for p in prints:
        size = p.qty
        for cid in ("p-1", "p-2"):
            q = min(size, left_of[cid])
            if q > 0 and p.price <= limits[cid]:
                expected.append((cid, p.price, q, Liquidity.MAKER))
                left_of[cid] -= q
                size -= q
        got += [(f.client_order_id, f.price, f.qty, f.liquidity) for f in p.fills]
    assert got == expected
    assert len(expected) > 4  # partial fills, print by print
    assert better.status is OrderStatus.FILLED and worse.status is OrderStatus.FILLED
    assert (await d.paper.balances())["USDT"].locked == 0
    d.store.close()


async def test_market_ioc_fok_and_limit_maker_are_decided_at_once_against_the_quote(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, USDT="100000", BTC="1")
    feed(d.paper, market[:HEAD])
    bid, ask = d.paper.quotes["BTCUSDT"]
    ioc = TimeInForce.IOC
    fok = TimeInForce.FOK
    cases = [
        (order("p-1", T.LIMIT, OrderSide.BUY, price=ask, time_in_force=ioc), OrderStatus.FILLED),
        (order("p-2", T.LIMIT, OrderSide.BUY, price=bid - 1, time_in_force=ioc),
         OrderStatus.EXPIRED),
        (order("p-3", T.LIMIT, OrderSide.SELL, price=bid, time_in_force=fok), OrderStatus.FILLED),
        (order("p-4", T.LIMIT, OrderSide.SELL, price=ask + 1, time_in_force=fok),
         OrderStatus.EXPIRED),
        (order("p-5", T.LIMIT_MAKER, OrderSide.BUY, price=bid - 1), OrderStatus.ACCEPTED),
        (order("p-6", T.MARKET, OrderSide.BUY), OrderStatus.FILLED),
    ]  # fmt: skip
    for o, status in cases:
        await d.om.submit(o)
        assert o.status is status, o.client_order_id
    assert cases[0][0].avg_price == ask and cases[2][0].avg_price == bid  # limits: no slippage
    assert cases[5][0].avg_price == ask * (1 + BPS)  # a market order pays the slippage
    assert cases[1][0].filled_qty == 0 and cases[3][0].filled_qty == 0
    assert [e.client_order_id for e in await d.paper.open_orders()] == ["p-5"]
    refused = [
        (order("p-7", T.LIMIT_MAKER, OrderSide.BUY, price=ask), "Order would immediately match"),
        (order("p-8", T.STOP_LOSS, OrderSide.SELL, stop_price=ask + 5),
         "Stop price would trigger immediately."),
        (order("p-9", T.STOP_LOSS_LIMIT, OrderSide.SELL, price=bid - 60, stop_price=bid - 50,
               time_in_force=ioc), "not emulated"),
    ]  # fmt: skip
    for o, why in refused:
        await d.om.submit(o)
        assert o.status is OrderStatus.REJECTED and why in (o.reject_reason or ""), o.reject_reason
    d.store.close()


async def test_a_type_the_symbol_does_not_list_is_refused_as_binance_refuses_it(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, filters=FILTERS, BTC="1")
    feed(d.paper, market[:HEAD])
    bid = d.paper.quotes["BTCUSDT"][0]
    with pytest.raises(OrderRejectedError, match="Stop loss orders are not supported") as err:
        await d.paper.submit(order("p-1", T.STOP_LOSS, OrderSide.SELL, stop_price=bid - 50))
    assert err.value.code == -2010
    limit = order("p-2", T.STOP_LOSS_LIMIT, OrderSide.SELL, price=bid - 51, stop_price=bid - 50)
    assert (await d.paper.submit(limit)).status is OrderStatus.ACCEPTED  # listed: accepted
    d.store.close()


def oco(
    list_id: str,
    side: OrderSide,
    above: tuple[OrderType, Decimal, Decimal | None],
    below: tuple[OrderType, Decimal, Decimal | None],
    qty: str = "0.002",
    first: int = 1,
) -> OrderList:
    """An OCO from (type, level, limit price) per leg; the level is the price of a
    LIMIT_MAKER and the stop of the others."""
    legs = []
    for n, (typ, level, limit) in enumerate((above, below)):
        price = level if typ is T.LIMIT_MAKER else limit
        stop = None if typ is T.LIMIT_MAKER else level
        reason = ExitReason.STOP_LOSS if typ.is_stop_loss else ExitReason.TAKE_PROFIT
        legs.append(Order(f"p-{first + n}", "BTCUSDT", side, typ, D(qty), price=price,
                          stop_price=stop, list_id=list_id, reason=reason))  # fmt: skip
    return OrderList(list_id, legs[0], legs[1])


def kinds(reports: list[ExecutionReport], cid: str) -> list[str]:
    out = [r.exec_type for r in reports if r.client_order_id == cid]
    return [k for i, k in enumerate(out) if i == 0 or k != "TRADE" or out[i - 1] != "TRADE"]


async def test_an_oco_sell_holds_its_quantity_once_and_its_stop_expires_the_take_profit(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, BTC="0.002")
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    top = max(e[1] for e in market if e[0] == "trade")
    placed = await d.om.submit_list(oco("l-1", OrderSide.SELL, (T.LIMIT_MAKER, top + 100, None),
                                        (T.STOP_LOSS, last - 30, None)))  # fmt: skip
    tp, sl = placed.legs
    assert (tp.status, sl.status) == (OrderStatus.ACCEPTED, OrderStatus.ACCEPTED)
    btc = (await d.paper.balances())["BTC"]
    assert (btc.free, btc.locked) == (D(0), D("0.002"))  # the list holds the quantity once
    prints = feed(d.paper, market[HEAD:])

    assert sl.status is OrderStatus.FILLED and tp.status is OrderStatus.EXPIRED
    first = next(k for k, p in enumerate(prints) if p.fills)
    assert prints[first].price <= last - 30
    # as Binance's stream: a report for each leg, the take-profit expired by the stop's trade
    assert kinds(d.reports, "p-1") == ["NEW", "EXPIRED"]
    assert kinds(d.reports, "p-2") == ["NEW", "TRADE"]
    order_of = [(r.client_order_id, r.exec_type) for r in d.reports]
    assert order_of.index(("p-1", "EXPIRED")) == order_of.index(("p-2", "TRADE")) + 1
    stored = {o.client_order_id: o for o in d.store.list_orders()}
    assert (
        stored["p-1"].status is OrderStatus.EXPIRED and stored["p-2"].status is OrderStatus.FILLED
    )
    assert {r for _, r in fills_of(d.store, "p-2")} == {ExitReason.STOP_LOSS}
    assert fills_of(d.store, "p-1") == []
    bal = await d.paper.balances()
    assert (bal["BTC"].free, bal["BTC"].locked) == (D(0), D(0)) and bal["USDT"].free > 0
    d.store.close()


async def test_an_oco_take_profit_fill_expires_the_stop_and_records_take_profit(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, BTC="0.002")
    start = lowest(market) + 1
    feed(d.paper, market[:start])
    last = d.paper.last["BTCUSDT"]
    placed = await d.om.submit_list(oco("l-1", OrderSide.SELL, (T.LIMIT_MAKER, last + 30, None),
                                        (T.STOP_LOSS_LIMIT, last - 50, last - 55)))  # fmt: skip
    tp, sl = placed.legs
    prints = feed(d.paper, market[start:])

    assert tp.status is OrderStatus.FILLED and sl.status is OrderStatus.EXPIRED
    first = next(p for p in prints if p.fills)
    assert first.price >= last + 30 and first.fills[0].liquidity is Liquidity.MAKER
    order_of = [(r.client_order_id, r.exec_type) for r in d.reports]
    # the stop expires at the take-profit's first (partial or whole) fill
    assert order_of.index(("p-2", "EXPIRED")) == order_of.index(("p-1", "TRADE")) + 1
    assert {r for _, r in fills_of(d.store, "p-1")} == {ExitReason.TAKE_PROFIT}
    assert (await d.paper.balances())["BTC"].locked == 0
    d.store.close()


async def test_an_oco_with_a_leg_that_would_act_at_once_is_refused_whole(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, BTC="0.002")
    feed(d.paper, market[:HEAD])
    bid = d.paper.quotes["BTCUSDT"][0]
    placed = await d.om.submit_list(oco("l-1", OrderSide.SELL, (T.LIMIT_MAKER, bid - 1, None),
                                        (T.STOP_LOSS, bid - 50, None)))  # fmt: skip
    assert [o.status for o in placed.legs] == [OrderStatus.REJECTED] * 2
    assert "relationship of the prices" in (placed.above.reject_reason or "")
    assert await d.paper.open_orders() == []
    assert (await d.paper.balances())["BTC"].free == D("0.002")
    d.store.close()


async def test_canceling_one_leg_of_an_oco_cancels_the_list_and_frees_its_balance(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, BTC="0.002")
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    placed = await d.om.submit_list(oco("l-1", OrderSide.SELL, (T.LIMIT_MAKER, last + 50, None),
                                        (T.STOP_LOSS, last - 50, None)))  # fmt: skip
    await d.om.cancel(placed.below)
    assert [o.status for o in placed.legs] == [OrderStatus.CANCELED] * 2
    assert (await d.paper.balances())["BTC"].free == D("0.002")
    d.store.close()


async def test_a_buy_oco_holds_quote_once_for_the_leg_that_needs_more(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, USDT="1000")
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    await d.om.submit_list(oco("l-1", OrderSide.BUY, (T.STOP_LOSS_LIMIT, last + 100, last + 110),
                               (T.LIMIT_MAKER, last - 100, None)))  # fmt: skip
    usdt = (await d.paper.balances())["USDT"]
    need = D("0.002") * (last + 110) * (1 + D("0.001"))  # the stop's limit, with taker fees
    assert (usdt.locked, usdt.free) == (need, D("1000") - need)
    d.store.close()


async def test_resting_orders_and_an_oco_survive_a_paper_restart_and_still_fill(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, USDT="1000", BTC="0.004")
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    top = max(e[1] for e in market if e[0] == "trade")
    buy = order("p-1", T.LIMIT, OrderSide.BUY, price=last - 100)
    stop = order("p-2", T.STOP_LOSS, OrderSide.SELL, stop_price=last - 60)
    for o in (buy, stop):
        await d.om.submit(o)
    await d.om.submit_list(oco("l-1", OrderSide.SELL, (T.LIMIT_MAKER, top + 100, None),
                               (T.STOP_LOSS_LIMIT, last - 40, last - 45), first=3))  # fmt: skip
    pos = HEAD + 200
    feed(d.paper, market[HEAD:pos])
    assert len(await d.paper.open_orders()) == 4  # nothing reached yet
    before = await d.paper.balances()

    again = desk(database_url, USDT="1")  # the restarted bot: a new paper exchange and manager
    assert {o.client_order_id for o in await again.paper.open_orders()} == {"p-1", "p-2", "p-3",
                                                                            "p-4"}  # fmt: skip
    assert await again.paper.balances() == before
    report = await again.om.recover()
    assert report.checked == 4 and report.updated == [] and report.closed_unsent == []
    # the old paper exchange may not fill them too: its first change fails, reported to no one
    n = len(d.reports)
    with pytest.raises(PaperBookTakenOverError):
        feed(d.paper, market[pos:])
    assert len(d.reports) == n

    feed(again.paper, market[pos:])
    stored = {o.client_order_id: o.status for o in again.store.list_orders()}
    assert stored == {"p-1": OrderStatus.FILLED, "p-2": OrderStatus.FILLED,
                      "p-3": OrderStatus.EXPIRED, "p-4": OrderStatus.FILLED}  # fmt: skip
    assert {r for _, r in fills_of(again.store, "p-2")} == {ExitReason.STOP_LOSS}
    assert {r for _, r in fills_of(again.store, "p-1")} == {ExitReason.SIGNAL}
    bal = await again.paper.balances()
    assert bal["BTC"].locked == 0 and bal["USDT"].locked == 0
    d.store.close()
    again.store.close()


async def test_a_triggered_stop_limit_keeps_its_trigger_across_a_restart(
    market: list[Event], database_url: str
) -> None:
    # a print that gaps down through the stop and below its limit (triggered, not marketable),
    # and a next print back above the limit: only a triggered order can fill on that one
    idx = [i for i, e in enumerate(market) if e[0] == "trade" and i >= HEAD]
    k = next(k for k in range(len(idx) - 2)
             if market[idx[k + 1]][1] <= market[idx[k]][1] - D("0.02")
             and market[idx[k + 2]][1] >= market[idx[k + 1]][1] + D("0.02"))  # fmt: skip
    gap, bounce = market[idx[k + 1]][1], market[idx[k + 2]][1]
    d = desk(database_url, BTC="0.002")
    feed(d.paper, market[: idx[k] + 1])
    level = gap + D("0.01")
    o = order("p-1", T.STOP_LOSS_LIMIT, OrderSide.SELL, price=level, stop_price=level)
    await d.om.submit(o)
    assert not any(p.fills for p in feed(d.paper, market[idx[k] + 1 : idx[k + 1] + 1]))
    row = d.store.paper_order("paper", "p-1")
    assert row is not None and row["triggered"] and row["status"] == "ACCEPTED"
    assert bounce > level  # an untriggered stop could not trigger on the bounce

    again = desk(database_url)
    await again.om.recover()
    prints = feed(again.paper, market[idx[k + 1] + 1 : idx[k + 2] + 1])
    assert prints[-1].price == bounce and [f.price for f in prints[-1].fills] == [bounce]
    d.store.close()
    again.store.close()


async def test_a_fill_the_bot_never_heard_of_is_recovered_from_the_restarted_paper_exchange(
    market: list[Event], database_url: str
) -> None:
    d = desk(database_url, hear=False, BTC="0.002")  # the reports are lost: a crash
    feed(d.paper, market[:HEAD])
    last = d.paper.last["BTCUSDT"]
    o = order("p-1", T.STOP_LOSS, OrderSide.SELL, stop_price=last - 30)
    await d.om.submit(o)
    feed(d.paper, market[HEAD:])
    made = sorted(t.fill.trade_id for t in d.paper.trades)
    assert made and d.store.get_order("p-1").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]

    again = desk(database_url)
    report = await again.om.recover()
    assert report.updated == ["p-1"] and report.fills_imported == len(made)
    assert sorted(t for t, _ in fills_of(again.store, "p-1")) == made
    assert again.store.get_order("p-1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert (await again.om.recover()).fills_imported == 0
    d.store.close()
    again.store.close()
