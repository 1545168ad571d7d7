"""The user-data stream: real Binance payloads parsed, and order updates pushed by the simulator
applied by `OrderManager` without any polling (real sockets, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from venue_helpers import resting_price

from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.userdata import (
    AccountPosition,
    ExecutionReport,
    ListStatus,
    MalformedEventError,
    UserDataStream,
    parse_user_event,
)
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
USER = SAMPLES / "binance-api" / "spot-user-data"
BTC_0808 = SAMPLES / "binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"


def test_real_payloads_parse() -> None:
    trade = parse_user_event((USER / "execution_report_trade.json").read_text())
    assert isinstance(trade, ExecutionReport) and trade.fill is not None
    assert trade.exec_type == "TRADE" and trade.status is OrderStatus.FILLED
    assert trade.fill.trade_id == "98765432" and trade.fill.price == Decimal("2500.00000000")
    assert trade.fill.liquidity.value == "maker" and trade.fill.fee_asset == "ETH"
    canceled = parse_user_event((USER / "execution_report_canceled.json").read_text())
    assert isinstance(canceled, ExecutionReport) and canceled.status is OrderStatus.CANCELED
    raw = json.loads((USER / "execution_report_canceled.json").read_text())
    assert canceled.client_order_id == (raw["C"] or raw["c"])  # the canceled order's own id
    for name in ("execution_report_new", "execution_report_expired", "execution_report_wrapped"):
        # (the last one as the WebSocket API's user-data subscription wraps it)
        assert isinstance(parse_user_event((USER / f"{name}.json").read_text()), ExecutionReport)
    pos = parse_user_event((USER / "account_position.json").read_text())
    assert isinstance(pos, AccountPosition) and pos.balances["USDT"][1] == Decimal("2500")
    assert parse_user_event((USER / "balance_update.json").read_text()) is None  # not used
    with pytest.raises(MalformedEventError):
        parse_user_event('{"e":"executionReport","s":"BTCUSDT"}')
    with pytest.raises(MalformedEventError):
        parse_user_event("{not json")


def test_a_stop_order_report_and_the_list_status_event_parse() -> None:
    """The real payloads: a STOP_LOSS_LIMIT's executionReport names its type and stop price;
    ``listStatus`` (an OCO's state, as the WebSocket API wraps it) is a `ListStatus`."""
    stop = parse_user_event((USER / "execution_report_stop_loss.json").read_text())
    raw = json.loads((USER / "execution_report_stop_loss.json").read_text())
    assert isinstance(stop, ExecutionReport) and stop.status is OrderStatus.ACCEPTED
    assert stop.order_type is OrderType.STOP_LOSS_LIMIT
    assert stop.stop_price == Decimal(raw["P"]) and stop.order_list_id == -1
    plain = parse_user_event((USER / "execution_report_new.json").read_text())
    assert isinstance(plain, ExecutionReport) and plain.stop_price is None
    assert plain.order_type is OrderType.LIMIT
    listed = parse_user_event((USER / "list_status_wrapped.json").read_text())
    event = json.loads((USER / "list_status_wrapped.json").read_text())["event"]
    assert isinstance(listed, ListStatus) and not listed.done
    assert (listed.order_list_id, listed.list_client_order_id) == (event["g"], event["C"])
    assert (listed.list_status_type, listed.list_order_status) == ("EXEC_STARTED", "EXECUTING")
    assert listed.orders == tuple((o["i"], o["c"]) for o in event["O"])
    with pytest.raises(MalformedEventError):
        parse_user_event('{"e":"listStatus","s":"ETHBTC"}')


@pytest.fixture
async def venue() -> AsyncIterator[tuple[ExchangeSimulator, TradingEngine]]:
    sim = ExchangeSimulator(SimMarket.from_recording([BTC_0808]), speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)
        yield sim, engine


async def test_listen_key_needs_the_api_key(
    venue: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    sim, _ = venue
    async with aiohttp.ClientSession() as s:
        url = f"{sim.rest_url}/api/v3/userDataStream"
        async with s.post(url) as r:
            assert r.status == 401 and (await r.json())["code"] == -2014
        async with s.post(url, headers={"X-MBX-APIKEY": KEY}) as r:
            key = (await r.json())["listenKey"]
            assert len(key) == 60
        async with s.put(url, params={"listenKey": key}, headers={"X-MBX-APIKEY": KEY}) as r:
            assert r.status == 200
        async with s.put(url, params={"listenKey": "x" * 60}, headers={"X-MBX-APIKEY": KEY}) as r:
            assert (await r.json())["code"] == -1125


async def test_pushed_updates_fill_the_order_without_polling(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    om = OrderManager(store, ex, "run-uds")
    balances: list[AccountPosition] = []
    stream = UserDataStream(sim.rest_url, sim.ws_url, KEY, om.on_execution_report, balances.append)
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(stream.connected.wait(), 10)
        price = resting_price(sim)
        order = Order("t-uds-1", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.002"),
                      price=price)  # fmt: skip
        await om.submit(order)
        assert order.status is OrderStatus.ACCEPTED
        sim.release(len(sim.market.frames))
        engine.match_resting()  # fills happen on the exchange: we only listen

        def settled() -> bool:  # the fill's executionReport and the balance update after it
            unlocked = bool(balances) and balances[-1].balances["USDT"][1] == 0
            return order.status is OrderStatus.FILLED and unlocked

        for _ in range(200):
            if settled():
                break
            await asyncio.sleep(0.05)
        stored = store.get_order("t-uds-1")
        assert stored is not None and stored.status is OrderStatus.FILLED
        assert stored.filled_qty == Decimal("0.002")
        fills = [f.fill for f in store.list_fills(limit=100) if f.fill.client_order_id == "t-uds-1"]
        assert fills and sum(f.qty for f in fills) == Decimal("0.002")
        assert stream.reports >= 2 and stream.malformed == 0
        assert balances and balances[-1].balances["USDT"][1] == 0  # nothing locked any more
        # the same fills again (a reconnect overlap, or recovery): nothing doubles
        report = await om.recover()
        assert report.fills_imported == 0
        assert len(
            [f.fill for f in store.list_fills(limit=100) if f.fill.client_order_id == "t-uds-1"]
        ) == len(fills)
    finally:
        stream.stop()
        await asyncio.wait_for(task, 10)
        await ex.close()
        store.close()
