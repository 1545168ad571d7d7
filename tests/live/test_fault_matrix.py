"""The fault matrix: every fault a trader meets in the first week, against a dev and a paper bot.

Each case runs a `TradingBot` in-process against the exchange simulator over sockets, lets it
trade, injects one fault, checks what the bot says while the fault lasts (readiness), heals it
where a running bot should ride it out, and stops the bot. Then the bot's exit code must tell the
truth, and its ledger must equal the exchange's: the simulator's books in dev mode, the paper
exchange's own trades and the positions in paper mode.

| fault | how it is made | the bot must |
|---|---|---|
| feed stall | the simulator stops sending, socket open | go not-ready, reconnect, trade on |
| feed drop | the simulator closes every websocket | reconnect, trade on |
| 5xx/429 storm | the simulator's REST answers 503 / 429 | ride it out, nothing doubled |
| clock skew | the simulator's clock 10 s ahead | sign with the exchange's time |
| disk full | a real tmpfs filled to the last byte | stop at once, exit 3 |
| read-only store | PostgreSQL turns read-only (as a failover to a replica) | stop, exit 3 |
| corrupt file | a truncated Parquet file in the ingest store | quarantine it, keep recording |
| PostgreSQL kill | a proxy in front of PostgreSQL cuts every link | go not-ready... resume |
| Redis restart | our own redis-server SIGKILLed and restarted | lose and double no signal |
| second bot | a second bot on the same database | be refused, naming the holder |
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from inprocess_bot import bot_options, running_simulator, wait_until
from live_bot_helpers import assert_ledger_matches, free_port
from test_resilience import CuttableProxy

from tessera.execution.orders import OrderSide, OrderStatus
from tessera.execution.persistence import ExecutionStore
from tessera.live.bot import EXIT_OK, EXIT_STORE_FATAL, LiveRefusedError, TradingBot
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine

pytestmark = pytest.mark.slow


def ready(bot: TradingBot) -> bool:
    return bot.health.readiness()[0]


@dataclass
class Case:
    """One run: a simulator, a database, the bot (and a later restart if the fault stops it)."""

    mode: str
    tmp: Path
    sim: ExchangeSimulator
    engine: TradingEngine
    db: str
    opts: dict[str, Any] = field(default_factory=dict)
    bots: list[TradingBot] = field(default_factory=list)

    def bot(self, **kw: Any) -> TradingBot:
        base: dict[str, Any] = {
            "mode": self.mode,
            "shutdown_timeout_s": 15.0,
            "stall_after_s": 3.0,
        }
        base.update(self.opts)
        base.update(kw)
        bot = TradingBot(bot_options(self.sim, self.db, **base))
        self.bots.append(bot)
        return bot

    def orders(self) -> int:
        return sum(b.orders_sent for b in self.bots)


async def run_until_trading(case: Case, **kw: Any) -> tuple[TradingBot, asyncio.Task[int]]:
    bot = case.bot(**kw)
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: bot.orders_sent >= 1 or task.done(), 60, "a first order")
    except BaseException:
        bot._request_stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 30)
        raise
    if task.done():
        task.result()  # raises what stopped it
    return bot, task


async def trades_again(bot: TradingBot, task: asyncio.Task[int], within: float = 60) -> None:
    n = bot.orders_sent
    await wait_until(lambda: bot.orders_sent > n or task.done(), within, "trading to resume")
    assert not task.done(), "the bot stopped instead of trading on"


async def stop(bot: TradingBot, task: asyncio.Task[int]) -> int:
    bot._request_stop()
    return await asyncio.wait_for(task, 60)


def check_ledger(case: Case) -> None:
    store = ExecutionStore(case.db)
    try:
        if case.mode == "dev":
            assert_ledger_matches(store, case.engine)
        else:
            check_paper_ledger(store, case.bots)
        assert not [
            o for o in store.list_orders(limit=100_000) if o.status is OrderStatus.SUBMITTED
        ]
    finally:
        store.close()


def check_paper_ledger(store: ExecutionStore, bots: list[TradingBot]) -> None:
    """The paper exchange is the exchange: every trade it made is a fill in our books, once,
    and the position is what the fills add up to."""
    fills = {f.trade_id: f for f in store.all_fills()}
    made = [t.fill for b in bots if b.paper is not None for t in b.paper.trades]
    assert made, "the paper exchange made no trade"
    for t in made:
        f = fills.get(t.trade_id)
        assert f is not None, f"paper trade {t.trade_id} is not in the ledger"
        assert (f.price, f.qty, f.fee) == (t.price, t.qty, t.fee), t.trade_id
    assert len(fills) == len(made), "fills the paper exchange did not make"
    held = sum(
        (f.qty if f.side is OrderSide.BUY else -f.qty for f in fills.values()), Decimal(0)
    ) - sum((f.fee for f in fills.values() if f.fee_asset == "BTC"), Decimal(0))
    position = sum((p.qty for p in store.positions() if p.symbol == "BTCUSDT"), Decimal(0))
    assert position == held


# --- the faults -----------------------------------------------------------------------------


async def feed_stall(case: Case) -> None:
    bot, task = await run_until_trading(case)
    assert ready(bot)
    case.sim.faults.stall_s = 6.0
    case.sim.faults.stall_after = 0  # every connection from now on: silent, socket open
    await wait_until(lambda: bot.feed.stats.stalls >= 1, 30, "the stall to be noticed")
    await wait_until(lambda: not ready(bot), 5, "not ready during the stall")
    case.sim.faults.stall_after = None
    await wait_until(lambda: ready(bot), 40, "ready again")
    await trades_again(bot, task)
    assert await stop(bot, task) == EXIT_OK, bot.problems


async def feed_drop(case: Case) -> None:
    bot, task = await run_until_trading(case)
    case.sim.faults.drop_after = 0  # every connection closed at its next frame
    await wait_until(lambda: bot.feed.stats.reconnects >= 3, 30, "three reconnects")
    case.sim.faults.drop_after = None
    await wait_until(lambda: ready(bot), 30, "ready again")
    await trades_again(bot, task)
    assert await stop(bot, task) == EXIT_OK, bot.problems


async def rest_storm(case: Case) -> None:
    bot, task = await run_until_trading(case)
    case.sim.faults.rest_5xx = 15
    await asyncio.sleep(1.0)
    case.sim.faults.rest_429 = 5
    await trades_again(bot, task, within=90)
    assert await stop(bot, task) == EXIT_OK, bot.problems


async def clock_skew(case: Case) -> None:
    case.sim.faults.clock_skew_ms = 10_000  # the exchange 10 s ahead of this host
    bot, task = await run_until_trading(case)
    await trades_again(bot, task)
    assert abs(bot.clock.offset_ms - 10_000) < 500, bot.clock.offset_ms
    assert await stop(bot, task) == EXIT_OK, bot.problems


def _mount(path: Path, *opts: str) -> None:
    res = subprocess.run(["mount", *opts, str(path)], capture_output=True, text=True)
    assert res.returncode == 0, f"mount {opts} failed (the tests run as root): {res.stderr}"


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


async def _store_stops_the_bot(
    case: Case, break_it: Callable[[], None], heal: Callable[[], None]
) -> None:
    bot, task = await run_until_trading(case)
    await wait_until(lambda: bot.orders_sent >= 2, 60, "two orders")
    break_it()
    started = time.monotonic()
    code = await asyncio.wait_for(task, 90)
    assert code == EXIT_STORE_FATAL, (code, bot.problems)
    assert time.monotonic() - started < 45, "the bot took too long to give up"
    assert any("cannot record orders" in p for p in bot.problems), bot.problems
    heal()
    again = case.bot(duration_s=4.0)
    assert await asyncio.wait_for(again.run(), 90) == EXIT_OK, again.problems


async def disk_full(case: Case) -> None:
    filler = case.tmp / "disk" / "filler"
    await _store_stops_the_bot(case, lambda: _fill(filler), lambda: os.remove(filler))


def _set_read_only(db: str, on: bool) -> None:
    """The database turns read-only, as after a failover to a replica: new sessions may not
    write, and the bot's current sessions are ended so that it reconnects into one."""
    import psycopg

    name = db.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
        if on:
            c.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        else:
            c.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


async def read_only_store(case: Case) -> None:
    await _store_stops_the_bot(
        case, lambda: _set_read_only(case.db, True), lambda: _set_read_only(case.db, False)
    )


async def corrupt_file(case: Case) -> None:
    store_dir = case.tmp / "market"
    bot, task = await run_until_trading(case, ingest_store=store_dir)
    await wait_until(lambda: hasattr(bot, "_ingest_service"), 30, "the ingest")
    service = bot._ingest_service
    await wait_until(lambda: any(store_dir.rglob("*.parquet")), 60, "a first Parquet file")
    victim = sorted(store_dir.rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: max(8, victim.stat().st_size // 3)])
    n = bot.orders_sent
    await wait_until(lambda: bot.orders_sent > n + 1, 60, "trading on")
    assert await stop(bot, task) == EXIT_OK, bot.problems
    health = service.health()
    assert health.ok and not health.data_lost, health
    # the store stays readable: the corrupt file is moved aside by the first reader, the rest
    # (everything the bot recorded after the damage included) reads as before
    from tessera.data.store import ParquetStore

    store = ParquetStore(store_dir)
    dataset = victim.relative_to(store_dir).parts[1].removeprefix("dataset=")
    rows = store.read(dataset).num_rows
    assert rows > 0
    assert any(q.original == victim for q in store.quarantined), store.quarantined
    assert not victim.exists()
    assert list((store_dir / "_quarantine").rglob(victim.name)), "the file was not quarantined"


async def postgres_kill(case: Case) -> None:
    bot, task = await run_until_trading(case)
    proxy: CuttableProxy = case.opts["_proxy"]
    proxy.cut()
    n = bot.orders_sent
    await asyncio.sleep(4.0)
    assert bot.orders_sent <= n + 1, "orders were sent while nothing could be recorded"
    proxy.restore()
    await trades_again(bot, task, within=90)
    assert await stop(bot, task) == EXIT_OK, bot.problems


async def redis_restart(case: Case) -> None:
    restart: Callable[[], None] = case.opts["_restart_redis"]
    bot, task = await run_until_trading(case)
    restart()
    await trades_again(bot, task, within=90)
    assert await stop(bot, task) == EXIT_OK, bot.problems


async def second_bot(case: Case) -> None:
    first, task = await run_until_trading(case)
    second = case.bot()
    with pytest.raises(LiveRefusedError) as refused:
        await asyncio.wait_for(second.run(), 60)
    assert first.o.run_id in str(refused.value), str(refused.value)
    assert str(os.getpid()) in str(refused.value)
    case.bots.remove(second)
    await trades_again(first, task)
    assert await stop(first, task) == EXIT_OK, first.problems


FAULTS: dict[str, Callable[[Case], Awaitable[None]]] = {
    "feed_stall": feed_stall,
    "feed_drop": feed_drop,
    "rest_storm": rest_storm,
    "clock_skew": clock_skew,
    "disk_full": disk_full,
    "read_only_store": read_only_store,
    "corrupt_file": corrupt_file,
    "postgres_kill": postgres_kill,
    "redis_restart": redis_restart,
    "second_bot": second_bot,
}
ON_SMALL_DISK = {"disk_full"}
ON_POSTGRES = {"read_only_store"}


@pytest.fixture
def sim() -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    with running_simulator() as pair:
        yield pair


@pytest.mark.parametrize("mode", ["dev", "paper"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_the_bot_tells_the_truth_through_the_fault(
    fault: str,
    mode: str,
    tmp_path: Path,
    sim: tuple[ExchangeSimulator, TradingEngine],
    request: pytest.FixtureRequest,
) -> None:
    simulator, engine = sim
    opts: dict[str, Any] = {}
    cleanups: list[Callable[[], None]] = []
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    try:
        if fault in ON_SMALL_DISK:
            disk = tmp_path / "disk"
            disk.mkdir()
            _mount(disk, "-t", "tmpfs", "-o", "size=64m", "tmpfs")
            cleanups.append(lambda: subprocess.run(["umount", "-l", str(disk)], check=False))
            db = f"sqlite:///{disk / 'bot.db'}"
        if fault in ON_POSTGRES:
            db = request.getfixturevalue("fresh_postgres_url")
        if fault == "postgres_kill":
            pg = request.getfixturevalue("fresh_postgres_url")
            proxy = CuttableProxy(("127.0.0.1", 5432))
            cleanups.append(proxy.close)
            db = pg.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            opts["_proxy"] = proxy
        if fault == "redis_restart":
            server = shutil.which("redis-server")
            assert server, "redis-server is not installed (make services installs it)"
            port = free_port()
            cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                   "--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # fmt: skip
            procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL)]  # noqa: ASYNC220

            def restart() -> None:
                procs[-1].kill()
                procs[-1].wait()
                time.sleep(1.0)
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))

            def kill_all() -> None:
                for p in procs:
                    p.kill()
                    p.wait()

            cleanups.append(kill_all)
            await asyncio.sleep(0.5)
            opts["redis_url"] = f"redis://127.0.0.1:{port}/0"
            opts["signal_stream"] = f"matrix:{secrets.token_hex(4)}"
            opts["_restart_redis"] = restart
        case = Case(mode, tmp_path, simulator, engine, db)
        case.opts = {k: v for k, v in opts.items() if not k.startswith("_")}
        await FAULTS[fault](_with_private(case, opts))
        check_ledger(case)
    finally:
        for bot in case.bots if "case" in locals() else []:
            bot._request_stop()
        for cleanup in reversed(cleanups):
            cleanup()


def _with_private(case: Case, opts: dict[str, Any]) -> Case:
    """The fault functions read their tools (`_proxy`, `_restart_redis`) from ``case.opts``;
    `Case.bot` passes only the real options on."""
    private = {k: v for k, v in opts.items() if k.startswith("_")}
    case.opts.update(private)
    real = {k: v for k, v in case.opts.items() if not k.startswith("_")}
    original = case.bot

    def bot(**kw: Any) -> TradingBot:
        saved = case.opts
        case.opts = real
        try:
            return original(**kw)
        finally:
            case.opts = saved

    case.bot = bot  # type: ignore[method-assign]
    return case
