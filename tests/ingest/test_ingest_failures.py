"""The ingest never loses market data silently (issue 14, defect 5).

Real faults, real files: a partition folder that cannot be created (its parent is a regular
file — tests run as root, so permissions would not stop a write), and a full disk produced with
``RLIMIT_FSIZE`` in a child process (every write past the limit fails with EFBIG, SIGXFSZ
ignored), against the simulator over real sockets. Nothing of the filesystem is mocked.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from test_ingest_e2e import SPOT, recorded_trades, stored_trades

from tessera import metrics
from tessera.data.ingest import IngestService
from tessera.data.store import ParquetStore
from tessera.sim import ExchangeSimulator
from tessera.sim.recording import load_recording

BTC = SPOT / "btcusdt_20240808.gz"
REPO = Path(__file__).resolve().parents[2]


def trade_frames(path: Path) -> list[str]:
    """The recorded ``@trade`` frames, exactly as Binance (and the simulator) sends them."""
    with gzip.open(path, "rt") as fh:
        return [ln.split(" ", 1)[1].rstrip("\n") for ln in fh if '@trade"' in ln]


FRAMES = trade_frames(BTC)
IDS = [json.loads(f)["data"]["t"] for f in FRAMES]


def offline_service(store: ParquetStore, **kw: Any) -> IngestService:
    """A service fed frames by the test (`on_frame`) instead of a socket: the flush path is the
    one a run uses, with no timing in the way."""
    return IngestService(
        store, "ws://unused", "http://unused", ["BTCUSDT"], kinds=("trade",), backfill=False, **kw
    )


def feed(svc: IngestService, frames: list[str]) -> None:
    for i, f in enumerate(frames):
        svc.on_frame(f, 1_723_161_254_000_000_000 + i)


def block_symbol_folder(store: ParquetStore) -> Path:
    """Make the trades partition folder impossible to create: its parent is a regular file."""
    blocker = store.dataset_dir("trades") / "symbol=BTCUSDT"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    return blocker


def counter(metric: Any, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())


async def test_a_flush_into_an_unwritable_folder_keeps_the_rows_and_writes_them_once_writable(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path / "store")
    svc = offline_service(store)
    blocker = block_symbol_folder(store)
    failures_before = counter(metrics.INGEST_FLUSH_FAILURES, dataset="trades")

    with capture_logs() as logs:
        feed(svc, FRAMES[:5000])
        assert await svc.flush() == 0
        feed(svc, FRAMES[5000:])
        assert await svc.flush(force=True) == 0  # the same failure again

    health = svc.health()
    assert not health.ok
    assert health.failures == 2 and health.rows_dropped == 0
    assert health.buffered_rows == len(FRAMES)  # every row still held
    assert health.last_error is not None and str(blocker) in health.last_error
    assert "Not a directory" in health.last_error
    assert counter(metrics.INGEST_FLUSH_FAILURES, dataset="trades") == failures_before + 2
    assert metrics.INGEST_BUFFERED_ROWS._value.get() == len(FRAMES)
    assert metrics.INGEST_WRITE_OK._value.get() == 0
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, errors  # once per distinct failure, not once per attempt
    assert str(blocker) in errors[0]["path"] and errors[0]["errno"] == 20

    blocker.unlink()  # the operator fixes the folder
    with capture_logs() as logs:
        assert await svc.flush(force=True) == len(FRAMES)
    assert svc.health().ok and svc.health().buffered_rows == 0
    assert svc.health().rows_dropped == 0
    assert any("recovered" in e["event"] for e in logs)
    assert metrics.INGEST_WRITE_OK._value.get() == 1
    assert stored_trades(store, "BTCUSDT") == recorded_trades(BTC)


async def test_a_failed_flush_is_retried_by_the_running_flusher_with_backoff(
    tmp_path: Path,
) -> None:
    """The periodic flusher survives the failure (before, it died on the first one) and
    writes the held rows by itself once the folder can be created."""
    store = ParquetStore(tmp_path / "store")
    svc = offline_service(store, flush_interval_s=0.05)
    blocker = block_symbol_folder(store)
    flusher = asyncio.create_task(svc._periodic_flush())
    try:
        feed(svc, FRAMES)
        # two attempts: the flusher is alive after a failure
        await asyncio.wait_for(svc.wait_for_flush(lambda h: h.failures >= 2), 30)
        assert not flusher.done()
        blocker.unlink()
        await asyncio.wait_for(svc.wait_for_flush(lambda h: h.buffered_rows == 0), 30)
        assert not flusher.done()
    finally:
        flusher.cancel()
    assert svc.health().ok
    assert stored_trades(store, "BTCUSDT") == recorded_trades(BTC)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3000), cap=st.integers(1, 3000))
def test_beyond_the_buffer_cap_the_oldest_rows_are_dropped_counted_and_described(
    n: int, cap: int
) -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = ParquetStore(tmp)
            svc = offline_service(store, max_buffered_rows=cap)
            blocker = block_symbol_folder(store)
            dropped_before = counter(
                metrics.INGEST_ROWS_DROPPED, dataset="trades", reason="buffer_full"
            )
            feed(svc, FRAMES[:n])
            await svc.flush()
            lost = max(0, n - cap)
            health = svc.health()
            assert health.rows_dropped == lost
            assert health.buffered_rows == n - lost
            assert health.data_lost == (lost > 0)
            after = counter(metrics.INGEST_ROWS_DROPPED, dataset="trades", reason="buffer_full")
            assert after - dropped_before == lost
            if lost:  # the loss says which rows: the oldest, by id
                assert f"trade_id {IDS[0]}..{IDS[lost - 1]}" in health.summary()
                assert "buffer_full" in health.summary()
            blocker.unlink()
            await svc.flush(force=True)
            got = store.read("trades", "BTCUSDT")["trade_id"].to_pylist()
            assert got == IDS[lost:n]  # the newest rows, every one of them

    asyncio.run(scenario())


async def test_rows_still_unwritable_at_stop_are_reported_lost_not_swallowed(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path / "store")
    block_symbol_folder(store)
    sim = ExchangeSimulator(load_recording([BTC]), speed=None, loop_replay=False)
    async with sim:
        svc = IngestService(
            store,
            sim.ws_url,
            sim.rest_url,
            ["BTCUSDT"],
            kinds=("trade",),
            flush_interval_s=0.1,
            stop_flush_timeout_s=0.3,
        )
        task = asyncio.create_task(svc.run())
        await asyncio.wait_for(svc.wait_for_flush(lambda h: h.failures > 0), 30)
        svc.stop()
        await asyncio.wait_for(task, 30)  # returns: the loss is data, not an exception
    health = svc.health()
    assert health.data_lost and not health.ok
    assert health.rows_dropped == svc.stats.rows_dropped["trades"] > 0
    assert health.buffered_rows == 0
    assert "unwritable_at_stop" in health.summary() and "Not a directory" in health.summary()


async def test_a_stop_cut_short_by_cancellation_still_reports_the_rows_it_could_not_write(
    tmp_path: Path,
) -> None:
    """The bot waits a bounded time for the ingest, then cancels it: rows still held at that
    moment die with the process, so they are reported lost (the exit code depends on it)."""
    store = ParquetStore(tmp_path / "store")
    block_symbol_folder(store)
    sim = ExchangeSimulator(load_recording([BTC]), speed=None, loop_replay=False)
    async with sim:
        svc = IngestService(
            store,
            sim.ws_url,
            sim.rest_url,
            ["BTCUSDT"],
            kinds=("trade",),
            flush_interval_s=0.1,
            stop_flush_timeout_s=60,  # would retry a minute: the caller will not wait that long
        )
        task = asyncio.create_task(svc.run())
        seen = (await asyncio.wait_for(svc.wait_for_flush(lambda h: h.failures > 0), 30)).failures
        svc.stop()
        # the final flush has failed once and is retrying
        await asyncio.wait_for(svc.wait_for_flush(lambda h: h.failures > seen), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    health = svc.health()
    assert health.data_lost and health.buffered_rows == 0
    assert health.rows_dropped == svc.stats.rows_dropped["trades"] > 0
    assert "unwritable_at_stop" in health.summary()


async def test_an_error_that_ends_the_connection_loop_is_raised_by_run(tmp_path: Path) -> None:
    """A bug in frame handling used to end the connection task quietly: `run()` returned
    normally and the bot exited 0. Now the error reaches the caller, after the final flush."""
    store = ParquetStore(tmp_path / "store")
    sim = ExchangeSimulator(load_recording([BTC]), speed=None, loop_replay=False)
    async with sim:
        svc = IngestService(store, sim.ws_url, sim.rest_url, ["BTCUSDT"], kinds=("trade",))
        handled = 0
        real = svc.on_frame

        def on_frame(raw: str | bytes, recv_ns: int) -> None:
            nonlocal handled
            handled += 1
            if handled == 3000:
                raise RuntimeError("a bug in a handler")
            real(raw, recv_ns)

        svc.on_frame = on_frame  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="a bug in a handler"):
            await asyncio.wait_for(svc.run(), 60)
    assert not svc.health().ok
    assert len(store.read("trades", "BTCUSDT")) > 0  # what came before was flushed


# --- a full disk, for real: RLIMIT_FSIZE in a child process --------------------------------

EMBEDDED_CHILD = """
import asyncio, dataclasses, json, resource, signal, sys
from tessera.logging import configure_logging
from tessera.data.ingest import IngestService
from tessera.data.store import ParquetStore

store_dir, ws, rest, last_id = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
configure_logging("INFO", json=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

async def main() -> int:
    # the bot's embedded ingest: trades and klines
    svc = IngestService(ParquetStore(store_dir), ws, rest, ["BTCUSDT"], kinds=("trade", "kline"),
                        intervals=("1m",), flush_interval_s=0.2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk is full
    task = asyncio.create_task(svc.run())
    await svc.wait_for_flush(lambda h: h.failures >= 3)
    print(json.dumps({"full": dataclasses.asdict(svc.health())}), flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
    await svc.wait_for_flush(
        lambda h: svc._last_trade.get("BTCUSDT", 0) >= last_id and h.buffered_rows == 0
    )
    svc.stop()
    await task
    health = svc.health()
    print(json.dumps({"end": dataclasses.asdict(health)}), flush=True)
    return 1 if health.data_lost or not health.ok else 0

sys.exit(asyncio.run(main()))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


async def test_a_full_disk_during_an_embedded_ingest_is_logged_counted_surfaced_and_loses_nothing(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "store"
    sim = ExchangeSimulator(load_recording([BTC]), speed=None, loop_replay=False)
    async with sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            EMBEDDED_CHILD,
            str(store_dir),
            sim.ws_url,
            sim.rest_url,
            str(max(IDS)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    reports = [json.loads(ln) for ln in out.decode().splitlines()]
    assert proc.returncode == 0, (reports, err.decode()[-3000:])
    full, end = reports[0]["full"], reports[1]["end"]

    # surfaced while the disk was full: not ok, rows held, the error names path and OS error
    assert not full["ok"] and full["buffered_rows"] > 0 and full["rows_dropped"] == 0
    assert "File too large" in full["last_error"] and str(store_dir) in full["last_error"]
    # ... and after: ok, nothing held, nothing lost, the failures on record
    assert end["ok"] and end["buffered_rows"] == 0 and end["rows_dropped"] == 0
    assert end["failures"] >= 3

    logs = [json.loads(ln) for ln in err.decode().splitlines() if ln.startswith("{")]
    failed = [e for e in logs if e["event"].startswith("ingest flush failed")]
    assert 1 <= len(failed) < end["failures"]  # once per distinct failure, each with its path
    assert all(e["errno"] == 27 and str(store_dir) in e["path"] for e in failed)
    assert sum(e["event"].startswith("ingest flush recovered") for e in logs) == 1

    store = ParquetStore(store_dir)
    assert stored_trades(store, "BTCUSDT") == recorded_trades(BTC)  # not one trade lost
    klines = [c for c in store.coverage() if c.dataset == "klines"]
    assert klines and all(c.missing == 0 for c in klines)
    assert not list(store_dir.rglob("*.tmp"))  # failed writes left no partial files


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))


async def test_tessera_ingest_exits_non_zero_and_says_what_was_lost_when_the_disk_stays_full(
    tmp_path: Path,
) -> None:
    sim = ExchangeSimulator(load_recording([BTC]), speed=None, loop_replay=False)
    env = child_env()
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), TESSERA_METRICS_PORT="0")
    async with sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tessera.cli",
            "ingest",
            "--symbol",
            "BTCUSDT",
            "--stream",
            "trade",
            "--ws-url",
            sim.ws_url,
            "--rest-url",
            sim.rest_url,
            "--duration",
            "3",
            "--no-progress",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
            preexec_fn=_full_disk,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 1, text + err.decode()[-3000:]
    assert "Traceback" not in text + err.decode()
    last = text.strip().splitlines()[-1]
    assert "ingest lost data" in last and "rows LOST" in last
    assert "trades BTCUSDT" in last and "unwritable_at_stop" in last
    assert "File too large" in last
