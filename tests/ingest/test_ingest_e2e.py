"""Ingest against the simulator over real sockets, replaying real Binance recordings."""

from __future__ import annotations

import asyncio
import gzip
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow.compute as pc

from tessera import metrics
from tessera.data.ingest import IngestService
from tessera.data.ingest.book import BookState
from tessera.data.store import ParquetStore
from tessera.sim import ExchangeSimulator, FaultPlan
from tessera.sim.recording import load_recording

SPOT = Path(__file__).resolve().parents[2] / "samples" / "binance-raw-ws" / "spot"


def recorded_trades(*paths: Path) -> dict[int, tuple[str, str, int, bool]]:
    """Trades as Binance sent them, read straight from the files (independent of our code)."""
    out = {}
    for p in paths:
        with gzip.open(p, "rt") as fh:
            for line in fh:
                doc = orjson.loads(line.split(" ", 1)[1])
                if doc.get("stream", "").endswith("@trade"):
                    d = doc["data"]
                    out[d["t"]] = (d["p"], d["q"], d["T"], d["m"])
    return out


def stored_trades(store: ParquetStore, symbol: str) -> dict[int, tuple[str, str, int, bool]]:
    t = store.read("trades", symbol)
    ids = t["trade_id"].to_pylist()
    assert len(ids) == len(set(ids)), "duplicate trade ids in the store"
    prices = [f"{p:.8f}" for p in t["price"].to_pylist()]
    qtys = [f"{q:.8f}" for q in t["qty"].to_pylist()]
    times = pc.cast(t["trade_time"], "int64").to_pylist()
    makers = t["is_buyer_maker"].to_pylist()
    return {
        i: (p, q, ts // 1_000_000, m)
        for i, p, q, ts, m in zip(ids, prices, qtys, times, makers, strict=True)
    }


async def run_ingest(
    sim: ExchangeSimulator,
    store: ParquetStore,
    symbols: list[str],
    kinds: tuple[str, ...] = ("trade", "depth"),
    settle_s: float = 1.0,
) -> IngestService:
    svc = IngestService(
        store,
        sim.ws_url,
        sim.rest_url,
        symbols,
        kinds=kinds,
        flush_rows=20_000,
        flush_interval_s=0.5,
        max_backoff_s=0.2,
    )
    task = asyncio.create_task(svc.run())
    await asyncio.wait_for(sim.wait_replayed(), 120)
    await asyncio.sleep(settle_s)  # let the tail, backfills and snapshot fetches land
    if "depth" in kinds:
        # A resync near the end of a max-speed replay may still be fetching its snapshot
        # (CI's loaded runners took over the second above): wait for the books, not a clock.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        for _ in range(600):
            if loop.time() > deadline or all(b.state is BookState.LIVE for b in svc.books.values()):
                break
            await asyncio.sleep(0.05)
    svc.stop()
    await asyncio.wait_for(task, 60)
    return svc


def assert_books_equal(svc: IngestService, sim: ExchangeSimulator, symbol: str) -> None:
    sim.state.catch_up(len(sim.recording.frames))
    ref = sim.state.books[symbol]
    ours = svc.books[symbol]
    assert ours.last_update_id == ref.last_update_id
    # A book built from a 1000-level snapshot knows every level inside the snapshot's price
    # range (and what diffs touched since); compare the whole book within that range.
    assert ours.bid_floor is not None and ours.ask_ceiling is not None
    ref_bids = {p: Decimal(q) for p, q in ref.bids.items() if p >= ours.bid_floor}
    ref_asks = {p: Decimal(q) for p, q in ref.asks.items() if p <= ours.ask_ceiling}
    assert {p: q for p, q in ours.bids.items() if p >= ours.bid_floor} == ref_bids
    assert {p: q for p, q in ours.asks.items() if p <= ours.ask_ceiling} == ref_asks
    # Every level we hold exists on the exchange with the same quantity (ours is a subset:
    # levels beyond the snapshot that no diff touched are unknown to any client).
    full_bids = {p: Decimal(q) for p, q in ref.bids.items()}
    full_asks = {p: Decimal(q) for p, q in ref.asks.items()}
    assert all(full_bids.get(p) == q for p, q in ours.bids.items())
    assert all(full_asks.get(p) == q for p, q in ours.asks.items())
    assert len(ours.bids) + len(ours.asks) > 1000


async def test_store_holds_exactly_the_recorded_trades_and_the_book_matches(tmp_path: Path) -> None:
    paths = [
        SPOT / "btcusdt_20240808.gz",
        SPOT / "btcusdt_20240809.gz",
        SPOT / "ethusdt_20240808.gz",
    ]
    sim = ExchangeSimulator(load_recording(paths), speed=None)
    store = ParquetStore(tmp_path / "store")
    async with sim:
        svc = await run_ingest(sim, store, ["BTCUSDT", "ETHUSDT"])
    btc = recorded_trades(*paths[:2])
    assert stored_trades(store, "BTCUSDT") == btc
    assert len(btc) == 9757 + 10147
    assert stored_trades(store, "ETHUSDT") == recorded_trades(paths[2])
    assert_books_equal(svc, sim, "BTCUSDT")
    assert_books_equal(svc, sim, "ETHUSDT")
    # the recordings cross midnight: two UTC date partitions
    days = {p.parent.name for p in store.files("trades", "BTCUSDT")}
    assert days == {"date=2024-08-08", "date=2024-08-09"}
    assert svc.stats.malformed == 0


async def test_forced_disconnects_leave_no_hole_and_no_duplicate(tmp_path: Path) -> None:
    path = SPOT / "btcusdt_20240808.gz"
    # Paced replay (60x) so that the market moves on while we are disconnected.
    sim = ExchangeSimulator(load_recording([path]), speed=60.0, faults=FaultPlan(drop_after=2500))
    store = ParquetStore(tmp_path / "store")
    async with sim:
        svc = await run_ingest(sim, store, ["BTCUSDT"])
    assert svc.stats.reconnects >= 2
    assert svc.stats.gaps_found >= 1 and svc.stats.gaps_filled >= 1
    assert stored_trades(store, "BTCUSDT") == recorded_trades(path)
    assert_books_equal(svc, sim, "BTCUSDT")


async def test_depth_gap_triggers_a_resync(tmp_path: Path) -> None:
    path = SPOT / "btcusdt_20240808.gz"
    sim = ExchangeSimulator(
        load_recording([path]), speed=None, faults=FaultPlan(skip_depth_at=3000)
    )
    before = metrics.BOOK_RESYNCS.labels(symbol="BTCUSDT")._value.get()
    async with sim:
        svc = await run_ingest(sim, ParquetStore(tmp_path / "store"), ["BTCUSDT"])
    assert svc.books["BTCUSDT"].resyncs == 1
    assert metrics.BOOK_RESYNCS.labels(symbol="BTCUSDT")._value.get() >= before + 2
    assert_books_equal(svc, sim, "BTCUSDT")


async def test_malformed_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    path = SPOT / "btcusdt_20240808.gz"
    sim = ExchangeSimulator(load_recording([path]), speed=None, faults=FaultPlan(malformed_at=1000))
    store = ParquetStore(tmp_path / "store")
    before = sum(
        metrics.WS_MALFORMED.labels(stream_type=k)._value.get()
        for k in ("trade", "control", "other")
    )
    async with sim:
        svc = await run_ingest(sim, store, ["BTCUSDT"], kinds=("trade",))
    after = sum(
        metrics.WS_MALFORMED.labels(stream_type=k)._value.get()
        for k in ("trade", "control", "other")
    )
    assert svc.stats.malformed == 2 and after - before == 2
    assert stored_trades(store, "BTCUSDT") == recorded_trades(path)


async def test_rest_429_is_honoured(tmp_path: Path) -> None:
    path = SPOT / "btcusdt_20240808.gz"
    sim = ExchangeSimulator(
        load_recording([path]), speed=None, faults=FaultPlan(rest_429=2, retry_after_s=1)
    )
    async with sim:
        # two Retry-After waits of 1 s each delay the snapshot past the (max-speed) replay
        svc = await run_ingest(sim, ParquetStore(tmp_path / "store"), ["BTCUSDT"], settle_s=3.5)
    assert svc.rest is not None and svc.rest.waited_s >= 2
    assert sim.stats.faults["rest_429"] == 2  # both refusals were sent ...
    assert sim.stats.rest_requests["/api/v3/depth"] >= 2  # ... and the snapshot still served
    assert_books_equal(svc, sim, "BTCUSDT")


async def test_planned_reconnect_overlaps_and_loses_nothing(tmp_path: Path) -> None:
    """Binance's 24 h limit, compressed to one second: the next connection opens before the
    current one closes; trades and the book come through complete and undoubled."""
    path = SPOT / "btcusdt_20240808.gz"
    sim = ExchangeSimulator(load_recording([path]), speed=60.0)
    store = ParquetStore(tmp_path / "store")
    before = metrics.WS_RECONNECTS.labels(reason="planned")._value.get()
    async with sim:
        svc = IngestService(
            store,
            sim.ws_url,
            sim.rest_url,
            ["BTCUSDT"],
            kinds=("trade", "depth"),
            flush_interval_s=0.5,
            planned_reconnect_s=1.0,
        )
        task = asyncio.create_task(svc.run())
        await asyncio.wait_for(sim.wait_replayed(), 120)
        await asyncio.sleep(1.0)
        svc.stop()
        await asyncio.wait_for(task, 60)
    assert metrics.WS_RECONNECTS.labels(reason="planned")._value.get() - before >= 2
    assert svc.stats.gaps_found == 0  # the overlap covered every switch
    assert stored_trades(store, "BTCUSDT") == recorded_trades(path)
    assert svc.books["BTCUSDT"].resyncs == 0
    assert_books_equal(svc, sim, "BTCUSDT")
