"""`tessera ingest` on Binance USDⓈ-M perpetuals (exchange.name binance-usdm), end to end.

The ingest runs as its own process through the CLI, as in production, against the USDⓈ-M
simulator in this process over real sockets; the simulator replays the bundled real BTCUSDT
perpetual recording (samples/binance-raw-ws/usdm: trades, ``@depth@0ms`` diffs with ``pu``,
book tops) and serves ``/fapi/v1`` and the mark stream from the recorded book mid. Reference
values are read from the recording file on its own, not through Tessera's parsers.

What is checked: the ingest asks the venue for its paths (``/fapi/v1/depth``, never spot's
``/api/v3/depth``), joins the snapshot to the diffs by USDⓈ-M's rule (``U <= lastUpdateId <=
u``: the simulator's snapshot ends exactly at a diff's ``u``, which spot's rule refuses
forever), follows the diffs by ``pu``, resyncs from ``/fapi/v1/depth`` when a diff is lost,
and writes trades, klines, depth and mark prices to the store's ``binance-usdm`` venue, where
`tessera data import`/`download` put USDⓈ-M rows. A stream the venue does not have is exit 2.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from tessera.data.ingest.book import BookState, Diff, OrderBook
from tessera.data.store import ParquetStore
from tessera.sim import ExchangeSimulator, FaultPlan
from tessera.sim.usdm import usdm_market, usdm_venue

REPO = Path(__file__).resolve().parents[2]
USDM_BTC = REPO / "samples" / "binance-raw-ws" / "usdm" / "btcusdt_20240808.gz"
SPEED = 30.0  # the 120 s recording in 4 s


def recorded(stream: str) -> Iterator[dict[str, Any]]:
    """The payloads of ``stream`` in the recording ("": the recorded REST depth snapshot)."""
    with gzip.open(USDM_BTC, "rt") as fh:
        for line in fh:
            doc = json.loads(line.split(" ", 1)[1])
            if doc.get("stream") == stream:
                yield doc["data"]
            elif stream == "" and "lastUpdateId" in doc:
                yield doc


def stored_trades(store: ParquetStore) -> dict[int, tuple[Decimal, Decimal, int, bool]]:
    t = store.read("trades", "BTCUSDT").to_pylist()
    assert len(t) == len({r["trade_id"] for r in t}), "a trade stored twice"
    return {
        r["trade_id"]: (
            r["price"], r["qty"], int(r["trade_time"].timestamp() * 1000), r["is_buyer_maker"]
        )
        for r in t
    }  # fmt: skip


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {
        "PYTHONDONTWRITEBYTECODE": "1",
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_METRICS_PORT": "0",
        "TESSERA_DATA__FLUSH_INTERVAL_S": "0.5",
        "COLUMNS": "200",  # the summary line unwrapped
        **extra,
    }
    return env


async def ingest_usdm(tmp_path: Path, sim: ExchangeSimulator, *streams: str) -> str:
    """`tessera ingest` with exchange.name binance-usdm against ``sim`` until the replay is
    over and the tail is flushed; SIGTERM then (a clean stop); returns its output."""
    args = [sys.executable, "-m", "tessera.cli", "ingest", "--symbol", "BTCUSDT", "--no-progress"]
    for s in streams:
        args += ["--stream", s]
    args += ["--ws-url", sim.ws_url, "--rest-url", sim.rest_url]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(tmp_path, TESSERA_EXCHANGE__NAME="binance-usdm"),
        cwd=tmp_path,
    )
    try:
        await asyncio.wait_for(sim.wait_replayed(), 60)
        await asyncio.sleep(1.5)  # the last frames, a resync's snapshot, the periodic flush
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    assert "Traceback" not in text
    return text


def summary(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("ingest stopped:"))


def stored_book(store: ParquetStore) -> OrderBook:
    """The book rebuilt from what the ingest stored: its snapshot(s), then its diffs in order,
    joined and followed by USDⓈ-M's rules."""
    snap = store.read("book_snapshots", "BTCUSDT").to_pylist()
    last_ids = sorted({r["last_update_id"] for r in snap})
    assert last_ids, "no snapshot stored"
    first = [r for r in snap if r["last_update_id"] == last_ids[0]]
    levels = {
        side: [[str(r["price"]), str(r["qty"])] for r in sorted(first, key=lambda r: r["level"])
               if r["side"] == side]
        for side in ("bid", "ask")
    }  # fmt: skip
    diffs: dict[tuple[int, int, int], Diff] = {}
    for r in store.read("book_updates", "BTCUSDT").to_pylist():
        key = (r["first_update_id"], r["last_update_id"], r["prev_update_id"])
        d = diffs.setdefault(key, Diff(key[0], key[1], [], [], key[2]))
        (d.bids if r["side"] == "bid" else d.asks).append([str(r["price"]), str(r["qty"])])
    after = [d for d in sorted(diffs.values(), key=lambda d: d.last) if d.last >= last_ids[0]]
    book = OrderBook("BTCUSDT")
    book.on_diff(after[0])  # buffered: the book waits for its snapshot
    assert book.on_snapshot(last_ids[0], levels["bid"], levels["ask"])
    for d in after[1:]:
        book.on_diff(d)
    return book


def recorded_final_top(
    n: int,
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """The best ``n`` levels after every recorded diff, from the recorded REST snapshot (plain
    dicts: no Tessera code)."""
    (snap,) = recorded("")
    sides = [
        {Decimal(p): Decimal(q) for p, q in snap[k]} for k in ("bids", "asks")
    ]  # fmt: skip
    for d in recorded("btcusdt@depth@0ms"):
        if d["u"] < snap["lastUpdateId"]:
            continue
        for side, levels in zip(sides, (d["b"], d["a"]), strict=True):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
    bids = sorted(sides[0].items(), reverse=True)[:n]
    return bids, sorted(sides[1].items())[:n]


async def test_ingest_on_usdm_stores_trades_depth_klines_and_marks_from_the_fapi_simulator(
    tmp_path: Path,
) -> None:
    venue = usdm_venue(usdm_market([USDM_BTC]), speed=SPEED)
    async with venue.sim as sim:
        text = await ingest_usdm(tmp_path, sim, "trade", "depth", "kline", "markPrice")
    line = summary(text)
    assert "0 reconnects, 0 gaps (0 filled), 0 malformed skipped" in line, line
    assert text.strip().splitlines()[-1] == "ingest complete: no rows lost"
    # the venue's REST paths: one snapshot joined the diffs at once (spot's rule would have
    # refused it and asked again, ten times); spot's paths never
    assert sim.stats.rest_requests["/fapi/v1/depth"] == 1
    assert not [p for p in sim.stats.rest_requests if p.startswith("/api/")]

    root = tmp_path / "data" / "store"
    assert sorted(p.name for p in root.glob("exchange=*")) == ["exchange=binance-usdm"]
    store = ParquetStore(root).venue("binance-usdm")
    assert stored_trades(store) == {  # every recorded trade, once
        t["t"]: (Decimal(t["p"]), Decimal(t["q"]), t["T"], t["m"])
        for t in recorded("btcusdt@trade")
    }

    # depth: the stored snapshot and diffs, followed by pu, end at the recording's final book
    book = stored_book(store)
    assert book.state is BookState.LIVE and book.resyncs == 0
    assert book.top(5) == recorded_final_top(5)

    # klines: the two minutes that closed during the recording, as its trades make them
    klines = store.read("klines", "BTCUSDT").to_pylist()
    assert [k["open_time"].strftime("%H:%M") for k in klines] == ["23:54", "23:55"]
    k = klines[1]
    minute = [
        t for t in recorded("btcusdt@trade")
        if datetime(2024, 8, 8, 23, 55, tzinfo=UTC).timestamp() * 1000 <= t["T"]
        < datetime(2024, 8, 8, 23, 56, tzinfo=UTC).timestamp() * 1000
    ]  # fmt: skip
    prices = [Decimal(t["p"]) for t in minute]
    assert (k["open"], k["high"], k["low"], k["close"]) == (
        prices[0], max(prices), min(prices), prices[-1]
    )  # fmt: skip
    assert (k["volume"], k["trades"]) == (sum(Decimal(t["q"]) for t in minute), len(minute))

    # mark prices: one a second, the recorded book mid (no mark is recorded), funding 0 until
    # the next funding at 2024-08-09 00:00 UTC
    marks = store.read("mark_prices", "BTCUSDT").to_pylist()
    seconds = {int(m["event_time"].timestamp()) for m in marks}
    assert len(marks) == len(seconds) >= 120
    mids = {(Decimal(q["b"]) + Decimal(q["a"])) / 2 for q in recorded("btcusdt@bookTicker")}
    assert all(m["mark_price"] in mids and m["index_price"] == m["mark_price"] for m in marks)
    assert {m["funding_rate"] for m in marks} == {Decimal(0)}
    assert {m["next_funding_time"] for m in marks} == {datetime(2024, 8, 9, tzinfo=UTC)}


async def test_a_pu_break_on_usdm_resyncs_the_book_from_fapi_depth(tmp_path: Path) -> None:
    # the simulator never sends 20 of the recorded diffs from the 300th on: the next diff's
    # pu names a u the ingest never saw
    plan = FaultPlan(skip_depth_at=300, skip_depth_count=20)
    venue = usdm_venue(usdm_market([USDM_BTC]), speed=SPEED, faults=plan)
    async with venue.sim as sim:
        text = await ingest_usdm(tmp_path, sim, "depth")
    assert "1 gaps (0 filled)" in summary(text), summary(text)
    assert "depth gap: resyncing the order book" in text
    assert sim.stats.rest_requests["/fapi/v1/depth"] == 2  # the first sync, the resync
    assert not [p for p in sim.stats.rest_requests if p.startswith("/api/")]
    store = ParquetStore(tmp_path / "data" / "store").venue("binance-usdm")
    snaps = sorted(set(pc.unique(store.read("book_snapshots", "BTCUSDT")["last_update_id"])
                       .to_pylist()))  # fmt: skip
    assert len(snaps) == 2
    lost = [d for i, d in enumerate(recorded("btcusdt@depth@0ms")) if 299 <= i < 319]
    assert snaps[0] < lost[0]["u"] and snaps[1] >= lost[-1]["u"]  # resynced past the hole


async def test_a_trade_id_gap_on_usdm_is_filled_from_fapi_historical_trades(
    tmp_path: Path,
) -> None:
    # the simulator never sends 3 of the recorded trades from the 1,000th on (REST still has
    # them, as Binance would): the ingest sees the ids jump and fills the hole over REST
    plan = FaultPlan(skip_trades_at=1000, skip_trades_count=3)
    venue = usdm_venue(usdm_market([USDM_BTC]), speed=SPEED, faults=plan)
    async with venue.sim as sim:
        text = await ingest_usdm(tmp_path, sim, "trade")
    assert "1 gaps (1 filled)" in summary(text), summary(text)
    assert sim.stats.rest_requests["/fapi/v1/historicalTrades"] >= 1
    assert not [p for p in sim.stats.rest_requests if p.startswith("/api/")]
    store = ParquetStore(tmp_path / "data" / "store").venue("binance-usdm")
    assert stored_trades(store) == {  # every recorded trade, once: the hole filled
        t["t"]: (Decimal(t["p"]), Decimal(t["q"]), t["T"], t["m"])
        for t in recorded("btcusdt@trade")
    }


def test_the_usdm_book_joins_a_snapshot_that_ends_exactly_at_a_diffs_u() -> None:
    """Binance's USDⓈ-M rule: the first diff applied has ``U <= lastUpdateId <= u``. Its diff
    ids are not consecutive, so the diff after the one ending at the snapshot starts past
    lastUpdateId + 1 (spot's rule), and a book held to spot's rule would never sync."""
    diffs = []
    for d in recorded("btcusdt@depth@0ms"):
        diffs.append(Diff(d["U"], d["u"], d["b"], d["a"], d["pu"]))
        if len(diffs) == 20:
            break
    assert diffs[10].first > diffs[9].last + 1  # as almost everywhere in the recording
    book = OrderBook("BTCUSDT")
    for d in diffs:
        book.on_diff(d)
    assert book.on_snapshot(diffs[9].last, [["61000.00", "1.000"]], [["62000.00", "1.000"]])
    assert book.state is BookState.LIVE and book.last_update_id == diffs[-1].last
    # a snapshot that came before any diff: the next diff joins it by the same rule
    book = OrderBook("BTCUSDT")
    assert book.on_snapshot(diffs[9].last, [], []) and book.joining
    assert [book.on_diff(d) for d in diffs[8:12]] == ["stale", "applied", "applied", "applied"]
    assert book.resyncs == 0 and book.last_update_id == diffs[11].last
    # and the recorded REST snapshot, whose lastUpdateId lies inside a diff
    (snap,) = recorded("")
    book = OrderBook("BTCUSDT")
    for d in diffs:
        book.on_diff(d)
    assert book.on_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    assert book.state is BookState.LIVE and book.resyncs == 0


def test_ingest_of_a_stream_the_venue_does_not_have_is_exit_2_naming_the_option(
    tmp_path: Path,
) -> None:
    env = child_env(tmp_path)
    for name, kind in (("binance", "markPrice"), ("binance-usdm", "depthh")):
        res = subprocess.run(
            [sys.executable, "-m", "tessera.cli", "ingest", "--stream", kind, "--duration", "1",
             "--ws-url", "ws://127.0.0.1:9", "--no-progress"],
            env=env | {"TESSERA_EXCHANGE__NAME": name},
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        text = res.stdout + res.stderr
        assert res.returncode == 2, text
        assert "Traceback" not in text
        assert f"--stream: stream kind {kind!r}" in text and "trade, aggTrade, kline" in text
        assert ("binance-usdm" in text) and not (tmp_path / "data" / "store").exists()
    assert "markPrice, forceOrder" in text  # USDⓈ-M's own kinds are listed on USDⓈ-M
    # the same kind from the settings: the message names the setting
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "ingest", "--duration", "1",
         "--ws-url", "ws://127.0.0.1:9", "--no-progress"],
        env=env | {"TESSERA_DATA__STREAMS": '["trade", "markPrice"]'},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in text, text
    assert "data.streams: stream kind 'markPrice'" in text, text


def test_usdm_ingest_defaults_to_the_fapi_and_fstream_hosts_not_spots() -> None:
    from tessera.config import load_settings
    from tessera.data.cli import ingest_venue

    usdm = load_settings(env_file=None, exchange={"name": "binance-usdm"})
    assert ingest_venue(usdm) == (
        "binance-usdm", "wss://fstream.binance.com", "https://fapi.binance.com"
    )  # fmt: skip
    spot = load_settings(env_file=None)
    assert ingest_venue(spot) == (
        "binance-spot", "wss://stream.binance.com:9443", "https://api.binance.com"
    )  # fmt: skip
    given = load_settings(
        env_file=None, exchange={"name": "binance-usdm", "ws_url": "ws://x", "rest_url": "http://x"}
    )
    assert ingest_venue(given) == ("binance-usdm", "ws://x", "http://x")
