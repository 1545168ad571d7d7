"""`BotControl` and what it stands on, without HTTP: the store's audit trail, equity samples,
pauses and paged queries (both databases), the log buffer's masking, the CLI's halt and reset in
the same audit trail, and the port's own refusals (a read-only actor, an empty reason) on a paper
bot trading the simulator — refused actions recorded as refused, never as done.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from inprocess_bot import bot_options, running_simulator, wait_until

from tessera.config.models import StrategyRef
from tessera.control.logbuffer import MASK, LogBuffer, log_buffer_processor
from tessera.control.port import Actor, ControlError
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.live.bot import TradingBot
from tessera.live.halt import ACCOUNT

D = Decimal


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    yield s
    s.close()


def test_the_audit_trail_pages_newest_first_and_keeps_every_field(store: ExecutionStore) -> None:
    ids = []
    for i, (action, target, outcome) in enumerate(
        [("halt", None, "done"), ("pause", "sma", "refused"), ("reset", None, "done")]
    ):
        ids.append(
            store.record_action(
                actor="ops",
                role="operate",
                via="token",
                address="10.0.0.1",
                action=action,
                target=target,
                reason=f"why {i}",
                outcome=outcome,
                detail="d",
                ts=1_000 + i,
            )
        )
    assert len(set(ids)) == 3 and all(i > 0 for i in ids)
    rows, total = store.list_actions(limit=2, offset=0)
    assert total == 3
    assert [r["action"] for r in rows] == ["reset", "pause"]
    assert rows[1] | {"id": 0} == {
        "id": 0, "ts": 1_001, "actor": "ops", "role": "operate", "via": "token",
        "address": "10.0.0.1", "action": "pause", "target": "sma", "reason": "why 1",
        "outcome": "refused", "detail": "d",
    }  # fmt: skip
    rows, _ = store.list_actions(limit=2, offset=2)
    assert [r["action"] for r in rows] == ["halt"]


def test_equity_samples_come_back_oldest_first_exactly(store: ExecutionStore) -> None:
    for i in range(5):
        store.record_equity(1_000 + i, "run-1", D("10000.123456789012345678") + i, 0.5 * i)
    assert store.equity_history(None, 2) == [
        (1_003, D("10003.123456789012345678"), 1.5),
        (1_004, D("10004.123456789012345678"), 2.0),
    ]
    assert [ts for ts, _, _ in store.equity_history(1_002, 100)] == [1_002, 1_003, 1_004]


def test_an_operator_pause_is_kept_until_cleared(store: ExecutionStore) -> None:
    store.save_pause("sma", "ops", "first", 1)
    store.save_pause("sma", "alice", "second", 2)
    assert store.load_pauses() == {"sma": {"by": "alice", "reason": "second", "ts": 2}}
    assert store.clear_pause("sma")
    assert not store.clear_pause("sma")
    assert store.load_pauses() == {}


def test_orders_and_fills_are_paged_and_filtered_with_a_total(store: ExecutionStore) -> None:
    store.start_run("run-1", "paper", "0.1", ["a", "b"])
    for i in range(5):
        order = Order(
            f"c-{i}", "BTCUSDT" if i % 2 else "ETHUSDT", OrderSide.BUY, OrderType.LIMIT, D("1"),
            D("100"), strategy="a" if i < 3 else "b", ts_created=10 + i,
        )  # fmt: skip
        assert store.record_intent(order, "run-1", i + 1)
    rows, total = store.orders_page(strategy="a", limit=2)
    assert total == 3 and [o.client_order_id for o in rows] == ["c-2", "c-1"]
    rows, total = store.orders_page(symbol="btcusdt", limit=10)
    assert total == 2 and {o.client_order_id for o in rows} == {"c-1", "c-3"}
    assert store.orders_page(status="open", limit=10)[1] == 5  # never sent: may still be live
    assert store.orders_page(status="FILLED", limit=10)[1] == 0
    rows, total = store.orders_page(since=13, limit=10, offset=1)
    assert total == 2 and [o.client_order_id for o in rows] == ["c-3"]
    assert store.fills_page(limit=10) == ([], 0)
    assert store.fill_counts() == {}


def test_the_log_buffer_masks_secret_keys_and_filters_by_level() -> None:
    buf = LogBuffer(3)
    buf.add_event({"event": "one", "level": "info", "logger": "x", "api_key": "k", "n": 1})
    buf.add_event({"event": "two", "level": "warning", "Authorization": "Bearer t"})
    buf.add_event({"event": "three", "level": "error", "session_id": "s", "long": "x" * 1000})
    buf.add_event({"event": "four", "level": "debug", "password": "p", "cookie": "c"})
    lines = buf.recent(10)
    assert [r.event for r in lines] == ["two", "three", "four"]  # the oldest fell out
    assert lines[0].fields == {"Authorization": MASK}
    assert lines[1].fields["session_id"] == MASK and len(lines[1].fields["long"]) == 300
    assert lines[2].fields == {"password": MASK, "cookie": MASK}
    assert [r.event for r in buf.recent(10, "warning")] == ["two", "three"]
    assert [r.event for r in buf.recent(1)] == ["four"]
    with pytest.raises(ValueError, match="unknown log level"):
        buf.recent(10, "loud")


def test_the_processor_passes_the_event_on_unchanged() -> None:
    event = {"event": "e", "level": "info", "token": "t"}
    assert log_buffer_processor(None, "info", event) is event
    assert event["token"] == "t"


def test_the_cli_halt_and_reset_are_in_the_same_audit_trail(
    database_url: str, clean_env: Path
) -> None:
    from tessera.cli import app

    (clean_env / "configs").mkdir()
    env = {"TESSERA_DATABASE_URL": database_url, "TESSERA_DATA_DIR": str(clean_env / "data")}

    def tessera(*args: str) -> None:
        result = CliRunner().invoke(app, ["--env-file", "none.env", *args], env=env)
        assert result.exit_code == 0, result.output

    tessera("risk", "halt", "--reason", "maintenance")
    tessera("risk", "reset", "--by", "alice")
    tessera("risk", "reset", "--by", "bob")
    store = ExecutionStore(database_url)
    try:
        rows, total = store.list_actions(10, 0)
    finally:
        store.close()
    assert total == 3
    assert [(r["action"], r["actor"], r["via"], r["outcome"]) for r in reversed(rows)][1:] == [
        ("reset", "alice", "cli", "done"),
        ("reset", "bob", "cli", "refused"),
    ]
    first = rows[-1]
    assert (first["action"], first["via"], first["reason"]) == ("halt", "cli", "maintenance")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_port_refuses_a_reader_and_bad_requests_and_records_them_as_refused(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    with running_simulator() as (simulator, _engine):
        strategies = [StrategyRef(name="sma_cross", params={"fast": 2, "slow": 3, "qty": 0.001})]
        bot = TradingBot(bot_options(simulator, db, mode="paper", strategies=strategies))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: bot.health.ready or task.done(), 60, "the bot ready")
            port = bot.control
            reader = Actor("viewer", "read", "token", "127.0.0.1")
            ops = Actor("ops", "operate", "token", "127.0.0.1")
            with pytest.raises(ControlError) as refused:
                await port.halt(reader, "just looking")
            assert refused.value.status == 403
            assert bot.risk.halt is None
            with pytest.raises(ControlError) as empty:
                await port.halt(ops, "   ")
            assert empty.value.status == 422
            with pytest.raises(ControlError) as unknown:
                await port.pause(ops, "nobody", "why")
            assert unknown.value.status == 404
            with pytest.raises(ControlError) as not_paused:
                await port.resume(ops, "sma_cross", "why")
            assert not_paused.value.status == 409
            with pytest.raises(ControlError) as bad_page:
                await port.orders(limit=0)
            assert bad_page.value.status == 422
            with pytest.raises(ControlError) as bad_status:
                await port.orders(status="SLEEPING")
            assert bad_status.value.status == 422
            # a halt set from outside (as `tessera risk halt` sets it) is followed and told
            events = bot.hub.subscribe(kinds={"halt", "reset"})
            bot.store.save_halt(ACCOUNT, "manual: from the CLI", 1, 0.0, D(0))
            assert (await asyncio.wait_for(events.get(), 10)).data["reason"] == (
                "manual: from the CLI"
            )
            assert port.status().trading == "halted"
            assert port.risk().halt is not None
            done = await port.reset(ops, "checked")
            assert done.outcome == "done"
            assert (await asyncio.wait_for(events.get(), 10)).kind == "reset"
            assert bot.store.load_halt(ACCOUNT) is None
            assert bot.risk.halt is None
            await asyncio.sleep(1.5)  # a halt watch pass after the reset must not re-halt
            assert bot.risk.halt is None
            page = await port.actions(limit=100)
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 60)
    outcomes = [(r.action, r.actor, r.outcome) for r in reversed(page.items)]
    assert outcomes == [
        ("halt", "viewer", "refused"),
        ("pause", "ops", "refused"),
        ("resume", "ops", "refused"),
        ("reset", "ops", "done"),
    ]


class _NoOrders:
    """The order manager as the halt guard sees it when nothing is open or held."""

    def __init__(self) -> None:
        self.live: dict[str, object] = {}
        self.positions: dict[tuple[str, str], object] = {}


async def test_the_kill_switch_is_published_with_its_drawdown_and_limit(
    store: ExecutionStore,
) -> None:
    from tessera.config.models import RiskConfig
    from tessera.control.events import EventHub
    from tessera.live.halt import HaltGuard
    from tessera.risk.engine import RiskEngine

    hub = EventHub()
    sub = hub.subscribe()
    risk = RiskEngine(RiskConfig(max_drawdown_pct=5.0))
    guard = HaltGuard(
        store=store, risk=risk, manager=_NoOrders(), gateway=None, account=None,  # type: ignore[arg-type]
        filters={}, ids=None, equity=lambda: D(90), failed=lambda w, e: None,  # type: ignore[arg-type]
        order_lock=asyncio.Lock(), publish=hub.publish,
    )  # fmt: skip
    assert risk.update_equity(D(100), 1) == []
    actions = risk.update_equity(D(94), 2)
    await guard.on_actions(actions)
    event = sub._queue.popleft()
    assert event.kind == "kill_switch"
    assert (event.data["drawdown_pct"], event.data["max_drawdown_pct"]) == (6.0, 5.0)
    assert store.load_halt(ACCOUNT) is not None
    assert guard.reset_now("alice")
    event = sub._queue.popleft()
    assert (event.kind, event.data["by"]) == ("reset", "alice")
    assert store.load_halt(ACCOUNT) is None and risk.halt is None
    assert not guard.reset_now("alice")  # not halted: nothing to reset, nothing told
    assert not sub._queue
