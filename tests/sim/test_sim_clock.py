"""The simulator's clock: a skew fault for the server's wall clock, and REST klines that end,
as Binance's do, with the bar still forming at the replay's clock (issue 14, defects 9, 10)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import get

from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.payloads import INTERVAL_MS, bucket_open
from tessera.sim.trading import TradingConfig, TradingEngine

KEY, SECRET = "clock-key", "clock-secret"


def local_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize("skew_ms", [10_000, -10_000])
async def test_server_time_and_exchange_info_follow_the_skewed_clock(
    sim: ExchangeSimulator, skew_ms: int
) -> None:
    sim.faults.clock_skew_ms = skew_ms
    before = local_ms()
    _, _, t = await get(sim, "/api/v3/time")
    _, _, info = await get(sim, "/api/v3/exchangeInfo?symbol=BTCUSDT")
    after = local_ms()
    for server in (t["serverTime"], info["serverTime"]):
        assert before + skew_ms <= server <= after + skew_ms


async def signed_get(sim: ExchangeSimulator, path: str, timestamp: int) -> tuple[int, Any]:
    query = f"timestamp={timestamp}&recvWindow=5000"
    sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{sim.rest_url}{path}?{query}&signature={sig}", headers={"X-MBX-APIKEY": KEY}) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("skew_ms", [10_000, -10_000])
async def test_a_request_signed_by_the_host_clock_is_refused_when_the_server_clock_is_skewed(
    btc_market: SimMarket, skew_ms: int
) -> None:
    """Binance's rule, on the server's clock: ``timestamp < server + 1000`` and
    ``server - timestamp <= recvWindow``; both sides of it, over a real signed request."""
    sim = ExchangeSimulator(btc_market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.faults.clock_skew_ms = skew_ms
        status, body = await signed_get(sim, "/api/v3/account", local_ms())
        assert (status, body["code"]) == (400, -1021)
        assert "recvWindow" in body["msg"]
        status, body = await signed_get(sim, "/api/v3/account", local_ms() + skew_ms)
        assert status == 200 and body["accountType"] == "SPOT"
        assert abs(body["updateTime"] - (local_ms() + skew_ms)) < 1000  # stamped by its clock
    assert engine.orders == {}


def rest_now(sim: ExchangeSimulator) -> int:
    """The replay's clock at the release position: the exchange's "now" for REST."""
    return sim.market.clock_ms[sim.head - 1]


async def klines(sim: ExchangeSimulator, interval: str, extra: str = "") -> list[list[Any]]:
    status, _, rows = await get(sim, f"/api/v3/klines?symbol=BTCUSDT&interval={interval}{extra}")
    assert status == 200
    return list(rows)


def assert_binance_shaped(rows: list[list[Any]], interval: str, now: int) -> None:
    width = INTERVAL_MS[interval]
    assert width is not None and rows
    for a, b in itertools.pairwise(rows):
        assert b[0] == a[0] + width  # no hole: quiet intervals are empty bars
    last = rows[-1]
    assert last[6] == last[0] + width - 1
    # the newest row is the bar that contains "now" (at an exact boundary, the bar just ended)
    assert last[0] <= now <= last[6] + 1
    assert all(r[6] < now for r in rows[:-1])


@settings(max_examples=25, deadline=None)
@given(
    positions=st.lists(st.integers(2, 41_248), min_size=1, max_size=6, unique=True),
    interval=st.sampled_from(["1s", "1m", "5m"]),
)
def test_the_newest_kline_is_the_bar_forming_at_the_replay_clock(
    btc_market: SimMarket, positions: list[int], interval: str
) -> None:
    async def go() -> None:
        async with ExchangeSimulator(btc_market, speed=None, autostart=False) as sim:
            for n in sorted(positions):
                sim.release(n)
                rows = await klines(sim, interval)
                if not sim.state.trades("BTCUSDT"):
                    assert rows == []  # no trade yet, no bar yet
                    continue
                assert_binance_shaped(rows, interval, rest_now(sim))

    asyncio.run(go())


def quiet_start(market: SimMarket, interval: str) -> int:
    """A release position whose replay clock is past a bar's first millisecond while no trade
    of that bar has been released yet (depth and book frames moved the clock)."""
    trades = market.trades("BTCUSDT")
    clock = market.clock_ms
    width = INTERVAL_MS[interval]
    assert width is not None
    third = bucket_open(clock[trades.anchors[0]], interval) + 3 * width  # history before it
    for anchor, nxt in zip(trades.anchors, trades.anchors[1:], strict=False):
        if clock[anchor] < third:
            continue
        for n in range(anchor + 2, nxt + 1):  # frames after this trade, before the next one
            bar = bucket_open(clock[n - 1], interval)
            if bar > bucket_open(clock[anchor], interval) and clock[n - 1] > bar:
                return n
    raise AssertionError("no quiet bar start in the recording")


@pytest.mark.parametrize("interval", ["1s", "1m"])
async def test_a_bar_without_trades_yet_is_served_as_the_forming_row(
    btc_market: SimMarket, interval: str
) -> None:
    """Bars are built from trades; without the forming row the newest row would be the last
    trade's bar, already over by the exchange's clock."""
    n = quiet_start(btc_market, interval)
    async with ExchangeSimulator(btc_market, speed=None, autostart=False) as sim:
        sim.release(n)
        now = rest_now(sim)
        rows = await klines(sim, interval)
        assert rows[-1][0] == bucket_open(now, interval) < now <= rows[-1][6]
        assert rows[-1][8] == 0 and rows[-1][5] == "0.00000000"  # no trade in it yet
        assert rows[-1][1:5] == [rows[-2][4]] * 4  # Binance's empty bar: the previous close
        assert_binance_shaped(rows, interval, now)
        # a page from startTime and the limit still apply
        page = await klines(sim, interval, f"&startTime={rows[-3][0]}&limit=2")
        assert page == rows[-3:-1]
        tail = await klines(sim, interval, "&limit=2")
        assert tail == rows[-2:]
        before = await klines(sim, interval, f"&endTime={rows[-2][0]}")
        assert before[-1] == rows[-2]
