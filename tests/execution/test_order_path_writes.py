"""The order path's writes: each intent is durable before its request and they keep their
order, a dead PostgreSQL connection is replaced without a pre-ping, the intent is one statement
on PostgreSQL awaited without blocking the loop (and not cut in half by a cancel), an answer
is four statements. Real SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

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


def test_the_intent_on_sqlite_goes_through_the_driver_and_stores_what_the_core_stores(
    tmp_path: Path,
) -> None:
    """SQLite's intent skips the Core layer (its two INSERTs and the commit on the driver's
    cursor): the rows are those the Core statements write (one order through each, compared
    column by column), a replay is recognised, a redelivered signal sends nothing, a too-long
    value is refused by name and a store error is SQLAlchemy's, as from the Core path."""
    store = ExecutionStore(f"sqlite:///{tmp_path / 'intent.db'}")
    try:
        store.start_run(RUN, "live", "test", ["s1"])
        submitted = OrderEvent(OrderEventKind.SUBMITTED, time.time_ns())

        def limit(cid: str, signal: str) -> Order:
            order = Order(cid, "BTCUSDT", OrderSide.SELL, OrderType.LIMIT, Decimal("0.00100"),
                          price=Decimal("61000.1"), strategy="s1", signal_id=signal,
                          ts_created=1_700_000_000_000_000_000)  # fmt: skip
            order.status = OrderStatus.SUBMITTED
            return order

        sent: list[str] = []
        event.listen(store.engine, "before_cursor_execute",
                     lambda conn, cur, stmt, *a: sent.append(stmt))  # fmt: skip
        assert store.record_submission(limit("w-raw-1", "sig-raw"), RUN, 1, submitted)
        assert sent == []  # not through the Core layer
        with store.batch():  # inside a batch the Core statements write it
            assert store.record_submission(limit("w-core-1", "sig-core"), RUN, 2, submitted)
        assert sent and sent[0].startswith("INSERT INTO orders")
        with store.engine.connect() as c:
            rows = {r.client_order_id: dict(r._mapping) for r in
                    c.exec_driver_sql("SELECT * FROM orders").all()}  # fmt: skip
            events = c.exec_driver_sql(
                "SELECT client_order_id, kind, status_after, ts, exchange_order_id, reason, "
                "trade_id FROM order_events ORDER BY id"
            ).all()
        raw, core = rows["w-raw-1"], rows["w-core-1"]
        assert raw["qty"] == "0.00100" and raw["price"] == "61000.1"  # exact text
        differ = {k for k in raw if raw[k] != core[k]}
        assert differ == {"client_order_id", "signal_id", "seq"}, differ
        assert [tuple(e)[1:] for e in events[:2]] == [tuple(e)[1:] for e in events[2:]]
        assert store.record_submission(limit("w-raw-1", "sig-raw"), RUN, 1, submitted)  # replay
        assert not store.record_submission(limit("w-raw-2", "sig-raw"), RUN, 3, submitted)
        with pytest.raises(ValueTooLongError, match=r"orders\.client_order_id"):
            store.record_submission(limit("w-" + "x" * 40, "sig-long"), RUN, 4, submitted)
        with pytest.raises(IntegrityError):  # no such run: the foreign key refuses the order
            store.record_submission(limit("w-raw-5", "sig-5"), "no-such-run", 5, submitted)
        assert store.get_order("w-raw-5") is None and store.get_order("w-raw-2") is None
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
        # the intent's connection (asynchronous) and the answer's (pooled) were both found dead
        # at their writes, and each write was retried once
        assert om.reconnects == 2
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


class RecordingExchange(CheckingExchange):
    """Notes every request; knows no order (recovery closes what was never sent)."""

    def __init__(self, store: ExecutionStore) -> None:
        super().__init__(store)
        self.sent: list[str] = []

    async def submit(self, order: Order) -> ExchangeOrder:
        self.sent.append(order.client_order_id)
        return await super().submit(order)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        return None


async def _wait_for_lock_wait(db: str) -> None:
    """Until a statement of ``db`` waits on a lock (the intent, behind the test's table lock)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        for _ in range(500):
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'",
                (db,),
            ).fetchone()
            if row is not None and row[0] >= 1:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the intent never reached the server")


async def test_the_loop_runs_while_the_postgres_intent_waits_on_the_server(
    fresh_postgres_url: str,
) -> None:
    """The intent is awaited on an asynchronous connection: held up on the server (here by a
    table lock another session holds for 0.5 s), it leaves the event loop free — a 1 ms
    timer keeps ticking — and the request still goes out only once the intent is committed."""
    store = ExecutionStore(fresh_postgres_url)
    exchange = RecordingExchange(store)
    db = fresh_postgres_url.rsplit("/", 1)[1]
    try:
        assert store.intent_is_async
        om = OrderManager(store, exchange, RUN, strategy="s1")  # type: ignore[arg-type]
        await om.submit(market("w-loop-1"))  # the connections exist
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        with psycopg.connect(fresh_postgres_url.replace("+psycopg", "")) as blocker:
            blocker.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
            tick_task = asyncio.create_task(ticker())
            submit = asyncio.create_task(om.submit(market("w-loop-2")))
            await _wait_for_lock_wait(db)
            before = ticks
            await asyncio.sleep(0.5)
            assert not submit.done() and "w-loop-2" not in exchange.sent
            during = ticks - before
            blocker.rollback()  # the lock goes; the intent commits
        order = await asyncio.wait_for(submit, 10)
        tick_task.cancel()
        assert order.status is OrderStatus.ACCEPTED
        assert exchange.committed_at_send["w-loop-2"] is True
        # a blocked loop would not tick at all; 1 ms sleeps give at most ~500 in 0.5 s
        assert during >= 50, during
    finally:
        store.close()


async def test_a_submit_cancelled_during_its_postgres_intent_ends_only_after_the_write(
    fresh_postgres_url: str,
) -> None:
    """A shutdown cancels tasks and then runs recovery. Cancelled while its intent is on the
    server, a submit must not end before the write does — else the recovery could run first
    and miss an order the write then leaves SUBMITTED. So the cancelled submit ends once the
    intent has landed, sends nothing, and the recovery after it closes the order as never
    sent."""
    store = ExecutionStore(fresh_postgres_url)
    exchange = RecordingExchange(store)
    db = fresh_postgres_url.rsplit("/", 1)[1]
    try:
        om = OrderManager(store, exchange, RUN, strategy="s1")  # type: ignore[arg-type]
        await om.submit(market("w-cancel-1"))
        with psycopg.connect(fresh_postgres_url.replace("+psycopg", "")) as blocker:
            blocker.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
            submit = asyncio.create_task(om.submit(market("w-cancel-2")))
            await _wait_for_lock_wait(db)
            submit.cancel()
            await asyncio.sleep(0.3)
            assert not submit.done()  # waits for its write, though cancelled
            blocker.rollback()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(submit, 10)
        assert exchange.sent == ["w-cancel-1"]  # the cancelled order was never sent
        stored = store.get_order("w-cancel-2")
        assert stored is not None and stored.status is OrderStatus.SUBMITTED
        report = await om.recover()
        assert "w-cancel-2" in report.closed_unsent
        stored = store.get_order("w-cancel-2")
        assert stored is not None and stored.status is OrderStatus.CANCELED
    finally:
        store.close()


async def test_a_replayed_intent_on_the_async_connection_is_recognised_as_recorded(
    fresh_postgres_url: str,
) -> None:
    """The asynchronous intent keeps the synchronous one's replay rules: the same order again
    is recorded (True), another order of the same signal is refused (False), and a column
    too long is the same `ValueTooLongError`."""
    store = ExecutionStore(fresh_postgres_url)
    try:
        store.start_run(RUN, "live", "test", ["s1"])
        submitted = OrderEvent(OrderEventKind.SUBMITTED, time.time_ns())
        order = market("w-replay-1")
        order.strategy, order.signal_id = "s1", "sig-1"
        order.ts_created, order.status = time.time_ns(), OrderStatus.SUBMITTED
        assert await store.record_submission_async(order, RUN, 1, submitted)
        assert await store.record_submission_async(order, RUN, 1, submitted)
        other = market("w-replay-2")
        other.strategy, other.signal_id = "s1", "sig-1"
        other.ts_created, other.status = time.time_ns(), OrderStatus.SUBMITTED
        assert not await store.record_submission_async(other, RUN, 2, submitted)
        long_id = market("w-" + "x" * 40)
        long_id.status = OrderStatus.SUBMITTED
        with pytest.raises(ValueTooLongError, match=r"orders\.client_order_id"):
            await store.record_submission_async(long_id, RUN, 3, submitted)
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


async def test_a_filled_answer_is_four_statements_and_one_commit(database_url: str) -> None:
    """The exchange's answer (accepted, one fill that fills it) is one transaction of four
    statements: the fill, the position, the three order events in one statement and the
    order's final state — not one statement per event and per state, nor a read of the fill
    first (the fill's unique key guards that). What is stored is the same: events in order,
    the order FILLED with its fill, the position moved."""
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
        # the intent went around the Core layer (PostgreSQL: its asynchronous connection;
        # SQLite: the driver's own cursor): what the engine sees is the answer's four
        assert sent == ["INSERT", "UPDATE", "INSERT", "UPDATE"], sent
        assert len(commits) == 1
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


async def test_a_recovery_pass_leaves_an_intent_alone_between_its_commit_and_its_request(
    fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the intent is awaited, so another task may run between the commit and
    the submit's resuming — a recovery pass (a reconnect's, say) then finds the order
    SUBMITTED in the store and unknown to the exchange. It must not close it as never sent:
    the request is about to go out. Held open here by a pause after the commit."""
    store = ExecutionStore(fresh_postgres_url)
    exchange = RecordingExchange(store)
    committed = asyncio.Event()
    original = store.record_submission_async

    async def commit_then_pause(*args: object) -> bool:
        recorded = await original(*args)  # type: ignore[arg-type]
        committed.set()
        await asyncio.sleep(0.3)
        return recorded

    try:
        om = OrderManager(store, exchange, RUN, strategy="s1")  # type: ignore[arg-type]
        monkeypatch.setattr(store, "record_submission_async", commit_then_pause)
        submit = asyncio.create_task(om.submit(market("w-window-1")))
        await asyncio.wait_for(committed.wait(), 10)
        stored = store.get_order("w-window-1")
        assert stored is not None and stored.status is OrderStatus.SUBMITTED  # committed
        report = await om.recover()
        assert "w-window-1" not in report.closed_unsent and report.checked == 0
        order = await asyncio.wait_for(submit, 10)
        assert order.status is OrderStatus.ACCEPTED and exchange.sent == ["w-window-1"]
    finally:
        store.close()
