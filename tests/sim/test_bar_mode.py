"""Bar mode: the simulator replaying the bundled 1m bars trades our orders by the backtest's
rules and timing, through ccxt and the user-data stream.

Reference values come from the bar file read on its own (`read_bar_file`), not from the
simulator. An order received while bar k is forming (bars before k released) is matched from
bar k: a market order fills at k's open (plus the backtest's 1 bp slippage), a resting limit at
its price on the first bar that touches it, a stop on the first bar that reaches its stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import orjson
import polars as pl
import pytest
from sim_helpers import ws_connect

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
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
from tessera.execution.userdata import ExecutionReport, UserDataStream
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.bars import market_from_bar_file
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

KEY, SECRET = "bars-key", "bars-secret"
SYM = "BTCUSDT"
HISTORY = 50  # bars released before the test trades: bar 50 is forming
TICK = Decimal("0.01")
SLIP = Decimal("0.0001")  # the backtest's default: 1 bp, against the order
QTY = Decimal("0.01000")

Venue = tuple[ExchangeSimulator, TradingEngine]


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return read_bar_file(SAMPLE_BARS)


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return market_from_bar_file(SAMPLE_BARS, SYM)


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[Venue]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(HISTORY)
        yield sim, engine


@pytest.fixture
async def ex(venue: Venue) -> AsyncIterator[CcxtExchange]:
    sim, _ = venue
    client = CcxtExchange(sim.rest_url, KEY, SECRET)
    yield client
    await client.close()


def px(bars: pl.DataFrame, col: str, i: int) -> Decimal:
    """The bar file's value as the matching reads a float bar."""
    return Decimal(repr(float(bars[col][i])))


def open_ms(bars: pl.DataFrame, i: int) -> int:
    return int(bars["open_time"][i].timestamp() * 1000)


def first_new_low(bars: pl.DataFrame, start: int, after: int) -> tuple[int, Decimal]:
    """The first bar ``j >= after`` whose low is below every low of bars [start, j) and whose
    open is above them, with a tick price strictly between: (j, price). A buy limit at that
    price is touched first by bar j, and bar j did not open through it."""
    floor = min(px(bars, "low", i) for i in range(start, after))
    for j in range(after, len(bars)):
        low, opened = px(bars, "low", j), px(bars, "open", j)
        level = (floor - TICK).quantize(TICK, rounding=ROUND_FLOOR)
        if low <= level < opened:
            return j, level
        floor = min(floor, low)
    raise AssertionError("the bars never make a new low")


def first_new_high(bars: pl.DataFrame, start: int, after: int) -> tuple[int, Decimal]:
    ceiling = max(px(bars, "high", i) for i in range(start, after))
    for j in range(after, len(bars)):
        high, opened = px(bars, "high", j), px(bars, "open", j)
        level = (ceiling + TICK).quantize(TICK, rounding=ROUND_CEILING)
        if high >= level > opened:
            return j, level
        ceiling = max(ceiling, high)
    raise AssertionError("the bars never make a new high")


def order(cid: str, side: OrderSide, otype: OrderType, *, price: Decimal | None = None,
          stop: Decimal | None = None, tif: TimeInForce = TimeInForce.GTC,
          list_id: str = "") -> Order:  # fmt: skip
    return Order(cid, SYM, side, otype, QTY, price=price, stop_price=stop, time_in_force=tif,
                 list_id=list_id)  # fmt: skip


async def test_a_market_order_fills_at_the_open_of_the_bar_forming_when_it_arrives(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame
) -> None:
    sim, engine = venue
    before = await ex.balances()
    got = await ex.submit(order("b-mkt", OrderSide.BUY, OrderType.MARKET))
    assert got.status is OrderStatus.FILLED and len(got.fills) == 1
    fill = got.fills[0]
    expected = px(bars, "open", HISTORY) * (1 + SLIP)  # the backtest's next-open fill
    assert fill.price == expected and fill.qty == QTY
    after = await ex.balances()
    assert after["USDT"].free == before["USDT"].free - expected * QTY
    assert after["BTC"].free == before["BTC"].free + QTY - fill.fee
    assert fill.fee == QTY * Decimal("0.001")  # the simulator's taker fee, in the asset bought
    sell = await ex.submit(order("b-mkt-2", OrderSide.SELL, OrderType.MARKET))
    assert sell.fills[0].price == px(bars, "open", HISTORY) * (1 - SLIP)  # still bar 50
    sim.release(HISTORY + 1)  # bar 50 closes: bar 51 forms
    third = await ex.submit(order("b-mkt-3", OrderSide.BUY, OrderType.MARKET))
    assert third.fills[0].price == px(bars, "open", HISTORY + 1) * (1 + SLIP)
    assert engine.orders[1].type == "MARKET"


async def test_a_resting_limit_fills_at_its_price_on_the_first_bar_that_touches_it(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame
) -> None:
    sim, engine = venue
    j, limit = first_new_low(bars, HISTORY, HISTORY + 5)
    placed = await ex.submit(order("b-lim", OrderSide.BUY, OrderType.LIMIT, price=limit))
    assert placed.status is OrderStatus.ACCEPTED
    sim.release(j)  # every bar before j has closed: none touched the limit
    waiting = await ex.query(SYM, "b-lim")
    assert waiting is not None and waiting.status is OrderStatus.ACCEPTED
    sim.release(j + 1)  # bar j closes
    done = await ex.query(SYM, "b-lim")
    assert done is not None and done.status is OrderStatus.FILLED
    (trade,) = await ex.my_trades(SYM)
    assert trade.fill.price == limit and trade.fill.liquidity is Liquidity.MAKER
    assert (await ex.balances())["USDT"].locked == 0
    assert engine.fills[0].time_ms > 0


async def test_a_limit_the_forming_bar_opens_through_fills_at_the_open_on_arrival(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame
) -> None:
    opened = px(bars, "open", HISTORY)
    got = await ex.submit(order("b-thru", OrderSide.BUY, OrderType.LIMIT, price=opened + 50))
    assert got.status is OrderStatus.FILLED
    assert got.fills[0].price == opened and got.fills[0].liquidity is Liquidity.TAKER
    ioc = await ex.submit(
        order("b-ioc", OrderSide.BUY, OrderType.LIMIT, price=opened - 50, tif=TimeInForce.IOC)
    )
    assert ioc.status is OrderStatus.EXPIRED and ioc.filled_qty == 0
    with pytest.raises(OrderRejectedError) as err:
        await ex.submit(order("b-maker", OrderSide.BUY, OrderType.LIMIT_MAKER, price=opened + 50))
    assert err.value.code == -2010 and "immediately match and take" in str(err.value)


@pytest.mark.parametrize("otype", [OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT])
async def test_a_stop_triggers_on_the_first_bar_that_reaches_it(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame, otype: OrderType
) -> None:
    sim, _ = venue
    j, stop = first_new_low(bars, HISTORY - 1, HISTORY + 5)
    limit = stop - 100 if otype.has_price else None  # a stop-limit marketable at its trigger
    await ex.submit(order("b-stop", OrderSide.SELL, otype, stop=stop, price=limit))
    raw = await ex.client.private_get_order({"symbol": SYM, "origClientOrderId": "b-stop"})
    assert raw["isWorking"] is False and raw["workingTime"] == -1
    sim.release(j)
    waiting = await ex.query(SYM, "b-stop")
    assert waiting is not None and waiting.status is OrderStatus.ACCEPTED
    sim.release(j + 1)
    done = await ex.query(SYM, "b-stop")
    assert done is not None and done.status is OrderStatus.FILLED
    (trade,) = await ex.my_trades(SYM)
    # the bar did not open through the stop: it triggered at the stop, as a taker
    expected = stop * (1 - SLIP) if otype is OrderType.STOP_LOSS else stop
    assert trade.fill.price == expected and trade.fill.liquidity is Liquidity.TAKER
    raw = await ex.client.private_get_order({"symbol": SYM, "origClientOrderId": "b-stop"})
    assert raw["isWorking"] is True and raw["workingTime"] > 0


async def test_an_oco_on_bars_expires_the_leg_that_did_not_act(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame
) -> None:
    """A sell OCO: the take-profit LIMIT_MAKER above, the stop-loss below; whichever level the
    bars reach first acts, the other expires on that bar."""
    sim, engine = venue
    j_up, up = first_new_high(bars, HISTORY - 1, HISTORY + 5)
    j_down, down = first_new_low(bars, HISTORY - 1, HISTORY + 5)
    lst = OrderList(
        "b-oco",
        order("b-oco-tp", OrderSide.SELL, OrderType.LIMIT_MAKER, price=up, list_id="b-oco"),
        order("b-oco-sl", OrderSide.SELL, OrderType.STOP_LOSS, stop=down, list_id="b-oco"),
    )
    await ex.submit_list(lst)
    first = min(j_up, j_down)
    sim.release(first)
    assert {o.status for o in engine.orders.values()} == {"NEW"}
    sim.release(first + 1)
    actor, other = ("b-oco-tp", "b-oco-sl") if j_up < j_down else ("b-oco-sl", "b-oco-tp")
    acted = await ex.query(SYM, actor)
    expired = await ex.query(SYM, other)
    assert acted is not None and acted.status is OrderStatus.FILLED
    assert expired is not None and expired.status is OrderStatus.EXPIRED
    assert (await ex.balances())["BTC"].locked == 0
    assert len(engine.bars.working) == 0


async def test_the_fill_goes_out_before_the_kline_of_its_bar(
    venue: Venue, ex: CcxtExchange, bars: pl.DataFrame
) -> None:
    """The replay running on its own: bar j is matched once bar j-1's frame is out and before
    bar j's; its fill reaches the user-data stream before bar j's closed kline does."""
    sim, engine = venue
    j, limit = first_new_low(bars, HISTORY, HISTORY + 5)
    published_at: list[int] = []  # the release position when the fill was published

    def watch(event: dict[str, object]) -> None:
        if event.get("x") == "TRADE":
            published_at.append(sim.head)

    engine.listeners.append(watch)
    seen: list[tuple[str, int]] = []
    reports: list[ExecutionReport] = []

    def on_report(r: ExecutionReport) -> None:
        reports.append(r)
        if r.exec_type == "TRADE":
            seen.append(("fill", 0))

    stream = UserDataStream(sim.rest_url, sim.ws_url, KEY, on_report)
    task = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.connected.wait(), 10)
    await ex.submit(order("b-seq", OrderSide.BUY, OrderType.LIMIT, price=limit))
    async with ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as ws:
        sim.start_replay()
        while ("kline", open_ms(bars, j)) not in seen:
            k = orjson.loads(await asyncio.wait_for(ws.recv(), 10))["k"]
            if k["x"]:
                seen.append(("kline", int(k["t"])))
    stream.stop()
    await asyncio.wait_for(task, 10)
    # frames [0, j) were out (bar j-1's kline the last), bar j's not yet
    assert published_at == [j]
    assert seen.index(("fill", 0)) < seen.index(("kline", open_ms(bars, j)))
    assert [r.status for r in reports if r.client_order_id == "b-seq"][-1] is OrderStatus.FILLED
