"""Websocket fidelity: recorded frames byte for byte, derived streams shaped like real ones and
consistent with REST, Binance's control requests, ping/pong."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sim_helpers import (
    BTC_0808,
    ETH_0808,
    SAMPLES,
    get,
    rebuild_book,
    recorded_lines,
    recorded_snapshot,
    shape,
    ws_connect,
)

from tessera.sim import ExchangeSimulator, SimMarket


def real_spot_frames() -> dict[str, dict[str, Any]]:
    """Real spot ``aggTrade`` / ``kline_1m`` payloads (cryptofeed's recording, 2021)."""
    out: dict[str, dict[str, Any]] = {}
    for line in (SAMPLES / "cryptofeed" / "BINANCE.ws.1.0").read_text().splitlines():
        if ": {" not in line:
            continue
        doc = json.loads(line.split(": ", 1)[1])
        out.setdefault(doc["stream"].split("@", 1)[1], doc["data"])
    return out


async def drain(ws: Any, idle_s: float = 1.0) -> list[str]:
    """Everything the server sends until it goes quiet for ``idle_s``."""
    got: list[str] = []
    try:
        while True:
            got.append(str(await asyncio.wait_for(ws.recv(), idle_s)))
    except TimeoutError:
        return got


async def test_raw_stream_frames_are_the_recorded_frames(sim: ExchangeSimulator) -> None:
    recorded = [d for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]
    async with ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        got = await drain(ws)
    assert got == recorded  # byte for byte, every one


async def test_combined_stream_frames_are_the_recorded_envelopes(sim: ExchangeSimulator) -> None:
    wanted = ("btcusdt@depth@100ms", "btcusdt@bookTicker")
    recorded = [
        f'{{"stream":"{s}","data":{d}}}' for s, d in recorded_lines(BTC_0808) if s in wanted
    ]
    async with ws_connect(f"{sim.ws_url}/stream?streams={'/'.join(wanted)}") as ws:
        got = await drain(ws)
    assert got == recorded  # same bytes as Binance sent, in the recorded order


async def test_two_symbols_interleave_in_recorded_order() -> None:
    market = SimMarket.from_recording([BTC_0808, ETH_0808])
    async with ExchangeSimulator(market, speed=None) as sim:
        url = f"{sim.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade"
        async with ws_connect(url) as ws:
            got = [json.loads(m) for m in await drain(ws)]
    recv = {}
    for f in market.frames:
        if f.kind == "trade":
            recv[json.loads(f.data)["t"], f.symbol] = f.recv_ns
    keys = [(m["data"]["t"], m["data"]["s"]) for m in got]
    assert len(keys) == len(recv) and {m["data"]["s"] for m in got} == {"BTCUSDT", "ETHUSDT"}
    assert [recv[k] for k in keys] == sorted(recv[k] for k in keys)


async def test_control_requests_behave_like_binance(btc_market: SimMarket) -> None:
    # Paced, so that data keeps flowing between the requests.
    sim = ExchangeSimulator(btc_market, speed=30.0)
    async with sim, ws_connect(f"{sim.ws_url}/ws") as ws:

        async def ask(req: Any) -> Any:
            await ws.send(req if isinstance(req, str) else json.dumps(req))
            while True:  # skip data frames until the answer
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if "result" in msg or "error" in msg:
                    return msg

        sub = {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@kline_1m"]}
        assert await ask({**sub, "id": 1}) == {"result": None, "id": 1}
        assert await ask({"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["btcusdt@aggTrade", "btcusdt@kline_1m"],
            "id": 2,
        }
        assert await ask({"method": "GET_PROPERTY", "params": ["combined"], "id": 3}) == {
            "result": False,
            "id": 3,
        }
        assert await ask({"method": "SET_PROPERTY", "params": ["combined", True], "id": 4}) == {
            "result": None,
            "id": 4,
        }
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert set(msg) == {"stream", "data"}  # combined framing from now on
        assert await ask(
            {"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@kline_1m"], "id": 5}
        ) == {"result": None, "id": 5}
        assert (await ask({"method": "LIST_SUBSCRIPTIONS", "id": 6}))["result"] == []
        errors = [
            await ask("{not json"),
            await ask({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7, "x": 1}),
            await ask({"method": "SUBSCRIBE", "params": ["no-at-sign"], "id": 8}),
            await ask({"method": "SUBSCRIBE", "params": [], "id": -1}),
            await ask({"method": "SET_PROPERTY", "params": ["colour", True], "id": 9}),
            await ask({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10}),
        ]
        assert [e["error"]["code"] for e in errors] == [3, 2, 2, 2, 0, 1]
        assert (await ask({"method": "LIST_SUBSCRIPTIONS", "id": 11}))["result"] == []


async def test_ccxt_pro_path_is_a_raw_endpoint_taking_subscriptions(
    sim: ExchangeSimulator,
) -> None:
    recorded = [d for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]
    async with ws_connect(f"{sim.ws_url}/stream/ws/0") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 1}
        got = await drain(ws)
    assert got == recorded


async def test_depth_diffs_follow_the_rest_snapshot(sim: ExchangeSimulator) -> None:
    """Binance's book procedure on our two endpoints gives exactly the exchange's book."""
    async with ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        first = json.loads(await ws.recv())
        _, _, snap = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        diffs = [first] + [json.loads(m) for m in await drain(ws)]
    for a, b in itertools.pairwise(diffs):
        assert b["U"] == a["u"] + 1
    live = [d for d in diffs if d["u"] > snap["lastUpdateId"]]
    assert live[0]["U"] <= snap["lastUpdateId"] + 1 <= live[0]["u"]
    last, bids, asks = rebuild_book(snap, diffs)
    _, _, final = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert final["lastUpdateId"] == last
    assert {Decimal(p): Decimal(q) for p, q in final["bids"]} == bids
    assert {Decimal(p): Decimal(q) for p, q in final["asks"]} == asks


async def test_depth_1000ms_stream_merges_the_100ms_diffs(sim: ExchangeSimulator) -> None:
    streams = "btcusdt@depth@100ms/btcusdt@depth"
    async with ws_connect(f"{sim.ws_url}/stream?streams={streams}") as ws:
        msgs = [json.loads(m) for m in await drain(ws)]
    fast = [m["data"] for m in msgs if m["stream"] == "btcusdt@depth@100ms"]
    slow = [m["data"] for m in msgs if m["stream"] == "btcusdt@depth"]
    assert 0 < len(slow) < len(fast)
    for a, b in itertools.pairwise(slow):
        assert b["U"] == a["u"] + 1 and b["E"] // 1000 > a["E"] // 1000
    assert shape(slow[0]) == shape(fast[0]) and list(slow[0]) == list(fast[0])
    snap = recorded_snapshot(BTC_0808)
    assert rebuild_book(snap, slow) == rebuild_book(snap, fast)


async def test_agg_trade_stream_is_real_shaped_and_agrees_with_rest(
    sim: ExchangeSimulator,
) -> None:
    async with ws_connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
        got = [json.loads(m) for m in await drain(ws)]
    real = real_spot_frames()["aggTrade"]
    assert list(got[0]) == list(real) and shape(got[0]) == shape(real)
    _, _, rest = await get(sim, f"/api/v3/aggTrades?symbol=BTCUSDT&fromId={got[0]['a']}&limit=1000")
    assert [{k: v for k, v in g.items() if k not in ("e", "E", "s")} for g in got[:1000]] == rest
    trade_e = {
        json.loads(d)["t"]: json.loads(d)["E"]
        for s, d in recorded_lines(BTC_0808)
        if s == "btcusdt@trade"
    }
    assert all(g["E"] == trade_e[g["l"]] for g in got)


@pytest.mark.parametrize("interval", ["1m", "5m"])
async def test_kline_stream_is_real_shaped_and_final_bars_agree_with_rest(
    sim: ExchangeSimulator, interval: str
) -> None:
    async with ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_{interval}") as ws:
        got = [json.loads(m) for m in await drain(ws)]
    real = real_spot_frames()["kline_1m"]
    assert list(got[0]) == list(real) and list(got[0]["k"]) == list(real["k"])
    assert shape(got[0]) == shape(real)
    final_events = [g for g in got if g["k"]["x"]]
    final = [g["k"] for g in final_events]
    updates = [g for g in got if not g["k"]["x"]]
    assert final and updates
    for a, b in itertools.pairwise(updates):
        assert b["E"] - a["E"] >= 2000  # Binance pushes kline updates every 2 s
    _, _, rest = await get(
        sim, f"/api/v3/klines?symbol=BTCUSDT&interval={interval}&startTime={final[0]['t']}"
    )
    by_open = {r[0]: r for r in rest}
    for event in final_events:
        k = event["k"]
        r = by_open[k["t"]]
        assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"]] == r[:7]
        assert [k["q"], k["n"], k["V"], k["Q"]] == r[7:11]
        assert k["i"] == interval and event["E"] > k["T"]  # sent once the bar is over


@contextlib.asynccontextmanager
async def socket_without_autoping(
    market: SimMarket, pong_timeout_s: float
) -> AsyncIterator[tuple[ExchangeSimulator, aiohttp.ClientWebSocketResponse]]:
    """A simulator pinging every 0.1 s, and a client socket that answers pings only by hand."""
    async with (
        ExchangeSimulator(
            market, speed=None, autostart=False, ping_interval_s=0.1, pong_timeout_s=pong_timeout_s
        ) as sim,
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{sim.ws_url}/ws", autoping=False) as ws,
    ):
        yield sim, ws


async def test_a_pong_late_by_less_than_the_timeout_keeps_the_socket_as_on_binance(
    btc_market: SimMarket,
) -> None:
    """Binance closes a socket that sends no pong "within a 1 minute period"; aiohttp's own
    heartbeat closes it when a pong is ``heartbeat / 2`` late (10 s at Binance's 20 s pings).
    A client behind on a busy stream reads the ping, and answers it, only after the frames
    before it: here it reads nothing for four ping intervals (twenty of aiohttp's
    heartbeat halves), then answers, and its stream goes on."""
    async with socket_without_autoping(btc_market, pong_timeout_s=2.0) as (sim, ws):
        await asyncio.sleep(0.4)  # pings pile up unanswered
        pings = 0
        while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
            pings += 1
            if pings == 3:
                break
        assert pings == 3 and not ws.closed
        await ws.send_str('{"method": "LIST_SUBSCRIPTIONS", "id": 7}')
        while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        assert msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["id"] == 7
    assert sim.stats.pong_timeouts == 0


async def test_a_socket_without_a_pong_for_the_timeout_is_closed(btc_market: SimMarket) -> None:
    async with socket_without_autoping(btc_market, pong_timeout_s=0.5) as (sim, ws):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        pings = 0
        while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
            pings += 1  # never answered
        waited = loop.time() - t0
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert pings >= 4 and 0.5 <= waited < 3.0
    assert sim.stats.pong_timeouts == 1


async def test_pings_are_answered_and_sent(btc_market: SimMarket) -> None:
    async with ExchangeSimulator(btc_market, speed=None, ping_interval_s=0.2) as sim:
        async with ws_connect(f"{sim.ws_url}/ws") as ws:
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)  # our ping, their pong
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(f"{sim.ws_url}/ws", autoping=False) as ws2,
        ):
            msg = await ws2.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.PING  # the server pings, as Binance does
            await ws2.pong(msg.data)
