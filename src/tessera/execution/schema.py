"""The execution database: runs, orders, order events, fills, positions, balances, risk,
funding payments.

SQLAlchemy Core tables, created and evolved by the Alembic migrations next to this file
(`tessera.execution.migrations`); a test checks that the migrations produce exactly these
tables. Money and quantities are exact: NUMERIC(38, 18) on PostgreSQL, and decimal text on
SQLite (whose NUMERIC is a float). Times are integer nanoseconds since the epoch (UTC).

Every string column is a `Bounded` string: a value longer than the column is refused *before*
it reaches the database, with the same `ValueTooLongError` on both backends. PostgreSQL would
refuse it anyway (StringDataRightTruncation), but SQLite ignores VARCHAR lengths, so without
this check the SQLite tests pass with identifiers that PostgreSQL rejects in production. The
limits are exported (`MAX_*`, `LIMITS`) so that callers can validate what they generate — run
ids, strategy ids — at start-up, not at the first order.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

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
    false,
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


# --- identifier limits -----------------------------------------------------------------------
# Sized for what the code generates, with room: see tests/execution/test_schema_limits.py.
MAX_RUN_ID: Final = 40  # `new_run_id` makes 20; a user-given run id may use the rest
MAX_STRATEGY_ID: Final = 64
MAX_SYMBOL: Final = 20  # Binance's longest symbols are ~15
MAX_CLIENT_ORDER_ID: Final = 36  # Binance: newClientOrderId ^[.A-Z:/a-z0-9_-]{1,36}$
MAX_EXCHANGE_ORDER_ID: Final = 40  # Binance order ids are int64: at most 20 characters
MAX_TRADE_ID: Final = 64  # int64 trade ids, or `synthetic_trade_id` (26)
MAX_EXCHANGE: Final = 32
MAX_ASSET: Final = 16
MAX_ACCOUNT: Final = 64
MAX_VERSION: Final = 64  # a development version (0.1.dev312+g98fdc8b.d20261124) is ~30
MAX_HOST: Final = 255
# "<run_id>:<strategy>:<symbol>:<bar open ns, 19 digits>:<seq, up to 20 digits>" is at most
# 40 + 64 + 20 + 19 + 20 + 4 = 167; "flatten:<strategy>:<symbol>:<ns>" at most 113.
MAX_SIGNAL_ID: Final = 255
# "baseline:<account>" (the reconciler's balance baseline) or "paper" / "exchange"
MAX_BALANCE_SOURCE: Final = len("baseline:") + MAX_ACCOUNT + 23
MAX_REASON: Final = 16  # `ExitReason` values ("trailing_stop" is the longest, 13)


class ValueTooLongError(ValueError):
    """A value longer than its column: refused identically on SQLite and PostgreSQL."""

    def __init__(self, column: str, limit: int, value: str) -> None:
        self.column = column
        self.limit = limit
        self.length = len(value)
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(
            f"{column} holds at most {limit} characters; this value has {len(value)}: {shown!r}"
        )


class Bounded(TypeDecorator[str]):
    """VARCHAR(length) that refuses a longer value on every backend, naming the column.

    ``column`` ("table.column") is filled in for every table below by `_name_bounded_columns`,
    so the table definitions read like plain ``String(n)``.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int, column: str = "") -> None:
        super().__init__(length)
        self.length = length
        self.column = column

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is not None and len(value) > self.length:
            raise ValueTooLongError(self.column or "a column", self.length, str(value))
        return value  # type: ignore[no-any-return]


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
    Column("run_id", Bounded(MAX_RUN_ID), primary_key=True),
    Column("mode", Bounded(8), nullable=False),
    Column("version", Bounded(MAX_VERSION), nullable=False),
    Column("strategies", Text, nullable=False),  # JSON list
    Column("started_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger),
    Column("status", Bounded(16), nullable=False),  # running | stopped | crashed
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", Bounded(MAX_CLIENT_ORDER_ID), primary_key=True),
    Column("run_id", Bounded(MAX_RUN_ID), ForeignKey("runs.run_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("strategy", Bounded(MAX_STRATEGY_ID), nullable=False),
    # A signal produces at most one order: redelivered signals hit this constraint.
    Column("signal_id", Bounded(MAX_SIGNAL_ID), unique=True),
    Column("exchange", Bounded(MAX_EXCHANGE), nullable=False),
    Column("symbol", Bounded(MAX_SYMBOL), nullable=False),
    Column("side", Bounded(4), nullable=False),
    Column("type", Bounded(20), nullable=False),
    Column("time_in_force", Bounded(3), nullable=False),
    Column("qty", Money(), nullable=False),
    Column("price", Money()),
    Column("stop_price", Money()),
    Column("status", Bounded(20), nullable=False),
    Column("exchange_order_id", Bounded(MAX_EXCHANGE_ORDER_ID)),
    Column("filled_qty", Money(), nullable=False),
    Column("filled_notional", Money(), nullable=False),
    Column("reject_reason", Text),
    Column("overfilled", Boolean, nullable=False, default=False),
    Column("late_fill", Boolean, nullable=False, default=False),
    Column("ts_created", BigInteger, nullable=False),
    Column("ts_last", BigInteger, nullable=False),
    # why it was sent: the exit reason of the position its fills close (`ExitReason`); rows
    # written before the column existed were the strategies' own orders ("signal")
    Column("reason", Bounded(MAX_REASON), nullable=False, server_default="signal"),
    # the client id of its order list (an OCO's two legs share it); NULL when it stands alone
    Column("list_id", Bounded(MAX_CLIENT_ORDER_ID)),
    Column("reduce_only", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("run_id", "seq", name="uq_orders_run_id_seq"),
    Index("ix_orders_status", "status"),
    Index("ix_orders_symbol", "symbol"),
    Index("ix_orders_list_id", "list_id"),
)

# Append-only: every state change of every order, in order. Never updated, never deleted.
order_events = Table(
    "order_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "client_order_id",
        Bounded(MAX_CLIENT_ORDER_ID),
        ForeignKey("orders.client_order_id"),
        nullable=False,
    ),
    Column("kind", Bounded(24), nullable=False),
    Column("status_after", Bounded(20), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("exchange_order_id", Bounded(MAX_EXCHANGE_ORDER_ID)),
    Column("reason", Text),
    Column("trade_id", Bounded(MAX_TRADE_ID)),
    Index("ix_order_events_client_order_id", "client_order_id"),
)

fills = Table(
    "fills",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("exchange", Bounded(MAX_EXCHANGE), nullable=False),
    Column("symbol", Bounded(MAX_SYMBOL), nullable=False),
    Column("trade_id", Bounded(MAX_TRADE_ID), nullable=False),
    Column(
        "client_order_id",
        Bounded(MAX_CLIENT_ORDER_ID),
        ForeignKey("orders.client_order_id"),
        nullable=False,
    ),
    Column("strategy", Bounded(MAX_STRATEGY_ID), nullable=False),
    Column("side", Bounded(4), nullable=False),
    Column("price", Money(), nullable=False),
    Column("qty", Money(), nullable=False),
    Column("fee", Money(), nullable=False),
    Column("fee_asset", Bounded(MAX_ASSET), nullable=False),
    Column("liquidity", Bounded(5), nullable=False),
    Column("ts_event", BigInteger, nullable=False),
    Column("ts_recorded", BigInteger, nullable=False),
    # The exchange's trade id identifies a fill: recording it twice is impossible.
    UniqueConstraint("exchange", "symbol", "trade_id", name="uq_fills_exchange_trade"),
    Index("ix_fills_client_order_id", "client_order_id"),
)

positions = Table(
    "positions",
    metadata,
    Column("symbol", Bounded(MAX_SYMBOL), primary_key=True),
    Column("strategy", Bounded(MAX_STRATEGY_ID), primary_key=True),
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
    Column("source", Bounded(MAX_BALANCE_SOURCE), nullable=False),  # paper | baseline:<account>
    Column("asset", Bounded(MAX_ASSET), nullable=False),
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
    Column("run_id", Bounded(MAX_RUN_ID)),
    Column("kind", Bounded(16), nullable=False),  # halt | reset | state | denial
    Column("reason", Text, nullable=False),
    Column("detail", Text),
    Column("drawdown_pct", Numeric(12, 6, asdecimal=False)),
)

# The current halt, if any: one row per account key. A halt survives restarts until a person
# resets it.
risk_state = Table(
    "risk_state",
    metadata,
    Column("account", Bounded(MAX_ACCOUNT), primary_key=True),
    Column("state", Bounded(12), nullable=False),
    Column("reason", Text),
    Column("ts", BigInteger, nullable=False),
    Column("drawdown_pct", Numeric(12, 6, asdecimal=False)),
    Column("equity_peak", Money(), nullable=False),
)

# A strategy's own state (``ctx.state`` and its order helpers' brackets and trailing stops) as
# JSON, one row per strategy id: a restarted bot gives it back (`tessera.strategies.state`).
strategy_state = Table(
    "strategy_state",
    metadata,
    Column("strategy", Bounded(MAX_STRATEGY_ID), primary_key=True),
    Column("state", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
)

# A perpetual's funding payments, one row per payment (negative ``amount``: paid). The same
# payment reaches the bot twice — the user-data stream's ACCOUNT_UPDATE (reason FUNDING_FEE),
# and ``/fapi/v1/income`` when a restarted bot imports what it missed — so its identity is
# natural, not the venue's transaction id (the stream carries none): account, symbol, asset and
# ``funding_slot``, the funding time rounded to the minute (funding times are at least an hour
# apart; the stream's and the income row's times of one payment may differ by milliseconds).
# ``source`` says who told us first ("user_data" | "income"); ``venue_id`` is the income row's
# ``tranId`` when known. Times are milliseconds since the epoch (UTC), as the venue gives them.
funding_payments = Table(
    "funding_payments",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("account", Bounded(MAX_ACCOUNT), nullable=False),
    Column("symbol", Bounded(MAX_SYMBOL), nullable=False),
    Column("asset", Bounded(MAX_ASSET), nullable=False),
    Column("funding_slot", BigInteger, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("amount", Money(), nullable=False),
    Column("source", Bounded(16), nullable=False),
    Column("venue_id", Bounded(MAX_TRADE_ID)),
    Column("ts_recorded", BigInteger, nullable=False),
    UniqueConstraint(
        "account", "symbol", "asset", "funding_slot", name="uq_funding_payments_payment"
    ),
    Index("ix_funding_payments_account_ts", "account", "ts_ms"),
)

# Ids for the paper exchange: each `PaperExchange` takes a session number from this table (the
# database hands out each number once, whatever the number of processes), and its order and
# trade ids are ``session * PAPER_ID_SPAN + n``: unique across restarts and across processes.
paper_sessions = Table(
    "paper_sessions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("started_at", BigInteger, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", Bounded(MAX_HOST), nullable=False),
)

# The paper exchange's own book: its resting orders as the exchange holds them (not the bot's
# view of them, which is ``orders``), so that a restarted paper exchange still fills them and
# answers queries about them. ``held`` is the balance the order holds; the two legs of an OCO
# share one holding (each row carries the list's amount; it is counted once). ``fills`` is the
# order's trades as JSON (what ``myTrades`` answers after a restart).
paper_orders = Table(
    "paper_orders",
    metadata,
    Column("client_order_id", Bounded(MAX_CLIENT_ORDER_ID), primary_key=True),
    Column("account", Bounded(MAX_ACCOUNT), nullable=False),
    Column("exchange_order_id", Bounded(MAX_EXCHANGE_ORDER_ID), nullable=False),
    Column("symbol", Bounded(MAX_SYMBOL), nullable=False),
    Column("side", Bounded(4), nullable=False),
    Column("type", Bounded(20), nullable=False),
    Column("time_in_force", Bounded(3), nullable=False),
    Column("qty", Money(), nullable=False),
    Column("price", Money()),
    Column("stop_price", Money()),
    Column("list_id", Bounded(MAX_CLIENT_ORDER_ID)),
    Column("status", Bounded(20), nullable=False),
    Column("held", Money(), nullable=False),
    Column("filled_qty", Money(), nullable=False),
    Column("filled_notional", Money(), nullable=False),
    Column("triggered", Boolean, nullable=False),
    Column("fills", Text, nullable=False),
    Column("ts_created", BigInteger, nullable=False),
    Column("ts_update", BigInteger, nullable=False),
    Column("reduce_only", Boolean, nullable=False, server_default=false()),
    Index("ix_paper_orders_account", "account", "status"),
)

# Which paper exchange owns a paper account's book: the newest one to start (``session``, from
# ``paper_sessions``). Every write of the book locks this row and checks the owner, so a paper
# exchange that another has replaced fails on its next write instead of filling orders twice.
paper_accounts = Table(
    "paper_accounts",
    metadata,
    Column("account", Bounded(MAX_ACCOUNT), primary_key=True),
    Column("session", BigInteger, nullable=False),
    Column("since", BigInteger, nullable=False),
    # the account's own books no other table holds, as JSON (a perpetual paper account's
    # positions, leverage, funding; NULL for spot paper: its balances are in ``balances``)
    Column("state", Text),
)

# Who holds an account's trading lock (PostgreSQL; see `tessera.execution.lock`): the lock
# itself is a session advisory lock, this row only lets a refused second process name the
# holder. ``backend_pid`` is the holder's PostgreSQL session, to tell a current row from a stale
# one.
trading_locks = Table(
    "trading_locks",
    metadata,
    Column("account", Bounded(MAX_ACCOUNT), primary_key=True),
    Column("run_id", Bounded(MAX_RUN_ID), nullable=False),
    Column("mode", Bounded(16), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", Bounded(MAX_HOST), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("backend_pid", Integer, nullable=False),
)


# What operators did through the control API, the console or the CLI (`tessera.control`):
# who (``actor``, the token's or user's name; ``role``; ``via`` token | session | cli | local;
# ``address``, the client's), when, what (``action`` halt | reset | pause | resume | cancel |
# close; ``target``: a strategy, an order, a position), why (``reason``) and how it ended
# (``outcome`` done | refused | failed, ``detail``). Append-only: the audit trail.
MAX_ACTOR: Final = 64
control_actions = Table(
    "control_actions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", BigInteger, nullable=False),
    Column("actor", Bounded(MAX_ACTOR), nullable=False),
    Column("role", Bounded(16), nullable=False),
    Column("via", Bounded(16), nullable=False),
    Column("address", Bounded(64), nullable=False),
    Column("action", Bounded(16), nullable=False),
    Column("target", Bounded(128)),
    Column("reason", Text, nullable=False),
    Column("outcome", Bounded(8), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_control_actions_ts", "ts"),
)

# The account's equity and drawdown sampled every few seconds by a running bot: the console's
# equity curve and ``GET /api/v1/equity`` (the risk engine keeps only the current values).
equity_samples = Table(
    "equity_samples",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", BigInteger, nullable=False),
    Column("run_id", Bounded(MAX_RUN_ID), nullable=False),
    Column("equity", Money(), nullable=False),
    Column("drawdown_pct", Numeric(12, 6, asdecimal=False), nullable=False),
    Index("ix_equity_samples_ts", "ts"),
)

# Strategies an operator paused (not a pause by errors, which ends with the process): one row
# per strategy id while paused, so that a restarted bot keeps it paused until resumed.
strategy_pauses = Table(
    "strategy_pauses",
    metadata,
    Column("strategy", Bounded(MAX_STRATEGY_ID), primary_key=True),
    Column("by", Bounded(MAX_ACTOR), nullable=False),
    Column("reason", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
)


def _name_bounded_columns() -> dict[str, int]:
    """Tell every `Bounded` column its name (for the error) and collect the limits."""
    limits = {}
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, Bounded):
                column.type.column = f"{table.name}.{column.name}"
                limits[column.type.column] = column.type.length
    return limits


# "table.column" -> the longest value it holds, for every string column
LIMITS: Mapping[str, int] = MappingProxyType(_name_bounded_columns())
