"""`tessera sim serve --bars`: research bars replayed as Binance klines, history over REST."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.sim.bars import market_from_bar_file
from tessera.sim.server import ExchangeSimulator


def test_bar_file_is_served_as_rest_history_then_closed_kline_events() -> None:
    bars = read_bar_file(SAMPLE_BARS)
    market = market_from_bar_file(SAMPLE_BARS, "BTCUSDT")
    assert len(market.frames) == bars.height

    async def go() -> tuple[list[list[object]], dict[str, object]]:
        sim = ExchangeSimulator(market, speed=None, autostart=False)
        async with sim:
            sim.release(50)  # history visible before the replay
            async with aiohttp.ClientSession() as http:
                url = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000"
                async with http.get(url) as resp:
                    rows = await resp.json()
                async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1m") as ws:
                    sim.start_replay()
                    event = orjson.loads((await ws.receive()).data)
        return rows, event

    rows, event = asyncio.run(go())
    assert len(rows) == 50
    first = bars.row(0, named=True)
    assert rows[0][0] == int(first["open_time"].timestamp() * 1000)
    assert float(rows[0][4]) == first["close"]
    k = event["k"]
    assert isinstance(k, dict) and k["x"] is True
    assert k["t"] == int(bars.row(50, named=True)["open_time"].timestamp() * 1000)


def test_an_hourly_bar_file_is_served_as_1h_klines_and_refuses_finer_ones() -> None:
    path = SAMPLE_BARS.parent / "Coinbase_BTCUSD_1h.csv.gz"  # real Coinbase BTC-USD hours
    bars = read_bar_file(path)
    market = market_from_bar_file(path, "BTCUSDT")
    given = market.given_bars("BTCUSDT")
    assert given is not None and given.interval == "1h" and len(given.bars) == bars.height
    assert given.bars[0].close_time - given.bars[0].open_time == 3_600_000 - 1

    async def go() -> tuple[list[list[object]], list[list[object]], dict[str, object]]:
        async with ExchangeSimulator(market, speed=None, autostart=False) as sim:
            sim.release(48)
            async with aiohttp.ClientSession() as http:
                base = f"{sim.rest_url}/api/v3/klines?symbol=BTCUSDT"
                async with http.get(f"{base}&interval=1h&limit=48") as resp:
                    hours = await resp.json()
                async with http.get(f"{base}&interval=4h&limit=3") as resp:
                    fours = await resp.json()
                async with http.get(f"{base}&interval=1m") as resp:
                    finer = await resp.json()
        return hours, fours, finer

    hours, fours, finer = asyncio.run(go())
    assert [float(r[4]) for r in hours] == bars["close"].head(48).to_list()
    assert all(int(r[6]) - int(r[0]) == 4 * 3_600_000 - 1 for r in fours)
    assert finer["code"] == -1120
