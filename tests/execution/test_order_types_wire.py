"""Every Binance spot order type and OCO order lists, on the wire: `CcxtExchange` (the real ccxt
client) against the simulator's private API, with the user-data stream listening.

The market is the real BTCUSDT recording of 2024-08-08, stepped by hand. Stop levels are read
from the replay itself (a separate state of the same market peeks at the prints to come), so
each test knows which print is the first to cross a stop and checks the order triggers on that
print and not one before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera.execution.exchange import OrderRejectedError
from tessera.execution.orders import (
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.userdata import ExecutionReport, ListStatus, UserDataStream
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.state import MarketState
from tessera.sim.trading import ORDER_COUNT_HEADER, TradingConfig, TradingEngine
from tessera.venues.binance.errors import binance_error
from tessera.venues.binance_spot.exchange import CcxtExchange

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
HTTP = Path(__file__).resolve().parents[2] / "samples/binance-api/spot-http"
KEY, SECRET = "wire-key", "wire-secret"
SYM = "BTCUSDT"
TICK = Decimal("0.01")
QTY = Decimal("0.00100")
STOPS = [
    OrderType.STOP_LOSS,
    OrderType.STOP_LOSS_LIMIT,
    OrderType.TAKE_PROFIT,
    OrderType.TAKE_PROFIT_LIMIT,
]
SIDES = [OrderSide.SELL, OrderSide.BUY]

Venue = tuple[ExchangeSimulator, TradingEngine]


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[Venue]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)  # a live book: the recorded snapshot plus the first diffs
        yield sim, engine


@pytest.fixture
async def ex(venue: Venue) -> AsyncIterator[CcxtExchange]:
    sim, _ = venue
    client = CcxtExchange(sim.rest_url, KEY, SECRET)
    yield client
    await client.close()


class Events:
    """What the user-data stream delivered."""

    def __init__(self) -> None:
        self.reports: list[ExecutionReport] = []
        self.lists: list[ListStatus] = []

    def of(self, cid: str) -> list[ExecutionReport]:
        return [r for r in self.reports if r.client_order_id == cid]

    async def until(self, cond: Callable[[], bool]) -> None:
        for _ in range(500):  # 10 s
            if cond():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the user-data stream never delivered what was expected")


@pytest.fixture
async def events(venue: Venue) -> AsyncIterator[Events]:
    sim, _ = venue
    got = Events()
    stream = UserDataStream(
        sim.rest_url,
        sim.ws_url,
        KEY,
        got.reports.append,
        on_list_status=got.lists.append,
    )
    task = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.connected.wait(), 10)
    yield got
    stream.stop()
    await asyncio.wait_for(task, 10)
    assert stream.malformed == 0


# --- the replay -----------------------------------------------------------------------------


def last_price(sim: ExchangeSimulator) -> Decimal:
    sim.state.advance_to(sim.head)
    return Decimal(sim.state.trades(SYM)[-1].price)


def best(sim: ExchangeSimulator) -> tuple[Decimal, Decimal]:
    sim.state.advance_to(sim.head)
    book = sim.state.books[SYM]
    return max(book.bids), min(book.asks)


def ahead(sim: ExchangeSimulator) -> list[tuple[int, Decimal]]:
    """(base frame index, price) of every print still to come, read from a separate state."""
    sim.state.advance_to(sim.head)
    seen = len(sim.state.trades(SYM))
    peek = MarketState(sim.market)
    peek.advance_to(len(sim.market.frames))
    anchors = sim.market.trades(SYM).anchors
    return [
        (anchors[i], Decimal(t.price)) for i, t in enumerate(peek.trades(SYM)[seen:], start=seen)
    ]


def levels(sim: ExchangeSimulator) -> tuple[Decimal, Decimal]:
    """A price the replay rises to and one it falls to, halfway from the last price to the
    extreme of the prints to come."""
    last = last_price(sim)
    prices = [p for _, p in ahead(sim)]
    up = (last + (max(prices) - last) / 2).quantize(TICK)
    down = (last - (last - min(prices)) / 2).quantize(TICK)
    assert down < last < up
    return up, down


def first_print(sim: ExchangeSimulator, through: Callable[[Decimal], bool]) -> int:
    """The base frame of the first print to come for which ``through(price)``."""
    return next(frame for frame, p in ahead(sim) if through(p))


def step(sim: ExchangeSimulator, engine: TradingEngine, until: Callable[[], bool]) -> None:
    """Release the replay a few frames at a time, matching as it goes, until ``until()``."""
    n = sim.head
    while not until() and n < len(sim.market.frames):
        n = min(n + 20, len(sim.market.frames))
        sim.release(n)
        engine.match_resting()


def ours(engine: TradingEngine, cid: str) -> Any:
    return engine.by_client[(SYM, cid)]


def make(cid: str, otype: OrderType, side: OrderSide, *, stop: Decimal | None = None,
         price: Decimal | None = None, qty: Decimal = QTY,
         tif: TimeInForce = TimeInForce.GTC, list_id: str = "") -> Order:  # fmt: skip
    return Order(cid, SYM, side, otype, qty, price=price, stop_price=stop, time_in_force=tif,
                 list_id=list_id)  # fmt: skip


def stop_order(
    cid: str, otype: OrderType, side: OrderSide, up: Decimal, down: Decimal, **kw: Any
) -> Order:
    """A stop of ``otype`` on the side of the market it triggers from; a limit type's price
    20 (quote) through the stop, so that it is marketable when it triggers."""
    above = otype.trigger_above(side)
    stop = up if above else down
    price = None
    if otype.has_price:
        price = stop + 20 if side is OrderSide.BUY else stop - 20
    return make(cid, otype, side, stop=stop, price=price, **kw)


async def raw_order(ex: CcxtExchange, cid: str) -> dict[str, Any]:
    got: dict[str, Any] = await ex.client.private_get_order(
        {"symbol": SYM, "origClientOrderId": cid}
    )
    return got


# --- every type goes out as itself ----------------------------------------------------------


@pytest.mark.parametrize("otype", list(OrderType))
async def test_each_order_type_reaches_the_exchange_as_binance_s_own_type(
    venue: Venue, ex: CcxtExchange, otype: OrderType
) -> None:
    sim, engine = venue
    up, down = levels(sim)
    bid, _ = best(sim)
    side = OrderSide.SELL
    if otype.has_stop:
        order = stop_order(f"t-type-{otype}", otype, side, up, down)
    elif otype is OrderType.MARKET:
        order = make(f"t-type-{otype}", otype, side)
    else:  # resting well above the market
        order = make(f"t-type-{otype}", otype, side, price=(bid * Decimal("1.01")).quantize(TICK))
    got = await ex.submit(order)
    sent = ours(engine, order.client_order_id)
    assert sent.type == otype.value and sent.side == "SELL" and sent.orig_qty == QTY
    assert sent.stop_price == (order.stop_price or 0)
    assert sent.price == (order.price or 0)
    assert sent.time_in_force == "GTC"
    assert got.client_order_id == order.client_order_id and got.type is otype
    assert got.stop_price == order.stop_price
    if otype is OrderType.MARKET:
        assert got.status is OrderStatus.FILLED and got.fills
    else:
        assert got.status is OrderStatus.ACCEPTED and got.filled_qty == 0


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("otype", [OrderType.LIMIT, OrderType.LIMIT_MAKER, *STOPS])
async def test_a_resting_order_is_queried_listed_and_canceled_with_its_hold_released(
    venue: Venue, ex: CcxtExchange, otype: OrderType, side: OrderSide
) -> None:
    sim, _ = venue
    up, down = levels(sim)
    cid = f"t-rest-{otype}-{side}"
    if otype.has_stop:
        order = stop_order(cid, otype, side, up, down)
    else:  # a limit on its passive side, beyond what the replay reaches
        far = Decimal("0.99") if side is OrderSide.BUY else Decimal("1.01")
        order = make(cid, otype, side, price=(last_price(sim) * far).quantize(TICK))
    before = await ex.balances()
    await ex.submit(order)
    found = await ex.query(SYM, cid)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert found.type is otype and found.stop_price == order.stop_price
    assert found.price == order.price
    listed = await ex.open_orders(SYM)
    assert [(o.client_order_id, o.type, o.stop_price) for o in listed] == [
        (cid, otype, order.stop_price)
    ]
    raw = await raw_order(ex, cid)
    # a stop is not on the book until it triggers (Binance: isWorking false, workingTime -1)
    assert raw["isWorking"] is not otype.has_stop
    assert (raw["workingTime"] == -1) is otype.has_stop
    assert raw["orderListId"] == -1
    held = await ex.balances()
    level = order.price if order.price is not None else order.stop_price
    assert level is not None
    if side is OrderSide.BUY:
        assert held["USDT"].locked == level * QTY  # a buy stop-market holds stop x quantity
    else:
        assert held["BTC"].locked == QTY
    canceled = await ex.cancel(SYM, cid)
    assert canceled.status is OrderStatus.CANCELED and canceled.client_order_id == cid
    after = await ex.balances()
    assert after["USDT"] == before["USDT"] and after["BTC"] == before["BTC"]
    assert await ex.open_orders(SYM) == []


# --- stops trigger on the replayed prints ---------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("otype", STOPS)
async def test_a_stop_triggers_on_the_first_replayed_print_through_its_stop(
    venue: Venue, ex: CcxtExchange, events: Events, otype: OrderType, side: OrderSide
) -> None:
    sim, engine = venue
    up, down = levels(sim)
    cid = f"t-trig-{otype}-{side}"
    order = stop_order(cid, otype, side, up, down)
    stop = order.stop_price
    assert stop is not None
    above = otype.trigger_above(side)
    await ex.submit(order)
    crossing = first_print(sim, (lambda p: p >= stop) if above else (lambda p: p <= stop))
    sim.release(crossing)  # every print before the crossing one
    engine.match_resting()
    waiting = await ex.query(SYM, cid)
    assert waiting is not None and waiting.status is OrderStatus.ACCEPTED
    assert not ours(engine, cid).is_working
    sim.release(crossing + 1)  # the crossing print
    engine.match_resting()
    bid, ask = best(sim)
    done = await ex.query(SYM, cid)
    assert done is not None and done.status is OrderStatus.FILLED and done.filled_qty == QTY
    raw = await raw_order(ex, cid)
    assert raw["isWorking"] is True and raw["workingTime"] > 0
    trades = [t.fill for t in await ex.my_trades(SYM)]
    assert trades and all(f.liquidity is Liquidity.TAKER for f in trades)
    # it took the book as it stood when it triggered, best level first
    assert trades[0].price == (ask if side is OrderSide.BUY else bid)
    if order.price is not None:  # a limit is never filled worse than its price
        worse = [f for f in trades if (f.price > order.price if side is OrderSide.BUY
                                      else f.price < order.price)]  # fmt: skip
        assert worse == []
    # the stream: NEW (not working), NEW again when it triggers (working), then the fill
    await events.until(lambda: any(r.exec_type == "TRADE" for r in events.of(cid)))
    reports = events.of(cid)
    assert [r.exec_type for r in reports[:2]] == ["NEW", "NEW"]
    assert [r.working for r in reports[:2]] == [False, True]
    assert all(r.order_type is otype and r.stop_price == stop for r in reports)
    assert all(r.order_list_id == -1 for r in reports)
    assert reports[-1].status is OrderStatus.FILLED


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
async def test_a_triggered_stop_limit_ioc_or_fok_that_cannot_fill_expires(
    venue: Venue, ex: CcxtExchange, tif: TimeInForce
) -> None:
    sim, engine = venue
    up, down = levels(sim)
    # a sell stop-limit whose limit is far above its stop: not marketable when it triggers
    order = make(f"t-{tif}", OrderType.STOP_LOSS_LIMIT, OrderSide.SELL, stop=down, price=up,
                 tif=tif)  # fmt: skip
    await ex.submit(order)
    sim.release(first_print(sim, lambda p: p <= down) + 1)
    engine.match_resting()
    got = await ex.query(SYM, order.client_order_id)
    assert got is not None and got.status is OrderStatus.EXPIRED and got.filled_qty == 0
    assert (await ex.balances())["BTC"].locked == 0


async def test_a_triggered_stop_limit_rests_fills_in_part_as_maker_and_is_canceled(
    venue: Venue, ex: CcxtExchange
) -> None:
    sim, engine = venue
    _, down = levels(sim)
    crossing = first_print(sim, lambda p: p <= down)
    # above the stop, below where the prints come back up to: it rests once triggered
    rebound = max(p for frame, p in ahead(sim) if frame > crossing)
    limit = rebound - 10
    assert limit > down + 20
    qty = Decimal("0.50000")  # more than the prints at its price
    order = make("t-part", OrderType.STOP_LOSS_LIMIT, OrderSide.SELL, stop=down, price=limit,
                 qty=qty)  # fmt: skip
    await ex.submit(order)
    mine = ours(engine, "t-part")
    sim.release(crossing + 1)
    engine.match_resting()
    assert mine.is_working and mine.executed_qty == 0  # triggered, not marketable
    step(sim, engine, lambda: mine.executed_qty > 0)
    mid = await ex.query(SYM, "t-part")
    assert mid is not None and mid.status is OrderStatus.PARTIALLY_FILLED
    assert 0 < mid.filled_qty < qty
    fills = [t.fill for t in await ex.my_trades(SYM)]
    assert fills and all(f.liquidity is Liquidity.MAKER and f.price == limit for f in fills)
    done = await ex.cancel(SYM, "t-part")
    assert done.status is OrderStatus.CANCELED and done.filled_qty == mid.filled_qty
    assert (await ex.balances())["BTC"].locked == 0


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("otype", STOPS)
async def test_a_stop_already_reached_is_refused_as_binance_refuses_it(
    venue: Venue, ex: CcxtExchange, otype: OrderType, side: OrderSide
) -> None:
    sim, engine = venue
    last = last_price(sim)
    above = otype.trigger_above(side)
    stop = last - 10 if above else last + 10  # already through
    price = None if not otype.has_price else stop
    with pytest.raises(OrderRejectedError) as err:
        await ex.submit(make("t-now", otype, side, stop=stop, price=price))
    assert err.value.code == -2010 and "Order would trigger immediately." in str(err.value)
    assert engine.orders == {}


def _binance(exc: BaseException, ex: CcxtExchange) -> tuple[int, str]:
    """Binance's (code, msg) out of a ccxt exception, as `CcxtExchange` reads it."""
    assert isinstance(exc, Exception)
    body = binance_error(exc, ex.client.last_json_response)
    assert body is not None, exc
    return body


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({"type": "STOP_LOSS"}, -1102,
         "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."),
        ({"type": "STOP_LOSS_LIMIT", "stopPrice": "60000", "timeInForce": "GTC"}, -1102,
         "Mandatory parameter 'price' was not sent, was empty/null, or malformed."),
        ({"type": "TAKE_PROFIT_LIMIT", "stopPrice": "70000", "price": "70000"}, -1102,
         "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
        ({"type": "STOP_LOSS", "stopPrice": "60000", "price": "60000"}, -1106,
         "Parameter 'price' sent when not required."),
        ({"type": "TAKE_PROFIT", "stopPrice": "70000", "timeInForce": "GTC"}, -1106,
         "Parameter 'timeInForce' sent when not required."),
        ({"type": "LIMIT", "price": "60000", "timeInForce": "GTC", "stopPrice": "60000"}, -1106,
         "Parameter 'stopPrice' sent when not required."),
        ({"type": "STOP_LOSS_LIMIT", "stopPrice": "60000", "price": "60000",
          "timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
        ({"type": "STOP_LOSS", "stopPrice": "60000.001"}, -1013, "Filter failure: PRICE_FILTER"),
        ({"type": "TRAILING_STOP"}, -1116, "Invalid orderType."),
    ],
)  # fmt: skip
async def test_bad_order_parameters_answer_binance_s_codes_and_messages(
    venue: Venue, ex: CcxtExchange, params: dict[str, str], code: int, msg: str
) -> None:
    _, engine = venue
    request = {"symbol": SYM, "side": "SELL", "quantity": "0.001", **params}
    with pytest.raises(Exception) as err:  # noqa: PT011 - ccxt's class varies; the body counts
        await ex.client.private_post_order(request)
    assert _binance(err.value, ex) == (code, msg)
    assert engine.orders == {}


# --- OCO order lists ------------------------------------------------------------------------


Leg = tuple[OrderType, Decimal, Decimal | None]


def oco(list_id: str, side: OrderSide, above: Leg, below: Leg, qty: Decimal = QTY) -> OrderList:
    """Legs as (type, level, limit price): the level is the stop of a stop type, else the price."""

    def leg(name: str, spec: Leg) -> Order:
        otype, level, limit = spec
        cid = f"{list_id}-{name}"
        if otype.has_stop:
            return make(cid, otype, side, stop=level, price=limit, qty=qty, list_id=list_id)
        return make(cid, otype, side, price=level, qty=qty, list_id=list_id)

    return OrderList(list_id, leg("above", above), leg("below", below))


async def test_an_oco_is_placed_as_two_legs_holding_the_balance_once(
    venue: Venue, ex: CcxtExchange, events: Events
) -> None:
    sim, _ = venue
    up, down = levels(sim)
    lst = oco("t-oco-1", OrderSide.SELL, (OrderType.LIMIT_MAKER, up, None),
              (OrderType.STOP_LOSS_LIMIT, down, down - 20))  # fmt: skip
    bid, _ = best(sim)
    await ex.submit(make("t-first", OrderType.LIMIT, OrderSide.BUY, price=bid - 100))
    before_count = int(ex.client.last_response_headers[ORDER_COUNT_HEADER])
    above, below = await ex.submit_list(lst)
    assert int(ex.client.last_response_headers[ORDER_COUNT_HEADER]) == before_count + 2
    assert (above.client_order_id, above.type, above.price) == (
        "t-oco-1-above",
        OrderType.LIMIT_MAKER,
        up,
    )
    assert (below.client_order_id, below.type, below.stop_price) == (
        "t-oco-1-below",
        OrderType.STOP_LOSS_LIMIT,
        down,
    )
    assert above.status is below.status is OrderStatus.ACCEPTED
    assert (await ex.balances())["BTC"].locked == QTY  # once, not twice
    raw_list = await ex.client.private_get_orderlist({"origClientOrderId": "t-oco-1"})
    assert raw_list["listOrderStatus"] == "EXECUTING" and raw_list["contingencyType"] == "OCO"
    assert {o["clientOrderId"] for o in raw_list["orders"]} == {"t-oco-1-above", "t-oco-1-below"}
    open_lists = await ex.client.private_get_openorderlist()
    assert [x["orderListId"] for x in open_lists] == [raw_list["orderListId"]]
    raw = await raw_order(ex, "t-oco-1-below")
    assert raw["orderListId"] == raw_list["orderListId"]
    await events.until(lambda: bool(events.lists))
    started = events.lists[0]
    assert (started.list_client_order_id, started.list_status_type, started.list_order_status) \
        == ("t-oco-1", "EXEC_STARTED", "EXECUTING")  # fmt: skip
    assert {cid for _, cid in started.orders} == {"t-oco-1-above", "t-oco-1-below"}
    legs = [r for r in events.reports if r.client_order_id.startswith("t-oco-1")]
    assert {r.order_list_id for r in legs} == {raw_list["orderListId"]}


async def test_the_oco_answer_has_the_documented_fields_stop_leg_first(
    venue: Venue, ex: CcxtExchange
) -> None:
    """Against Binance's documented ``orderList/oco`` answer (a sell OCO, RESULT reports): the
    same keys, the same JSON types, the stop-loss leg numbered and listed first."""
    sim, _ = venue
    up, down = levels(sim)
    doc = json.loads((HTTP / "new_order_list_oco_response.json").read_text())
    got = await ex.client.private_post_orderlist_oco(
        {"symbol": SYM, "side": "SELL", "quantity": "0.001", "listClientOrderId": "t-shape",
         "aboveType": "LIMIT_MAKER", "abovePrice": str(up), "belowType": "STOP_LOSS_LIMIT",
         "belowStopPrice": str(down), "belowPrice": str(down - 20),
         "belowTimeInForce": "GTC", "newOrderRespType": "RESULT"}
    )  # fmt: skip
    assert shape(got) == shape(doc) | {"orderReports": shape(got["orderReports"])}
    stop_doc, maker_doc = doc["orderReports"]
    stop_doc.pop("icebergQty")  # the example's stop leg is an iceberg; ours is not
    stop, maker = got["orderReports"]
    assert (stop["type"], maker["type"]) == ("STOP_LOSS_LIMIT", "LIMIT_MAKER")
    assert shape(stop) == shape(stop_doc) and list(stop) == list(stop_doc)
    assert shape(maker) == shape(maker_doc) and list(maker) == list(maker_doc)
    assert stop["orderId"] < maker["orderId"] and stop["workingTime"] == -1
    assert [o["orderId"] for o in got["orders"]] == [stop["orderId"], maker["orderId"]]


def shape(value: Any) -> Any:
    """JSON shape: keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("acting", ["above", "below"])
async def test_one_leg_acting_expires_the_other_and_ends_the_list(
    venue: Venue, ex: CcxtExchange, events: Events, acting: str
) -> None:
    """A sell OCO: the take-profit LIMIT_MAKER above fills as the market rises, or the stop
    below triggers as it falls; the other leg expires, the list is ALL_DONE (listStatus)."""
    sim, engine = venue
    up, down = levels(sim)
    far_up = (up * 2).quantize(TICK)  # never reached
    far_down = (down / 2).quantize(TICK)
    if acting == "above":
        lst = oco("t-oco-a", OrderSide.SELL, (OrderType.LIMIT_MAKER, up, None),
                  (OrderType.STOP_LOSS, far_down, None))  # fmt: skip
    else:
        lst = oco("t-oco-b", OrderSide.SELL, (OrderType.LIMIT_MAKER, far_up, None),
                  (OrderType.STOP_LOSS, down, None))  # fmt: skip
    above, below = await ex.submit_list(lst)
    actor, other = (above, below) if acting == "above" else (below, above)
    step(sim, engine, lambda: not ours(engine, other.client_order_id).is_open)
    got_actor = await ex.query(SYM, actor.client_order_id)
    got_other = await ex.query(SYM, other.client_order_id)
    assert got_other is not None and got_other.status is OrderStatus.EXPIRED
    assert got_other.filled_qty == 0
    assert got_actor is not None and got_actor.filled_qty > 0
    fills = [t.fill for t in await ex.my_trades(SYM)]
    maker = acting == "above"
    assert fills and all((f.liquidity is Liquidity.MAKER) is maker for f in fills)
    if maker:
        assert all(f.price == up for f in fills)
    await events.until(lambda: any(x.done for x in events.lists))
    done = [x for x in events.lists if x.done]
    assert [(x.list_client_order_id, x.list_status_type) for x in done] == [
        (lst.list_id, "ALL_DONE")
    ]
    expired = [r for r in events.of(other.client_order_id) if r.exec_type == "EXPIRED"]
    assert len(expired) == 1 and expired[0].status is OrderStatus.EXPIRED
    raw_list = await ex.client.private_get_orderlist({"origClientOrderId": lst.list_id})
    assert raw_list["listOrderStatus"] == "ALL_DONE"
    assert await ex.client.private_get_openorderlist() == []


async def test_canceling_one_leg_cancels_the_whole_list(
    venue: Venue, ex: CcxtExchange, events: Events
) -> None:
    sim, _ = venue
    up, down = levels(sim)
    lst = oco("t-oco-c", OrderSide.BUY, (OrderType.STOP_LOSS_LIMIT, up, up + 20),
              (OrderType.LIMIT_MAKER, down, None))  # fmt: skip
    await ex.submit_list(lst)
    held = (await ex.balances())["USDT"].locked
    assert held == (up + 20) * QTY  # a buy OCO holds its dearer leg, once
    canceled = await ex.cancel(SYM, "t-oco-c-below")
    assert canceled.status is OrderStatus.CANCELED
    partner = await ex.query(SYM, "t-oco-c-above")
    assert partner is not None and partner.status is OrderStatus.CANCELED
    assert (await ex.balances())["USDT"].locked == 0
    assert await ex.open_orders(SYM) == []
    await events.until(lambda: any(x.done for x in events.lists))
    assert {r.client_order_id for r in events.reports if r.exec_type == "CANCELED"} == {
        "t-oco-c-above",
        "t-oco-c-below",
    }
    # the list is gone as a whole: canceling it again is an unknown order
    with pytest.raises(Exception) as err:  # noqa: PT011
        await ex.client.private_delete_orderlist({"symbol": SYM, "listClientOrderId": "t-oco-c"})
    assert _binance(err.value, ex)[0] == -2011


async def test_delete_order_list_cancels_both_legs(venue: Venue, ex: CcxtExchange) -> None:
    sim, _ = venue
    up, down = levels(sim)
    lst = oco("t-oco-d", OrderSide.SELL, (OrderType.TAKE_PROFIT_LIMIT, up, up),
              (OrderType.STOP_LOSS, down, None))  # fmt: skip
    await ex.submit_list(lst)
    body = await ex.client.private_delete_orderlist({"symbol": SYM, "listClientOrderId": "t-oco-d"})
    assert body["listStatusType"] == "ALL_DONE" and body["listOrderStatus"] == "ALL_DONE"
    assert {r["status"] for r in body["orderReports"]} == {"CANCELED"}
    assert {r["origClientOrderId"] for r in body["orderReports"]} == {"t-oco-d-above",
                                                                      "t-oco-d-below"}  # fmt: skip
    assert (await ex.balances())["BTC"].locked == 0


async def test_cancel_all_open_orders_answers_an_oco_as_its_list_like_binance(
    venue: Venue, ex: CcxtExchange
) -> None:
    """``DELETE /api/v3/openOrders`` against the recorded answer: single orders as orders, an
    OCO as its list with both legs' reports (the sample's list has a buy stop-limit leg)."""
    sim, _ = venue
    up, down = levels(sim)
    bid, _ = best(sim)
    await ex.submit(make("t-all-1", OrderType.LIMIT, OrderSide.BUY, price=bid - 100))
    await ex.submit_list(
        oco(
            "t-all-oco",
            OrderSide.BUY,
            (OrderType.STOP_LOSS_LIMIT, up, up + 20),
            (OrderType.LIMIT_MAKER, down, None),
        )
    )
    got = await ex.client.private_delete_openorders({"symbol": SYM})
    doc = json.loads((HTTP / "cancel_open_orders_response.json").read_text())
    assert [("orderReports" in x) for x in got] == [False, True]
    assert list(got[0]) == list(doc[0])
    listed, doc_list = got[1], doc[2]
    assert list(listed) == list(doc_list)
    assert (listed["listStatusType"], listed["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
    stop_doc, maker_doc = (dict(r) for r in doc_list["orderReports"])
    for r in (stop_doc, maker_doc):
        r.pop("icebergQty")  # the sample's legs are icebergs
    stop, maker = listed["orderReports"]
    assert (stop["type"], maker["type"]) == ("STOP_LOSS_LIMIT", "LIMIT_MAKER")
    assert list(stop) == list(stop_doc) and list(maker) == list(maker_doc)
    assert {r["status"] for r in listed["orderReports"]} == {"CANCELED"}
    assert await ex.open_orders(SYM) == []
    assert (await ex.balances())["USDT"].locked == 0


async def test_oco_prices_on_the_wrong_side_of_the_last_price_are_refused(
    venue: Venue, ex: CcxtExchange
) -> None:
    """Binance: SELL limit/take-profit > last > stop, BUY the other way round; -2010 else."""
    sim, engine = venue
    last = last_price(sim)
    _, down = levels(sim)
    # a valid list by its own order (above > below), but its upper leg is below the market
    lst = oco("t-oco-bad", OrderSide.SELL, (OrderType.LIMIT_MAKER, last - 5, None),
              (OrderType.STOP_LOSS, down, None))  # fmt: skip
    with pytest.raises(OrderRejectedError) as err:
        await ex.submit_list(lst)
    assert err.value.code == -2010
    assert "The relationship of the prices for the orders is not correct." in str(err.value)
    assert engine.orders == {} and (await ex.balances())["BTC"].locked == 0


@pytest.mark.parametrize(
    ("side", "above", "below", "code", "msg"),
    [
        ("SELL", "STOP_LOSS", "LIMIT_MAKER", -1197,
         "A stop loss order in a sell OCO must be below."),
        ("SELL", "TAKE_PROFIT", "TAKE_PROFIT", -1199,
         "A take profit order in a sell OCO must be above."),
        ("BUY", "LIMIT_MAKER", "STOP_LOSS", -1196, "A stop loss order in a buy OCO must be above."),
        ("BUY", "STOP_LOSS", "STOP_LOSS", -1196, "A stop loss order in a buy OCO must be above."),
        ("BUY", "LIMIT_MAKER", "TAKE_PROFIT", -1165, "A limit order in a buy OCO must be below."),
        ("SELL", "LIMIT_MAKER", "LIMIT_MAKER", -1168, "At least one OCO order must be contingent."),
        ("SELL", "LIMIT", "STOP_LOSS", -1158, "Order type not supported in OCO."),
    ],
)  # fmt: skip
async def test_oco_legs_of_the_wrong_kind_answer_binance_s_codes(
    venue: Venue, ex: CcxtExchange, side: str, above: str, below: str, code: int, msg: str
) -> None:
    _, engine = venue
    params: dict[str, str] = {"symbol": SYM, "side": side, "quantity": "0.001"}
    for name, otype, level in (("above", above, "70000"), ("below", below, "50000")):
        params[f"{name}Type"] = otype
        if otype in ("LIMIT_MAKER", "LIMIT"):
            params[f"{name}Price"] = level
        else:
            params[f"{name}StopPrice"] = level
    with pytest.raises(Exception) as err:  # noqa: PT011
        await ex.client.private_post_orderlist_oco(params)
    assert _binance(err.value, ex) == (code, msg)
    assert engine.orders == {}


async def test_an_oco_leg_missing_its_stop_price_is_named(venue: Venue, ex: CcxtExchange) -> None:
    params = {"symbol": SYM, "side": "SELL", "quantity": "0.001", "aboveType": "LIMIT_MAKER",
              "abovePrice": "70000", "belowType": "STOP_LOSS_LIMIT", "belowPrice": "50000",
              "belowTimeInForce": "GTC"}  # fmt: skip
    with pytest.raises(Exception) as err:  # noqa: PT011
        await ex.client.private_post_orderlist_oco(params)
    assert _binance(err.value, ex) == (
        -1102,
        "Mandatory parameter 'belowStopPrice' was not sent, was empty/null, or malformed.",
    )
