"""`tessera sim serve --bars`: research bars replayed as Binance klines, history over REST."""

from __future__ import annotations

import asyncio
import time

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


def test_a_replay_behind_its_schedule_pauses_exactly_where_it_was_told() -> None:
    """A paced replay that fell behind releases what is due at once; `pause_at` still stops
    it right after the frame asked for (a test restarting a bot there relies on it), and it
    goes on from there after `resume`."""
    market = market_from_bar_file(SAMPLE_BARS, "BTCUSDT")

    async def go() -> tuple[int, int, int]:
        sim = ExchangeSimulator(market, speed=600.0, autostart=False)  # 0.1 s per 1m bar
        async with sim:
            sim.release(10)
            sim.pause_at(15)
            sim.start_replay()
            await asyncio.sleep(0)
            time.sleep(1.0)  # noqa: ASYNC251 -- on purpose: the loop blocked, 10 bars overdue
            await asyncio.sleep(0.5)
            paused = sim.head
            await asyncio.sleep(0.5)
            still = sim.head
            sim.resume()
            await asyncio.sleep(0.35)
            return paused, still, sim.head

    paused, still, after = asyncio.run(go())
    assert paused == still == 15
    assert 16 <= after <= 20  # paced again from where it stood, not the overdue burst
