"""ExecutionStore on SQLite and on the real PostgreSQL server: same tests, same results."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tessera.config.settings import DatabaseSync
from tessera.execution import (
    ClientOrderIdGenerator,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStateMachine,
    OrderStatus,
    OrderType,
    Position,
)
from tessera.execution.persistence import ExecutionStore, make_engine, migrate
from tessera.execution.schema import metadata

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()


@pytest.fixture
def store(database_url: str) -> ExecutionStore:
    s = ExecutionStore(database_url)
    s.start_run("run-1", "paper", "0.1.0", ["sma_cross"])
    yield s
    s.close()


def new_order(gen: ClientOrderIdGenerator, signal: str = "", qty: str = "0.5") -> Order:
    return Order(
        gen.next(),
        "BTCUSDT",
        OrderSide.BUY,
        OrderType.LIMIT,
        D(qty),
        D("50000.01"),
        strategy="sma_cross",
        signal_id=signal,
        ts_created=1,
    )


def test_migrations_match_the_tables(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diffs == []
    assert {
        "runs",
        "orders",
        "order_events",
        "fills",
        "positions",
        "balances",
        "risk_events",
        "risk_state",
        "alembic_version",
    } <= tables


def test_order_life_cycle_is_persisted_exactly(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    o = new_order(gen)
    assert store.record_intent(o, "run-1", 1)
    assert store.get_order(o.client_order_id).status is OrderStatus.INITIALIZED  # type: ignore[union-attr]
    for ev in (OrderEvent(K.SUBMITTED, 2), OrderEvent(K.ACCEPTED, 3, exchange_order_id="777")):
        SM.apply(o, ev)
        store.record_event(o, ev)
    pos = Position("BTCUSDT", "sma_cross")
    fills = [
        Fill(
            "t1",
            o.client_order_id,
            "BTCUSDT",
            OrderSide.BUY,
            D("50000.01"),
            D("0.12345678"),
            D("0.00001234"),
            "BTC",
            Liquidity.MAKER,
            4,
            "sma_cross",
        ),
        Fill(
            "t2",
            o.client_order_id,
            "BTCUSDT",
            OrderSide.BUY,
            D("50000.01"),
            D("0.37654322"),
            D("0.00003765"),
            "BTC",
            Liquidity.MAKER,
            5,
            "sma_cross",
        ),
    ]
    for f in fills:
        ev = OrderEvent(K.FILLED, f.ts_event, fill=f)
        SM.apply(o, ev)
        pos.apply_fill(f)
        assert store.record_fill(o, ev, pos)
    stored = store.get_order(o.client_order_id)
    assert stored is not None
    assert stored.status is OrderStatus.FILLED
    assert stored.filled_qty == D("0.5") and stored.exchange_order_id == "777"
    assert stored.avg_price == D("50000.01")
    assert stored.trade_ids == {"t1", "t2"}
    assert [f.fill for f in reversed(store.list_fills())] == fills  # exact decimals round-trip
    (p,) = store.positions()
    assert p.qty == D("0.5") and p.avg_price == D("50000.01")
    assert store.open_orders() == []


def test_a_fill_is_stored_once(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    o = new_order(gen)
    store.record_intent(o, "run-1", 1)
    SM.apply(o, OrderEvent(K.SUBMITTED, 2))
    f = Fill(
        "dup",
        o.client_order_id,
        "BTCUSDT",
        OrderSide.BUY,
        D("50000"),
        D("0.1"),
        D("0"),
        "USDT",
        Liquidity.TAKER,
        3,
    )
    ev = OrderEvent(K.FILLED, 3, fill=f)
    SM.apply(o, ev)
    assert store.record_fill(o, ev) is True
    assert store.record_fill(o, ev) is False  # same trade id again: nothing changes
    assert len(store.list_fills()) == 1


def test_redelivered_signal_creates_no_second_order(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    first = new_order(gen, signal="sig-42")
    assert store.record_intent(first, "run-1", 1) is True
    again = new_order(gen, signal="sig-42")
    assert store.record_intent(again, "run-1", 2) is False
    assert store.get_order(again.client_order_id) is None
    assert store.order_for_signal("sig-42").client_order_id == first.client_order_id  # type: ignore[union-attr]


def test_open_orders_include_unsent_intents_for_recovery(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    unsent, in_flight, done = new_order(gen), new_order(gen), new_order(gen)
    for i, o in enumerate((unsent, in_flight, done), 1):
        store.record_intent(o, "run-1", i)
    SM.apply(in_flight, OrderEvent(K.SUBMITTED, 2))
    store.record_event(in_flight, OrderEvent(K.SUBMITTED, 2))
    for ev in (OrderEvent(K.SUBMITTED, 2), OrderEvent(K.REJECTED, 3, reason="-2010")):
        SM.apply(done, ev)
        store.record_event(done, ev)
    ids = [o.client_order_id for o in store.open_orders()]
    assert ids == [unsent.client_order_id, in_flight.client_order_id]
    assert store.next_seq("run-1") == 4
    assert store.get_order(done.client_order_id).reject_reason == "-2010"  # type: ignore[union-attr]


def test_halt_persists_until_cleared(store: ExecutionStore) -> None:
    assert store.load_halt("main") is None
    store.save_halt("main", "kill_switch", 123, 10.5, D("10000.5"))
    halt = store.load_halt("main")
    assert (
        halt is not None and halt["reason"] == "kill_switch" and halt["equity_peak"] == D("10000.5")
    )
    assert store.clear_halt("main", by="alice") is True
    assert store.load_halt("main") is None


def test_balances_snapshot(store: ExecutionStore) -> None:
    store.snapshot_balances(
        "paper", {"USDT": (D("100.5"), D("0")), "BTC": (D("0.001"), D("0"))}, ts=5
    )
    store.snapshot_balances("paper", {"USDT": (D("90"), D("10.5"))}, ts=6)
    assert store.latest_balances("paper") == {"USDT": (D("90"), D("10.5"))}


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_database_sync_reaches_the_database(database_url: str, sync: DatabaseSync) -> None:
    """`database_sync`: fsync on every commit, or only a handover to the operating system."""
    store = ExecutionStore(database_url, sync=sync)
    try:
        with store.engine.connect() as c:
            if database_url.startswith("sqlite"):
                level = c.exec_driver_sql("PRAGMA synchronous").scalar()
                assert level == {"full": 2, "normal": 1}[sync]
                assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            else:
                value = c.exec_driver_sql("SHOW synchronous_commit").scalar()
                assert value == {"full": "on", "normal": "off"}[sync]
    finally:
        store.close()
