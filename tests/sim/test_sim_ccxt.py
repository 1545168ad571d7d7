"""Real clients against the simulator: ccxt (REST) and ccxt.pro (websockets)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
from sim_helpers import BTC_0808, rebuild_book, recorded_lines, recorded_snapshot, replay_all

from tessera.sim import ExchangeSimulator, SimMarket

OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}


def point_at(ex: Any, sim: ExchangeSimulator) -> None:
    for key in ("public", "private"):
        ex.urls["api"][key] = f"{sim.rest_url}/api/v3"
    ex.urls["api"]["v1"] = f"{sim.rest_url}/api/v1"
    if "ws" in ex.urls["api"]:  # ccxt.pro
        ex.urls["api"]["ws"]["spot"] = f"{sim.ws_url}/stream/ws"


async def test_ccxt_parses_our_rest_responses(sim: ExchangeSimulator) -> None:
    await replay_all(sim)
    ex = ccxt_async.binance({"options": OPTIONS})
    point_at(ex, sim)
    try:
        markets = await ex.load_markets()
        btc = markets["BTC/USDT"]
        assert (btc["id"], btc["precision"]["price"], btc["limits"]["amount"]["min"]) == (
            "BTCUSDT",
            0.01,
            0.00001,
        )
        ohlcv = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=3)
        ref = sim.state.klines("BTCUSDT", "1m", limit=3)
        assert ohlcv == [
            [k.open_time, *(float(x) for x in (k.open, k.high, k.low, k.close, k.volume))]
            for k in ref
        ]
        book = await ex.fetch_order_book("BTC/USDT", limit=5)
        ref_book = sim.state.books["BTCUSDT"].rest(5)
        assert book["nonce"] == ref_book["lastUpdateId"]
        assert book["bids"] == [[float(p), float(q)] for p, q in ref_book["bids"]]
        assert book["asks"] == [[float(p), float(q)] for p, q in ref_book["asks"]]
        trades = await ex.fetch_trades("BTC/USDT", limit=5)  # ccxt reads /aggTrades
        ref_aggs = sim.state.aggregates("BTCUSDT", 5)
        assert [t["id"] for t in trades] == [str(a.id) for a in ref_aggs]
        assert [(t["price"], t["amount"], t["timestamp"]) for t in trades] == [
            (float(a.price), float(a.qty), a.time) for a in ref_aggs
        ]
        assert [t["side"] for t in trades] == [
            "sell" if a.is_buyer_maker else "buy" for a in ref_aggs
        ]
    finally:
        await ex.close()


async def test_ccxt_pro_order_book_stays_in_sync(btc_market: SimMarket) -> None:
    sim = ExchangeSimulator(btc_market, speed=30.0)
    async with sim:
        ex = ccxtpro.binance({"options": OPTIONS})
        point_at(ex, sim)
        try:
            for _ in range(150):
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT", limit=1000), 20)
            nonce = book["nonce"]
        finally:
            await ex.close()
    # The exchange's book at exactly ccxt's update id, rebuilt from the recording.
    diffs = [json.loads(d) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@depth@100ms"]
    last, bids, asks = rebuild_book(
        recorded_snapshot(BTC_0808), [d for d in diffs if d["u"] <= nonce]
    )
    assert last == nonce
    top_bids = sorted(bids.items(), reverse=True)[:20]
    top_asks = sorted(asks.items())[:20]
    assert book["bids"][:20] == [[float(p), float(q)] for p, q in top_bids]
    assert book["asks"][:20] == [[float(p), float(q)] for p, q in top_asks]


async def test_ccxt_pro_watch_trades_sees_the_recorded_trades(btc_market: SimMarket) -> None:
    recorded = [json.loads(d) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]
    sim = ExchangeSimulator(btc_market, speed=None)
    got: list[dict[str, Any]] = []
    async with sim:
        ex = ccxtpro.binance({"options": {**OPTIONS, "tradesLimit": 100_000}, "newUpdates": True})
        point_at(ex, sim)
        try:
            while len(got) < 2000:
                got.extend(await asyncio.wait_for(ex.watch_trades("BTC/USDT"), 20))
        finally:
            await ex.close()
    ref = {r["t"]: r for r in recorded}
    first = int(got[0]["id"])
    assert [int(t["id"]) for t in got] == list(range(first, first + len(got)))
    for t in got:
        r = ref[int(t["id"])]
        assert (Decimal(str(t["price"])), t["timestamp"]) == (Decimal(r["p"]), r["T"])
        assert t["side"] == ("sell" if r["m"] else "buy")
