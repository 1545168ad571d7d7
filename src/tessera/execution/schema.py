"""The execution database: runs, orders, order events, fills, positions, balances, risk.

SQLAlchemy Core tables, created and evolved by the Alembic migrations next to this file
(`tessera.execution.migrations`); a test checks that the migrations produce exactly these
tables. Money and quantities are exact: NUMERIC(38, 18) on PostgreSQL, and decimal text on
SQLite (whose NUMERIC is a float). Times are integer nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class DecimalText(TypeDecorator[Decimal]):
    """Exact decimals on SQLite, stored as text (SQLite's NUMERIC affinity would round)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return format(Decimal(value), "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def Money() -> Numeric[Decimal]:  # noqa: N802 - reads like a type in the table definitions
    return Numeric(38, 18, asdecimal=True).with_variant(DecimalText(), "sqlite")


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("mode", String(8), nullable=False),
    Column("version", String(32), nullable=False),
    Column("strategies", Text, nullable=False),  # JSON list
    Column("started_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger),
    Column("status", String(16), nullable=False),  # running | stopped | crashed
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(36), primary_key=True),
    Column("run_id", String(40), ForeignKey("runs.run_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("strategy", String(64), nullable=False),
    # A signal produces at most one order: redelivered signals hit this constraint.
    Column("signal_id", String(64), unique=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("side", String(4), nullable=False),
    Column("type", String(20), nullable=False),
    Column("time_in_force", String(3), nullable=False),
    Column("qty", Money(), nullable=False),
    Column("price", Money()),
    Column("stop_price", Money()),
    Column("status", String(20), nullable=False),
    Column("exchange_order_id", String(40)),
    Column("filled_qty", Money(), nullable=False),
    Column("filled_notional", Money(), nullable=False),
    Column("reject_reason", Text),
    Column("overfilled", Boolean, nullable=False, default=False),
    Column("late_fill", Boolean, nullable=False, default=False),
    Column("ts_created", BigInteger, nullable=False),
    Column("ts_last", BigInteger, nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_orders_run_id_seq"),
    Index("ix_orders_status", "status"),
    Index("ix_orders_symbol", "symbol"),
)

# Append-only: every state change of every order, in order. Never updated, never deleted.
order_events = Table(
    "order_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("client_order_id", String(36), ForeignKey("orders.client_order_id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("status_after", String(20), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("exchange_order_id", String(40)),
    Column("reason", Text),
    Column("trade_id", String(64)),
    Index("ix_order_events_client_order_id", "client_order_id"),
)

fills = Table(
    "fills",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("trade_id", String(64), nullable=False),
    Column("client_order_id", String(36), ForeignKey("orders.client_order_id"), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("side", String(4), nullable=False),
    Column("price", Money(), nullable=False),
    Column("qty", Money(), nullable=False),
    Column("fee", Money(), nullable=False),
    Column("fee_asset", String(16), nullable=False),
    Column("liquidity", String(5), nullable=False),
    Column("ts_event", BigInteger, nullable=False),
    Column("ts_recorded", BigInteger, nullable=False),
    # The exchange's trade id identifies a fill: recording it twice is impossible.
    UniqueConstraint("exchange", "symbol", "trade_id", name="uq_fills_exchange_trade"),
    Index("ix_fills_client_order_id", "client_order_id"),
)

positions = Table(
    "positions",
    metadata,
    Column("symbol", String(20), primary_key=True),
    Column("strategy", String(64), primary_key=True),
    Column("qty", Money(), nullable=False),
    Column("cost", Money(), nullable=False),
    Column("realized_pnl", Money(), nullable=False),
    Column("fees_quote", Money(), nullable=False),
    Column("ts_last", BigInteger, nullable=False),
)

balances = Table(
    "balances",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),  # exchange | paper
    Column("asset", String(16), nullable=False),
    Column("free", Money(), nullable=False),
    Column("locked", Money(), nullable=False),
    Index("ix_balances_ts", "ts"),
)

risk_events = Table(
    "risk_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", BigInteger, nullable=False),
    Column("run_id", String(40)),
    Column("kind", String(16), nullable=False),  # halt | reset | state | denial
    Column("reason", Text, nullable=False),
    Column("detail", Text),
    Column("drawdown_pct", Numeric(12, 6, asdecimal=False)),
)

# The current halt, if any: one row per account key. A halt survives restarts until a person
# resets it.
risk_state = Table(
    "risk_state",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("state", String(12), nullable=False),
    Column("reason", Text),
    Column("ts", BigInteger, nullable=False),
    Column("drawdown_pct", Numeric(12, 6, asdecimal=False)),
    Column("equity_peak", Money(), nullable=False),
)
