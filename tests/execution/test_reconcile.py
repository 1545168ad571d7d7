"""Reconciliation against the simulator's account: clean runs pass; anything the records cannot
explain (an order or trade we never made, a balance change) halts trading, persistently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tessera import metrics
from tessera.execution.ccxt_exchange import CcxtExchange
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import Reconciler
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"


@pytest.fixture
async def setup(
    database_url: str,
) -> AsyncIterator[tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler]]:
    sim = ExchangeSimulator(SimMarket.from_recording([BTC_0808]), speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)
        store = ExecutionStore(database_url)
        ex = CcxtExchange(sim.rest_url, KEY, SECRET)
        om = OrderManager(store, ex, "run-rec")
        rec = Reconciler(om, engine.filters, ["BTCUSDT"], account="acct")
        try:
            yield sim, engine, om, rec
        finally:
            await ex.close()
            store.close()


def market(cid: str, side: OrderSide, qty: str = "0.002") -> Order:
    return Order(cid, "BTCUSDT", side, OrderType.MARKET, Decimal(qty))


async def test_clean_history_reconciles(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
) -> None:
    _, _, om, rec = setup
    first = await rec.run()  # records the baseline (the account's holdings before the bot)
    assert first.ok, first.problems
    await om.submit(market("r-1", OrderSide.BUY))
    await om.submit(market("r-2", OrderSide.SELL, "0.001"))
    again = await rec.run()
    assert again.ok, again.problems
    assert om.store.load_halt("acct") is None


async def test_fills_missed_while_down_are_imported_once(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
) -> None:
    _, _, om, rec = setup
    assert (await rec.run()).ok
    order = market("r-3", OrderSide.BUY)
    om.record_intent(order)
    om.mark_submitted(order)
    await om.exchange.submit(order)  # the answer never reached our records (we "crashed")
    report = await rec.run()
    assert report.ok, report.problems
    assert report.fills_imported >= 1
    assert (await rec.run()).fills_imported == 0


async def test_unexplained_orders_and_balances_halt_trading(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
) -> None:
    _, engine, om, rec = setup
    assert (await rec.run()).ok
    # someone trades on the account by hand, and deposits BTC
    engine.place({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                  "newClientOrderId": "manual-1"})  # fmt: skip
    engine.free["BTC"] += Decimal("0.5")
    resting = {"type": "LIMIT", "timeInForce": "GTC", "price": "30000.00"}
    engine.place({"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001",
                  "newClientOrderId": "manual-2", **resting})  # fmt: skip
    report = await rec.run()
    assert not report.ok
    text = " | ".join(report.problems)
    assert "belongs to an order we never sent" in text
    assert "open order manual-2 (BTCUSDT) on the exchange is not ours" in text
    assert "BTC balance" in text and "USDT balance" in text
    halt = om.store.load_halt("acct")
    assert halt is not None and "reconciliation" in halt["reason"]
    assert metrics.TRADING_STATE.labels(state="HALTED")._value.get() == 1.0
    metrics.set_trading_state("ACTIVE")  # process-wide gauges: leave them as found
    metrics.KILL_SWITCH_ENGAGED.set(0)
