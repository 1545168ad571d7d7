"""`OrderManager` end to end: real sockets to the simulator, real SQLite and PostgreSQL.

Life cycles with every step persisted; a lost response; a process killed with SIGKILL between
sending an order and recording its answer; fills made while the process was down, imported once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from venue_helpers import resting_price

from tessera.execution.ccxt_exchange import CcxtExchange
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.state import OrderEvent, OrderEventKind
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.server import SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"
RUN = "run-om"


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


def limit_buy(cid: str, price: Decimal, qty: str = "0.00100") -> Order:
    return Order(cid, "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal(qty), price=price)


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[tuple[ExchangeSimulator, TradingEngine]]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)
        yield sim, engine


async def test_life_cycle_is_persisted_and_recovery_is_idempotent(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    try:
        om = OrderManager(store, ex, RUN, strategy="s1")
        price = resting_price(sim)
        order = await om.submit(limit_buy("t-om-1", price))
        assert order.status is OrderStatus.ACCEPTED and order.exchange_order_id
        assert store.get_order("t-om-1").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
        market = await om.submit(
            Order("t-om-2", "BTCUSDT", OrderSide.SELL, OrderType.MARKET, Decimal("0.002"))
        )
        assert market.status is OrderStatus.FILLED and len(store.list_fills()) >= 1
        rejected = await om.submit(limit_buy("t-om-3", price, qty="9001"))
        assert rejected.status is OrderStatus.REJECTED
        assert "LOT_SIZE" in (store.get_order("t-om-3").reject_reason or "")  # type: ignore[union-attr]

        sim.release(len(sim.market.frames))  # the market trades through our resting buy
        engine.match_resting()
        fresh = OrderManager(ExecutionStore(database_url), ex, RUN)
        report = await fresh.recover()
        assert report.updated == ["t-om-1"] and report.fills_imported >= 1
        stored = store.get_order("t-om-1")
        assert stored is not None and stored.status is OrderStatus.FILLED
        assert stored.filled_qty == Decimal("0.001")
        n_fills = len(store.list_fills(limit=1000))
        again = await OrderManager(ExecutionStore(database_url), ex, RUN).recover()
        assert again.fills_imported == 0 and len(store.list_fills(limit=1000)) == n_fills
        (pos,) = [p for p in store.positions() if p.symbol == "BTCUSDT"]
        base_fees = sum((f.fee for f in store.all_fills() if f.fee_asset == "BTC"), Decimal(0))
        assert base_fees > 0  # the buy's commission was taken in BTC
        assert pos.qty == Decimal("0.001") - Decimal("0.002") - base_fees  # bought, sold
    finally:
        await ex.close()
        store.close()


async def test_lost_response_and_unsent_intent(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    try:
        om = OrderManager(store, ex, RUN)
        price = resting_price(sim)
        engine.config.lose_responses = 1
        order = await om.submit(limit_buy("t-lost-a", price))
        assert order.status is OrderStatus.ACCEPTED
        assert sum(1 for o in engine.orders.values() if o.client_order_id == "t-lost-a") == 1
        # an intent recorded by a process that died before sending it
        unsent = limit_buy("t-unsent", price)
        assert om.record_intent(unsent)
        report = await OrderManager(ExecutionStore(database_url), ex, RUN).recover()
        assert report.closed_unsent == ["t-unsent"]
        assert store.get_order("t-unsent").status is OrderStatus.CANCELED  # type: ignore[union-attr]
        assert not any(o.client_order_id == "t-unsent" for o in engine.orders.values())
    finally:
        await ex.close()
        store.close()


CHILD = """
import asyncio, sys
from decimal import Decimal
from tessera.execution.ccxt_exchange import CcxtExchange
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore

async def main():
    url, rest, price = sys.argv[1], sys.argv[2], Decimal(sys.argv[3])
    ex = CcxtExchange(rest, "test-key", "test-secret")
    om = OrderManager(ExecutionStore(url), ex, "run-kill")
    order = Order("t-kill-1", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.001"),
                  price=price)
    await om.submit(order)  # the simulator holds the answer back: we are killed meanwhile
    print("answered", order.status, flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_killed_between_send_and_answer_recovers_to_the_exchange_state(
    market: SimMarket, database_url: str, tmp_path: Path
) -> None:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(
        sim, TradingConfig(api_key=KEY, api_secret=SECRET, response_delay_s=30.0)
    )
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    thread = SimulatorThread(sim)
    running = thread.start()
    try:

        async def step(n: int) -> None:
            running.release(n)

        thread.call(step(4000))
        price = resting_price(running)
        child = subprocess.Popen(
            [sys.executable, str(script), database_url, running.rest_url, str(price)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            o.client_order_id == "t-kill-1" for o in list(engine.orders.values())
        ):
            time.sleep(0.05)
        assert any(o.client_order_id == "t-kill-1" for o in engine.orders.values())
        os.kill(child.pid, signal.SIGKILL)  # the order is on the exchange; the answer is not here
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL and "answered" not in out

        store = ExecutionStore(database_url)
        assert store.get_order("t-kill-1").status is OrderStatus.SUBMITTED  # type: ignore[union-attr]
        engine.config.response_delay_s = 0.0

        async def recover() -> object:
            ex = CcxtExchange(running.rest_url, KEY, SECRET)
            try:
                return await OrderManager(store, ex, "run-kill").recover()
            finally:
                await ex.close()

        report = asyncio.run(recover())  # a new process would do exactly this on start
        assert report.updated == ["t-kill-1"]  # type: ignore[attr-defined]
        stored = store.get_order("t-kill-1")
        assert stored is not None and stored.status is OrderStatus.ACCEPTED
        assert stored.exchange_order_id is not None
        assert sum(1 for o in engine.orders.values() if o.client_order_id == "t-kill-1") == 1
        store.close()
    finally:
        thread.stop()


async def test_rate_limited_submit_is_rejected_and_a_recent_unknown_order_is_not_closed(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    """A 429 on submit is a refusal (Binance did not process it); an in-flight order the
    exchange does not know yet stays open while its request may still be processed."""
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    try:
        manager = OrderManager(store, ex, RUN)
        sim.faults.rest_429 = 1
        refused = await manager.submit(limit_buy(f"{RUN}-1", resting_price(sim)))
        assert refused.status is OrderStatus.REJECTED
        assert not engine.orders

        manager.settle_ns = 60 * 10**9
        unsent = limit_buy(f"{RUN}-2", resting_price(sim))
        with store.batch():
            manager.record_intent(unsent)
            manager.mark_submitted(unsent)
        report = await manager.recover()
        assert report.settling == [unsent.client_order_id] and not report.closed_unsent
        assert store.get_order(unsent.client_order_id).status is OrderStatus.SUBMITTED  # type: ignore[union-attr]
        manager.settle_ns = 0
        report = await manager.recover()
        assert report.closed_unsent == [unsent.client_order_id]
    finally:
        await ex.close()
        store.close()


class OutageStore(ExecutionStore):
    """The real store, with the database "unavailable" for the next ``outage`` fill writes."""

    outage = 0

    def record_fill(self, *args: Any, **kwargs: Any) -> bool:
        if self.outage:
            self.outage -= 1
            raise OperationalError("INSERT INTO fills", {}, ConnectionError("database down"))
        return super().record_fill(*args, **kwargs)


class EventLog:
    def __init__(self) -> None:
        self.kinds: list[OrderEventKind] = []

    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        self.kinds.append(event.kind)


async def test_a_fill_the_store_could_not_write_is_applied_exactly_once_later(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    """While the database cannot take a fill, the order and position in memory stay as the
    store has them and observers hear nothing; recovery later applies every fill once."""
    _, engine = venue
    store = OutageStore(database_url)
    ex = CcxtExchange(venue[0].rest_url, KEY, SECRET)
    events = EventLog()
    try:
        om = OrderManager(store, ex, RUN, strategy="s1", observer=events)
        order = Order("t-om-out", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("0.003"))
        store.outage = 1
        with pytest.raises(OperationalError):  # the answer's batch (acceptance + fills) fails
            await om.submit(order)
        assert engine.orders  # the exchange filled it
        assert order.status is OrderStatus.SUBMITTED and not order.trade_ids
        assert order.filled_qty == 0 and not om.positions
        assert OrderEventKind.FILLED not in events.kinds

        store.outage = 1  # still down for recovery's first write, one by one this time
        with pytest.raises(OperationalError):
            await om.recover()
        assert order.status is OrderStatus.ACCEPTED and not order.trade_ids and not om.positions

        report = await om.recover()  # the database answers again
        assert report.updated == ["t-om-out"] and order.status is OrderStatus.FILLED
        sim_fills = [f for f in engine.fills if f.order.client_order_id == "t-om-out"]
        assert len(store.all_fills()) == len(sim_fills) == report.fills_imported
        base_fees = sum((f.commission for f in sim_fills), Decimal(0))
        (pos,) = store.positions()
        held = om.positions[("BTCUSDT", order.strategy)]
        assert pos.qty == held.qty == Decimal("0.003") - base_fees
        assert events.kinds.count(OrderEventKind.FILLED) == len(sim_fills)
    finally:
        await ex.close()
        store.close()
