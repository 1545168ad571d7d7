"""The simulator against real Binance payloads and real clients (ccxt, ccxt.pro, websockets)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import websockets

from tessera.sim import ExchangeSimulator
from tessera.sim.recording import load_recording

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SPOT = SAMPLES / "binance-raw-ws" / "spot"
HTTP = SAMPLES / "binance-api" / "spot-http"
FUT = SAMPLES / "binance-api" / "futures-market-data"


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    s = ExchangeSimulator(load_recording([SPOT / "btcusdt_20240808.gz"]), speed=None)
    async with s:
        yield s


async def replay_all(sim: ExchangeSimulator) -> None:
    sim.start_replay()
    await asyncio.wait_for(sim.wait_replayed(), 60)


async def get(sim: ExchangeSimulator, path: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
        return r.status, dict(r.headers), json.loads(await r.text())


def shape(value: Any) -> Any:
    """JSON shape: key sets and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def real(name: str) -> Any:
    return json.loads((HTTP / name).read_text())


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("/api/v3/ping", "ping_response.json"),
        ("/api/v3/time", "server_time_response.json"),
        ("/api/v3/trades?symbol=BTCUSDT&limit=5", "trades_response.json"),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5", "klines_response.json"),
        ("/api/v3/depth?symbol=BTCUSDT&limit=5", "depth_response.json"),
    ],
)
async def test_rest_payloads_have_binance_shapes(
    sim: ExchangeSimulator, path: str, fixture: str
) -> None:
    await replay_all(sim)
    status, headers, body = await get(sim, path)
    assert status == 200
    assert shape(body) == shape(real(fixture))
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) > 0
    assert headers["Content-Type"].startswith("application/json")


async def test_exchange_info_is_the_real_one(sim: ExchangeSimulator) -> None:
    status, _, body = await get(sim, "/api/v3/exchangeInfo")
    assert status == 200
    (btc,) = body["symbols"]
    assert btc["symbol"] == "BTCUSDT"
    with gzip.open(SAMPLES / "cryptofeed" / "BINANCE.0.gz", "rt") as fh:
        recorded = json.loads(fh.readline().split(": ", 1)[1])
    assert btc == next(s for s in recorded["symbols"] if s["symbol"] == "BTCUSDT")
    assert body["rateLimits"] == recorded["rateLimits"]


async def test_decimal_strings_and_numbers_as_binance_sends_them(sim: ExchangeSimulator) -> None:
    await replay_all(sim)
    _, _, agg = await get(sim, "/api/v3/aggTrades?symbol=BTCUSDT&limit=3")
    for a in agg:
        assert all(isinstance(a[k], int) for k in ("a", "f", "l", "T"))  # numbers stay numbers
        assert all(isinstance(a[k], str) and len(a[k].split(".")[1]) == 8 for k in ("p", "q"))
    _, _, kl = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3")
    for k in kl:
        assert all(
            isinstance(k[i], str) and len(k[i].split(".")[1]) == 8
            for i in (1, 2, 3, 4, 5, 7, 9, 10)
        )


async def test_errors_are_binance_errors(sim: ExchangeSimulator) -> None:
    status, _, body = await get(sim, "/api/v3/depth?symbol=NOPE")
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    status, _, body = await get(sim, "/api/v3/depth")
    assert status == 400 and body["code"] == -1102
    status, _, body = await get(sim, "/api/v3/trades?symbol=BTCUSDT&limit=x")
    assert status == 400 and body["code"] == -1100


async def test_ws_frames_are_the_recorded_frames(sim: ExchangeSimulator) -> None:
    recorded = [f.data for f in sim.recording.frames if f.stream == "btcusdt@trade"]
    got: list[str] = []
    async with websockets.connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws:
        while len(got) < 500:
            got.append(str(await asyncio.wait_for(ws.recv(), 10)))
    assert got == recorded[:500]  # byte for byte


async def test_combined_stream_envelope_and_subscriptions(sim: ExchangeSimulator) -> None:
    async with websockets.connect(f"{sim.ws_url}/stream") as ws:
        await ws.send(
            json.dumps(
                {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@kline_1m"], "id": 7}
            )
        )
        assert json.loads(await ws.recv()) == {"result": None, "id": 7}
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        seen: dict[str, Any] = {}
        listed = None
        while len(seen) < 2 or listed is None:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg.get("id") == 8:
                listed = msg["result"]
            elif "stream" in msg:
                seen.setdefault(msg["stream"], msg["data"])
        assert listed == ["btcusdt@aggTrade", "btcusdt@kline_1m"]
        await ws.send(
            json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 9})
        )
    fut_agg = json.loads((FUT / "agg_trade_stream.json").read_text())
    fut_kline = json.loads((FUT / "kline_stream_closed.json").read_text())
    fut_agg = fut_agg.get("data", fut_agg)
    fut_kline = fut_kline.get("data", fut_kline)
    # Spot aggTrade: the futures payload's fields minus its futures-only "st", plus "M".
    spot_agg = {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
    assert set(seen["btcusdt@aggTrade"]) == spot_agg
    assert set(fut_agg) - {"st"} <= spot_agg
    assert shape(seen["btcusdt@kline_1m"]["k"]) == shape(fut_kline["k"])


async def test_ccxt_parses_our_rest_responses(sim: ExchangeSimulator) -> None:
    import ccxt.async_support as ccxt

    await replay_all(sim)
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}})
    for key in ("public", "private"):
        ex.urls["api"][key] = f"{sim.rest_url}/api/v3"
    ex.urls["api"]["v1"] = f"{sim.rest_url}/api/v1"
    try:
        markets = await ex.load_markets()
        assert markets["BTC/USDT"]["precision"]["price"] == 0.01
        ohlcv = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=3)
        ref = sim.state.klines["BTCUSDT"][-3:]
        assert [c[0] for c in ohlcv] == [k.open_time for k in ref]
        assert [c[4] for c in ohlcv] == [float(k.close) for k in ref]
        book = await ex.fetch_order_book("BTC/USDT", limit=5)
        ref_book = sim.state.books["BTCUSDT"].rest(5)
        assert book["bids"][0] == [float(x) for x in ref_book["bids"][0]]
        assert book["nonce"] == ref_book["lastUpdateId"]
        trades = await ex.fetch_trades("BTC/USDT", limit=5)
        ref_trades = sim.state.trades["BTCUSDT"][-5:]
        assert [t["id"] for t in trades] == [str(t.id) for t in ref_trades]
        assert [t["side"] for t in trades] == [
            "sell" if t.is_buyer_maker else "buy" for t in ref_trades
        ]
    finally:
        await ex.close()


async def test_ccxt_pro_order_book_stays_in_sync() -> None:
    import ccxt.pro as ccxtpro

    sim = ExchangeSimulator(load_recording([SPOT / "btcusdt_20240808.gz"]), speed=30.0)
    async with sim:
        ex = ccxtpro.binance(
            {"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}}
        )
        for key in ("public", "private"):
            ex.urls["api"][key] = f"{sim.rest_url}/api/v3"
        ex.urls["api"]["ws"]["spot"] = f"{sim.ws_url}/stream/ws"
        try:
            updates = 0
            while updates < 150:
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT", limit=1000), 20)
                updates += 1
            nonce = book["nonce"]
            sim.state.catch_up(sim.replay_position)
            # Rebuild the exchange's book at exactly ccxt's update id from the recording.
            from tessera.sim.market import Book

            ref = Book.from_snapshot(sim.recording.snapshots["BTCUSDT"])
            for f in sim.recording.frames:
                if f.kind == "depth":
                    d = orjson.loads(f.data)
                    if d["u"] > nonce:
                        break
                    ref.apply(d)
            assert ref.last_update_id == nonce
            top = ref.rest(20)
            assert [[float(p), float(q)] for p, q in top["bids"]] == book["bids"][:20]
            assert [[float(p), float(q)] for p, q in top["asks"]] == book["asks"][:20]
        finally:
            await ex.close()
