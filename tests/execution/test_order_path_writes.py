"""The order path's writes: each intent is durable before its request and they keep their
order, a dead PostgreSQL connection is replaced without a pre-ping, the intent is one statement
on PostgreSQL, an answer is five statements. Real SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import event, select, text

from tessera.execution.exchange import ExchangeOrder
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.schema import ValueTooLongError, order_events, orders
from tessera.execution.state import OrderEvent, OrderEventKind

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
RUN = "run-order-path"


class CheckingExchange:
    """Answers at once (accepted, resting), and notes whether each order's intent was
    committed — read on a connection of its own — when the request reached it."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store
        self.committed_at_send: dict[str, bool] = {}

    async def submit(self, order: Order) -> ExchangeOrder:
        with self.store.engine.connect() as c:
            row = c.execute(
                select(orders.c.status).where(orders.c.client_order_id == order.client_order_id)
            ).first()
        self.committed_at_send[order.client_order_id] = row is not None and row[0] == "SUBMITTED"
        return ExchangeOrder(order.client_order_id, f"x-{order.client_order_id}", order.symbol,
                             OrderStatus.ACCEPTED, order.qty, Decimal(0), Decimal(0))  # fmt: skip


def market(cid: str) -> Order:
    return Order(cid, "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("0.001"))


async def test_writes_handed_in_together_are_committed_in_the_order_they_were_handed_in(
    database_url: str,
) -> None:
    store = ExecutionStore(database_url)
    exchange = CheckingExchange(store)
    try:
        om = OrderManager(store, exchange, RUN, strategy="s1")  # type: ignore[arg-type]
        cids = [f"w-fifo-{i}" for i in range(1, 41)]
        # all submitted at once: each intent commits before its request, in the order handed in
        placed = await asyncio.gather(*(om.submit(market(cid)) for cid in cids))
        assert [o.status for o in placed] == [OrderStatus.ACCEPTED] * len(cids)
        assert all(exchange.committed_at_send[cid] for cid in cids)
        with store.engine.connect() as c:
            rows = c.execute(
                select(order_events.c.client_order_id, order_events.c.kind).order_by(
                    order_events.c.id
                )
            ).all()
        intents = [cid for cid, kind in rows if kind == "intent"]
        assert intents == cids  # the event log has the intents in the order handed in
        for cid in cids:  # and each order's own events in the order they happened
            kinds = [kind for c, kind in rows if c == cid]
            assert kinds == ["intent", "submitted", "accepted"]
    finally:
        store.close()


def test_the_intent_on_postgres_is_one_statement_with_both_events_and_checks_lengths(
    fresh_postgres_url: str,
) -> None:
    store = ExecutionStore(fresh_postgres_url)
    try:
        store.start_run(RUN, "live", "test", ["s1"])
        order = market("w-one-1")
        order.strategy = "s1"
        submitted = OrderEvent(OrderEventKind.SUBMITTED, time.time_ns())
        order.ts_created = time.time_ns()
        order.status = OrderStatus.SUBMITTED
        sent: list[str] = []
        commits: list[object] = []
        event.listen(store.engine, "before_cursor_execute",
                     lambda conn, cur, stmt, *a: sent.append(stmt))  # fmt: skip
        event.listen(store.engine, "commit", commits.append)
        assert store.record_submission(order, RUN, 1, submitted)
        # one statement, autocommitted: no BEGIN, no COMMIT, no second INSERT
        assert len(sent) == 1 and sent[0].startswith("WITH o AS (INSERT INTO orders")
        assert commits == []
        assert store.get_order("w-one-1") is not None  # and it is committed
        assert store.record_submission(order, RUN, 1, submitted)  # a replay: recorded
        stored = store.get_order("w-one-1")
        assert stored is not None and stored.status is OrderStatus.SUBMITTED
        assert stored.qty == Decimal("0.001")
        with store.engine.connect() as c:
            kinds = c.execute(text("SELECT kind, status_after FROM order_events ORDER BY id")).all()
        assert [tuple(k) for k in kinds] == [("intent", "INITIALIZED"), ("submitted", "SUBMITTED")]
        long_id = market("w-" + "x" * 40)
        long_id.status = OrderStatus.SUBMITTED
        with pytest.raises(ValueTooLongError, match=r"orders\.client_order_id"):
            store.record_submission(long_id, RUN, 2, submitted)
    finally:
        store.close()


async def test_a_dead_postgres_connection_on_the_order_path_is_replaced_without_a_pre_ping(
    fresh_postgres_url: str,
) -> None:
    store = ExecutionStore(fresh_postgres_url)
    exchange = CheckingExchange(store)
    try:
        assert store.path_engine.pool._pre_ping is False  # type: ignore[attr-defined]
        om = OrderManager(store, exchange, RUN, strategy="s1")  # type: ignore[arg-type]
        await om.submit(market("w-dead-1"))  # the order path's pooled connection now exists
        db = fresh_postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        order = await om.submit(market("w-dead-2"))
        assert order.status is OrderStatus.ACCEPTED
        assert exchange.committed_at_send["w-dead-2"] is True
        assert om.reconnects == 1  # found dead at its write, retried once
        stored = store.get_order("w-dead-2")
        assert stored is not None and stored.status is OrderStatus.ACCEPTED
    finally:
        store.close()


class KillingExchange(CheckingExchange):
    """Terminates every connection to the database while the request is out."""

    async def submit(self, order: Order) -> ExchangeOrder:
        ack = await super().submit(order)
        db = self.store.url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            )
        return ack


async def test_the_answer_is_recorded_on_a_new_connection_when_the_old_one_died_meanwhile(
    fresh_postgres_url: str,
) -> None:
    store = ExecutionStore(fresh_postgres_url)
    try:
        om = OrderManager(store, KillingExchange(store), RUN, strategy="s1")  # type: ignore[arg-type]
        for cid in ("w-kill-1", "w-kill-2"):
            order = await om.submit(market(cid))
            assert order.status is OrderStatus.ACCEPTED
            stored = store.get_order(cid)
            assert stored is not None and stored.status is OrderStatus.ACCEPTED
        with store.engine.connect() as c:
            kinds = (
                c.execute(
                    select(order_events.c.kind).where(order_events.c.client_order_id == "w-kill-2")
                )
                .scalars()
                .all()
            )
        assert kinds == ["intent", "submitted", "accepted"]  # once each: no doubled write
    finally:
        store.close()


class FillingExchange(CheckingExchange):
    """Fills every order in its answer (as a market order's answer does)."""

    async def submit(self, order: Order) -> ExchangeOrder:
        fill = Fill(f"t-{order.client_order_id}", order.client_order_id, order.symbol,
                    order.side, Decimal("61000.12"), order.qty, Decimal("0.0000001"), "BTC",
                    Liquidity.TAKER, time.time_ns())  # fmt: skip
        return ExchangeOrder(order.client_order_id, f"x-{order.client_order_id}", order.symbol,
                             OrderStatus.FILLED, order.qty, order.qty, fill.notional,
                             fills=[fill])  # fmt: skip


async def test_a_filled_answer_is_five_statements_and_one_commit(database_url: str) -> None:
    """The exchange's answer (accepted, one fill that fills it) is one transaction of five
    statements: the read that the fill is new, the fill, the position, the order's events in
    one statement and the order's final state — not one statement per event and per state.
    What is stored is the same: events in order, the order FILLED with its fill, the position
    moved."""
    store = ExecutionStore(database_url)
    try:
        om = OrderManager(store, FillingExchange(store), RUN, strategy="s1")  # type: ignore[arg-type]
        await om.submit(market("w-four-1"))  # the position exists now (an UPDATE, not INSERT)
        sent: list[str] = []
        commits: list[object] = []
        event.listen(store.path_engine, "before_cursor_execute",
                     lambda conn, cur, stmt, *a: sent.append(stmt.split()[0]))  # fmt: skip
        event.listen(store.path_engine, "commit", commits.append)
        order = await om.submit(market("w-four-2"))
        assert order.status is OrderStatus.FILLED
        postgres = store.engine.dialect.name == "postgresql"
        answer = ["SELECT", "INSERT", "UPDATE", "INSERT", "UPDATE"]
        if postgres:  # the intent's one autocommitted statement, then the answer's four
            assert sent == ["WITH", *answer], sent
        else:  # the intent's two statements, then the answer's four
            assert sent == ["INSERT", "INSERT", *answer], sent
        assert len(commits) == (1 if postgres else 2)
        stored = store.get_order("w-four-2")
        assert stored is not None and stored.status is OrderStatus.FILLED
        assert stored.filled_qty == Decimal("0.001") and stored.exchange_order_id == "x-w-four-2"
        with store.engine.connect() as c:
            kinds = c.execute(
                select(order_events.c.kind, order_events.c.status_after, order_events.c.trade_id)
                .where(order_events.c.client_order_id == "w-four-2")
                .order_by(order_events.c.id)
            ).all()
        assert [tuple(k) for k in kinds] == [
            ("intent", "INITIALIZED", None), ("submitted", "SUBMITTED", None),
            ("accepted", "ACCEPTED", None), ("filled", "FILLED", "t-w-four-2"),
        ]  # fmt: skip
        (position,) = store.positions()  # both orders' fills, less their fees in BTC
        assert position.symbol == "BTCUSDT"
        assert position.qty == Decimal("0.002") - 2 * Decimal("0.0000001")
    finally:
        store.close()
