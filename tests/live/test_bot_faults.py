"""The bot under faults, in-process: its readiness, its exit code and its ledger tell the truth.

Each test runs a `TradingBot` in the test's event loop against the exchange simulator over
sockets (the simulator in its own thread), so that the bot's own state — readiness checks, the
feed's stall flag, the late-bar counter, its exit code — can be read while it runs. The ledger
is then checked against the simulator's books as in the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from inprocess_bot import bot_options, running_simulator, wait_until
from live_bot_helpers import assert_ledger_matches

from tessera.config.models import StrategyRef
from tessera.execution.persistence import ExecutionStore
from tessera.live.bot import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_STORE_FATAL,
    BotOptions,
    TradingBot,
    store_error_is_fatal,
)
from tessera.live.feed import LagBaseline
from tessera.sim import FaultPlan
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine
from tessera.strategies.base import Bar, Strategy, StrategyContext

pytestmark = pytest.mark.slow


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    """The simulator, with the fault plan of ``@pytest.mark.parametrize("sim", [plan],
    indirect=True)`` when a test gives one."""
    with running_simulator(getattr(request, "param", None)) as pair:
        yield pair


def options(sim: ExchangeSimulator, database_url: str, **kw: Any) -> BotOptions:
    return bot_options(sim, database_url, **kw)


def test_the_lag_baseline_measures_delay_beyond_the_usual_lag_whatever_the_clock_offset() -> None:
    lag = LagBaseline(window_ns=60 * 10**9, buckets=6)
    offset = 3_600 * 10**9  # a replay an hour behind our clock: the usual lag, not a delay
    for i in range(100):
        event = i * 10**9
        lag.observe(event, event + offset + 20_000_000)  # 20 ms network latency
    now_event = 100 * 10**9
    assert lag.delay_ns(now_event, now_event + offset + 20_000_000) == 0
    # the same event delivered 30 s later than usual is 30 s late
    assert lag.delay_ns(now_event, now_event + offset + 20_000_000 + 30 * 10**9) == 30 * 10**9


def test_store_errors_that_no_retry_fixes_are_told_apart_from_outages() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    readonly = OperationalError(
        "INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database")
    )
    gone = OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))
    assert store_error_is_fatal(full)
    assert store_error_is_fatal(readonly)
    assert not store_error_is_fatal(gone)


@pytest.mark.parametrize("sim", [FaultPlan(stall_after=400, stall_s=8.0)], indirect=True)
async def test_a_stalled_feed_is_noticed_reconnected_and_marked_not_ready(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, _ = sim
    bot = TradingBot(options(simulator, f"sqlite:///{tmp_path / 'bot.db'}", stall_after_s=2.0))
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: bot.health.readiness()[0], 60, "readiness")
        # the simulator stops sending after 400 frames on the socket, which stays open
        await wait_until(lambda: not bot.health.readiness()[0], 30, "not ready during the stall")
        assert bot.feed.stalled
        assert bot.feed.connected.is_set() or bot.feed.stats.reconnects >= 1
        # a fresh connection brings data back (each new connection stalls again after 400
        # frames, so readiness comes back at least for a while)
        await wait_until(lambda: bot.feed.stats.stalls >= 1, 10, "the stall counted")
        await wait_until(lambda: bot.feed.stats.reconnects >= 1, 15, "a reconnect")
        await wait_until(lambda: bot.health.readiness()[0], 30, "ready again once data flows")
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems


@pytest.mark.parametrize("sim", [FaultPlan(stall_after=300, stall_s=6.0)], indirect=True)
async def test_bars_delivered_late_after_a_stall_are_not_traded_on(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    # stall_after_s above the stall: the socket stays, and the backlog arrives late
    bot = TradingBot(options(simulator, db, stall_after_s=60.0, max_bar_age_s=1.0))
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: bot.stale_bars >= 3, 60, "late bars after the stall")
        late = bot.stale_bars
        await asyncio.sleep(2.0)  # fresh bars again after the backlog
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems
    assert late >= 3
    store = ExecutionStore(db)
    try:
        orders = store.list_orders(limit=100_000)
        assert orders, "the bot never traded on a fresh bar"
        # the signal id carries the bar's open time: no order came from a late bar
        assert bot.late_bar_times, "late bars were not recorded"
        traded_bars = {int(str(o.signal_id).split(":")[3]) for o in orders if o.signal_id}
        assert not traded_bars & bot.late_bar_times
        assert_ledger_matches(store, engine)
    finally:
        store.close()


class MuteableProxy:
    """A TCP proxy in front of the simulator's REST port that can go mute: connections stay
    open and requests are read, but nothing comes back (an exchange that stops answering)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.speaking = asyncio.Event()
        self.speaking.set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.speaking.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_shutdown_finishes_within_its_budget_and_says_what_it_left(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, _ = sim
    proxy = MuteableProxy(int(simulator.rest_url.rsplit(":", 1)[1]))
    await proxy.start()
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    rest = f"http://127.0.0.1:{proxy.port}"
    bot = TradingBot(options(simulator, db, rest_url=rest, shutdown_timeout_s=3.0))
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: bot.orders_sent >= 1, 60, "a first order")
        proxy.speaking.clear()  # every exchange call from now on hangs: orders, recovery, cancels
        await wait_until(lambda: bool(bot.wire.wire_ns), 60, "an order on the wire, unanswered")
        started = time.monotonic()
        bot._request_stop("SIGTERM")
        code = await asyncio.wait_for(task, 30)
        took = time.monotonic() - started
    finally:
        await proxy.stop()
    assert took < 3.0 + 2.0, f"shutdown took {took:.1f} s with a 3 s budget"
    assert code != EXIT_OK
    assert any("in flight at exit" in p for p in bot.problems), bot.problems


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return res.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB filesystem (tmpfs; the tests run as root), so that a write fails with
    ENOSPC exactly as on a full disk."""
    mnt = tmp_path / "disk"
    if not _mount_tmpfs(mnt, "64m"):
        pytest.fail("cannot mount a tmpfs for the full-disk test (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_full_disk_stops_the_bot_fast_with_a_non_zero_exit_and_nothing_unrecorded_sent(
    small_disk: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    db_path = small_disk / "bot.db"
    db = f"sqlite:///{db_path}"
    bot = TradingBot(options(simulator, db, shutdown_timeout_s=10.0))
    task = asyncio.create_task(bot.run())
    await wait_until(lambda: bot.orders_sent >= 2, 90, "two orders")
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte (unbuffered: every write meets the full disk)
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    filled_at = time.monotonic()
    code = await asyncio.wait_for(task, 90)
    took = time.monotonic() - filled_at
    assert code == EXIT_STORE_FATAL, (code, bot.problems)
    assert any("cannot record orders" in p for p in bot.problems), bot.problems
    assert took < 45, f"the bot took {took:.0f} s to give up on a full disk"
    # nothing unrecorded reached the exchange: every exchange order is in our database
    os.remove(filler)
    store = ExecutionStore(db)
    try:
        ours = {o.client_order_id for o in store.list_orders(limit=100_000)}
        assert {o.client_order_id for o in engine.orders.values()} <= ours
    finally:
        store.close()
    # a restart with space again resolves what was in flight; the ledger then matches
    again = TradingBot(options(simulator, db, duration_s=3.0))
    assert await asyncio.wait_for(again.run(), 90) == EXIT_OK, again.problems
    store = ExecutionStore(db)
    try:
        assert not [o for o in store.list_orders(limit=100_000) if o.status.value == "SUBMITTED"]
        assert_ledger_matches(store, engine)
    finally:
        store.close()


class _AlwaysRaises(Strategy):
    """A user strategy with a bug on every bar."""

    name = "always_raises"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        raise KeyError("a bug in the user's strategy")


async def test_a_strategy_that_raises_is_paused_while_the_others_trade_on_and_the_exit_says_so(
    tmp_path: Path,
    sim: tuple[ExchangeSimulator, TradingEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tessera.strategies import base

    monkeypatch.setitem(base._REGISTRY, _AlwaysRaises.name, _AlwaysRaises)
    simulator, engine = sim
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    strategies = [
        StrategyRef(name="always_raises"),
        StrategyRef(name="sma_cross", params={"fast": 2, "slow": 3, "qty": 0.001}),
    ]
    bot = TradingBot(options(simulator, db, strategies=strategies, max_strategy_errors=5))
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: bot.orders_sent >= 3, 60, "sma_cross trading")
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    # the process has its signals back once the bot is done
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    guard = bot.guards["always_raises"]
    assert guard.paused and guard.errors == 5, (guard.paused, guard.errors)
    assert code == EXIT_PROBLEMS, (code, bot.problems)
    assert any("'always_raises' paused after 5 consecutive errors" in p for p in bot.problems)
    store = ExecutionStore(db)
    try:
        assert {o.strategy for o in store.list_orders(limit=100_000)} == {"sma_cross"}
        assert_ledger_matches(store, engine)
    finally:
        store.close()


class _ShortsFromFlat(Strategy):
    """Wants to be short from its first bar: on spot without the base asset, impossible."""

    name = "shorts_from_flat"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        ctx.target_position(bar.symbol, Decimal("-0.001"))


async def test_a_spot_short_without_the_asset_is_not_sent_and_is_said_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera import metrics
    from tessera.strategies import base

    monkeypatch.setitem(base._REGISTRY, _ShortsFromFlat.name, _ShortsFromFlat)
    denied = metrics.RISK_DENIALS.labels(reason="no_borrow")
    before = denied._value.get()
    with running_simulator(balances={"USDT": "100000"}) as (simulator, engine):
        db = f"sqlite:///{tmp_path / 'bot.db'}"
        bot = TradingBot(options(simulator, db, strategies=[StrategyRef(name="shorts_from_flat")]))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: denied._value.get() > before, 60, "the denial")
        finally:
            bot._request_stop()
            code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems
    assert not engine.orders, "a sell of an asset the account does not hold was sent"
    assert bot.executor._narrowed_logged == {("shorts_from_flat", "BTCUSDT")}
