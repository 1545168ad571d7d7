"""Fault injection: each fault happens exactly where the plan says, and nothing else breaks."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from decimal import Decimal

import pytest
import websockets
from sim_helpers import (
    BTC_0808,
    get,
    rebuild_book,
    recorded_lines,
    recorded_snapshot,
    replay_all,
    ws_connect,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tessera.sim import ExchangeSimulator, FaultPlan, SimMarket


def recorded(stream: str) -> list[str]:
    return [d for s, d in recorded_lines(BTC_0808) if s == stream]


async def receive_until_closed(
    ws: websockets.ClientConnection, limit: float = 10
) -> tuple[list[str], ConnectionClosed]:
    """Every message until the server ends the connection, and how it ended."""
    got: list[str] = []
    while True:
        try:
            got.append(str(await asyncio.wait_for(ws.recv(), limit)))
        except ConnectionClosed as exc:
            return got, exc


async def test_drop_after_n_messages_closes_the_connection(btc_market: SimMarket) -> None:
    sim = ExchangeSimulator(btc_market, speed=None, faults=FaultPlan(drop_after=777))
    async with sim, ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        got, _ = await receive_until_closed(ws)
        assert ws.close_code == 1000  # a clean close frame from the server
    assert got == recorded("btcusdt@trade")[:777]
    assert sim.stats.faults["drop"] == 1


async def test_drop_abort_resets_the_socket(btc_market: SimMarket) -> None:
    plan = FaultPlan(drop_after=50, drop_mode="abort")
    sim = ExchangeSimulator(btc_market, speed=None, faults=plan)
    async with sim, ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        got, how = await receive_until_closed(ws)
        assert isinstance(how, ConnectionClosedError)
        assert ws.close_code is None or ws.close_code == 1006  # no close frame
    assert len(got) == 50


async def test_stall_keeps_the_socket_open_and_silent(btc_market: SimMarket) -> None:
    plan = FaultPlan(stall_after=100, stall_s=0.8)
    sim = ExchangeSimulator(btc_market, speed=None, faults=plan)
    async with sim, ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        got = [str(await ws.recv()) for _ in range(100)]
        t0 = time.monotonic()
        pong = await ws.ping()
        await asyncio.wait_for(pong, 0.5)  # still alive: pings are answered
        nxt = str(await asyncio.wait_for(ws.recv(), 5))
        waited = time.monotonic() - t0
    assert waited >= 0.6
    assert [*got, nxt] == recorded("btcusdt@trade")[:101]  # nothing lost around the stall
    assert sim.stats.faults["stall"] == 1


@pytest.mark.parametrize("combined", [False, True])
async def test_malformed_frames_then_the_stream_goes_on(
    btc_market: SimMarket, combined: bool
) -> None:
    plan = FaultPlan(malformed_at=300, malformed="both")
    path = "/stream?streams=btcusdt@trade" if combined else "/ws/btcusdt@trade"
    sim = ExchangeSimulator(btc_market, speed=None, faults=plan)
    async with sim, ws_connect(sim.ws_url + path) as ws:
        got = [str(await ws.recv()) for _ in range(304)]
    assert sim.stats.faults["malformed"] == 2
    bad_json, bad_fields = got[300], got[301]
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad_json)
    doc = json.loads(bad_fields)
    data = doc["data"] if combined else doc
    assert (set(doc) == {"stream", "data"}) is combined
    assert data["E"] == "not-a-number" and "p" not in data and data["e"] == "trade"
    ref = recorded("btcusdt@trade")
    clean = got[:300] + got[302:]
    if combined:
        clean = [json.dumps(json.loads(m)["data"], separators=(",", ":")) for m in clean]
    assert clean == ref[:302]


async def test_depth_gap_is_exactly_where_planned(btc_market: SimMarket) -> None:
    plan = FaultPlan(skip_depth_at=100, skip_depth_count=2)
    sim = ExchangeSimulator(btc_market, speed=None, faults=plan)
    async with sim:
        async with ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
            diffs = [json.loads(str(await ws.recv())) for _ in range(200)]
        await replay_all(sim)
        _, _, book = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    ref = [json.loads(d) for d in recorded("btcusdt@depth@100ms")]
    assert diffs == ref[:99] + ref[101:202]
    breaks = [i for i, (a, b) in enumerate(itertools.pairwise(diffs)) if b["U"] != a["u"] + 1]
    assert breaks == [98]
    # The exchange's own book did apply the diffs nobody heard about.
    last, bids, asks = rebuild_book(recorded_snapshot(BTC_0808), ref)
    assert book["lastUpdateId"] == last
    assert {Decimal(p): Decimal(q) for p, q in book["bids"]} == bids
    assert {Decimal(p): Decimal(q) for p, q in book["asks"]} == asks


async def test_trade_gap_makes_ids_jump_but_rest_has_them(btc_market: SimMarket) -> None:
    plan = FaultPlan(skip_trades_at=50, skip_trades_count=3)
    sim = ExchangeSimulator(btc_market, speed=None, faults=plan)
    async with sim:
        async with ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
            trades = [json.loads(str(await ws.recv())) for _ in range(100)]
        await replay_all(sim)
        ids = [t["t"] for t in trades]
        _, _, rest = await get(sim, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={ids[48]}")
    jumps = [(a, b) for a, b in itertools.pairwise(ids) if b != a + 1]
    assert jumps == [(ids[48], ids[48] + 4)]
    assert [t["id"] for t in rest[:5]] == list(range(ids[48], ids[48] + 5))


async def test_faults_per_connection_and_at_runtime(btc_market: SimMarket) -> None:
    sub = json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
    sim = ExchangeSimulator(btc_market, speed=None)
    async with (
        sim,
        ws_connect(f"{sim.ws_url}/ws") as a,
        ws_connect(f"{sim.ws_url}/ws") as b,
    ):
        conn_a, conn_b = await asyncio.wait_for(sim.wait_connections(2), 5)
        conn_a.faults = FaultPlan(drop_after=20)  # only this connection
        await a.send(sub)
        await b.send(sub)
        assert json.loads(await a.recv()) == {"result": None, "id": 1}
        got_a, _ = await receive_until_closed(a)
        assert json.loads(await b.recv()) == {"result": None, "id": 1}
        got_b = [str(await b.recv()) for _ in range(500)]
        assert conn_b.faults is None and conn_b.sent >= 500
        cut = conn_b.sent + 100
        sim.faults.drop_after = cut  # now the shared plan: b goes after `cut` messages
        rest_b, _ = await receive_until_closed(b)
        got_b += rest_b
    ref = recorded("btcusdt@trade")
    assert got_a == ref[:20]
    assert got_b == ref[:cut]
    assert sim.stats.faults["drop"] == 2


async def test_rest_answers_429_then_5xx_then_recovers(btc_market: SimMarket) -> None:
    plan = FaultPlan(rest_429=2, retry_after_s=3, rest_5xx=1)
    async with ExchangeSimulator(btc_market, speed=None, faults=plan) as sim:
        answers = [await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5") for _ in range(4)]
        assert [a[0] for a in answers] == [429, 429, 503, 200]
        for _, headers, body in answers[:2]:
            assert headers["Retry-After"] == "3" and body["code"] == -1003
            assert headers["Content-Type"] == "application/json;charset=UTF-8"
        assert answers[2][2]["code"] == -1001
        assert set(answers[3][2]) == {"lastUpdateId", "bids", "asks"}
        assert sim.stats.faults["rest_429"] == 2 and sim.stats.faults["rest_5xx"] == 1
        assert sim.stats.rest_requests["/api/v3/depth"] == 4
        plan.rest_5xx, plan.rest_5xx_status = 1, 502  # settable at any time
        assert (await get(sim, "/api/v3/ping"))[0] == 502


async def test_drop_connections_now(btc_market: SimMarket) -> None:
    sim = ExchangeSimulator(btc_market, speed=1.0)
    async with sim, ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        await asyncio.wait_for(sim.wait_connections(1), 5)
        assert await sim.drop_connections() == 1
        _, how = await receive_until_closed(ws)
        assert how.rcvd is not None and how.rcvd.code == 1000
