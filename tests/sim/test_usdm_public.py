"""The simulator's USDⓈ-M public endpoints on the bundled real BTCUSDT perpetual recording,
through ccxt ``binanceusdm`` and raw REST.

Reference values are read from the recording file on its own (`recorded_lines`), and from the
bundled fapi exchangeInfo file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest
from sim_helpers import (
    SAMPLES,
    get,
    rebuild_book,
    recorded_lines,
    recorded_snapshot,
    replay_all,
)

from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.usdm import usdm_market, usdm_venue

USDM_BTC = SAMPLES / "binance-raw-ws" / "usdm" / "btcusdt_20240808.gz"
OPTIONS = {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "fetchMargins": False}


def point_usdm_at(ex: Any, sim: ExchangeSimulator) -> None:
    for key, url in list(ex.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
            ex.urls["api"][key] = url.replace("https://fapi.binance.com", sim.rest_url)


@pytest.fixture(scope="module")
def usdm() -> SimMarket:
    return usdm_market([USDM_BTC])


@pytest.fixture
async def replayed(usdm: SimMarket) -> AsyncIterator[ExchangeSimulator]:
    async with usdm_venue(usdm, speed=None).sim as sim:
        await replay_all(sim)
        yield sim


def recorded(stream: str) -> list[dict[str, Any]]:
    return [json.loads(d) for s, d in recorded_lines(USDM_BTC) if s == stream]


async def test_exchange_info_is_the_real_fapi_entry_of_the_recorded_symbol(
    replayed: ExchangeSimulator,
) -> None:
    status, _, body = await get(replayed, "/fapi/v1/exchangeInfo")
    real = json.loads((SAMPLES / "binance-usdm" / "exchange_info.json").read_text())
    assert status == 200
    assert body["symbols"] == [s for s in real["symbols"] if s["symbol"] == "BTCUSDT"]
    assert body["rateLimits"] == real["rateLimits"]


async def test_ccxt_binanceusdm_reads_markets_book_trades_and_ticker(
    replayed: ExchangeSimulator,
) -> None:
    trades = recorded("btcusdt@trade")
    ex = ccxt_async.binanceusdm({"options": OPTIONS})
    point_usdm_at(ex, replayed)
    try:
        markets = await ex.load_markets()
        btc = markets["BTC/USDT:USDT"]
        assert (btc["linear"], btc["contract"], btc["precision"]["price"]) == (True, True, 0.01)
        ticker = await ex.fetch_ticker("BTC/USDT:USDT")
        assert ticker["last"] == float(trades[-1]["p"])
        assert ticker["high"] == max(float(t["p"]) for t in trades)
        assert Decimal(ticker["info"]["volume"]) == sum(Decimal(t["q"]) for t in trades)
        assert ticker["info"]["count"] == len(trades)
        book = await ex.fetch_order_book("BTC/USDT:USDT", limit=5)
        last_ticker = recorded("btcusdt@bookTicker")[-1]
        assert book["bids"][0][0] == float(last_ticker["b"])
        assert book["asks"][0][0] == float(last_ticker["a"])
        got = await ex.fetch_trades("BTC/USDT:USDT", limit=3)  # ccxt reads /fapi/v1/aggTrades
        assert got[-1]["price"] == float(trades[-1]["p"])
    finally:
        await ex.close()


async def test_the_mark_price_is_the_recorded_best_bid_ask_mid_without_a_mark_stream(
    replayed: ExchangeSimulator,
) -> None:
    last = recorded("btcusdt@bookTicker")[-1]
    mid = (Decimal(last["b"]) + Decimal(last["a"])) / 2
    ex = ccxt_async.binanceusdm({"options": OPTIONS})
    point_usdm_at(ex, replayed)
    try:
        await ex.load_markets()
        funding = await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert Decimal(funding["info"]["markPrice"]) == mid
        # no funding data recorded: rate 0, the next funding time is 2024-08-09 00:00 UTC
        assert (funding["fundingRate"], funding["fundingTimestamp"]) == (0.0, 1723161600000)
        marks = await ex.fetch_mark_ohlcv("BTC/USDT:USDT", "1m", limit=2)
        assert marks[-1][4] == float(mid)
        assert await ex.fetch_funding_rate_history("BTC/USDT:USDT") == []
    finally:
        await ex.close()


async def test_usdm_payloads_use_futures_spellings(replayed: ExchangeSimulator) -> None:
    _, _, depth = await get(replayed, "/fapi/v1/depth?symbol=BTCUSDT&limit=5")
    assert list(depth) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert depth["lastUpdateId"] == recorded("btcusdt@depth@0ms")[-1]["u"]
    assert depth["lastUpdateId"] > recorded_snapshot(USDM_BTC)["lastUpdateId"]
    _, _, rows = await get(replayed, "/fapi/v1/trades?symbol=BTCUSDT&limit=1")
    assert list(rows[0]) == ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker"]
    _, _, price = await get(replayed, "/fapi/v1/ticker/price?symbol=BTCUSDT")
    assert list(price) == ["symbol", "price", "time"]
    assert price["price"] == recorded("btcusdt@trade")[-1]["p"]
    _, _, quotes = await get(replayed, "/fapi/v1/ticker/bookTicker")
    assert [q["symbol"] for q in quotes] == ["BTCUSDT"]
    status, _, body = await get(replayed, "/fapi/v1/depth?symbol=BTCUSDT&limit=7")
    assert (status, body["code"]) == (400, -1130)
    status, _, body = await get(replayed, "/fapi/v1/premiumIndex?symbol=ETHUSDT")
    assert (status, body["code"]) == (400, -1121)


@pytest.mark.parametrize("rate", ["0", "100", "500"])
async def test_ccxt_pro_binanceusdm_keeps_the_book_of_the_recorded_diffs(
    usdm: SimMarket, rate: str
) -> None:
    # @depth@0ms is the recorded stream; @depth@100ms and @500ms merge its diffs
    options = {**OPTIONS, "watchOrderBookRate": rate}
    async with usdm_venue(usdm, speed=30.0).sim as sim:
        ex = ccxtpro.binanceusdm({"options": options})
        point_usdm_at(ex, sim)
        ex.urls["api"]["ws"]["linear"] = f"{sim.ws_url}/ws"  # ccxt opens <ws>/public/ws/...
        try:
            for _ in range(100):
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT:USDT"), 20)
            trades = await asyncio.wait_for(ex.watch_trades("BTC/USDT:USDT"), 20)
        finally:
            await ex.close()
    nonce = book["nonce"]
    diffs = [d for d in recorded("btcusdt@depth@0ms") if d["u"] <= nonce]
    last, bids, asks = rebuild_book(recorded_snapshot(USDM_BTC), diffs)
    assert last == nonce
    assert book["bids"][:20] == [[float(p), float(q)] for p, q in sorted(bids.items())[::-1][:20]]
    assert book["asks"][:20] == [[float(p), float(q)] for p, q in sorted(asks.items())[:20]]
    by_id = {t["t"]: t for t in recorded("btcusdt@trade")}
    assert all(t["price"] == float(by_id[int(t["id"])]["p"]) for t in trades)
