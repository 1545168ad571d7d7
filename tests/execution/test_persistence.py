"""ExecutionStore on SQLite and on the real PostgreSQL server: same tests, same results."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from tessera.bootstrap import bootstrap
from tessera.config import load_settings
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
from tessera.execution import cli as execution_cli
from tessera.execution.orders import ExitReason
from tessera.execution.persistence import (
    ExecutionStore,
    PaperBookTakenOverError,
    make_engine,
    migrate,
)
from tessera.execution.schema import ValueTooLongError, metadata

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
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


def test_an_order_round_trips_with_its_reason_list_and_reduce_only(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    stop = Order(gen.next(), "BTCUSDT", OrderSide.SELL, OrderType.STOP_LOSS_LIMIT, D("0.5"),
                 price=D("49000"), stop_price=D("49100"), strategy="sma_cross", ts_created=1,
                 reason=ExitReason.TRAILING_STOP, list_id="list-7", reduce_only=True)  # fmt: skip
    plain = new_order(gen)
    assert store.record_intent(stop, "run-1", 1) and store.record_intent(plain, "run-1", 2)
    got = store.get_order(stop.client_order_id)
    assert got is not None
    assert (got.reason, got.list_id, got.reduce_only) == (ExitReason.TRAILING_STOP, "list-7", True)
    assert (got.type, got.stop_price, got.price) == (
        OrderType.STOP_LOSS_LIMIT,
        D("49100"),
        D("49000"),
    )
    again = store.get_order(plain.client_order_id)
    assert again is not None
    assert (again.reason, again.list_id, again.reduce_only) == (ExitReason.SIGNAL, "", False)
    assert [o.reason for o in store.open_orders()] == [ExitReason.TRAILING_STOP, ExitReason.SIGNAL]


def test_every_fill_lists_the_reason_of_its_order(store: ExecutionStore) -> None:
    gen = ClientOrderIdGenerator("run-1")
    entry = new_order(gen)
    exit_ = Order(gen.next(), "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT, D("0.5"),
                  stop_price=D("51000"), strategy="sma_cross", ts_created=2,
                  reason=ExitReason.TAKE_PROFIT, list_id="oco-1")  # fmt: skip
    for seq, (o, px, ts) in enumerate(((entry, "50000.01", 3), (exit_, "51000.5", 4)), 1):
        store.record_intent(o, "run-1", seq)
        SM.apply(o, OrderEvent(K.SUBMITTED, ts))
        f = Fill(f"t{seq}", o.client_order_id, "BTCUSDT", o.side, D(px), D("0.5"), D("0"),
                 "USDT", Liquidity.TAKER, ts, "sma_cross")  # fmt: skip
        ev = OrderEvent(K.FILLED, ts, fill=f)
        SM.apply(o, ev)
        assert store.record_fill(o, ev)
    newest, oldest = store.list_fills()
    assert (newest.fill.trade_id, newest.reason, newest.list_id) == ("t2", ExitReason.TAKE_PROFIT,
                                                                     "oco-1")  # fmt: skip
    assert (oldest.fill.trade_id, oldest.reason, oldest.list_id) == ("t1", ExitReason.SIGNAL, "")
    assert [f.fill.trade_id for f in store.list_fills(symbol="ETHUSDT")] == []


def _legs(gen: ClientOrderIdGenerator, signal: str) -> list[tuple[Order, int, OrderEvent]]:
    out: list[tuple[Order, int, OrderEvent]] = []
    for typ, price, stop in ((OrderType.LIMIT_MAKER, D("52000"), None),
                             (OrderType.STOP_LOSS, None, D("48000"))):  # fmt: skip
        cid = gen.next()
        o = Order(cid, "BTCUSDT", OrderSide.SELL, typ, D("0.5"), price=price, stop_price=stop,
                  strategy="sma_cross", signal_id=f"{signal}#{len(out) + 1}", ts_created=1,
                  list_id="oco-9")  # fmt: skip
        ev = OrderEvent(K.SUBMITTED, 2)
        SM.apply(o, ev)
        out.append((o, int(cid.rsplit("-", 1)[1]), ev))
    return out


def test_the_legs_of_an_order_list_are_recorded_together_or_not_at_all(
    store: ExecutionStore,
) -> None:
    gen = ClientOrderIdGenerator("run-1")
    legs = _legs(gen, "sig-1")
    assert store.record_list_submission(legs, "run-1") is True
    stored = [store.get_order(o.client_order_id) for o, _, _ in legs]
    assert [(o.status, o.list_id) for o in stored if o] == [(OrderStatus.SUBMITTED, "oco-9")] * 2
    assert store.record_list_submission(legs, "run-1") is True  # a replayed write
    again = _legs(gen, "sig-1")  # the same signal, delivered again: new ids, nothing recorded
    assert store.record_list_submission(again, "run-1") is False
    assert all(store.get_order(o.client_order_id) is None for o, _, _ in again)
    # one leg too long for its column: neither leg is written
    bad = _legs(gen, "sig-2")
    bad[1][0].signal_id = "x" * 300
    with pytest.raises(ValueTooLongError):
        store.record_list_submission(bad, "run-1")
    assert store.get_order(bad[0][0].client_order_id) is None


def test_a_newer_paper_exchange_owns_the_paper_book_and_the_older_one_cannot_write(
    store: ExecutionStore,
) -> None:
    row = {"client_order_id": "p-1", "account": "paper", "exchange_order_id": "11",
           "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "time_in_force": "GTC",
           "qty": D("0.5"), "price": None, "stop_price": D("48000"), "list_id": None,
           "status": "ACCEPTED", "held": D("0.5"), "filled_qty": D("0"),
           "filled_notional": D("0"), "triggered": False, "fills": "[]", "ts_created": 1,
           "ts_update": 1}  # fmt: skip
    assert store.claim_paper_book("paper", 1) == []
    store.save_paper_book("paper", 1, [row], {"BTC": (D("0.5"), D("0.5"))}, ts=5)
    (claimed,) = store.claim_paper_book("paper", 2)
    got = (claimed["client_order_id"], claimed["held"], claimed["triggered"])
    assert got == ("p-1", D("0.5"), False)
    with pytest.raises(PaperBookTakenOverError, match="paper session 1 no longer owns"):
        store.save_paper_book("paper", 1, [row | {"status": "FILLED"}], {}, ts=6)
    assert store.paper_order("paper", "p-1")["status"] == "ACCEPTED"  # type: ignore[index]
    assert store.latest_balances("paper") == {"BTC": (D("0.5"), D("0.5"))}
    store.save_paper_book("paper", 2, [row | {"status": "FILLED"}], {"BTC": (D("0"), D("0"))}, 7)
    assert store.claim_paper_book("paper", 3) == []  # nothing open any more
    assert [r["status"] for r in store.paper_book("paper", "BTCUSDT")] == ["FILLED"]


def test_the_cli_lists_type_stop_price_list_and_reason_of_orders_and_fills(
    database_url: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ExecutionStore(database_url)
    store.start_run("run-1", "paper", "0.1.0", ["sma_cross"])
    leg = Order("t-cli-1", "BTCUSDT", OrderSide.SELL, OrderType.STOP_LOSS, D("0.5"),
                stop_price=D("48123.5"), strategy="sma_cross", ts_created=1,
                reason=ExitReason.STOP_LOSS, list_id="oco-cli")  # fmt: skip
    store.record_intent(leg, "run-1", 1)
    SM.apply(leg, OrderEvent(K.SUBMITTED, 2))
    fill = Fill("t-9", leg.client_order_id, "BTCUSDT", OrderSide.SELL, D("48100"), D("0.5"),
                D("0"), "USDT", Liquidity.TAKER, 3, "sma_cross")  # fmt: skip
    ev = OrderEvent(K.FILLED, 3, fill=fill)
    SM.apply(leg, ev)
    store.record_fill(leg, ev)
    store.close()
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        ctx.obj = bootstrap(load_settings(config_dir=clean_env, env_file=None, data_dir=clean_env))

    root.add_typer(execution_cli.orders_app, name="orders")
    root.add_typer(execution_cli.fills_app, name="fills")
    env = {"TESSERA_DATABASE_URL": database_url, "COLUMNS": "300"}
    orders = CliRunner().invoke(root, ["orders", "list"], env=env, catch_exceptions=False)
    fills = CliRunner().invoke(root, ["fills", "list"], env=env, catch_exceptions=False)
    assert orders.exit_code == 0 and fills.exit_code == 0, orders.output + fills.output
    (row,) = [line for line in orders.output.splitlines() if "t-cli-1" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[5:9] == ["STOP_LOSS", "0.5", "", "48123.5"]
    assert cells[-2:] == ["oco-cli", "stop_loss"]
    (row,) = [line for line in fills.output.splitlines() if "t-9" in line]
    assert [c.strip() for c in row.strip("│ ").split("│")][-1] == "stop_loss"


def test_the_head_revision_read_off_the_file_names_is_alembics_own_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tessera.execution.persistence import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [head_revision()]


def test_a_store_opened_on_a_database_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """The second and later opens read ``alembic_version`` and stop there: every bot and
    command start saves Alembic's import."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'at_head.db'}"
    probe = (
        "import sys\n"
        "from tessera.execution.persistence import migrate\n"
        f"migrate({url!r})\n"
        "print('alembic' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stdout.split() == ["True"]  # a new database: Alembic creates the schema
    assert again.stdout.split() == ["False"]
