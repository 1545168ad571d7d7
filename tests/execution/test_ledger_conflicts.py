"""A unique-key collision with different content is an error, never a silent skip.

A restarted paper bot numbered its trades from 1 again; the fills' unique key then swallowed
every new fill as "already recorded" and orders ended ACCEPTED with no fills. Now paper ids are
unique across restarts and processes, and the store compares a colliding row with the stored
one: the same content is a replay (skipped), different content a `LedgerConflictError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.paper import PaperExchange
from tessera.execution.persistence import ExecutionStore, LedgerConflictError
from tessera.execution.position import Position
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()
FILTERS = filters_by_symbol(recorded_exchange_info())


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    s.start_run("run-1", "paper", "0.1.0", ["s"])
    yield s
    s.close()


def conflicts(table: str) -> float:
    return REGISTRY.get_sample_value("tessera_ledger_conflicts_total", {"table": table}) or 0.0


def buy(cid: str, qty: str = "0.001") -> Order:
    return Order(cid, "BTCUSDT", OrderSide.BUY, OrderType.MARKET, D(qty), strategy="s")


async def paper_lifetime(url: str, run_id: str, n: int) -> list[Order]:
    """One paper bot process: a new store, paper exchange and order manager; n market buys."""
    store = ExecutionStore(url)
    paper = PaperExchange(FILTERS, store, initial_balances={"USDT": "100000"})
    om = OrderManager(store, paper, run_id, mode="paper")
    paper.on_report = om.on_execution_report
    paper.on_quote("BTCUSDT", D("60000.00"), D("60000.01"))
    try:
        return [await om.submit(buy(f"{run_id}-{i}")) for i in range(1, n + 1)]
    finally:
        await paper.close()
        store.close()


async def test_a_restarted_paper_bot_records_every_fill_of_its_second_run(
    database_url: str,
) -> None:
    first = await paper_lifetime(database_url, "run-a", 3)
    second = await paper_lifetime(database_url, "run-b", 3)  # a new process, the same database
    assert [o.status for o in first + second] == [OrderStatus.FILLED] * 6
    store = ExecutionStore(database_url)
    try:
        for o in first + second:
            stored = store.get_order(o.client_order_id)
            assert stored is not None and stored.status is OrderStatus.FILLED
            assert len(stored.trade_ids) == 1
        assert len(store.all_fills()) == 6
        (position,) = store.positions()
        assert position.qty == D("0.006")
    finally:
        store.close()


def test_two_paper_exchanges_on_one_database_never_share_an_id(database_url: str) -> None:
    store = ExecutionStore(database_url)
    try:
        a, b = PaperExchange(FILTERS, store), PaperExchange(FILTERS, store)
        ids_a = {next(a._trade_ids) for _ in range(100)} | {next(a._ids) for _ in range(100)}
        ids_b = {next(b._trade_ids) for _ in range(100)} | {next(b._ids) for _ in range(100)}
        assert a.session != b.session and not ids_a & ids_b
    finally:
        store.close()


def _filled(store: ExecutionStore, cid: str, trade_id: str, price: str, qty: str = "0.001"):
    order = buy(cid)
    assert store.record_intent(order, "run-1", int(cid.rsplit("-", 1)[1]))
    SM.apply(order, OrderEvent(K.SUBMITTED, 2))
    fill = Fill(trade_id, cid, "BTCUSDT", OrderSide.BUY, D(price), D(qty), D("0.06"), "USDT",
                Liquidity.TAKER, 3, "s")  # fmt: skip
    event = OrderEvent(K.FILLED, 3, fill=fill)
    SM.apply(order, event)
    return order, event


def test_a_fill_with_a_stored_trade_id_but_other_content_is_a_ledger_conflict(
    store: ExecutionStore,
) -> None:
    order, event = _filled(store, "c-1", "42", "60000")
    assert store.record_fill(order, event, Position("BTCUSDT", "s")) is True
    before = conflicts("fills")

    other, clash = _filled(store, "c-2", "42", "60100", qty="0.002")
    with pytest.raises(LedgerConflictError) as err:
        store.record_fill(other, clash)
    assert err.value.table == "fills"
    assert err.value.key == {"exchange": "binance", "symbol": "BTCUSDT", "trade_id": "42"}
    assert set(err.value.differences) == {"client_order_id", "price", "qty"}
    assert "ledger conflict in fills: exchange='binance', symbol='BTCUSDT', trade_id='42'" in str(
        err.value
    )
    assert conflicts("fills") == before + 1
    stored = store.get_order("c-2")
    assert stored is not None and stored.filled_qty == 0 and not stored.trade_ids  # unwritten
    with pytest.raises(LedgerConflictError):  # the check that skipped it now refuses it too
        store.fill_recorded(clash.fill)  # type: ignore[arg-type]


def test_an_identical_fill_replayed_is_a_no_op(store: ExecutionStore) -> None:
    order, event = _filled(store, "c-1", "42", "60000")
    assert store.record_fill(order, event) is True
    before = conflicts("fills")
    assert store.record_fill(order, event) is False
    assert store.fill_recorded(event.fill) is True  # type: ignore[arg-type]
    assert len(store.all_fills()) == 1 and conflicts("fills") == before


def test_fills_looked_up_together_answer_as_one_by_one_and_refuse_the_same_conflicts(
    store: ExecutionStore,
) -> None:
    """Reconciliation asks for a page of trades at once (`fills_recorded`); each answer is
    `fill_recorded`'s, and a stored trade id with other content is the same conflict."""
    order, event = _filled(store, "c-1", "42", "60000")
    store.record_fill(order, event)
    assert event.fill is not None
    _, unstored = _filled(store, "c-3", "43", "60000")
    assert unstored.fill is not None
    page = [event.fill, unstored.fill]
    assert store.fills_recorded(page) == [store.fill_recorded(f) for f in page] == [True, False]
    assert store.fills_recorded([]) == []
    _, clash = _filled(store, "c-2", "42", "60100", qty="0.002")
    assert clash.fill is not None
    before = conflicts("fills")
    with pytest.raises(LedgerConflictError) as err:
        store.fills_recorded([unstored.fill, clash.fill])
    assert err.value.key == {"exchange": "binance", "symbol": "BTCUSDT", "trade_id": "42"}
    assert set(err.value.differences) == {"client_order_id", "price", "qty"}
    assert conflicts("fills") == before + 1


def test_the_order_manager_refuses_a_fill_whose_trade_id_is_stored_for_another_order(
    store: ExecutionStore,
) -> None:
    order, event = _filled(store, "c-1", "1", "60000")
    store.record_fill(order, event)
    om = OrderManager(store, PaperExchange(FILTERS), "run-1", mode="paper")
    late = buy("c-2")
    store.record_intent(late, "run-1", 2)
    SM.apply(late, OrderEvent(K.SUBMITTED, 2))
    reused = Fill("1", "c-2", "BTCUSDT", OrderSide.BUY, D("61000"), D("0.001"), D("0.06"),
                  "USDT", Liquidity.TAKER, 5, "s")  # fmt: skip
    with pytest.raises(LedgerConflictError):
        om.apply_fill(late, reused)
    assert late.status is OrderStatus.SUBMITTED and late.filled_qty == 0


def test_an_order_colliding_on_its_client_id_is_a_replay_only_if_identical(
    store: ExecutionStore,
) -> None:
    first = buy("c-1")
    assert store.record_intent(first, "run-1", 1)
    assert store.record_intent(buy("c-1"), "run-1", 1) is True  # a replayed write
    before = conflicts("orders")
    with pytest.raises(LedgerConflictError) as err:
        store.record_intent(buy("c-1", qty="0.5"), "run-1", 1)
    assert err.value.key == {"client_order_id": "c-1"} and set(err.value.differences) == {"qty"}
    with pytest.raises(LedgerConflictError) as seq:
        store.record_intent(buy("c-9"), "run-1", 1)  # another order under the run's seq 1
    assert seq.value.key == {"run_id": "run-1", "seq": 1}
    assert conflicts("orders") == before + 2


def test_a_signal_id_reused_for_another_symbol_is_a_conflict_not_a_redelivery(
    store: ExecutionStore,
) -> None:
    first = Order("c-1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, D("0.001"), strategy="s",
                  signal_id="sig-1", ts_created=1)  # fmt: skip
    assert store.record_intent(first, "run-1", 1)
    redelivered = Order("c-2", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, D("0.002"),
                        strategy="s", signal_id="sig-1", ts_created=2)  # fmt: skip
    assert store.record_intent(redelivered, "run-1", 2) is False  # send nothing
    other = Order("c-3", "ETHUSDT", OrderSide.BUY, OrderType.MARKET, D("0.01"), strategy="s",
                  signal_id="sig-1", ts_created=3)  # fmt: skip
    with pytest.raises(LedgerConflictError) as err:
        store.record_intent(other, "run-1", 3)
    assert err.value.key == {"signal_id": "sig-1"} and set(err.value.differences) == {"symbol"}


def test_a_run_id_reused_for_another_mode_is_a_conflict(store: ExecutionStore) -> None:
    store.start_run("run-1", "paper", "0.2.0", ["s"])  # a restart, a newer version: resumed
    with pytest.raises(LedgerConflictError) as err:
        store.start_run("run-1", "live", "0.2.0", ["s"])
    assert err.value.differences == {"mode": ("paper", "live")}
    with pytest.raises(LedgerConflictError):
        OrderManager(store, PaperExchange(FILTERS), "run-1", mode="live")
