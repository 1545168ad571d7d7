"""The ticker endpoints bots read before trading (``ticker/24hr``, ``ticker/price``,
``ticker/bookTicker``, ``avgPrice``, ``uiKlines``) and ``allOrders``, through ccxt and raw REST.

Reference values are computed from the recording read on its own (`recorded_lines`): the
bundled recordings last minutes, so the 24 h window holds every released trade.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from sim_helpers import BTC_0808, ETH_0808, HTTP, get, recorded_lines, replay_all, shape

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.bars import market_from_bar_file
from tessera.sim.trading import TradingConfig, TradingEngine

OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}
KEY, SECRET = "ticker-key", "ticker-secret"


def point_at(ex: Any, sim: ExchangeSimulator) -> None:
    for key in ("public", "private"):
        ex.urls["api"][key] = f"{sim.rest_url}/api/v3"


def recorded_trades(path: Any, symbol: str) -> list[dict[str, Any]]:
    stream = f"{symbol.lower()}@trade"
    return [json.loads(d) for s, d in recorded_lines(path) if s == stream]


def real(name: str) -> Any:
    return json.loads((HTTP / name).read_text())


@pytest.fixture(scope="module")
def two_markets() -> SimMarket:
    return SimMarket.from_recording([BTC_0808, ETH_0808])


@pytest.fixture
async def replayed(two_markets: SimMarket) -> AsyncIterator[ExchangeSimulator]:
    async with ExchangeSimulator(two_markets, speed=None) as sim:
        await replay_all(sim)
        yield sim


async def test_the_ticker_payloads_have_binance_fields_and_types(
    replayed: ExchangeSimulator,
) -> None:
    for path, fixture in (
        ("/api/v3/ticker/24hr?symbol=BTCUSDT", "ticker_24hr_response.json"),
        ("/api/v3/ticker/price?symbol=BTCUSDT", "ticker_price_response.json"),
        ("/api/v3/ticker/bookTicker?symbol=BTCUSDT", "book_ticker_response.json"),
        ("/api/v3/avgPrice?symbol=BTCUSDT", "avg_price_response.json"),
    ):
        status, _, body = await get(replayed, path)
        assert status == 200, body
        assert shape(body) == shape(real(fixture)), path
        assert list(body) == list(real(fixture)), path  # Binance's field order


async def test_the_24hr_ticker_sums_the_released_trades(replayed: ExchangeSimulator) -> None:
    trades = recorded_trades(BTC_0808, "BTCUSDT")
    prices = [Decimal(t["p"]) for t in trades]
    volume = sum((Decimal(t["q"]) for t in trades), Decimal(0))
    _, _, body = await get(replayed, "/api/v3/ticker/24hr?symbol=BTCUSDT")
    assert Decimal(body["openPrice"]) == prices[0]
    assert Decimal(body["lastPrice"]) == prices[-1]
    assert Decimal(body["highPrice"]) == max(prices)
    assert Decimal(body["lowPrice"]) == min(prices)
    assert Decimal(body["volume"]) == volume
    assert Decimal(body["lastQty"]) == Decimal(trades[-1]["q"])
    assert (body["firstId"], body["lastId"], body["count"]) == (
        trades[0]["t"],
        trades[-1]["t"],
        len(trades),
    )
    assert body["closeTime"] - body["openTime"] == 86_400_000
    assert body["prevClosePrice"] == "0.00000000"  # the recording starts inside the window
    _, _, mini = await get(replayed, "/api/v3/ticker/24hr?symbol=BTCUSDT&type=MINI")
    assert set(mini) < set(body) and mini["volume"] == body["volume"]


async def test_ccxt_fetch_ticker_and_fetch_tickers_read_every_symbol(
    replayed: ExchangeSimulator,
) -> None:
    ex = ccxt_async.binance({"options": OPTIONS})
    point_at(ex, replayed)
    try:
        await ex.load_markets()
        btc = await ex.fetch_ticker("BTC/USDT")
        book = await ex.fetch_order_book("BTC/USDT", limit=5)
        assert (btc["bid"], btc["ask"]) == (book["bids"][0][0], book["asks"][0][0])
        assert btc["last"] == float(recorded_trades(BTC_0808, "BTCUSDT")[-1]["p"])
        both = await ex.fetch_tickers()
        assert set(both) == {"BTC/USDT", "ETH/USDT"}
        assert both["ETH/USDT"]["last"] == float(recorded_trades(ETH_0808, "ETHUSDT")[-1]["p"])
        assert both["BTC/USDT"]["baseVolume"] == btc["baseVolume"]
        one = await ex.fetch_tickers(["ETH/USDT"])
        assert set(one) == {"ETH/USDT"}
        quotes = await ex.fetch_bids_asks(["BTC/USDT", "ETH/USDT"])
        assert quotes["BTC/USDT"]["bid"] == btc["bid"]
        prices = await ex.fetch_last_prices()
        assert prices["ETH/USDT"]["price"] == both["ETH/USDT"]["last"]
    finally:
        await ex.close()


async def test_ticker_parameters_follow_binance_rules(replayed: ExchangeSimulator) -> None:
    status, headers, body = await get(replayed, "/api/v3/ticker/24hr")
    assert status == 200 and [t["symbol"] for t in body] == ["BTCUSDT", "ETHUSDT"]
    assert headers["X-MBX-USED-WEIGHT-1M"] == "80"  # no symbol: every symbol, weight 80
    status, _, body = await get(replayed, '/api/v3/ticker/price?symbols=["ETHUSDT"]')
    assert status == 200 and [t["symbol"] for t in body] == ["ETHUSDT"]
    status, _, body = await get(
        replayed, '/api/v3/ticker/bookTicker?symbol=BTCUSDT&symbols=["ETHUSDT"]'
    )
    assert (status, body["code"]) == (400, -1128)
    status, _, body = await get(replayed, '/api/v3/ticker/24hr?symbols=["XRPUSDT"]')
    assert (status, body["code"]) == (400, -1121)
    status, _, body = await get(replayed, "/api/v3/ticker/24hr?symbol=BTCUSDT&type=HUGE")
    assert (status, body["code"]) == (400, -1130)
    status, _, body = await get(replayed, "/api/v3/avgPrice")
    assert (status, body["code"]) == (400, -1102)


async def test_avg_price_is_the_volume_weighted_price_of_the_last_five_minutes(
    replayed: ExchangeSimulator,
) -> None:
    trades = recorded_trades(BTC_0808, "BTCUSDT")
    now = replayed.market.clock_ms[-1]  # every frame is released
    recent = [t for t in trades if t["T"] >= now - 300_000]
    qty = sum((Decimal(t["q"]) for t in recent), Decimal(0))
    quote = sum((Decimal(t["p"]) * Decimal(t["q"]) for t in recent), Decimal(0))
    _, _, body = await get(replayed, "/api/v3/avgPrice?symbol=BTCUSDT")
    assert body["mins"] == 5 and body["closeTime"] == trades[-1]["T"]
    assert body["price"] == f"{quote / qty:.8f}"


async def test_ui_klines_are_the_klines_and_refuse_another_time_zone(
    replayed: ExchangeSimulator,
) -> None:
    query = "?symbol=BTCUSDT&interval=1m&limit=4"
    _, _, klines = await get(replayed, "/api/v3/klines" + query)
    status, _, ui = await get(replayed, "/api/v3/uiKlines" + query)
    assert (status, ui) == (200, klines)
    status, _, body = await get(replayed, "/api/v3/uiKlines" + query + "&timeZone=8")
    assert (status, body["code"]) == (400, -1130)


async def test_a_bar_market_answers_the_ticker_from_its_bars() -> None:
    bars = read_bar_file(SAMPLE_BARS)
    async with ExchangeSimulator(
        market_from_bar_file(SAMPLE_BARS, "BTCUSDT"), speed=None, autostart=False
    ) as sim:
        sim.release(1500)  # a little over a day of 1m bars
        _, _, body = await get(sim, "/api/v3/ticker/24hr?symbol=BTCUSDT")
        now = sim.market.clock_ms[1499]
        opens = bars["open_time"].dt.epoch("ms")
        window = bars.filter((opens >= now - 86_400_000) & (opens <= now))
        assert Decimal(body["lastPrice"]) == Decimal(str(window["close"][-1]))
        assert Decimal(body["highPrice"]) == Decimal(str(window["high"].max()))
        assert Decimal(body["openPrice"]) == Decimal(str(window["open"][0]))
        assert (body["firstId"], body["lastId"], body["bidPrice"]) == (-1, -1, "0.00000000")


async def test_ccxt_fetch_orders_lists_open_filled_and_canceled_orders(
    btc_market: SimMarket,
) -> None:
    sim = ExchangeSimulator(btc_market, speed=None)
    TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        await replay_all(sim)
        ex = ccxt_async.binance({"apiKey": KEY, "secret": SECRET, "options": OPTIONS})
        point_at(ex, sim)
        try:
            await ex.load_markets()
            bid = (await ex.fetch_order_book("BTC/USDT", limit=5))["bids"][0][0]
            resting = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, round(bid * 0.9))
            filled = await ex.create_order("BTC/USDT", "market", "buy", 0.001)
            gone = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, round(bid * 0.8))
            await ex.cancel_order(gone["id"], "BTC/USDT")
            orders = await ex.fetch_orders("BTC/USDT")
            assert [(o["id"], o["status"]) for o in orders] == [
                (resting["id"], "open"),
                (filled["id"], "closed"),
                (gone["id"], "canceled"),
            ]
            since = await ex.fetch_orders("BTC/USDT", params={"orderId": filled["id"]})
            assert [o["id"] for o in since] == [filled["id"], gone["id"]]
            assert len(await ex.fetch_orders("BTC/USDT", limit=1)) == 1
        finally:
            await ex.close()
