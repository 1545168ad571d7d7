"""Reconciliation against the simulator's account: clean runs pass; anything the records cannot
explain (an order or trade we never made, a balance change) halts trading, persistently."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera import metrics
from tessera.execution import reconcile
from tessera.execution.exchange import ExchangeTrade
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import Reconciler
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

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


async def test_a_kept_cursor_reads_only_the_trades_made_since_the_last_clean_pass(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bot keeps the cursor across its periodic passes: each reads the trades made since the
    last clean one, page after page (pages of 2 here), not the newest thousand each time."""
    _, _, om, _ = setup
    cursor: dict[str, int] = {}
    asked: list[int | None] = []
    inner = om.exchange.my_trades

    async def paged(symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        asked.append(from_id)
        trades = await inner(symbol, from_id)
        return trades[:2] if from_id is not None else trades

    monkeypatch.setattr(om.exchange, "my_trades", paged)
    monkeypatch.setattr(reconcile, "TRADES_PAGE", 2)
    engine_filters = setup[1].filters
    rec = Reconciler(om, engine_filters, ["BTCUSDT"], account="acct", trade_cursor=cursor)
    await om.submit(market("c-1", OrderSide.BUY))
    assert (await rec.run()).ok
    assert asked[0] is None  # no cursor yet: the newest trades, as Binance answers
    first = cursor["BTCUSDT"]
    ours = await inner("BTCUSDT")
    assert first == max(int(t.fill.trade_id) for t in ours) + 1
    asked.clear()
    for i in range(3):  # three orders filled while our records missed their answers
        order = market(f"miss-{'abc'[i]}", OrderSide.BUY)  # seq: the store's next
        om.record_intent(order)
        om.mark_submitted(order)
        await om.exchange.submit(order)
    report = await rec.run()
    assert report.ok, report.problems
    assert report.fills_imported == 3
    # (the calls without fromId are the recovery's, looking up each unanswered order)
    paged_from = [a for a in asked if a is not None]
    # from the cursor: a full page of two, then the rest from after them
    assert paged_from[:2] == [first, first + 2]
    assert cursor["BTCUSDT"] == first + 3
    asked.clear()
    assert (await rec.run()).fills_imported == 0
    assert asked == [first + 3]  # nothing old is read again


async def test_the_store_is_read_off_the_event_loop_during_a_pass(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every store read of a pass — trades looked up, the fills stored since the last pass
    summed for the balances — runs on a worker thread: the bot's event loop reads market data
    and sends orders meanwhile."""
    _, _, om, rec = setup
    await om.submit(market("t-1", OrderSide.BUY))
    loop_thread = threading.get_ident()
    where: dict[str, list[bool]] = {}
    for name in ("orders_for_exchange_ids", "fills_recorded", "fill_recorded", "fills_after",
                 "fill_count", "latest_balances"):  # fmt: skip
        real = getattr(om.store, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            where.setdefault(_name, []).append(threading.get_ident() == loop_thread)
            return _real(*args, **kw)

        monkeypatch.setattr(om.store, name, spy)
    order = market("t-miss", OrderSide.BUY)  # a fill to import: every read path is taken
    om.record_intent(order)
    om.mark_submitted(order)
    await om.exchange.submit(order)
    report = await rec.run()
    assert report.ok and report.fills_imported == 1
    assert set(where) == {
        "orders_for_exchange_ids", "fills_recorded", "fill_recorded", "fills_after", "fill_count",
        "latest_balances",
    }  # fmt: skip
    for name, on_loop in where.items():
        if name == "fill_recorded":  # the manager's own check of the one fill it imports
            assert on_loop == [True], on_loop
        else:  # the pass's reads: the trades of a page at once, every fill for the balances
            assert not any(on_loop), (name, on_loop)


async def test_the_simulator_answers_the_newest_trades_without_from_id(
    setup: tuple[ExchangeSimulator, TradingEngine, OrderManager, Reconciler],
) -> None:
    """As Binance: ``myTrades`` without ``fromId`` gives the most recent ones, with it the
    ones from that id on."""
    _, _, om, _ = setup
    for i in range(3):
        await om.submit(market(f"n-{i}", OrderSide.BUY))
    ex = om.exchange
    assert isinstance(ex, CcxtExchange)
    every = [int(t.fill.trade_id) for t in await ex.my_trades("BTCUSDT")]
    assert len(every) >= 3 and every == sorted(every)
    newest = await ex._call("fetch_my_trades", ex.unified("BTCUSDT"), None, 2, {})
    assert [int(t["info"]["id"]) for t in newest] == every[-2:]
    oldest = await ex._call("fetch_my_trades", ex.unified("BTCUSDT"), None, 2, {"fromId": every[0]})
    assert [int(t["info"]["id"]) for t in oldest] == every[:2]
