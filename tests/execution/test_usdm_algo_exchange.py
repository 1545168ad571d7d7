"""Stops and take-profits of `UsdmCcxtExchange` through Binance's algo order service, against
the in-process USDⓈ-M simulator on the bundled real BTCUSDT perpetual recording: a reduce-only
stop-market is accepted as a conditional, rests (listed, found by client id), triggers on the
recorded trades, and its fill reaches the ledger through the order manager's recovery and
through the user-data stream; a conditional is canceled by its client id. The ``ALGO_UPDATE``
parser is checked on Binance's real payloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from usdm_exchange_helpers import btc_usdm_market, started_usdm_venue, usdm_exchange

from tessera.execution.exchange import UnknownOrderError
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.execution.perp_reconcile import PerpSettings
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import PerpReconciler
from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange
from tessera.venues.binance_usdm.user_data import FuturesExecutionReport, parse_user_event

ROOT = Path(__file__).resolve().parents[2]
USER = ROOT / "samples/binance-api/futures-user-data"
CROSS20 = PerpSettings(leverage=20, mode=MarginMode.CROSS)

Setup = tuple[UsdmVenue, UsdmCcxtExchange, OrderManager, PerpReconciler]


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return btc_usdm_market()


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[UsdmVenue]:
    async with started_usdm_venue(market) as v:
        yield v


@pytest.fixture
async def ex(venue: UsdmVenue) -> AsyncIterator[UsdmCcxtExchange]:
    async with usdm_exchange(venue) as client:
        yield client


@pytest.fixture
async def setup(database_url: str, venue: UsdmVenue, ex: UsdmCcxtExchange) -> AsyncIterator[Setup]:
    assert venue.engine is not None
    store = ExecutionStore(database_url)
    om = OrderManager(store, ex, "run-usdm-algo")
    rec = PerpReconciler(om, venue.engine.filters, ["BTCUSDT"], CROSS20, account="perp")
    try:
        yield venue, ex, om, rec
    finally:
        store.close()


def order(cid: str, side: str, qty: str, otype: str = "MARKET", **kw: object) -> Order:
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=OrderSide(side),
        type=OrderType(otype),
        qty=Decimal(qty),
        **kw,  # type: ignore[arg-type]
    )


def first_print_below(venue: UsdmVenue, by: Decimal) -> tuple[int, Decimal]:
    """The index and price of the first recorded trade after the replay's head at least
    ``by`` under the last one."""
    trades = venue.sim.market.trades("BTCUSDT")
    seen = len(venue.sim.state.trades("BTCUSDT"))
    last = Decimal(trades.trades[seen - 1].price)
    i = next(
        k for k in range(seen, len(trades.trades)) if Decimal(trades.trades[k].price) <= last - by
    )
    return i, Decimal(trades.trades[i].price)


def trigger(venue: UsdmVenue, i: int) -> None:
    """Release the recording through trade ``i`` and let the engine meet it."""
    assert venue.engine is not None
    venue.sim.release(venue.sim.market.trades("BTCUSDT").anchors[i] + 1)
    venue.engine.match_resting()


async def test_a_reduce_only_stop_market_rests_triggers_and_its_fill_reaches_the_ledger(
    setup: Setup,
) -> None:
    venue, ex, om, rec = setup
    assert (await rec.run()).ok
    await om.submit(order("a-long", "BUY", "0.010"))
    i, stop = first_print_below(venue, Decimal(10))
    sl = await om.submit(order("a-sl", "SELL", "0.010", "STOP_LOSS", stop_price=stop,
                               reduce_only=True))  # fmt: skip
    assert sl.status is OrderStatus.ACCEPTED
    assert sl.exchange_order_id is not None and sl.exchange_order_id.startswith("algo-")
    [listed] = await ex.open_orders("BTCUSDT")
    assert (listed.client_order_id, listed.type, listed.stop_price) == (
        "a-sl", OrderType.STOP_LOSS, stop,
    )  # fmt: skip
    resting = await ex.query("BTCUSDT", "a-sl")
    assert resting is not None and resting.status is OrderStatus.ACCEPTED
    assert (await rec.run()).ok  # the resting conditional is ours
    trigger(venue, i)
    assert (await rec.run()).ok, "the fill is imported and the account is flat"
    done = om.store.get_order("a-sl")
    assert done is not None
    assert (done.status, done.filled_qty) == (OrderStatus.FILLED, Decimal("0.010"))
    assert rec.ledger_positions() == {"BTCUSDT": Decimal(0)}
    assert [p.qty for p in await ex.positions(["BTCUSDT"])] == [Decimal(0)]


async def test_the_user_data_stream_alone_brings_the_stops_fill_to_the_order_manager(
    setup: Setup,
) -> None:
    venue, ex, om, _ = setup
    await om.submit(order("s-long", "BUY", "0.010"))
    i, stop = first_print_below(venue, Decimal(10))
    key = (await ex.client.fapiPrivatePostListenKey())["listenKey"]
    reports: list[FuturesExecutionReport] = []
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{venue.sim.ws_url}/ws/{key}") as ws,
    ):
        await asyncio.sleep(0.05)
        await om.submit(order("s-sl", "SELL", "0.010", "STOP_LOSS", stop_price=stop,
                              reduce_only=True))  # fmt: skip
        trigger(venue, i)
        while not reports or reports[-1].status is not OrderStatus.FILLED:
            event = parse_user_event((await asyncio.wait_for(ws.receive(), 5)).data)
            if isinstance(event, FuturesExecutionReport) and event.client_order_id == "s-sl":
                reports.append(event)
                om.on_execution_report(event)
    assert [(r.exec_type, r.working) for r in reports[:2]] == [("NEW", False), ("TRIGGERED", True)]
    done = om.store.get_order("s-sl")
    assert done is not None
    assert (done.status, done.filled_qty) == (OrderStatus.FILLED, Decimal("0.010"))
    assert reports[-1].exchange_order_id == reports[1].exchange_order_id  # the order it became
    assert done.exchange_order_id is not None and done.exchange_order_id.startswith("algo-")


async def test_a_conditional_is_canceled_by_its_client_id(
    venue: UsdmVenue, ex: UsdmCcxtExchange
) -> None:
    await ex.submit(order("c-long", "BUY", "0.010"))
    _, stop = first_print_below(venue, Decimal(10))
    placed = await ex.submit(
        order("c-tp", "SELL", "0.010", "STOP_LOSS_LIMIT", stop_price=stop, price=stop - 5,
              reduce_only=True)
    )  # fmt: skip
    assert (placed.status, placed.type, placed.price) == (
        OrderStatus.ACCEPTED, OrderType.STOP_LOSS_LIMIT, stop - 5,
    )  # fmt: skip
    canceled = await ex.cancel("BTCUSDT", "c-tp")
    assert (canceled.client_order_id, canceled.status) == ("c-tp", OrderStatus.CANCELED)
    assert [o.client_order_id for o in await ex.open_orders("BTCUSDT")] == []
    with pytest.raises(UnknownOrderError):
        await ex.cancel("BTCUSDT", "c-tp")
    assert await ex.query("BTCUSDT", "nobody") is None


def test_binances_real_algo_updates_parse_as_the_conditionals_state() -> None:
    new = parse_user_event((USER / "algo_update_new.json").read_text())
    gone = parse_user_event((USER / "algo_update_canceled.json").read_text())
    assert isinstance(new, FuturesExecutionReport) and isinstance(gone, FuturesExecutionReport)
    assert (new.client_order_id, new.exchange_order_id, new.status, new.working) == (
        "Q5xaq5EGKgXXa0fD7fs0Ip", "algo-2148719", OrderStatus.ACCEPTED, False,
    )  # fmt: skip
    assert (new.venue_order_type, new.stop_price, new.fill) == ("TAKE_PROFIT", Decimal(750), None)
    assert (gone.status, gone.exec_type) == (OrderStatus.CANCELED, "CANCELED")
