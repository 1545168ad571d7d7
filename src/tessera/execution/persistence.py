"""`ExecutionStore`: the durable record of every order, fill and position.

The write-ahead rule: an order's intent is committed *before* the request is sent, with its
client order id; every later fact (sent, acked, filled, canceled, rejected) is appended as an
order event and applied to the order row in the same transaction. After a crash, the database
says exactly which orders may exist on the exchange (status INITIALIZED or in flight), and
reconciliation asks the exchange about those by client order id.

Fills are unique per (exchange, symbol, trade id): a fill seen twice — stream and REST, or
before and after a restart — is stored once (`record_fill` returns False the second time).
A perpetual's funding payments likewise, per (account, symbol, asset, funding time to the
minute): the stream's event and the ``/fapi/v1/income`` row of one payment are one row
(`record_funding`).

A unique key is a claim about identity, so a collision is checked, never assumed harmless: when
an insert hits a unique key (a fill's trade id, an order's client id or signal id, a run id),
the stored row is compared with the new one. The same content is a replay (skipped); different
content is a `LedgerConflictError` naming the table, the key and the differing fields — logged,
counted (``tessera_ledger_conflicts_total{table}``) and raised. Skipping it would drop a fill
and leave the order and the position wrong (a restarted paper exchange reused trade ids).

Strings longer than their column are refused before they reach the database, with the same
`ValueTooLongError` on SQLite and PostgreSQL (see `tessera.execution.schema`).

SQLite (the embedded default) and PostgreSQL run the same code and the same tests.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from tessera import metrics
from tessera.config.settings import DatabaseSync
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.position import Position
from tessera.execution.schema import (
    Bounded,
    ValueTooLongError,
    balances,
    control_actions,
    equity_samples,
    fills,
    funding_payments,
    order_events,
    orders,
    paper_accounts,
    paper_orders,
    paper_sessions,
    positions,
    risk_events,
    risk_state,
    runs,
    strategy_pauses,
    strategy_state,
)
from tessera.execution.state import OrderEvent
from tessera.logging import get_logger

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the database connection is gone (SQLAlchemy marks such an error
    ``connection_invalidated`` and discards the pool's stale connections)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def head_revision() -> str:
    """The newest migration's revision, read off the file names (``NNNN_what.py`` declares
    ``revision = "NNNN"``; a test holds the two, and Alembic's own head, equal) — so a store
    opened on a database already at head never imports Alembic (~0.3 s of every bot's and
    command's start)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


ZERO = Decimal(0)

__all__ = [
    "FUNDING_SOURCES",
    "ExecutionStore",
    "FundingRecord",
    "LedgerConflictError",
    "PaperBookTakenOverError",
    "StoredFill",
    "StoredFunding",
    "ValueTooLongError",
    "advisory_key",
    "funding_slot",
    "make_engine",
    "migrate",
    "sqlite_path",
]


class LedgerConflictError(Exception):
    """A unique key already names a *different* row: two facts claim one identity.

    Never a duplicate to skip: the ledger would silently lose one of them. ``differences`` maps
    each differing field to (stored, new).
    """

    def __init__(
        self, table: str, key: dict[str, Any], differences: dict[str, tuple[Any, Any]]
    ) -> None:
        self.table = table
        self.key = key
        self.differences = differences
        keys = ", ".join(f"{k}={v!r}" for k, v in key.items())
        diffs = "; ".join(f"{f}: stored {a!r}, new {b!r}" for f, a, b in _triples(differences))
        super().__init__(
            f"ledger conflict in {table}: {keys} is already stored with different content "
            f"({diffs}). Nothing was written; two writers produced the same identifier for "
            f"different facts — find the second writer before trading on."
        )


class PaperBookTakenOverError(Exception):
    """A newer paper exchange owns this paper account's book: this one must stop.

    Two paper exchanges matching one book would fill each resting order twice. The newest to
    start owns the book (`ExecutionStore.claim_paper_book`); an older one that tries to write
    gets this error, and nothing of that write is stored or reported.
    """

    def __init__(self, account: str, session: int) -> None:
        self.account = account
        self.session = session
        super().__init__(
            f"paper account {account!r}: paper session {session} no longer owns the book (a "
            f"newer paper exchange started on this database and took it over); this one stops"
        )


def _triples(d: dict[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(k, a, b) for k, (a, b) in d.items()]


def _conflict(
    table: str, key: dict[str, Any], differences: dict[str, tuple[Any, Any]]
) -> LedgerConflictError:
    """The error for a conflicting row, logged and counted where it is found."""
    err = LedgerConflictError(table, key, differences)
    metrics.LEDGER_CONFLICTS.labels(table=metrics.bounded(table, metrics.LEDGER_TABLES)).inc()
    log.error(
        "ledger conflict",
        table=table,
        key={k: str(v) for k, v in key.items()},
        differences={f: [str(a), str(b)] for f, (a, b) in differences.items()},
    )
    return err


def _in_batches(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """``values`` in runs of at most ``size``: IN lists of a bounded length."""
    for lo in range(0, len(values), size):
        yield values[lo : lo + size]


def _differences(stored: Any, new: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Fields whose stored value differs from the new one (decimals by value: 0.50 == 0.5)."""
    out = {}
    for f in fields:
        a, b = stored[f], new[f]
        if isinstance(b, Decimal) and a is not None:
            a = Decimal(a)
        if a != b:
            out[f] = (a, b)
    return out


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) from a name, stable across processes."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


MIGRATION_LOCK = advisory_key("tessera:execution:migrations")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite ``url`` (None: in memory, or not SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent, safe to race).

    Several processes may start at once on a new database (two bots, a bot and the CLI); without
    a lock both see no schema and the second fails creating it (PostgreSQL: UniqueViolation on
    ``alembic_version``). So the upgrade runs under a lock: on PostgreSQL a transaction-scoped
    advisory lock, on SQLite an exclusive file lock next to the database. The second process
    waits, then finds the schema at head and does nothing.

    A database already at head (every start after the first) is recognised by one read of
    ``alembic_version``, without taking the lock or importing Alembic.
    """
    engine = make_engine(url)
    try:
        if _at_head(engine):
            return
        if engine.dialect.name == "sqlite":
            _migrate_sqlite(engine, url)
            return
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            _upgrade(conn, url)
    finally:
        engine.dispose()


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:  # no schema yet (no table): the full, locked upgrade creates it
        return False
    return [v for (v,) in versions] == [head_revision()]


def _upgrade(conn: Connection, url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def _migrate_sqlite(engine: Engine, url: str) -> None:
    path = sqlite_path(url)
    lock_fd = None
    if path is not None:
        lock_fd = os.open(f"{path}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # blocks until another migrating process is done
    try:
        with engine.connect() as conn:
            # A column change rebuilds a table on SQLite (copy, drop, rename): with foreign keys
            # on, dropping ``orders`` would fail on the fills that refer to it. The pragma only
            # takes effect outside a transaction; the references are checked after the upgrade.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            with conn.begin():
                _upgrade(conn, url)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
            if broken:
                raise RuntimeError(f"the migration left broken references: {broken[:5]}")
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing releases the lock


def pg_connect_args(sync: DatabaseSync) -> dict[str, str]:
    """psycopg's connection arguments for ``sync`` (see `make_engine`)."""
    commit = {"full": "on", "normal": "off"}[sync]
    return {"options": f"-c synchronous_commit={commit}"}


def make_engine(url: str, sync: DatabaseSync = "full", *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``. ``sync`` is how durable a commit is: ``full`` — on disk (fsync)
    before the commit returns, it survives a power loss; ``normal`` — handed to the operating
    system, it survives a crash or kill of the process but the last commits may be lost if the
    machine itself goes down (SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
    ``synchronous_commit=off``: both stay consistent, neither corrupts).

    ``pre_ping`` (PostgreSQL): test each pooled connection with a round trip before handing it
    out. The order path's engine goes without (`ExecutionStore.path_engine`: `OrderManager` retries
    once on a lost connection instead).

    SQLite copies its WAL back into the database file itself, inside the commit that finds the
    WAL over 1,000 pages. A thread of the store's own doing it instead (PASSIVE checkpoints,
    ``wal_autocheckpoint=0``) was tried for issue 20 and taken out: on a quiet machine it cut
    durable orders/s by a quarter and raised the intent's median and p99 (docs/benchmarks.md,
    2026-12-07)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (the CLI) never block the bot
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync.upper()}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql+psycopg://"):
        return create_engine(url, pool_pre_ping=pre_ping, connect_args=pg_connect_args(sync))
    return create_engine(url, pool_pre_ping=pre_ping)


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class StoredFill:
    fill: Fill
    exchange: str
    ts_recorded: int
    # the reason of the fill's order: the exit reason when the fill closes a position
    reason: ExitReason = ExitReason.SIGNAL
    list_id: str = ""


FUNDING_SOURCES = ("user_data", "income")
FUNDING_SLOT_MS = 60_000


def funding_slot(ts_ms: int) -> int:
    """The funding time to the nearest minute: what identifies a payment together with its
    account, symbol and asset (the stream's event and the income row of one payment may differ
    by milliseconds; funding times of one symbol are at least an hour apart)."""
    return (ts_ms + FUNDING_SLOT_MS // 2) // FUNDING_SLOT_MS * FUNDING_SLOT_MS


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """One funding payment of a perpetual as the venue reports it (negative ``amount``:
    paid). ``source`` is "user_data" (ACCOUNT_UPDATE FUNDING_FEE) or "income"
    (``/fapi/v1/income``, read by `tessera.venues.binance_usdm.rest.funding_record`);
    ``venue_id`` the income row's ``tranId`` when known."""

    symbol: str
    ts_ms: int
    amount: Decimal
    asset: str
    source: str
    venue_id: str | None = None

    def __post_init__(self) -> None:
        if self.source not in FUNDING_SOURCES:
            raise ValueError(
                f"funding payment source must be one of {FUNDING_SOURCES}, got {self.source!r}"
            )


@dataclass(frozen=True, slots=True)
class StoredFunding:
    account: str
    record: FundingRecord
    ts_recorded: int


@dataclass
class _Pending:
    """A batch's deferred writes (`ExecutionStore.batch`)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)


class ExecutionStore:
    """Thread-safe (one connection per call) repository over the execution tables."""

    def __init__(
        self,
        url: str,
        exchange: str = "binance",
        run_migrations: bool = True,
        sync: DatabaseSync = "full",
    ) -> None:
        if run_migrations:
            migrate(url)
        self.url = url
        self.exchange = exchange
        self.engine = make_engine(url, sync)
        # The order path's engine (`on_path`): no pre-ping round trip before each transaction;
        # `OrderManager` retries a write once on a lost connection instead. SQLite has none to
        # skip: one engine.
        self.path_engine = (
            make_engine(url, sync, pre_ping=False) if self.engine.dialect.name != "sqlite"
            else self.engine
        )  # fmt: skip
        # the intent's asynchronous connection on PostgreSQL (`record_submission_async`), with
        # the loop it waits on; opened on first use
        self._async_conn: tuple[Any, Any] | None = None
        self._async_locks: tuple[Any, Any] | None = None
        self._connect_args = pg_connect_args(sync) if url.startswith("postgresql") else {}
        self._batch: ContextVar[Connection | None] = ContextVar(f"batch-{id(self)}", default=None)
        self._pending: ContextVar[_Pending | None] = ContextVar(f"pending-{id(self)}", default=None)
        # which engine this thread uses (`on_path` sets `path_engine`)
        self._local = threading.local()

    @contextmanager
    def on_path(self) -> Iterator[None]:
        """The store calls inside use the order path's engine (no pre-ping) on this thread:
        the intent and the exchange's answer written by `OrderManager`, which retries once on a
        lost connection."""
        before = getattr(self._local, "engine", None)
        self._local.engine = self.path_engine
        try:
            yield
        finally:
            self._local.engine = before

    def _engine(self) -> Engine:
        engine: Engine | None = getattr(self._local, "engine", None)
        return engine if engine is not None else self.engine

    def close(self) -> None:
        self._drop_async_connection()
        self.engine.dispose()
        if self.path_engine is not self.engine:
            self.path_engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        batch = self._batch.get()
        if batch is not None:  # part of the enclosing batch's transaction
            yield batch
            return
        with _too_long_unwrapped(), self._engine().begin() as conn:
            yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several store calls as one transaction: all of them are committed, or none.

        Used where a sequence of writes has no outside effect in between (an exchange answer:
        acceptance, fills, final state), to pay one commit instead of one per write. Inside a
        batch, a constraint violation propagates (the transaction is lost): callers redo the
        writes one by one.
        """
        if self._batch.get() is not None:
            yield
            return
        with _too_long_unwrapped(), self._engine().begin() as conn:
            token = self._batch.set(conn)
            pending = _Pending()
            deferred = self._pending.set(pending)
            try:
                yield
                self._flush(conn, pending)
            finally:
                self._pending.reset(deferred)
                self._batch.reset(token)

    def _flush(self, c: Connection, pending: _Pending) -> None:
        """A batch's deferred writes, before its commit: the order events in the order they
        were appended (one multi-row statement), then each order's last state (one statement
        for all). An answer's acceptance, fill and final state thus cost two statements where
        they cost six — on PostgreSQL each was a round trip."""
        if pending.events:
            c.execute(self._INSERT_EVENT, pending.events)
        if pending.orders:
            rows = list(pending.orders.values())
            c.execute(self._UPDATE_ORDER, rows if len(rows) > 1 else rows[0])

    # --- runs -------------------------------------------------------------------------------

    def start_run(self, run_id: str, mode: str, version: str, strategies: Sequence[str]) -> None:
        """Record a run, or resume it: a restarted process continues its run id.

        Resuming needs the same mode and strategies (another version is allowed: a fix
        deployed mid-run); otherwise the run id names a different run — `LedgerConflictError`.
        """
        row = {"run_id": run_id, "mode": mode, "version": version,
               "strategies": json.dumps(list(strategies))}  # fmt: skip
        try:
            with self.tx() as c:
                c.execute(insert(runs).values(**row, started_at=now_ns(), status="running"))
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            stored = self.get_run(run_id)
            if stored is None:
                raise
            diffs = _differences(stored, row, ("mode", "strategies"))
            if diffs:
                raise _conflict("runs", {"run_id": run_id}, diffs) from None
            log.info("run resumed", run_id=run_id, version=version, was=stored["version"])

    def ensure_run(self, run_id: str, mode: str, version: str, strategies: Sequence[str]) -> None:
        """The run exists — created if not — and is a run of ``mode`` (else
        `LedgerConflictError`: orders of one mode must never land in a run of another)."""
        stored = self.get_run(run_id)
        if stored is None:
            self.start_run(run_id, mode, version, strategies)
        elif stored["mode"] != mode:
            raise _conflict("runs", {"run_id": run_id}, {"mode": (stored["mode"], mode)})

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.tx() as c:
            row = c.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def stop_run(self, run_id: str, status: str = "stopped") -> None:
        with self.tx() as c:
            c.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(stopped_at=now_ns(), status=status)
            )

    def next_seq(self, run_id: str) -> int:
        with self.tx() as c:
            top = c.execute(select(func.max(orders.c.seq)).where(orders.c.run_id == run_id))
            return int(top.scalar() or 0) + 1

    # --- orders -----------------------------------------------------------------------------

    def record_intent(self, order: Order, run_id: str, seq: int) -> bool:
        """Commit a new order (status INITIALIZED) before it is sent.

        Returns False if the order's signal already produced an order (a redelivered signal):
        the caller must then not send anything.
        """
        try:
            with self.tx() as c:
                c.execute(self._INSERT_ORDER, self._order_row(order, run_id, seq))
                c.execute(
                    self._INSERT_EVENT,
                    self._event_row(
                        order.client_order_id, "intent", order.status.value, order.ts_created
                    ),
                )
        except IntegrityError:
            if self._batch.get() is not None:
                raise  # the batch's transaction is lost; the caller redoes it step by step
            replayed = self._order_collision(order, run_id, seq)
            if replayed is None:
                raise  # no unique key explains it (a foreign key: the run is not recorded)
            return replayed
        return True

    def record_submission(self, order: Order, run_id: str, seq: int, submitted: OrderEvent) -> bool:
        """The intent and its SUBMITTED event in one transaction of two statements (the order
        row already in its SUBMITTED state, both events in the log): what must be durable
        before the request goes out, in as few round trips as the database allows.

        Returns False if the order's signal already produced an order (send nothing).
        """
        row, events = self._submission_rows(order, run_id, seq, submitted)
        try:
            engine = self._engine()
            if engine.dialect.name == "postgresql" and self._batch.get() is None:
                params = self._submission_params(engine, row, events)
                with engine.connect() as c:
                    c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                        self._PG_SUBMISSION, params
                    )
            elif engine.dialect.name == "sqlite" and self._batch.get() is None:
                self._sqlite_submission(engine, row, events)
            else:
                with self.tx() as c:
                    c.execute(self._INSERT_ORDER, row)
                    c.execute(self._INSERT_EVENT, events)
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            replayed = self._order_collision(order, run_id, seq)
            if replayed is None:
                raise  # no unique key explains it (a foreign key: the run is not recorded)
            return replayed
        return True

    # The intent on PostgreSQL in one statement, one round trip: the order row, then its two
    # events through a data-modifying CTE, sent in autocommit mode, so the statement is its own
    # transaction (BEGIN, two INSERTs and COMMIT would be four round trips). The events'
    # foreign key is checked at the end of the statement, when the order row is there.
    _ORDER_COLUMNS = (
        "client_order_id", "run_id", "seq", "strategy", "signal_id", "exchange", "symbol",
        "side", "type", "time_in_force", "qty", "price", "stop_price", "status",
        "exchange_order_id", "filled_qty", "filled_notional", "overfilled", "late_fill",
        "ts_created", "ts_last", "reason", "list_id", "reduce_only",
    )  # fmt: skip
    _PG_SUBMISSION = (
        f"WITH o AS (INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) "
        f"VALUES ({', '.join(f'%(o_{c})s' for c in _ORDER_COLUMNS)}) RETURNING client_order_id) "
        "INSERT INTO order_events (client_order_id, kind, status_after, ts) "
        "SELECT o.client_order_id, e.kind, e.status_after, e.ts FROM o CROSS JOIN "
        "(VALUES (1, %(k0)s, %(s0)s, %(t0)s::bigint), (2, %(k1)s, %(s1)s, %(t1)s::bigint)) "
        "AS e(n, kind, status_after, ts) ORDER BY e.n"
    )
    _BOUNDED: ClassVar[tuple[tuple[str, Bounded], ...]]
    _EVENT_BOUNDED: ClassVar[tuple[tuple[str, Bounded], ...]]
    # The intent on SQLite: the same two INSERTs and one commit, through the driver itself.
    # SQLAlchemy's Core execution cost ~0.1 ms a statement here (the execution context,
    # events) — a tenth of the order path's median before the request (issue 20). The values
    # go through the columns' own bind processors (`DecimalText`'s text, `Bounded`'s limits),
    # as Core would pass them.
    _SQLITE_ORDER_SQL = (
        f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_ORDER_COLUMNS))})"
    )
    _EVENT_COLUMNS = ("client_order_id", "kind", "status_after", "ts")
    _SQLITE_EVENTS_SQL = (
        f"INSERT INTO order_events ({', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
    )
    _sqlite_binds: tuple[list[Any], list[Any]] | None = None

    def _sqlite_bind_processors(self, engine: Engine) -> tuple[list[Any], list[Any]]:
        """Each column's bind processor on this dialect (None: the value goes as it is), for
        the order row and an event row; looked up once."""
        if self._sqlite_binds is None:
            d = engine.dialect

            def binds(table: Any, names: Sequence[str]) -> list[Any]:
                return [table.c[n].type.dialect_impl(d).bind_processor(d) for n in names]

            self._sqlite_binds = (
                binds(orders, self._ORDER_COLUMNS),
                binds(order_events, self._EVENT_COLUMNS),
            )
        return self._sqlite_binds

    def _sqlite_submission(
        self, engine: Engine, row: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        """`record_submission`'s transaction on SQLite without the Core layer. A driver error
        surfaces as SQLAlchemy's (`IntegrityError`, `OperationalError`, ...), as from the Core
        statements, so that callers tell a replayed intent and a failed store apart as before."""
        order_binds, event_binds = self._sqlite_bind_processors(engine)
        values = [
            row[c] if bind is None else bind(row[c])
            for c, bind in zip(self._ORDER_COLUMNS, order_binds, strict=True)
        ]
        ev_values: list[Any] = []
        for ev in events:
            ev_values += (
                ev[c] if bind is None else bind(ev[c])
                for c, bind in zip(self._EVENT_COLUMNS, event_binds, strict=True)
            )
        raw = engine.raw_connection()
        sql = self._SQLITE_ORDER_SQL
        try:
            cur = raw.cursor()
            try:
                cur.execute(sql, values)
                sql = self._SQLITE_EVENTS_SQL
                cur.execute(sql, ev_values)
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cur.close()
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, None, exc, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
            ) from exc
        finally:
            raw.close()

    def _submission_rows(
        self, order: Order, run_id: str, seq: int, submitted: OrderEvent
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The intent's order row and its two events (intent, SUBMITTED)."""
        cid = order.client_order_id
        return self._order_row(order, run_id, seq), [
            self._event_row(cid, "intent", "INITIALIZED", order.ts_created),
            self._event_row(cid, submitted.kind.value, order.status.value, submitted.ts),
        ]

    @property
    def intent_is_async(self) -> bool:
        """Whether `record_submission_async` awaits the database on the event loop (PostgreSQL:
        psycopg's async connection) rather than committing synchronously (SQLite, whose commit
        is a local fsync with no socket to wait on)."""
        return self.path_engine.dialect.name == "postgresql"

    async def record_submission_async(
        self, order: Order, run_id: str, seq: int, submitted: OrderEvent
    ) -> bool:
        """`record_submission` without blocking the event loop: on PostgreSQL the one-statement
        intent goes over an asynchronous connection of the store's own (psycopg's
        ``AsyncConnection``, autocommit), so the loop goes on reading market frames while the
        server commits and flushes its WAL. Elsewhere (SQLite; or inside a `batch`) it is
        `record_submission`. The caller must not give up on the write half-way (a cancelled
        await does not stop a statement the server has): `OrderManager` waits it out.

        A lost connection raises SQLAlchemy's `DBAPIError` with ``connection_invalidated`` set
        (`is_disconnect`), a unique key the same `IntegrityError` handling as the synchronous
        write, so the caller's retry and replay rules are the same on both paths."""
        if not self.intent_is_async or self._batch.get() is not None:
            return self.record_submission(order, run_id, seq, submitted)
        row, events = self._submission_rows(order, run_id, seq, submitted)
        params = self._submission_params(self.path_engine, row, events)
        try:
            await self._execute_async(self._PG_SUBMISSION, params)
        except IntegrityError:
            replayed = self._order_collision(order, run_id, seq)
            if replayed is None:
                raise
            return replayed
        return True

    async def _execute_async(self, sql: str, params: dict[str, Any]) -> None:
        import psycopg  # only a PostgreSQL store gets here

        lock = self._async_lock()
        async with lock:  # first come, first written (and one connection opened, not one each)
            conn = await self._async_connection()
            try:
                await conn.execute(sql, params)
            except psycopg.IntegrityError as exc:
                raise IntegrityError(sql, params, exc) from exc
            except psycopg.Error as exc:
                lost = conn.broken or conn.closed
                if lost:
                    self._drop_async_connection()
                raise DBAPIError(sql, params, exc, connection_invalidated=lost) from exc

    def _async_lock(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async_locks is None or self._async_locks[0] is not loop:
            self._async_locks = (loop, asyncio.Lock())
        return self._async_locks[1]

    async def _async_connection(self) -> Any:
        """The store's asynchronous PostgreSQL connection for the running loop (a new one for a
        new loop: a connection waits on the loop it was made on)."""
        import psycopg

        loop = asyncio.get_running_loop()
        held = self._async_conn
        if held is not None and held[0] is loop and not held[1].closed:
            return held[1]
        self._drop_async_connection()
        args, kwargs = self.path_engine.dialect.create_connect_args(self.path_engine.url)
        kwargs.update(self._connect_args)
        conn = await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)
        self._async_conn = (loop, conn)
        return conn

    def _drop_async_connection(self) -> None:
        held, self._async_conn = self._async_conn, None
        if held is not None and not held[1].closed:
            held[1].pgconn.finish()  # closes the socket without a loop to await on

    def _check_lengths(
        self, engine: Engine, row: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        """The intent's column limits, for the statements that hand the driver the values as
        they are (the same `ValueTooLongError` the Core statements raise)."""
        for name, bounded in self._BOUNDED:
            bounded.process_bind_param(row[name], engine.dialect)
        for ev in events:
            for name, bounded in self._EVENT_BOUNDED:
                bounded.process_bind_param(ev[name], engine.dialect)

    def _submission_params(
        self, engine: Engine, row: dict[str, Any], events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self._check_lengths(engine, row, events)
        params: dict[str, Any] = {f"o_{c}": row[c] for c in self._ORDER_COLUMNS}
        for i, ev in enumerate(events):
            params[f"k{i}"], params[f"s{i}"], params[f"t{i}"] = (
                ev["kind"], ev["status_after"], ev["ts"]
            )  # fmt: skip
        return params

    def record_list_submission(
        self, legs: Sequence[tuple[Order, int, OrderEvent]], run_id: str
    ) -> bool:
        """`record_submission` for the legs of an order list, ``(order, seq, submitted)``
        each, all in one transaction: every leg is durable before the one request that places
        the list goes out, or none is.

        Returns False if the list's signal already produced an order (send nothing).
        """
        rows, events = [], []
        for order, seq, submitted in legs:
            rows.append(self._order_row(order, run_id, seq))
            cid = order.client_order_id
            events += [
                self._event_row(cid, "intent", "INITIALIZED", order.ts_created),
                self._event_row(cid, submitted.kind.value, order.status.value, submitted.ts),
            ]
        try:
            with self.tx() as c:
                c.execute(self._INSERT_ORDER, rows)
                c.execute(self._INSERT_EVENT, events)
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            # the transaction wrote nothing: which leg hit which key decides
            outcomes = [self._order_collision(o, run_id, seq) for o, seq, _ in legs]
            if False in outcomes:
                return False  # the signal already produced an order
            if all(outcomes):
                return True  # the whole list was recorded before (a replayed write)
            raise
        return True

    def _order_collision(self, order: Order, run_id: str, seq: int) -> bool | None:
        """A new order hit a unique key; which one, and is it a replay or a conflict?

        * its client order id is stored with the same content: the write was replayed (say,
          after a commit whose answer was lost) — True, it is recorded;
        * its signal already produced an order (a redelivered signal): False, send nothing —
          if that order is for the same strategy and symbol; else the signal id is reused;
        * anything else (the client id or the run's sequence number taken by another order):
          `LedgerConflictError`;
        * no stored order explains it: None (the caller re-raises the database's error).
        """
        row = self._order_row(order, run_id, seq)
        with self.tx() as c:
            by_cid = c.execute(
                select(orders).where(orders.c.client_order_id == order.client_order_id)
            ).mappings().first()  # fmt: skip
            if by_cid is not None:
                diffs = _differences(by_cid, row, [k for k in row if k != "ts_last"])
                if diffs:
                    key = {"client_order_id": order.client_order_id}
                    raise _conflict("orders", key, diffs)
                return True
            by_signal = None
            if order.signal_id:
                by_signal = c.execute(
                    select(orders).where(orders.c.signal_id == order.signal_id)
                ).mappings().first()  # fmt: skip
            if by_signal is not None:
                diffs = _differences(by_signal, row, ("exchange", "strategy", "symbol"))
                if diffs:
                    raise _conflict("orders", {"signal_id": order.signal_id}, diffs)
                return False
            by_seq = c.execute(
                select(orders).where(orders.c.run_id == run_id, orders.c.seq == seq)
            ).mappings().first()  # fmt: skip
            if by_seq is not None:
                diffs = _differences(by_seq, row, ("client_order_id",))
                raise _conflict("orders", {"run_id": run_id, "seq": seq}, diffs)
        return None

    @staticmethod
    def _event_row(cid: str, kind: str, status_after: str, ts: int) -> dict[str, Any]:
        return {
            "client_order_id": cid,
            "kind": kind,
            "status_after": status_after,
            "ts": ts,
            "exchange_order_id": None,
            "reason": None,
            "trade_id": None,
        }

    def _order_row(self, order: Order, run_id: str, seq: int) -> dict[str, Any]:
        return {
            "client_order_id": order.client_order_id,
            "run_id": run_id,
            "seq": seq,
            "strategy": order.strategy,
            "signal_id": order.signal_id or None,
            "exchange": self.exchange,
            "symbol": order.symbol,
            "side": order.side.value,
            "type": order.type.value,
            "time_in_force": order.time_in_force.value,
            "qty": order.qty,
            "price": order.price,
            "stop_price": order.stop_price,
            "status": order.status.value,
            "exchange_order_id": order.exchange_order_id,
            "filled_qty": order.filled_qty,
            "filled_notional": order.filled_notional,
            "overfilled": False,
            "late_fill": False,
            "ts_created": order.ts_created,
            "ts_last": order.ts_last or order.ts_created,
            "reason": order.reason.value,
            "list_id": order.list_id or None,
            "reduce_only": order.reduce_only,
        }

    def record_event(self, order: Order, event: OrderEvent) -> None:
        """Append ``event`` and store the order's state after it (same transaction)."""
        with self.tx() as c:
            self._append_event(c, order, event)
            self._update_order(c, order)

    # The order path's statements are built once, values passed as parameters: building a
    # statement per call (``.values(...)``) cost more CPU than the commit's fsync.
    _INSERT_ORDER = insert(orders)
    _INSERT_EVENT = insert(order_events)
    _UPDATE_ORDER = (
        update(orders)
        .where(orders.c.client_order_id == bindparam("cid"))
        .values(
            status=bindparam("status"),
            exchange_order_id=bindparam("exchange_order_id"),
            filled_qty=bindparam("filled_qty"),
            filled_notional=bindparam("filled_notional"),
            reject_reason=bindparam("reject_reason"),
            overfilled=bindparam("overfilled"),
            late_fill=bindparam("late_fill"),
            ts_last=bindparam("ts_last"),
        )
    )

    # Inside a `batch`, an order's events and its new state are deferred to the batch's end
    # (`_flush`, same transaction): nothing inside a batch reads them back.
    def _append_event(self, c: Connection, order: Order, event: OrderEvent) -> None:
        row = {
            "client_order_id": order.client_order_id,
            "kind": event.kind.value,
            "status_after": order.status.value,
            "ts": event.ts,
            "exchange_order_id": event.exchange_order_id,
            "reason": event.reason,
            "trade_id": event.fill.trade_id if event.fill else None,
        }
        pending = self._pending.get()
        if pending is not None:
            pending.events.append(row)
        else:
            c.execute(self._INSERT_EVENT, row)

    def _update_order(self, c: Connection, order: Order) -> None:
        row = {
            "cid": order.client_order_id,
            "status": order.status.value,
            "exchange_order_id": order.exchange_order_id,
            "filled_qty": order.filled_qty,
            "filled_notional": order.filled_notional,
            "reject_reason": order.reject_reason,
            "overfilled": order.overfilled,
            "late_fill": order.late_fill,
            "ts_last": order.ts_last,
        }
        pending = self._pending.get()
        if pending is not None:
            pending.orders[order.client_order_id] = row  # the last state is what is stored
        else:
            c.execute(self._UPDATE_ORDER, row)

    @property
    def in_batch(self) -> bool:
        """Whether the calls now run inside a `batch` (one transaction, writes deferred)."""
        return self._batch.get() is not None

    def record_fill(
        self, order: Order, event: OrderEvent, position: Position | None = None
    ) -> bool:
        """Store a fill once, with its order event, the order's new state and the position.

        Returns False (and changes nothing) if this trade id is already stored.
        """
        fill = event.fill
        assert fill is not None
        try:
            with self.tx() as c:
                c.execute(self._INSERT_FILL, {**self._fill_row(fill), "ts_recorded": now_ns()})
                self._append_event(c, order, event)
                self._update_order(c, order)
                if position is not None:
                    self._upsert_position(c, position)
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            if self.fill_recorded(fill):  # raises LedgerConflictError if it differs
                return False
            raise
        return True

    # What identifies a fill's content. Not the liquidity or the time: an order's immediate
    # fills (in the submit answer) carry the answer's time and "taker", the stream and REST
    # the trade's own — the same trade, seen from two places.
    FILL_CONTENT = ("client_order_id", "side", "price", "qty", "fee", "fee_asset")

    def _fill_row(self, fill: Fill) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "symbol": fill.symbol,
            "trade_id": fill.trade_id,
            "client_order_id": fill.client_order_id,
            "strategy": fill.strategy,
            "side": fill.side.value,
            "price": fill.price,
            "qty": fill.qty,
            "fee": fill.fee,
            "fee_asset": fill.fee_asset,
            "liquidity": fill.liquidity.value,
            "ts_event": fill.ts_event,
        }

    def fill_recorded(self, fill: Fill) -> bool:
        """Whether this fill is stored: False if its trade id is new, True if it is stored with
        the same content; `LedgerConflictError` if the trade id is stored for a different fill
        (another order, price, quantity or fee) — never a duplicate to skip."""
        with self.tx() as c:
            stored = (
                c.execute(
                    self._SELECT_FILL,
                    {"exchange": self.exchange, "symbol": fill.symbol, "trade_id": fill.trade_id},
                )
                .mappings()
                .first()
            )
        return self._same_fill(stored, fill)

    def _same_fill(self, stored: Any, fill: Fill) -> bool:
        """False if nothing is stored under the fill's trade id, True if the stored row is this
        fill; `LedgerConflictError` if it is another."""
        if stored is None:
            return False
        diffs = _differences(stored, self._fill_row(fill), self.FILL_CONTENT)
        if diffs:
            key = {"exchange": self.exchange, "symbol": fill.symbol, "trade_id": fill.trade_id}
            raise _conflict("fills", key, diffs)
        return True

    def fills_recorded(self, fills_: Sequence[Fill]) -> list[bool]:
        """`fill_recorded` for many fills of one symbol in one query (reconciliation's trades
        of a minute: one round trip instead of one each); same answers, same conflicts."""
        if not fills_:
            return []
        symbols = {f.symbol for f in fills_}
        if len(symbols) != 1:
            raise ValueError(f"fills of one symbol expected, got {sorted(symbols)}")
        stored: dict[str, Any] = {}
        with self.tx() as c:
            for some in _in_batches(sorted({f.trade_id for f in fills_})):
                q = select(fills).where(
                    fills.c.exchange == self.exchange,
                    fills.c.symbol == fills_[0].symbol,
                    fills.c.trade_id.in_(some),
                )
                stored.update({r["trade_id"]: r for r in c.execute(q).mappings()})
        return [self._same_fill(stored.get(f.trade_id), f) for f in fills_]

    def orders_for_exchange_ids(self, symbol: str, ids: Sequence[str]) -> dict[str, Order]:
        """`order_for_exchange_id` for many exchange order ids in one query: id -> order, the
        ids of no order of ours left out."""
        out: dict[str, Order] = {}
        with self.tx() as c:
            for some in _in_batches(sorted(set(ids))):
                q = select(orders).where(
                    orders.c.exchange == self.exchange,
                    orders.c.symbol == symbol,
                    orders.c.exchange_order_id.in_(some),
                )
                for r in c.execute(q).mappings():
                    out[r["exchange_order_id"]] = _order_from_row(r)
        return out

    def has_fill(self, symbol: str, trade_id: str) -> bool:
        """Whether a fill with this trade id is stored (whatever its content: prefer
        `fill_recorded`, which checks that it is the same fill)."""
        with self.tx() as c:
            row = c.execute(
                select(fills.c.id).where(
                    fills.c.exchange == self.exchange,
                    fills.c.symbol == symbol,
                    fills.c.trade_id == trade_id,
                )
            ).first()
            return row is not None

    # The fill's statements, built once like the order path's above.
    _INSERT_FILL = insert(fills)
    _SELECT_FILL = select(fills).where(
        fills.c.exchange == bindparam("exchange"),
        fills.c.symbol == bindparam("symbol"),
        fills.c.trade_id == bindparam("trade_id"),
    )
    _POSITION_VALUES = ("qty", "cost", "realized_pnl", "fees_quote", "ts_last")
    _UPDATE_POSITION = (
        update(positions)
        .where(positions.c.symbol == bindparam("p_symbol"),
               positions.c.strategy == bindparam("p_strategy"))
        .values({k: bindparam(k) for k in _POSITION_VALUES})
    )  # fmt: skip
    _INSERT_POSITION = insert(positions)

    def _upsert_position(self, c: Connection, p: Position) -> None:
        values = {
            "qty": p.qty,
            "cost": p.cost,
            "realized_pnl": p.realized_pnl,
            "fees_quote": p.fees_quote,
            "ts_last": p.ts_last,
        }
        done = c.execute(
            self._UPDATE_POSITION, {"p_symbol": p.symbol, "p_strategy": p.strategy, **values}
        )
        if done.rowcount == 0:
            c.execute(self._INSERT_POSITION, {"symbol": p.symbol, "strategy": p.strategy, **values})

    # --- reads ------------------------------------------------------------------------------

    def order_for_exchange_id(self, symbol: str, exchange_order_id: str) -> Order | None:
        with self.tx() as c:
            row = (
                c.execute(
                    select(orders).where(
                        orders.c.exchange == self.exchange,
                        orders.c.symbol == symbol,
                        orders.c.exchange_order_id == exchange_order_id,
                    )
                )
                .mappings()
                .first()
            )
        return _order_from_row(row) if row else None

    def new_paper_session(self) -> int:
        """A number no other paper exchange on this database has had or will have (the
        database's own sequence): the paper exchange's ids start from it."""
        with self.tx() as c:
            done = c.execute(
                insert(paper_sessions).values(
                    started_at=now_ns(), pid=os.getpid(), host=socket.gethostname()[:255]
                )
            )
            return int(cast(Any, done.inserted_primary_key)[0])

    def order_for_signal(self, signal_id: str) -> Order | None:
        with self.tx() as c:
            row = (
                c.execute(select(orders).where(orders.c.signal_id == signal_id)).mappings().first()
            )
        return _order_from_row(row) if row else None

    def get_order(self, client_order_id: str) -> Order | None:
        with self.tx() as c:
            row = (
                c.execute(select(orders).where(orders.c.client_order_id == client_order_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            order = _order_from_row(row)
            ids = (
                c.execute(
                    select(fills.c.trade_id).where(fills.c.client_order_id == client_order_id)
                )
                .scalars()
                .all()
            )
            order.trade_ids = set(ids)
            return order

    def open_orders(self) -> list[Order]:
        """Orders that may be live on the exchange, or that were never confirmed sent."""
        open_states = [s.value for s in OrderStatus if s.is_open] + [OrderStatus.INITIALIZED.value]
        with self.tx() as c:
            rows = (
                c.execute(
                    select(orders)
                    .where(orders.c.status.in_(open_states))
                    .order_by(orders.c.ts_created, orders.c.client_order_id)
                )
                .mappings()
                .all()
            )
            out = []
            for row in rows:
                order = _order_from_row(row)
                order.trade_ids = set(
                    c.execute(
                        select(fills.c.trade_id).where(
                            fills.c.client_order_id == order.client_order_id
                        )
                    )
                    .scalars()
                    .all()
                )
                out.append(order)
            return out

    def list_orders(self, limit: int = 100, status: str | None = None) -> list[Order]:
        q = select(orders).order_by(orders.c.ts_created.desc()).limit(limit)
        if status:
            q = q.where(orders.c.status == status.upper())
        with self.tx() as c:
            return [_order_from_row(r) for r in c.execute(q).mappings().all()]

    def list_fills(self, limit: int = 100, symbol: str | None = None) -> list[StoredFill]:
        """The newest fills, each with its order's reason and list (every fill has an order)."""
        q = (
            select(fills, orders.c.reason.label("order_reason"), orders.c.list_id)
            .join(orders, orders.c.client_order_id == fills.c.client_order_id)
            .order_by(fills.c.ts_event.desc(), fills.c.id.desc())
            .limit(limit)
        )
        if symbol:
            q = q.where(fills.c.symbol == symbol)
        with self.tx() as c:
            return [_fill_from_row(r) for r in c.execute(q).mappings().all()]

    def fill_count(self) -> int:
        """How many fills are stored (fills are never deleted: a change means a new fill)."""
        with self.tx() as c:
            return int(c.execute(select(func.count()).select_from(fills)).scalar() or 0)

    def fill_count_after(self, after_id: int) -> int:
        """How many fills are stored with a row id above ``after_id`` (an index range: cheap
        when it is near the newest)."""
        q = select(func.count()).select_from(fills).where(fills.c.id > after_id)
        with self.tx() as c:
            return int(c.execute(q).scalar() or 0)

    def all_fills(self) -> list[Fill]:
        with self.tx() as c:
            rows = c.execute(select(fills).order_by(fills.c.ts_event, fills.c.id)).mappings().all()
        return [_fill_from_row(r).fill for r in rows]

    def fills_after(self, after_id: int) -> list[tuple[int, Fill]]:
        """The stored fills whose row id is above ``after_id``, each with its id, in id order
        (a running total reads only what was stored since its last read)."""
        q = select(fills).where(fills.c.id > after_id).order_by(fills.c.id)
        with self.tx() as c:
            rows = c.execute(q).mappings().all()
        return [(int(r["id"]), _fill_from_row(r).fill) for r in rows]

    def positions(self) -> list[Position]:
        with self.tx() as c:
            rows = (
                c.execute(select(positions).order_by(positions.c.symbol, positions.c.strategy))
                .mappings()
                .all()
            )
        out = []
        for r in rows:
            p = Position(
                r["symbol"],
                r["strategy"],
                realized_pnl=r["realized_pnl"],
                fees_quote=r["fees_quote"],
                ts_last=r["ts_last"],
            )
            if r["qty"]:
                # The stored cost reproduces the average; lots beyond that are not needed.
                p.lots.append((r["qty"], r["cost"] / r["qty"]))
            out.append(p)
        return out

    # --- the paper exchange's book -----------------------------------------------------------

    def claim_paper_book(self, account: str, session: int) -> list[dict[str, Any]]:
        """Make paper exchange ``session`` the owner of ``account``'s book and return the book's
        open orders (rows of ``paper_orders``). An older owner gets `PaperBookTakenOverError` at
        its next write: the claim and every write lock the account's ``paper_accounts`` row, so
        the claim reads the book after the last write of the previous owner."""
        open_states = [s.value for s in OrderStatus if s.is_open]
        for attempt in range(2):
            try:
                with self.tx() as c:
                    done = c.execute(
                        update(paper_accounts)
                        .where(paper_accounts.c.account == account)
                        .values(session=session, since=now_ns())
                    )
                    if done.rowcount == 0:
                        c.execute(
                            insert(paper_accounts).values(
                                account=account, session=session, since=now_ns()
                            )
                        )
                    rows = (
                        c.execute(
                            select(paper_orders)
                            .where(
                                paper_orders.c.account == account,
                                paper_orders.c.status.in_(open_states),
                            )
                            .order_by(paper_orders.c.ts_created, paper_orders.c.exchange_order_id)
                        )
                        .mappings()
                        .all()
                    )
                return [dict(r) for r in rows]
            except IntegrityError:
                if attempt or self._batch.get() is not None:
                    raise  # another paper exchange created the row at the same moment: retry
        raise AssertionError("unreachable")

    def save_paper_book(
        self,
        account: str,
        session: int,
        rows: Sequence[dict[str, Any]],
        items: dict[str, tuple[Decimal, Decimal]],
        ts: int,
        state: str | None = None,
    ) -> None:
        """Store changed paper orders (whole rows, keyed by client order id) and the account's
        balances (a snapshot, source ``account``) and, when given, its ``state`` (JSON) in one
        transaction — if ``session`` still owns the book; otherwise `PaperBookTakenOverError`
        and nothing is written."""
        kept: dict[str, Any] = {"since": paper_accounts.c.since} if state is None else {}
        with self.tx() as c:
            owned = c.execute(
                update(paper_accounts)
                .where(paper_accounts.c.account == account, paper_accounts.c.session == session)
                .values(**kept, **({} if state is None else {"state": state}))  # locks the row
            )
            if owned.rowcount == 0:
                raise PaperBookTakenOverError(account, session)
            for row in rows:
                values = {k: v for k, v in row.items() if k != "client_order_id"}
                done = c.execute(
                    update(paper_orders)
                    .where(paper_orders.c.client_order_id == row["client_order_id"])
                    .values(**values)
                )
                if done.rowcount == 0:
                    c.execute(insert(paper_orders).values(**row))
            for asset, (free, locked) in sorted(items.items()):
                c.execute(
                    insert(balances).values(
                        ts=ts, source=account, asset=asset, free=free, locked=locked
                    )
                )

    def paper_state(self, account: str) -> str | None:
        """The paper account's state as `save_paper_book` last stored it (None: never)."""
        with self.tx() as c:
            return cast(
                "str | None",
                c.execute(
                    select(paper_accounts.c.state).where(paper_accounts.c.account == account)
                ).scalar(),
            )

    def paper_order(self, account: str, client_order_id: str) -> dict[str, Any] | None:
        """One order of the paper book, open or not (a row of ``paper_orders``)."""
        with self.tx() as c:
            row = (
                c.execute(
                    select(paper_orders).where(
                        paper_orders.c.account == account,
                        paper_orders.c.client_order_id == client_order_id,
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def paper_book(self, account: str, symbol: str) -> list[dict[str, Any]]:
        """Every order of the paper book on ``symbol``, open or not, oldest first."""
        with self.tx() as c:
            rows = (
                c.execute(
                    select(paper_orders)
                    .where(
                        paper_orders.c.account == account,
                        paper_orders.c.symbol == symbol,
                    )
                    .order_by(paper_orders.c.ts_created, paper_orders.c.exchange_order_id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # --- balances and risk ------------------------------------------------------------------

    def snapshot_balances(
        self, source: str, items: dict[str, tuple[Decimal, Decimal]], ts: int | None = None
    ) -> None:
        ts = ts or now_ns()
        with self.tx() as c:
            for asset, (free, locked) in sorted(items.items()):
                c.execute(
                    insert(balances).values(
                        ts=ts, source=source, asset=asset, free=free, locked=locked
                    )
                )

    def latest_balances(self, source: str) -> dict[str, tuple[Decimal, Decimal]]:
        with self.tx() as c:
            top = c.execute(
                select(func.max(balances.c.ts)).where(balances.c.source == source)
            ).scalar()
            if top is None:
                return {}
            rows = (
                c.execute(select(balances).where(balances.c.source == source, balances.c.ts == top))
                .mappings()
                .all()
            )
        return {r["asset"]: (r["free"], r["locked"]) for r in rows}

    def record_risk_event(
        self,
        kind: str,
        reason: str,
        detail: str = "",
        drawdown_pct: float | None = None,
        run_id: str | None = None,
    ) -> None:
        with self.tx() as c:
            c.execute(
                insert(risk_events).values(
                    ts=now_ns(),
                    run_id=run_id,
                    kind=kind,
                    reason=reason,
                    detail=detail,
                    drawdown_pct=drawdown_pct,
                )
            )

    def save_strategy_state(self, strategy: str, state: str, ts: int) -> None:
        """A strategy's state as JSON text (`tessera.strategies.state`), replacing the last."""
        with self.tx() as c:
            c.execute(strategy_state.delete().where(strategy_state.c.strategy == strategy))
            c.execute(insert(strategy_state).values(strategy=strategy, state=state, ts=ts))

    def load_strategy_state(self, strategy: str) -> str | None:
        with self.tx() as c:
            row = c.execute(
                select(strategy_state.c.state).where(strategy_state.c.strategy == strategy)
            ).first()
            return str(row[0]) if row is not None else None

    # --- funding payments of perpetuals ------------------------------------------------------

    # What identifies a payment's content besides its key: a different amount at the same
    # funding time is a conflict, never a duplicate (the source and the time's milliseconds
    # may differ between the stream and the income rows of one payment).
    FUNDING_CONTENT = ("amount",)

    def record_funding(self, account: str, payment: FundingRecord) -> bool:
        """Store a funding payment once: False (nothing changes, except that an income row
        fills in the ``tranId`` a stream row lacked) if this account already has the payment
        of this symbol and asset at this funding time; `LedgerConflictError` if the stored one
        has another amount."""
        row = {
            "account": account,
            "symbol": payment.symbol,
            "asset": payment.asset,
            "funding_slot": funding_slot(payment.ts_ms),
            "ts_ms": payment.ts_ms,
            "amount": payment.amount,
            "source": payment.source,
            "venue_id": payment.venue_id,
        }
        try:
            with self.tx() as c:
                c.execute(insert(funding_payments).values(**row, ts_recorded=now_ns()))
            return True
        except IntegrityError as exc:
            if self._batch.get() is not None:
                raise
            error = exc
        key = {k: row[k] for k in ("account", "symbol", "asset", "funding_slot")}
        where = [getattr(funding_payments.c, k) == v for k, v in key.items()]
        with self.tx() as c:
            stored = c.execute(select(funding_payments).where(*where)).mappings().first()
            if stored is None:  # the insert failed for another reason
                raise error
            diffs = _differences(stored, row, self.FUNDING_CONTENT)
            if diffs:
                raise _conflict("funding_payments", key, diffs)
            if stored["venue_id"] is None and payment.venue_id is not None:
                c.execute(
                    update(funding_payments)
                    .where(funding_payments.c.id == stored["id"])
                    .values(venue_id=payment.venue_id)
                )
        return False

    def funding_payments(
        self, account: str, symbol: str | None = None, since: int | None = None
    ) -> list[StoredFunding]:
        """The account's funding payments, oldest first; of ``symbol`` only, and at or after
        ``since`` (ms) only, when given."""
        q = (
            select(funding_payments)
            .where(funding_payments.c.account == account)
            .order_by(funding_payments.c.ts_ms, funding_payments.c.id)
        )
        if symbol:
            q = q.where(funding_payments.c.symbol == symbol)
        if since is not None:
            q = q.where(funding_payments.c.ts_ms >= since)
        with self.tx() as c:
            rows = c.execute(q).mappings().all()
        return [
            StoredFunding(
                r["account"],
                FundingRecord(
                    r["symbol"],
                    int(r["ts_ms"]),
                    Decimal(r["amount"]),
                    r["asset"],
                    r["source"],
                    r["venue_id"],
                ),
                int(r["ts_recorded"]),
            )
            for r in rows
        ]

    def last_funding_ms(self, account: str) -> int | None:
        """The funding time of the account's newest stored payment (where an import of missed
        payments starts), None if it has none."""
        with self.tx() as c:
            value = c.execute(
                select(func.max(funding_payments.c.ts_ms)).where(
                    funding_payments.c.account == account
                )
            ).scalar()
        return int(value) if value is not None else None

    def save_halt(
        self, account: str, reason: str, ts: int, drawdown_pct: float, equity_peak: Decimal
    ) -> None:
        with self.tx() as c:
            c.execute(risk_state.delete().where(risk_state.c.account == account))
            c.execute(
                insert(risk_state).values(
                    account=account,
                    state="HALTED",
                    reason=reason,
                    ts=ts,
                    drawdown_pct=drawdown_pct,
                    equity_peak=equity_peak,
                )
            )
            c.execute(
                insert(risk_events).values(
                    ts=ts, kind="halt", reason=reason, drawdown_pct=drawdown_pct
                )
            )

    def load_halt(self, account: str) -> dict[str, Any] | None:
        with self.tx() as c:
            row = (
                c.execute(select(risk_state).where(risk_state.c.account == account))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def clear_halt(self, account: str, by: str) -> bool:
        with self.tx() as c:
            done = c.execute(risk_state.delete().where(risk_state.c.account == account))
            c.execute(insert(risk_events).values(ts=now_ns(), kind="reset", reason=by))
            return bool(done.rowcount)

    # --- the operator's side (tessera.control): paged history, actions, equity, pauses -------

    def orders_page(
        self,
        *,
        status: str | None = None,
        symbol: str | None = None,
        strategy: str | None = None,
        since: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Order], int]:
        """Orders newest first, filtered (``status`` one `OrderStatus` or ``open`` for every
        open one; ``since``: created at or after, ns), one page of them and how many match."""
        where: list[Any] = []
        if status:
            if status.lower() == "open":
                states = [st.value for st in OrderStatus if st.is_open]
                where.append(orders.c.status.in_([*states, OrderStatus.INITIALIZED.value]))
            else:
                where.append(orders.c.status == status.upper())
        if symbol:
            where.append(orders.c.symbol == symbol.upper())
        if strategy:
            where.append(orders.c.strategy == strategy)
        if since is not None:
            where.append(orders.c.ts_created >= since)
        q = (
            select(orders)
            .where(*where)
            .order_by(orders.c.ts_created.desc(), orders.c.client_order_id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.tx() as c:
            total = int(
                c.execute(select(func.count()).select_from(orders).where(*where)).scalar() or 0
            )
            rows = [_order_from_row(r) for r in c.execute(q).mappings().all()]
        return rows, total

    def fills_page(
        self,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        since: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[StoredFill], int]:
        """Fills newest first (each with its order's reason), filtered by symbol, strategy and
        ``since`` (the fill's event time, ns); one page and how many match."""
        where: list[Any] = []
        if symbol:
            where.append(fills.c.symbol == symbol.upper())
        if strategy:
            where.append(fills.c.strategy == strategy)
        if since is not None:
            where.append(fills.c.ts_event >= since)
        q = (
            select(fills, orders.c.reason.label("order_reason"), orders.c.list_id)
            .join(orders, orders.c.client_order_id == fills.c.client_order_id)
            .where(*where)
            .order_by(fills.c.ts_event.desc(), fills.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.tx() as c:
            total = int(
                c.execute(select(func.count()).select_from(fills).where(*where)).scalar() or 0
            )
            rows = [_fill_from_row(r) for r in c.execute(q).mappings().all()]
        return rows, total

    def fill_counts(self) -> dict[str, int]:
        """How many fills each strategy has (its trades, for the per-strategy PnL)."""
        q = select(fills.c.strategy, func.count()).group_by(fills.c.strategy)
        with self.tx() as c:
            return {str(r[0]): int(r[1]) for r in c.execute(q).all()}

    def record_action(
        self,
        *,
        actor: str,
        role: str,
        via: str,
        address: str,
        action: str,
        target: str | None,
        reason: str,
        outcome: str,
        detail: str = "",
        ts: int | None = None,
    ) -> int:
        """One operator action in the audit trail (``control_actions``); answers its id."""
        values = {
            "ts": ts or now_ns(),
            "actor": actor,
            "role": role,
            "via": via,
            "address": address[:64],
            "action": action,
            "target": target,
            "reason": reason,
            "outcome": outcome,
            "detail": detail,
        }
        with self.tx() as c:
            result = c.execute(insert(control_actions).values(**values))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def list_actions(self, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The audit trail newest first: one page of rows (as dicts) and how many there are."""
        q = (
            select(control_actions)
            .order_by(control_actions.c.ts.desc(), control_actions.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.tx() as c:
            total = int(c.execute(select(func.count()).select_from(control_actions)).scalar() or 0)
            rows = [dict(r) for r in c.execute(q).mappings().all()]
        return rows, total

    def record_equity(self, ts: int, run_id: str, equity: Decimal, drawdown_pct: float) -> None:
        with self.tx() as c:
            c.execute(
                insert(equity_samples).values(
                    ts=ts, run_id=run_id, equity=equity, drawdown_pct=drawdown_pct
                )
            )

    def equity_history(
        self, since_ns: int | None = None, limit: int = 1_000
    ) -> list[tuple[int, Decimal, float]]:
        """``(ts, equity, drawdown_pct)`` oldest first: the newest ``limit`` samples at or after
        ``since_ns``."""
        q = select(equity_samples.c.ts, equity_samples.c.equity, equity_samples.c.drawdown_pct)
        if since_ns is not None:
            q = q.where(equity_samples.c.ts >= since_ns)
        q = q.order_by(equity_samples.c.ts.desc(), equity_samples.c.id.desc()).limit(limit)
        with self.tx() as c:
            rows = c.execute(q).all()
        return [(int(r[0]), Decimal(r[1]), float(r[2])) for r in reversed(rows)]

    def save_pause(self, strategy: str, by: str, reason: str, ts: int) -> None:
        """An operator's pause of ``strategy``, replacing an earlier one."""
        with self.tx() as c:
            c.execute(strategy_pauses.delete().where(strategy_pauses.c.strategy == strategy))
            c.execute(
                insert(strategy_pauses).values(strategy=strategy, by=by, reason=reason, ts=ts)
            )

    def clear_pause(self, strategy: str) -> bool:
        with self.tx() as c:
            done = c.execute(strategy_pauses.delete().where(strategy_pauses.c.strategy == strategy))
            return bool(done.rowcount)

    def load_pauses(self) -> dict[str, dict[str, Any]]:
        """strategy id -> ``{by, reason, ts}`` of every operator pause."""
        with self.tx() as c:
            rows = c.execute(select(strategy_pauses)).mappings().all()
        return {
            str(r["strategy"]): {"by": r["by"], "reason": r["reason"], "ts": int(r["ts"])}
            for r in rows
        }


def _bounded_columns(table: Any, names: Sequence[str]) -> tuple[tuple[str, Bounded], ...]:
    return tuple((n, t) for n in names if isinstance(t := table.c[n].type, Bounded))


# the limits `_check_lengths` checks itself (the intent's driver statements bypass the Core types)
ExecutionStore._BOUNDED = _bounded_columns(orders, ExecutionStore._ORDER_COLUMNS)
ExecutionStore._EVENT_BOUNDED = _bounded_columns(order_events, ("kind", "status_after"))


def _order_from_row(r: Any) -> Order:
    order = Order(
        client_order_id=r["client_order_id"],
        symbol=r["symbol"],
        side=OrderSide(r["side"]),
        type=OrderType(r["type"]),
        qty=r["qty"],
        price=r["price"],
        stop_price=r["stop_price"],
        time_in_force=TimeInForce(r["time_in_force"]),
        strategy=r["strategy"],
        signal_id=r["signal_id"] or "",
        ts_created=r["ts_created"],
        reason=ExitReason(r["reason"]),
        list_id=r["list_id"] or "",
        reduce_only=bool(r["reduce_only"]),
    )
    order.status = OrderStatus(r["status"])
    order.exchange_order_id = r["exchange_order_id"]
    order.filled_qty = r["filled_qty"]
    order.filled_notional = r["filled_notional"]
    order.reject_reason = r["reject_reason"]
    order.overfilled = bool(r["overfilled"])
    order.late_fill = bool(r["late_fill"])
    order.ts_last = r["ts_last"]
    return order


def _fill_from_row(r: Any) -> StoredFill:
    fill = Fill(
        trade_id=r["trade_id"],
        client_order_id=r["client_order_id"],
        symbol=r["symbol"],
        side=OrderSide(r["side"]),
        price=r["price"],
        qty=r["qty"],
        fee=r["fee"],
        fee_asset=r["fee_asset"],
        liquidity=Liquidity(r["liquidity"]),
        ts_event=r["ts_event"],
        strategy=r["strategy"],
    )
    reason = r.get("order_reason")
    return StoredFill(
        fill,
        r["exchange"],
        r["ts_recorded"],
        ExitReason(reason) if reason else ExitReason.SIGNAL,
        r.get("list_id") or "",
    )


@contextmanager
def _too_long_unwrapped() -> Iterator[None]:
    """A too-long value surfaces as itself (`ValueTooLongError`), not wrapped by SQLAlchemy."""
    try:
        yield
    except StatementError as exc:
        if isinstance(exc.orig, ValueTooLongError):
            raise exc.orig from None
        raise
