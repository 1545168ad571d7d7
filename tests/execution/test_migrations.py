"""Migration 0003 on a database that already holds orders and fills, on SQLite and PostgreSQL.

The new ``orders`` columns must be filled for the rows that exist (``reason`` is NOT NULL: a
column added without a server default fails on PostgreSQL as soon as the table has a row, and
SQLite would leave NULLs that the code reads as an error), the old rows must keep every value
and the fills that refer to them, and the way back (downgrade) must keep them too.
"""

from __future__ import annotations

from decimal import Decimal

from migration_helpers import migrate_to
from sqlalchemy import insert, inspect, text

from tessera.execution.orders import ExitReason, Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore, make_engine, migrate

D = Decimal


def _seed_0002(url: str) -> None:
    """Rows as the 0002 schema stored them (plain SQL: today's tables have more columns)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (run_id, mode, version, strategies, started_at, status) "
                "VALUES ('r1', 'live', '0.1', '[]', 1, 'running')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO orders (client_order_id, run_id, seq, strategy, signal_id, exchange,"
                " symbol, side, type, time_in_force, qty, stop_price, status, filled_qty,"
                " filled_notional, overfilled, late_fill, ts_created, ts_last) VALUES ('c1',"
                " 'r1', 1, 's', 'r1:s:BTCUSDT:1:1', 'binance', 'BTCUSDT', 'SELL', 'STOP_LOSS',"
                " 'GTC', :qty, :stop, 'FILLED', :qty, :notional, :f, :f, 1, 2)"
            ),
            {"qty": "0.001", "stop": "59000", "notional": "59", "f": False},
        )
        conn.execute(
            text(
                "INSERT INTO fills (exchange, symbol, trade_id, client_order_id, strategy, side,"
                " price, qty, fee, fee_asset, liquidity, ts_event, ts_recorded) VALUES"
                " ('binance', 'BTCUSDT', '7', 'c1', 's', 'SELL', :px, :qty, :fee, 'USDT',"
                " 'taker', 2, 3)"
            ),
            {"px": "59000", "qty": "0.001", "fee": "0.059"},
        )
    engine.dispose()


def test_0003_gives_existing_orders_a_reason_and_keeps_them_and_their_fills(
    database_url: str,
) -> None:
    migrate_to(database_url, "0002")
    _seed_0002(database_url)

    migrate(database_url)

    store = ExecutionStore(database_url)
    try:
        old = store.get_order("c1")
        assert old is not None
        assert (old.reason, old.list_id, old.reduce_only) == (ExitReason.SIGNAL, "", False)
        assert (old.type, old.stop_price, old.trade_ids) == (OrderType.STOP_LOSS, D("59000"), {"7"})
        (fill,) = store.list_fills()
        assert (fill.fill.client_order_id, fill.reason) == ("c1", ExitReason.SIGNAL)
        leg = Order("c2", "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_LIMIT, D("0.001"),
                    price=D("61000"), stop_price=D("61500"), strategy="s", ts_created=3,
                    reason=ExitReason.TAKE_PROFIT, list_id="l-1", reduce_only=True)  # fmt: skip
        assert store.record_intent(leg, "r1", 2)
        got = store.get_order("c2")
        assert got is not None
        assert (got.reason, got.list_id, got.reduce_only) == (ExitReason.TAKE_PROFIT, "l-1", True)
        with store.tx() as c:  # the paper exchange's tables exist and are empty
            assert c.execute(text("SELECT count(*) FROM paper_orders")).scalar() == 0
            assert c.execute(text("SELECT count(*) FROM paper_accounts")).scalar() == 0
    finally:
        store.close()


def test_0003_downgrades_and_upgrades_again_without_losing_rows(database_url: str) -> None:
    migrate_to(database_url, "0002")
    _seed_0002(database_url)
    migrate(database_url)
    migrate_to(database_url, "0002", down=True)
    engine = make_engine(database_url)
    with engine.connect() as c:
        columns = {col["name"] for col in inspect(c).get_columns("orders")}
        assert "reason" not in columns and "list_id" not in columns
        assert c.execute(text("SELECT count(*) FROM fills")).scalar() == 1
    engine.dispose()
    migrate(database_url)
    store = ExecutionStore(database_url)
    try:
        old = store.get_order("c1")
        assert old is not None and old.reason is ExitReason.SIGNAL and old.trade_ids == {"7"}
    finally:
        store.close()


def test_the_order_tables_insert_only_what_0001_had(database_url: str) -> None:
    """The new columns have server defaults only: an insert naming the old columns works on
    the old schema (the earlier migration tests insert through today's table objects)."""
    from tessera.execution.schema import orders, runs

    migrate_to(database_url, "0001")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(runs).values(run_id="r1", mode="live", version="0.1",
                                         strategies="[]", started_at=1,
                                         status="running"))  # fmt: skip
        conn.execute(insert(orders).values(
            client_order_id="c1", run_id="r1", seq=1, strategy="s", exchange="binance",
            symbol="BTCUSDT", side="BUY", type="MARKET", time_in_force="GTC", qty=D("0.001"),
            status="FILLED", filled_qty=D("0.001"), filled_notional=D("60"), overfilled=False,
            late_fill=False, ts_created=1, ts_last=2))  # fmt: skip
    engine.dispose()
    migrate(database_url)
    store = ExecutionStore(database_url)
    try:
        old = store.get_order("c1")
        assert old is not None and old.reason is ExitReason.SIGNAL and not old.reduce_only
    finally:
        store.close()
