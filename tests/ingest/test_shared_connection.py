"""The bot's feed and its embedded ingest on one websocket, against the simulator.

One connection per bot: a drop shows in ``tessera_ws_connected{source="feed"}`` instead of being
masked by a second connection, and the ingest still stores every trade and closed kline —
including what a drop of the shared connection cost, fetched over REST after the reconnect.
Trades are checked against the recording files themselves (`recorded_trades`), never against
what our own code derived.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest
from test_ingest_e2e import recorded_trades, stored_trades

from tessera import metrics
from tessera.config.models import RiskConfig, StrategyRef
from tessera.data.ingest import IngestService
from tessera.data.store import ParquetStore
from tessera.live.bot import EXIT_OK, BotOptions, TradingBot
from tessera.live.feed import MarketFeed
from tessera.sim.recording import load_recording
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.strategies.base import Bar, BookTop, TradeTick

SPOT = Path(__file__).resolve().parents[2] / "samples" / "binance-raw-ws" / "spot"
BTC = [SPOT / "btcusdt_20240808.gz", SPOT / "btcusdt_20240809.gz"]


def recorded_count(path: Path, stream: str) -> int:
    with gzip.open(path, "rt") as fh:
        return sum(orjson.loads(line.split(" ", 1)[1]).get("stream") == stream for line in fh)


class Heard:
    """A `MarketHandler` that keeps what the feed handed it."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.trades: list[TradeTick] = []
        self.books: list[BookTop] = []

    def on_bar(self, bar: Bar, event_ns: int, recv_ns: int) -> None:
        self.bars.append(bar)

    def on_trade(self, tick: TradeTick, recv_ns: int) -> None:
        self.trades.append(tick)

    def on_book(self, book: BookTop, recv_ns: int) -> None:
        self.books.append(book)


async def wait_until(cond: Callable[[], object], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_an_ingest_attached_to_a_feed_adds_its_streams_and_stores_every_frame(
    tmp_path: Path,
) -> None:
    """The ingest wants best bid/ask, the feed (book=False) does not: attached to the open
    connection, the feed subscribes it there (no second connection), the ingest stores every
    recorded trade and book top, and the feed's handler still hears only its own streams."""
    sim = ExchangeSimulator(load_recording(BTC[:1]), speed=None, autostart=False)
    store = ParquetStore(tmp_path / "store")
    heard = Heard()
    connected = metrics.WS_CONNECTED.labels(source="feed")
    async with sim:
        feed = MarketFeed(sim.ws_url, ["BTCUSDT"], "1s", heard, book=False)
        feed_task = asyncio.create_task(feed.run())
        await asyncio.wait_for(feed.connected.wait(), 10)
        assert connected._value.get() == 1
        svc = IngestService(
            store,
            sim.ws_url,
            sim.rest_url,
            ["BTCUSDT"],
            kinds=("trade", "bookTicker"),
            flush_interval_s=0.2,
            shared=True,
        )
        ingest = asyncio.create_task(svc.run(attach=feed.attach))
        await wait_until(lambda: len(sim.connections[0].streams) == 3, 10, "the SUBSCRIBE")
        assert "btcusdt@bookTicker" in feed.streams
        sim.start_replay()
        await asyncio.wait_for(sim.wait_replayed(), 120)
        trades = len(recorded_trades(BTC[0]))
        await wait_until(lambda: len(heard.trades) == trades, 30, "the feed to read the tail")
        await asyncio.sleep(0.2)
        svc.stop()
        stats = await asyncio.wait_for(ingest, 30)
        feed.stop()
        await asyncio.wait_for(feed_task, 10)
    assert connected._value.get() == 0
    assert sim.stats.connections == 1
    assert stored_trades(store, "BTCUSDT") == recorded_trades(BTC[0])
    book_tops = recorded_count(BTC[0], "btcusdt@bookTicker")
    assert store.read("book_ticker", "BTCUSDT").num_rows == book_tops
    assert stats.refused == 0 and stats.malformed == 0 and stats.reconnects == 0
    assert {c.dataset for c in store.coverage()} == {"book_ticker", "trades"}  # no klines
    assert svc.health().ok and not svc.health().data_lost
    # the feed's own parsing: trades and bars, no book tops (the ingest's stream, not its own)
    assert len(heard.trades) == len(recorded_trades(BTC[0]))
    assert heard.bars and not heard.books


async def test_an_error_handling_a_pushed_frame_ends_the_ingest_not_the_feed(
    tmp_path: Path,
) -> None:
    sim = ExchangeSimulator(load_recording(BTC[:1]), speed=None)
    store = ParquetStore(tmp_path / "store")
    heard = Heard()
    async with sim:
        feed = MarketFeed(sim.ws_url, ["BTCUSDT"], "1s", heard, book=False)
        svc = IngestService(
            store, sim.ws_url, sim.rest_url, ["BTCUSDT"], kinds=("trade",), shared=True
        )
        handled = 0
        heard_at_failure = -1
        real = svc.on_frame

        def on_frame(raw: str | bytes, recv_ns: int) -> None:
            nonlocal handled, heard_at_failure
            handled += 1
            if handled == 3000:
                heard_at_failure = len(heard.trades)
                raise RuntimeError("a bug in a handler")
            real(raw, recv_ns)

        svc.on_frame = on_frame  # type: ignore[method-assign]
        feed_task = asyncio.create_task(feed.run())
        with pytest.raises(RuntimeError, match="a bug in a handler"):
            await asyncio.wait_for(svc.run(attach=feed.attach), 60)
        # The feed goes on past the frame whose handling failed: it hears the recording's
        # trades to the end (however fast the replay ran while the failure propagated).
        total = len(recorded_trades(BTC[0]))
        await wait_until(lambda: len(heard.trades) == total, 60, "the feed to go on")
        assert 0 < heard_at_failure < total
        assert not feed_task.done()
        feed.stop()
        await asyncio.wait_for(feed_task, 10)
    assert not svc.health().ok
    assert svc.stats.refused > 0  # what came after the failure was not taken
    assert 0 < len(store.read("trades", "BTCUSDT")) < len(heard.trades)  # the rest was flushed


def test_an_attach_hook_is_refused_for_a_service_that_connects_itself(tmp_path: Path) -> None:
    svc = IngestService(ParquetStore(tmp_path), "ws://x", "http://x", ["BTCUSDT"])
    with pytest.raises(ValueError, match="shared"):
        asyncio.run(svc.run(attach=lambda s: None))


# --- a whole bot ------------------------------------------------------------------------------


@pytest.fixture
def simulator() -> Iterator[tuple[ExchangeSimulator, SimulatorThread]]:
    """The two BTCUSDT recordings at 5x on their own thread (the bot runs in the test's loop)."""
    sim = ExchangeSimulator(load_recording(BTC), speed=5.0)
    thread = SimulatorThread(sim)
    thread.start()
    try:
        yield sim, thread
    finally:
        thread.stop()


def paper_bot(sim: ExchangeSimulator, tmp_path: Path) -> TradingBot:
    return TradingBot(
        BotOptions(
            mode="paper",
            strategies=[StrategyRef(name="sma_cross", params={"fast": 2, "slow": 3, "qty": 0.001})],
            symbols=["BTCUSDT"],
            interval="1s",
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            database_url=f"sqlite:///{tmp_path / 'bot.db'}",
            run_id=f"shared-{secrets.token_hex(4)}",
            risk=RiskConfig(),
            ingest_store=tmp_path / "market",
        )
    )


def check_trades(store: ParquetStore) -> tuple[int, int]:
    """Stored trades: one unbroken id range, each as recorded. Returns (rows, backfilled)."""
    stored = stored_trades(store, "BTCUSDT")
    ids = sorted(stored)
    assert ids and ids == list(range(ids[0], ids[-1] + 1)), "a hole in the stored trade ids"
    recorded = recorded_trades(*BTC)
    assert all(stored[i] == recorded[i] for i in ids)
    backfilled = store.read("trades", "BTCUSDT")["recv_time"].null_count
    return len(ids), backfilled


def check_klines(store: ParquetStore) -> int:
    """Stored 1s klines: closed bars, one per second without a hole. Returns their number."""
    k = store.read("klines", "BTCUSDT")
    opens = sorted(pc.cast(k["open_time"], "int64").to_pylist())
    assert set(k["interval"].to_pylist()) == {"1s"}
    assert len(opens) == len(set(opens)), "duplicate klines"
    step = 1_000_000_000
    assert all(b - a == step for a, b in itertools.pairwise(opens)), "a hole in klines"
    return len(opens)


@pytest.mark.slow
async def test_a_bot_with_its_ingest_opens_one_websocket_and_stores_trades_and_klines(
    tmp_path: Path, simulator: tuple[ExchangeSimulator, SimulatorThread]
) -> None:
    sim, _ = simulator
    bot = paper_bot(sim, tmp_path)
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: hasattr(bot, "_ingest_service") or task.done(), 60, "the ingest")
        svc = bot._ingest_service
        await wait_until(
            lambda: (
                (svc.stats.rows_written["trades"] > 500 and svc.stats.rows_written["klines"] > 5)
                or task.done()
            ),
            90,
            "trades and klines in the store",
        )
        assert svc.connected.is_set() and bot.feed.sink is svc
        assert metrics.WS_CONNECTED.labels(source="feed")._value.get() == 1
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems
    assert sim.stats.connections == 1, [c.path for c in sim.connections]
    assert bot.feed.stats.reconnects == 0
    store = ParquetStore(tmp_path / "market")
    rows, _ = check_trades(store)
    assert rows > 500
    assert check_klines(store) > 5
    assert svc.stats.refused == 0 and not svc.health().data_lost


@pytest.mark.slow
async def test_after_a_drop_of_the_shared_connection_the_ingest_backfills_what_it_missed(
    tmp_path: Path, simulator: tuple[ExchangeSimulator, SimulatorThread]
) -> None:
    sim, thread = simulator
    bot = paper_bot(sim, tmp_path)
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: hasattr(bot, "_ingest_service") or task.done(), 60, "the ingest")
        svc = bot._ingest_service
        await wait_until(
            lambda: svc.stats.rows_written["trades"] > 200 or task.done(), 60, "first trades"
        )
        dropped = await asyncio.to_thread(thread.call, sim.drop_connections())
        assert dropped == 1  # the feed's, which is the ingest's
        await wait_until(lambda: svc.stats.gaps_filled >= 1 or task.done(), 60, "the backfill")
        written = svc.stats.rows_written["trades"]
        await wait_until(  # and the stream goes on after it
            lambda: svc.stats.rows_written["trades"] > written + 200 or task.done(),
            60,
            "trades after the reconnect",
        )
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems
    assert bot.feed.stats.reconnects >= 1 and svc.stats.reconnects == bot.feed.stats.reconnects
    assert sim.stats.connections == 1 + bot.feed.stats.reconnects  # never a second one
    store = ParquetStore(tmp_path / "market")
    _, backfilled = check_trades(store)  # no hole across the drop ...
    assert backfilled > 0  # ... because REST filled it (backfilled rows have no receive time)
    check_klines(store)
