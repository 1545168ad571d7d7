"""Replay: pacing by the exchange clock, max speed, looping, stepping, stats, tables, threads."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pyarrow as pa
import pytest
from sim_helpers import BTC_0808, get, recorded_lines, recorded_snapshot, ws_connect

from tessera.data.schemas import TRADES
from tessera.sim import ExchangeSimulator, SimMarket, SimulatorThread


async def test_paced_replay_follows_the_recorded_event_times(btc_market: SimMarket) -> None:
    speed = 60.0
    arrivals: list[tuple[float, int]] = []
    async with (
        ExchangeSimulator(btc_market, speed=speed) as sim,
        ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws,
    ):
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            arrivals.append((time.monotonic(), msg["E"]))
    (t0, e0) = arrivals[0]
    assert len(arrivals) > 50
    lags = [(t - t0) - (e - e0) / 1000 / speed for t, e in arrivals]
    assert min(lags) > -0.02  # never early
    assert max(lags) < 0.25  # and not late (loose: a shared CI machine)
    span = (arrivals[-1][1] - e0) / 1000
    assert 60 < span < 110  # ~1.5 s of wall time covered ~90 s of the recording


async def test_max_speed_sends_everything_and_counts_it(btc_market: SimMarket) -> None:
    streams = ["btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@bookTicker", "btcusdt@aggTrade"]
    async with ExchangeSimulator(btc_market, speed=None) as sim:
        t0 = time.perf_counter()
        async with ws_connect(f"{sim.ws_url}/stream?streams={'/'.join(streams)}") as ws:
            got: dict[str, list[int]] = {s: [] for s in streams}
            total = len(btc_market.frames) + len(btc_market.aggregates("BTCUSDT")[1])
            for _ in range(total):
                raw = await asyncio.wait_for(ws.recv(), 10)
                got[json.loads(raw)["stream"]].append(len(raw.encode()))
        elapsed = time.perf_counter() - t0
        await asyncio.wait_for(sim.wait_replayed(), 10)
    assert elapsed < 20
    for s in streams:
        header = sum(2 if n < 126 else 4 for n in got[s])  # websocket frame headers
        assert sim.stats.messages[s] == len(got[s])
        assert sim.stats.bytes[s] == sum(got[s]) + header
    assert sim.stats.total_messages == total and sim.stats.replays == 1


async def test_loop_replay_starts_over_with_ids_moved_forward(btc_market: SimMarket) -> None:
    first_ids = [json.loads(d)["t"] for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]
    step = max(first_ids) - min(first_ids) + 1  # each pass moves trade ids on by their range
    async with ExchangeSimulator(btc_market, speed=None, loop_replay=True) as sim:
        async with ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
            ids = [json.loads(await ws.recv())["t"] for _ in range(len(first_ids) + 100)]
        assert sim.stats.replays >= 1
    assert ids == first_ids + [i + step for i in first_ids[:100]]


async def test_rest_answers_from_the_release_position(btc_market: SimMarket) -> None:
    lines = recorded_lines(BTC_0808)
    trade_frames = [i for i, (s, _) in enumerate(lines) if s == "btcusdt@trade"]
    n = trade_frames[1000] + 1  # release up to and including the 1001st trade
    released = lines[:n]
    trades = [json.loads(d) for s, d in released if s == "btcusdt@trade"]
    diffs = [json.loads(d) for s, d in released if s == "btcusdt@depth@100ms"]
    async with ExchangeSimulator(btc_market, speed=None, autostart=False) as sim:
        _, _, empty = await get(sim, "/api/v3/trades?symbol=BTCUSDT")
        assert empty == []
        sim.release(n)
        _, _, got = await get(sim, "/api/v3/trades?symbol=BTCUSDT&limit=1000")
        _, _, book = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        _, _, bars = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000")
        with pytest.raises(ValueError, match="step back"):
            sim.release(n - 1)
    assert [t["id"] for t in got] == [t["t"] for t in trades[-1000:]]
    snap_id = recorded_snapshot(BTC_0808)["lastUpdateId"]
    assert book["lastUpdateId"] == max(snap_id, diffs[-1]["u"])
    last = trades[-1]
    assert bars[-1][0] == last["T"] - last["T"] % 60_000 and bars[-1][4] == last["p"]
    in_last_bar = [t for t in trades if t["T"] >= bars[-1][0]]
    assert bars[-1][8] == len(in_last_bar)
    assert Decimal(bars[-1][5]) == sum(Decimal(t["q"]) for t in in_last_bar)


async def test_a_trades_table_replays_as_the_recorded_frames() -> None:
    """Arrow table in (the store's TRADES columns), Binance's own bytes out."""
    recorded = [d for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]
    rows = [json.loads(d) for d in recorded]
    table = pa.Table.from_pylist(
        [
            {
                "trade_id": r["t"],
                "price": Decimal(r["p"]),
                "qty": Decimal(r["q"]),
                "is_buyer_maker": r["m"],
                "trade_time": r["T"] * 1_000_000,
                "event_time": r["E"] * 1_000_000,
                "recv_time": None,
            }
            for r in rows
        ],
        schema=TRADES,
    )
    market = SimMarket.from_tables(trades={"BTCUSDT": table})
    assert market.clock_ms == [r["E"] for r in rows]
    assert market.exchange_info["symbols"][0]["symbol"] == "BTCUSDT"
    async with (
        ExchangeSimulator(market, speed=None) as sim,
        ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws,
    ):
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in recorded]
    assert got == recorded


def test_simulator_thread_serves_sync_callers(btc_market: SimMarket) -> None:
    runner = SimulatorThread(ExchangeSimulator(btc_market, speed=None))
    with runner as sim:
        url = sim.rest_url
        with urllib.request.urlopen(f"{url}/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
            body = json.loads(r.read())
            assert r.headers["X-MBX-USED-WEIGHT-1M"] == "5"
        assert body["lastUpdateId"] == recorded_snapshot(BTC_0808)["lastUpdateId"]
        assert runner.call(sim.drop_connections()) == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/api/v3/ping", timeout=2)


async def test_replay_clock_is_exchange_time_and_never_goes_back(btc_market: SimMarket) -> None:
    clock = btc_market.clock_ms
    assert all(b >= a for a, b in itertools.pairwise(clock))
    lines = recorded_lines(BTC_0808)
    for i, (s, d) in enumerate(lines[:2000]):
        if s != "btcusdt@bookTicker":
            assert clock[i] >= json.loads(d)["E"]  # E where the frame has one
    await asyncio.sleep(0)
