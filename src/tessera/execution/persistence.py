"""`ExecutionStore`: the durable record of every order, fill and position.

The write-ahead rule: an order's intent is committed *before* the request is sent, with its
client order id; every later fact (sent, acked, filled, canceled, rejected) is appended as an
order event and applied to the order row in the same transaction. After a crash, the database
says exactly which orders may exist on the exchange (status INITIALIZED or in flight), and
reconciliation asks the exchange about those by client order id.

Fills are unique per (exchange, symbol, trade id): a fill seen twice — stream and REST, or
before and after a restart — is stored once (`record_fill` returns False the second time).

SQLite (the embedded default) and PostgreSQL run the same code and the same tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tessera.config.settings import DatabaseSync
from tessera.execution.orders import (
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
    balances,
    fills,
    order_events,
    orders,
    positions,
    risk_events,
    risk_state,
    runs,
)
from tessera.execution.state import OrderEvent

MIGRATIONS = Path(__file__).parent / "migrations"
ZERO = Decimal(0)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.set_main_option("sqlalchemy.url", url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def make_engine(url: str, sync: DatabaseSync = "full") -> Engine:
    """An engine for ``url``. ``sync`` is how durable a commit is: ``full`` — on disk (fsync)
    before the commit returns, it survives a power loss; ``normal`` — handed to the operating
    system, it survives a crash or kill of the process but the last commits may be lost if the
    machine itself goes down (SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
    ``synchronous_commit=off``: both stay consistent, neither corrupts)."""
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
        commit = {"full": "on", "normal": "off"}[sync]
        args = {"options": f"-c synchronous_commit={commit}"}
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    return create_engine(url, pool_pre_ping=True)


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class StoredFill:
    fill: Fill
    exchange: str
    ts_recorded: int


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
        self._batch: ContextVar[Connection | None] = ContextVar(f"batch-{id(self)}", default=None)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        batch = self._batch.get()
        if batch is not None:  # part of the enclosing batch's transaction
            yield batch
            return
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            token = self._batch.set(conn)
            try:
                yield
            finally:
                self._batch.reset(token)

    # --- runs -------------------------------------------------------------------------------

    def start_run(self, run_id: str, mode: str, version: str, strategies: Sequence[str]) -> None:
        with self.tx() as c:
            c.execute(
                insert(runs).values(
                    run_id=run_id,
                    mode=mode,
                    version=version,
                    strategies=json.dumps(list(strategies)),
                    started_at=now_ns(),
                    status="running",
                )
            )

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
            if order.signal_id and self.order_for_signal(order.signal_id) is not None:
                return False
            raise
        return True

    def record_submission(self, order: Order, run_id: str, seq: int, submitted: OrderEvent) -> bool:
        """The intent and its SUBMITTED event in one transaction of two statements (the order
        row already in its SUBMITTED state, both events in the log): what must be durable
        before the request goes out, in as few round trips as the database allows.

        Returns False if the order's signal already produced an order (send nothing).
        """
        row = self._order_row(order, run_id, seq)
        events = [
            self._event_row(order.client_order_id, "intent", "INITIALIZED", order.ts_created),
            self._event_row(order.client_order_id, submitted.kind.value, order.status.value,
                            submitted.ts),
        ]  # fmt: skip
        try:
            with self.tx() as c:
                c.execute(self._INSERT_ORDER, row)
                c.execute(self._INSERT_EVENT, events)
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            if order.signal_id and self.order_for_signal(order.signal_id) is not None:
                return False
            raise
        return True

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

    def _append_event(self, c: Connection, order: Order, event: OrderEvent) -> None:
        c.execute(
            self._INSERT_EVENT,
            {
                "client_order_id": order.client_order_id,
                "kind": event.kind.value,
                "status_after": order.status.value,
                "ts": event.ts,
                "exchange_order_id": event.exchange_order_id,
                "reason": event.reason,
                "trade_id": event.fill.trade_id if event.fill else None,
            },
        )

    def _update_order(self, c: Connection, order: Order) -> None:
        c.execute(
            self._UPDATE_ORDER,
            {
                "cid": order.client_order_id,
                "status": order.status.value,
                "exchange_order_id": order.exchange_order_id,
                "filled_qty": order.filled_qty,
                "filled_notional": order.filled_notional,
                "reject_reason": order.reject_reason,
                "overfilled": order.overfilled,
                "late_fill": order.late_fill,
                "ts_last": order.ts_last,
            },
        )

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
                c.execute(
                    insert(fills).values(
                        exchange=self.exchange,
                        symbol=fill.symbol,
                        trade_id=fill.trade_id,
                        client_order_id=fill.client_order_id,
                        strategy=fill.strategy,
                        side=fill.side.value,
                        price=fill.price,
                        qty=fill.qty,
                        fee=fill.fee,
                        fee_asset=fill.fee_asset,
                        liquidity=fill.liquidity.value,
                        ts_event=fill.ts_event,
                        ts_recorded=now_ns(),
                    )
                )
                self._append_event(c, order, event)
                self._update_order(c, order)
                if position is not None:
                    self._upsert_position(c, position)
        except IntegrityError:
            if self._batch.get() is not None:
                raise
            if self.has_fill(fill.symbol, fill.trade_id):
                return False
            raise
        return True

    def has_fill(self, symbol: str, trade_id: str) -> bool:
        with self.tx() as c:
            row = c.execute(
                select(fills.c.id).where(
                    fills.c.exchange == self.exchange,
                    fills.c.symbol == symbol,
                    fills.c.trade_id == trade_id,
                )
            ).first()
            return row is not None

    def _upsert_position(self, c: Connection, p: Position) -> None:
        values = {
            "qty": p.qty,
            "cost": p.cost,
            "realized_pnl": p.realized_pnl,
            "fees_quote": p.fees_quote,
            "ts_last": p.ts_last,
        }
        done = c.execute(
            update(positions)
            .where(positions.c.symbol == p.symbol, positions.c.strategy == p.strategy)
            .values(**values)
        )
        if done.rowcount == 0:
            c.execute(insert(positions).values(symbol=p.symbol, strategy=p.strategy, **values))

    # --- reads ------------------------------------------------------------------------------

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
        q = select(fills).order_by(fills.c.ts_event.desc(), fills.c.id.desc()).limit(limit)
        if symbol:
            q = q.where(fills.c.symbol == symbol)
        with self.tx() as c:
            return [_fill_from_row(r) for r in c.execute(q).mappings().all()]

    def all_fills(self) -> list[Fill]:
        with self.tx() as c:
            rows = c.execute(select(fills).order_by(fills.c.ts_event, fills.c.id)).mappings().all()
        return [_fill_from_row(r).fill for r in rows]

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
    return StoredFill(fill, r["exchange"], r["ts_recorded"])
