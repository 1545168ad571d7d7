"""`OrderManager` end to end: real sockets to the simulator, real SQLite and PostgreSQL.

Life cycles with every step persisted; a lost response; a process killed with SIGKILL between
sending an order and recording its answer; fills made while the process was down, imported once.
Order lists (OCO): both legs durable before the one request, a refusal rejecting both, a lost
answer recovered leg by leg after a restart, a redelivered signal placing nothing.
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

from tessera.execution.exchange import ExchangeOrder, OutcomeUnknownError
from tessera.execution.manager import OrderManager, leg_signal_id
from tessera.execution.orders import (
    ExitReason,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tessera.execution.persistence import ExecutionStore
from tessera.execution.schema import MAX_SIGNAL_ID
from tessera.execution.state import OrderEvent, OrderEventKind
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.server import SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"
RUN = "run-om"


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


def status(order: Order) -> OrderStatus:
    """The order's status now (a call: awaited answers change it)."""
    return order.status


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
from tessera.venues.binance_spot.exchange import CcxtExchange
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
        assert status(order) is OrderStatus.ACCEPTED and not order.trade_ids and not om.positions

        report = await om.recover()  # the database answers again
        assert report.updated == ["t-om-out"] and status(order) is OrderStatus.FILLED
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


# --- order lists (OCO) ---------------------------------------------------------------------------


def sell_oco(
    sim: ExchangeSimulator, tag: str, signal_id: str = "", qty: str = "0.002"
) -> OrderList:
    """A SELL OCO around the simulator's current book: a take-profit LIMIT_MAKER 50 above the
    ask and a STOP_LOSS_LIMIT 50 below the bid."""
    sim.state.advance_to(sim.head)
    book = sim.state.books["BTCUSDT"]
    bid, ask = max(book.bids), min(book.asks)
    list_id = f"l-{tag}"
    tp = Order(f"t-{tag}-a", "BTCUSDT", OrderSide.SELL, OrderType.LIMIT_MAKER, Decimal(qty),
               price=ask + 50, strategy="s1", signal_id=signal_id, list_id=list_id,
               reason=ExitReason.TAKE_PROFIT)  # fmt: skip
    sl = Order(f"t-{tag}-b", "BTCUSDT", OrderSide.SELL, OrderType.STOP_LOSS_LIMIT, Decimal(qty),
               price=bid - 55, stop_price=bid - 50, strategy="s1", signal_id=signal_id,
               list_id=list_id, reason=ExitReason.STOP_LOSS)  # fmt: skip
    return OrderList(list_id, tp, sl)


class Wire:
    """The real adapter, seen from the wire: what the store held when each list request went
    out, and queries that can be made to fail (the connection still down)."""

    def __init__(self, inner: CcxtExchange, store: ExecutionStore) -> None:
        self.inner = inner
        self.store = store
        self.at_send: list[list[tuple[str, OrderStatus | None]]] = []
        self.queries_fail = False

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        stored = [self.store.get_order(leg.client_order_id) for leg in orders.legs]
        self.at_send.append(
            [
                (leg.client_order_id, s.status if s else None)
                for leg, s in zip(orders.legs, stored, strict=True)
            ]
        )
        return await self.inner.submit_list(orders)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        if self.queries_fail:
            raise OutcomeUnknownError("connection reset")
        return await self.inner.query(symbol, client_order_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sim_orders(engine: TradingEngine, *cids: str) -> list[str]:
    return sorted(o.client_order_id for o in engine.orders.values() if o.client_order_id in cids)


async def test_both_legs_of_an_oco_are_recorded_before_its_one_request_and_take_its_answer(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, _ = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    wire = Wire(ex, store)
    try:
        om = OrderManager(store, wire, RUN, strategy="s1")
        placed = await om.submit_list(sell_oco(sim, "oco1", signal_id="sig-oco1"))
        assert wire.at_send == [
            [("t-oco1-a", OrderStatus.SUBMITTED), ("t-oco1-b", OrderStatus.SUBMITTED)]
        ]
        assert [leg.status for leg in placed.legs] == [OrderStatus.ACCEPTED] * 2
        for leg in placed.legs:
            stored = store.get_order(leg.client_order_id)
            assert stored is not None and stored.status is OrderStatus.ACCEPTED
            assert stored.exchange_order_id and stored.list_id == "l-oco1"
        assert (placed.above.signal_id, placed.below.signal_id) == ("sig-oco1", "sig-oco1#2")
        reasons = {o.client_order_id: o.reason for o in store.list_orders()}
        assert reasons == {"t-oco1-a": ExitReason.TAKE_PROFIT, "t-oco1-b": ExitReason.STOP_LOSS}
        # canceling one leg cancels the list on the exchange; recovery brings the other along
        await om.cancel(placed.above)
        await om.recover()
        assert [leg.status for leg in placed.legs] == [OrderStatus.CANCELED] * 2
    finally:
        await ex.close()
        store.close()


async def test_a_refused_oco_rejects_both_legs(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    try:
        om = OrderManager(store, ex, RUN)
        placed = await om.submit_list(sell_oco(sim, "oco2", qty="50"))  # the account has 1 BTC
        assert [leg.status for leg in placed.legs] == [OrderStatus.REJECTED] * 2
        for leg in placed.legs:
            stored = store.get_order(leg.client_order_id)
            assert stored is not None and stored.status is OrderStatus.REJECTED
            assert "insufficient balance" in (stored.reject_reason or ""), stored.reject_reason
        assert sim_orders(engine, "t-oco2-a", "t-oco2-b") == []
    finally:
        await ex.close()
        store.close()


async def test_an_oco_whose_answer_was_lost_is_recovered_leg_by_leg_after_a_restart(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    wire = Wire(ex, store)
    try:
        om = OrderManager(store, wire, RUN)
        engine.config.lose_responses = 1  # the list is placed; its answer never arrives
        wire.queries_fail = True  # and the connection stays down: the process gives up
        placed = await om.submit_list(sell_oco(sim, "oco3"))
        assert [leg.status for leg in placed.legs] == [OrderStatus.SUBMITTED] * 2
        assert [o.client_order_id for o in store.open_orders()] == ["t-oco3-a", "t-oco3-b"]

        restarted = OrderManager(ExecutionStore(database_url), ex, RUN)
        report = await restarted.recover()
        assert sorted(report.updated) == ["t-oco3-a", "t-oco3-b"] and not report.closed_unsent
        for cid in ("t-oco3-a", "t-oco3-b"):
            stored = store.get_order(cid)
            assert stored is not None and stored.status is OrderStatus.ACCEPTED
            assert stored.exchange_order_id
        assert sim_orders(engine, "t-oco3-a", "t-oco3-b") == ["t-oco3-a", "t-oco3-b"]  # once
    finally:
        await ex.close()
        store.close()


async def test_a_redelivered_list_signal_places_nothing_even_with_the_longest_signal_id(
    venue: tuple[ExchangeSimulator, TradingEngine], database_url: str
) -> None:
    sim, engine = venue
    store = ExecutionStore(database_url)
    ex = CcxtExchange(sim.rest_url, KEY, SECRET)
    try:
        om = OrderManager(store, ex, RUN)
        signal = "r" * 40 + ":" + "s" * 64 + ":BTCUSDT:" + "9" * (MAX_SIGNAL_ID - 114)
        assert len(signal) == MAX_SIGNAL_ID
        first = await om.submit_list(sell_oco(sim, "oco4", signal_id=signal))
        assert first.below.signal_id == leg_signal_id(signal, 2)
        assert len(first.below.signal_id) <= MAX_SIGNAL_ID
        again = await om.submit_list(sell_oco(sim, "oco5", signal_id=signal))
        assert [leg.client_order_id for leg in again.legs] == ["t-oco4-a", "t-oco4-b"]
        assert store.get_order("t-oco5-a") is None and store.get_order("t-oco5-b") is None
        assert sim_orders(engine, "t-oco4-a", "t-oco4-b", "t-oco5-a", "t-oco5-b") == [
            "t-oco4-a",
            "t-oco4-b",
        ]
    finally:
        await ex.close()
        store.close()
