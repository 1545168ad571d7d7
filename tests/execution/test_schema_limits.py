"""Every identifier the code generates fits its column, on SQLite and PostgreSQL alike.

PostgreSQL refused signal ids longer than VARCHAR(64) while SQLite stored them, so the SQLite
tests passed and the first PostgreSQL bot sent no order at all. The identifiers here are built
the way the code builds them, at their longest, and written through `ExecutionStore` on both
backends; a value longer than its column is refused with the same error on both.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from decimal import Decimal

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from tessera.execution.ids import ClientOrderIdGenerator, synthetic_trade_id
from tessera.execution.manager import leg_signal_id
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tessera.execution.persistence import MIGRATIONS, ExecutionStore, make_engine, migrate
from tessera.execution.schema import (
    LIMITS,
    MAX_ACCOUNT,
    MAX_RUN_ID,
    MAX_SIGNAL_ID,
    MAX_STRATEGY_ID,
    MAX_SYMBOL,
    ValueTooLongError,
    balances,
    fills,
    orders,
    runs,
)
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()
DB_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# what the bot's identifiers are made of
run_ids = st.text(string.ascii_letters + string.digits + "-T", min_size=1, max_size=MAX_RUN_ID)
strategy_ids = st.text(string.ascii_lowercase + string.digits + "_-", min_size=1,
                       max_size=MAX_STRATEGY_ID)  # fmt: skip
symbols = st.text(string.ascii_uppercase + string.digits, min_size=5, max_size=MAX_SYMBOL)
int64 = st.integers(0, 2**63 - 1)


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    yield s
    s.close()


def _order(cid: str, symbol: str, strategy: str, signal_id: str) -> Order:
    return Order(cid, symbol, OrderSide.BUY, OrderType.MARKET, D("0.001"), strategy=strategy,
                 signal_id=signal_id, ts_created=1)  # fmt: skip


def test_the_longest_generated_signal_ids_fit_with_room() -> None:
    longest = f"{'r' * MAX_RUN_ID}:{'s' * MAX_STRATEGY_ID}:{'X' * MAX_SYMBOL}:{2**63 - 1}:{10**20}"
    flatten = f"flatten:{'s' * MAX_STRATEGY_ID}:{'X' * MAX_SYMBOL}:{2**63 - 1}"
    assert len(longest) <= MAX_SIGNAL_ID and len(flatten) <= MAX_SIGNAL_ID
    # the reconciler's balance baseline is named after the account
    assert len(f"baseline:{'a' * MAX_ACCOUNT}") <= LIMITS["balances.source"]


@DB_SETTINGS
@given(
    run_id=run_ids.filter(lambda r: any(ch.isalnum() for ch in r)),
    strategy=strategy_ids,
    symbol=symbols,
    seq=st.integers(1, 10**9),
    bar_ns=int64,
    signal_seq=st.integers(1, 10**20 - 1),
    exchange_order_id=int64,
    trade_id=int64,
    flatten=st.booleans(),
)
def test_generated_identifiers_round_trip_through_the_store(
    store: ExecutionStore,
    run_id: str,
    strategy: str,
    symbol: str,
    seq: int,
    bar_ns: int,
    signal_seq: int,
    exchange_order_id: int,
    trade_id: int,
    flatten: bool,
) -> None:
    cid = ClientOrderIdGenerator(run_id).format(seq)
    signal_id = (
        f"flatten:{strategy}:{symbol}:{bar_ns}"
        if flatten
        else f"{run_id}:{strategy}:{symbol}:{bar_ns}:{signal_seq}"
    )
    assume(store.get_order(cid) is None and store.order_for_signal(signal_id) is None)
    assume(not store.has_fill(symbol, str(trade_id)))
    store.start_run(run_id, "live", "0.1.dev312+g98fdc8b.d20261124", ["all"])
    order = _order(cid, symbol, strategy, signal_id)
    submitted = OrderEvent(K.SUBMITTED, 2)
    SM.apply(order, submitted)
    assert store.record_submission(order, run_id, seq, submitted)
    accepted = OrderEvent(K.ACCEPTED, 3, exchange_order_id=str(exchange_order_id))
    SM.apply(order, accepted)
    store.record_event(order, accepted)
    trade_ids = [str(trade_id), synthetic_trade_id(symbol, str(exchange_order_id), "BUY",
                                                   D("0.0005"), D("60000.01"), bar_ns)]  # fmt: skip
    for tid in trade_ids:
        fill = Fill(tid, cid, symbol, OrderSide.BUY, D("60000.01"), D("0.0005"), D("0.03"),
                    "USDT", Liquidity.TAKER, 4, strategy)  # fmt: skip
        event = OrderEvent(K.FILLED, 4, fill=fill)
        SM.apply(order, event)
        assert store.record_fill(order, event)

    stored = store.get_order(cid)
    assert stored is not None and stored.status is OrderStatus.FILLED
    assert (stored.signal_id, stored.strategy, stored.symbol) == (signal_id, strategy, symbol)
    assert stored.exchange_order_id == str(exchange_order_id)
    assert stored.trade_ids == set(trade_ids)
    assert store.order_for_signal(signal_id).client_order_id == cid  # type: ignore[union-attr]
    assert store.get_run(run_id) is not None


@pytest.mark.parametrize(
    ("column", "make"),
    [
        ("orders.signal_id", lambda: _order("c-1", "BTCUSDT", "s", "x" * (MAX_SIGNAL_ID + 1))),
        ("orders.symbol", lambda: _order("c-1", "B" * (MAX_SYMBOL + 1), "s", "sig")),
        ("orders.strategy", lambda: _order("c-1", "BTCUSDT", "s" * (MAX_STRATEGY_ID + 1), "sig")),
    ],
)
def test_a_value_longer_than_its_column_is_refused_with_the_same_clear_error_on_both_backends(
    store: ExecutionStore, column: str, make: object
) -> None:
    store.start_run("run-1", "live", "1", ["s"])
    order = make()  # type: ignore[operator]
    with pytest.raises(ValueTooLongError) as err:
        store.record_intent(order, "run-1", 1)
    limit = LIMITS[column]
    assert (err.value.column, err.value.limit, err.value.length) == (column, limit, limit + 1)
    assert str(err.value).startswith(f"{column} holds at most {limit} characters; this value has")
    assert store.get_order("c-1") is None  # nothing written


def test_a_too_long_run_id_is_refused_before_anything_is_written(store: ExecutionStore) -> None:
    with pytest.raises(ValueTooLongError, match=r"runs\.run_id holds at most 40 characters"):
        store.start_run("r" * (MAX_RUN_ID + 1), "live", "1", [])


def test_the_migration_widens_the_columns_of_an_existing_database_and_keeps_its_rows(
    database_url: str,
) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")  # the schema the released version created
    with engine.begin() as conn:
        conn.execute(insert(runs).values(run_id="r1", mode="live", version="0.1", strategies="[]",
                                         started_at=1, status="running"))  # fmt: skip
        conn.execute(insert(orders).values(
            client_order_id="c1", run_id="r1", seq=1, strategy="s", signal_id="r1:s:BTC:1:1",
            exchange="binance", symbol="BTCUSDT", side="BUY", type="MARKET", time_in_force="GTC",
            qty=D("0.001"), status="FILLED", filled_qty=D("0.001"), filled_notional=D("60"),
            overfilled=False, late_fill=False, ts_created=1, ts_last=2))  # fmt: skip
        conn.execute(insert(fills).values(
            exchange="binance", symbol="BTCUSDT", trade_id="7", client_order_id="c1", strategy="s",
            side="BUY", price=D("60000"), qty=D("0.001"), fee=D("0.06"), fee_asset="USDT",
            liquidity="taker", ts_event=2, ts_recorded=3))  # fmt: skip
        conn.execute(insert(balances).values(ts=1, source="paper", asset="USDT", free=D("5"),
                                             locked=D("0")))  # fmt: skip
    engine.dispose()

    migrate(database_url)

    store = ExecutionStore(database_url)
    try:
        old = store.get_order("c1")
        assert old is not None and old.signal_id == "r1:s:BTC:1:1" and old.trade_ids == {"7"}
        assert store.latest_balances("paper") == {"USDT": (D("5"), D("0"))}
        with store.tx() as c:
            assert c.execute(select(fills.c.client_order_id)).scalars().all() == ["c1"]
        long_signal = "r" * 40 + ":" + "s" * 64 + ":BTCUSDT:" + str(2**63 - 1) + ":" + "9" * 20
        new = _order("c2", "BTCUSDT", "s" * 64, long_signal)
        assert store.record_intent(new, "r1", 2)
        assert store.order_for_signal(long_signal).client_order_id == "c2"  # type: ignore[union-attr]
        store.snapshot_balances("baseline:" + "a" * MAX_ACCOUNT, {"USDT": (D("1"), D("0"))})
    finally:
        store.close()


def test_every_exit_reason_fits_its_column() -> None:
    assert max(len(r.value) for r in ExitReason) <= LIMITS["orders.reason"]


@given(signal_id=st.text(min_size=1, max_size=MAX_SIGNAL_ID))
def test_the_second_leg_of_a_list_gets_a_signal_id_that_fits_and_is_its_own(signal_id: str) -> None:
    second = leg_signal_id(signal_id, 2)
    assert leg_signal_id(signal_id, 1) == signal_id
    assert len(second) <= MAX_SIGNAL_ID and second != signal_id
    assert leg_signal_id(signal_id, 2) == second  # the same on every delivery
    if len(signal_id) + 2 <= MAX_SIGNAL_ID:
        assert second == signal_id + "#2"


def test_long_signal_ids_that_share_a_beginning_give_distinct_second_legs() -> None:
    a, b = "s" * MAX_SIGNAL_ID, "s" * (MAX_SIGNAL_ID - 1) + "t"
    assert leg_signal_id(a, 2) != leg_signal_id(b, 2)
    assert len(leg_signal_id(a, 2)) == MAX_SIGNAL_ID


def test_the_legs_of_a_list_from_the_longest_signal_are_stored(store: ExecutionStore) -> None:
    store.start_run("r1", "live", "1", ["s"])
    signal = "r" * MAX_RUN_ID + ":" + "s" * MAX_STRATEGY_ID + ":" + "x" * (MAX_SIGNAL_ID - 106)
    assert len(signal) == MAX_SIGNAL_ID
    first = _order("c-1", "BTCUSDT", "s", signal)
    second = _order("c-2", "BTCUSDT", "s", leg_signal_id(signal, 2))
    assert store.record_intent(first, "r1", 1) and store.record_intent(second, "r1", 2)
    assert store.order_for_signal(leg_signal_id(signal, 2)).client_order_id == "c-2"  # type: ignore[union-attr]
