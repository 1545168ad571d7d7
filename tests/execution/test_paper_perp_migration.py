"""Migration 0006 (``paper_orders.reduce_only``, ``paper_accounts.state``) on a database that
already holds a paper book, on SQLite and PostgreSQL: the rows that exist keep every value and
read as not reduce-only with no saved account; the way back drops the columns, keeps the rows,
and the way up again works."""

from __future__ import annotations

from decimal import Decimal

from migration_helpers import migrate_to
from sqlalchemy import inspect, text

from tessera.execution.persistence import ExecutionStore, make_engine, migrate


def _seed_0005(url: str) -> None:
    """A paper book as the 0005 schema stored it (plain SQL: today's tables have more)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO paper_accounts (account, session, since) VALUES ('paper-usdm', 3, 1)")
        )
        conn.execute(
            text(
                "INSERT INTO paper_orders (client_order_id, account, exchange_order_id, symbol,"
                " side, type, time_in_force, qty, price, status, held, filled_qty,"
                " filled_notional, triggered, fills, ts_created, ts_update) VALUES ('o1',"
                " 'paper-usdm', '3000000000001', 'BTCUSDT', 'SELL', 'LIMIT', 'GTC', :qty, :px,"
                " 'ACCEPTED', 0, 0, 0, :f, '[]', 1, 2)"
            ),
            {"qty": "0.01", "px": "62000", "f": False},
        )
    engine.dispose()


def test_0006_adds_reduce_only_and_the_account_state_to_an_existing_paper_book(
    database_url: str,
) -> None:
    migrate_to(database_url, "0005")
    _seed_0005(database_url)
    migrate(database_url)
    store = ExecutionStore(database_url)
    try:
        row = store.paper_order("paper-usdm", "o1")
        assert row is not None and row["reduce_only"] is False and row["price"] == Decimal("62000")
        assert store.paper_state("paper-usdm") is None
        store.save_paper_book("paper-usdm", 3, [], {}, 5, '{"a": 1}')
        assert store.paper_state("paper-usdm") == '{"a": 1}'
    finally:
        store.close()
    migrate_to(database_url, "0005", down=True)
    engine = make_engine(database_url)
    with engine.connect() as c:
        assert "reduce_only" not in {x["name"] for x in inspect(c).get_columns("paper_orders")}
        assert "state" not in {x["name"] for x in inspect(c).get_columns("paper_accounts")}
        assert c.execute(text("SELECT count(*) FROM paper_orders")).scalar() == 1
    engine.dispose()
    migrate(database_url)
