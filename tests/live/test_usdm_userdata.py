"""`PerpUserDataStream` on the in-process USDⓈ-M simulator (real sockets, the bundled real
BTCUSDT perpetual recording stepped by hand): the venue's ORDER_TRADE_UPDATE reaches the order
manager as an `ExecutionReport`, a resting order filled by a replayed trade is booked from the
stream alone, a market order's fill (brought by the answer and pushed again) is booked once,
and ACCOUNT_UPDATE gives the signed position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.live.perp_userdata import PerpUserDataStream
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue
from tessera.venues.binance_usdm.user_data import FuturesAccountUpdate, FuturesExecutionReport

USDM_BTC = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"
KEY, SECRET = "usdm-key", "usdm-secret"
D = Decimal


class Wired:
    def __init__(self, v: UsdmVenue, store: ExecutionStore) -> None:
        self.venue = v
        self.exchange = open_exchange(v.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
        self.manager = OrderManager(store, self.exchange, "ud-run", "", "dev")
        self.reports: list[FuturesExecutionReport] = []
        self.accounts: list[FuturesAccountUpdate] = []
        self.stream = PerpUserDataStream(
            v.sim.rest_url,
            v.sim.ws_url,
            KEY,
            on_report=self.on_report,
            on_perp_account=self.accounts.append,
        )

    def on_report(self, report: object) -> None:
        assert isinstance(report, FuturesExecutionReport)
        self.reports.append(report)
        self.manager.on_execution_report(report)


@pytest.fixture
async def wired(database_url: str) -> AsyncIterator[Wired]:
    v = usdm_venue(
        usdm_market([USDM_BTC]),
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    async with v.sim:
        v.sim.release(15_000)
        store = ExecutionStore(database_url)
        w = Wired(v, store)
        task = asyncio.create_task(w.stream.run())
        try:
            await asyncio.wait_for(w.stream.connected.wait(), 5)
            yield w
        finally:
            w.stream.stop()
            await asyncio.wait_for(task, 5)
            await w.exchange.close()
            store.close()


async def until(check: object, timeout_s: float = 5.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_a_resting_buy_filled_by_a_replayed_trade_is_booked_from_the_stream(
    wired: Wired,
) -> None:
    v, om = wired.venue, wired.manager
    engine = v.engine
    assert engine is not None
    v.sim.state.advance_to(v.sim.head)
    bid = max(v.sim.state.books["BTCUSDT"].bids)
    trades = v.sim.market.trades("BTCUSDT")
    after = len(v.sim.state.trades("BTCUSDT"))
    i = next(k for k in range(after, len(trades.trades)) if D(trades.trades[k].price) <= bid)
    order = Order("ud-rest", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, D("0.001"), price=bid)
    await om.submit(order)
    assert order.status is OrderStatus.ACCEPTED
    v.sim.release(trades.anchors[i] + 1)
    engine.match_resting()
    await until(lambda: order.status is OrderStatus.FILLED)
    [fill] = om.store.all_fills()
    assert (fill.client_order_id, fill.qty, fill.price) == ("ud-rest", D("0.001"), bid)
    assert om.positions[("BTCUSDT", "")].qty == D("0.001")
    await until(lambda: any(a.positions for a in wired.accounts))
    last = [a for a in wired.accounts if a.positions][-1]
    assert [(p.symbol, p.qty) for p in last.positions] == [("BTCUSDT", D("0.001"))]


async def test_a_market_sell_is_booked_once_from_its_answer_and_its_pushed_report(
    wired: Wired,
) -> None:
    om = wired.manager
    order = Order("ud-mkt", "BTCUSDT", OrderSide.SELL, OrderType.MARKET, D("0.002"))
    await om.submit(order)  # the answer brings the fill (the order's trades)
    assert order.status is OrderStatus.FILLED
    await until(lambda: any(r.fill is not None for r in wired.reports))
    await asyncio.sleep(0.1)  # let any further report arrive
    assert [f.client_order_id for f in om.store.all_fills()] == ["ud-mkt"]  # booked once
    assert om.positions[("BTCUSDT", "")].qty == D("-0.002")  # a short, from a sell
    assert wired.stream.malformed == 0
