"""The exchange's clock (issue 14, defects 9 and 10).

`ExchangeClock`: the offset to the exchange measured over real sockets against a simulator
whose clock is skewed, within the round-trip bound; one measurement for a burst of resyncs; a
failed sync counted and the last offset kept; the estimate's error bound as a property of the
arithmetic. `closed_klines` / `MarketClock`: the forming bar is never returned as closed and
every closed bar is — as properties, and end to end against the simulator replaying a real
recording, where the old rule (close time before the *local* clock) takes the forming bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tessera.live.clock import ClockSyncError, ExchangeClock, MarketClock, closed_klines
from tessera.sim import ExchangeSimulator, FaultPlan, SimMarket

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
MINUTE = 60_000


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


@pytest.fixture
async def sim(market: SimMarket) -> AsyncIterator[ExchangeSimulator]:
    async with ExchangeSimulator(market, speed=None, autostart=False) as s:
        yield s


# --- closed_klines and MarketClock: properties -----------------------------------------------


def kline_rows(first_open: int, width: int, now_ms: int) -> list[list[Any]]:
    """What Binance answers at ``now_ms``: every bar from ``first_open`` up to the one that
    contains ``now_ms`` (the forming one, its close time in the future)."""
    rows: list[list[Any]] = []
    t = first_open
    while t <= now_ms:
        rows.append([t, "1", "1", "1", "1", "0", t + width - 1, "0", 0, "0", "0", "0"])
        t += width
    return rows


@settings(max_examples=300, deadline=None)
@given(
    width=st.sampled_from([1_000, 60_000, 300_000, 3_600_000]),
    bars=st.integers(1, 50),
    into=st.floats(0, 1, exclude_max=True),
    local_skew_ms=st.integers(-120_000, 120_000),
)
def test_the_forming_bar_is_never_closed_and_every_bar_before_it_is(
    width: int, bars: int, into: float, local_skew_ms: int
) -> None:
    first_open = 1_723_161_240_000 - 1_723_161_240_000 % width
    forming_open = first_open + (bars - 1) * width
    exchange_now = forming_open + int(into * width)
    rows = kline_rows(first_open, width, exchange_now)
    assert rows[-1][0] == forming_open
    closed = closed_klines(rows, exchange_now)
    assert closed == rows[:-1]  # every bar whose close time has passed, and only those
    assert all(r[6] < exchange_now for r in closed)
    # the exchange's time, not the local clock: a skewed host changes nothing
    market = MarketClock(fallback=lambda: exchange_now + local_skew_ms)
    market.observe("BTCUSDT", exchange_now)
    assert market.closed("BTCUSDT", rows) == rows[:-1]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["BTCUSDT", "ethusdt", "SOLUSDT"]), st.integers(0, 10**13)),
        max_size=40,
    ),
    fallback_ms=st.integers(0, 10**13),
)
def test_the_market_clock_is_the_newest_event_time_seen_per_symbol_then_overall_then_the_server(
    events: list[tuple[str, int]], fallback_ms: int
) -> None:
    clock = MarketClock(fallback=lambda: fallback_ms)
    assert clock.now_ms("BTCUSDT") == fallback_ms  # no frame yet: the server's time
    for sym, e in events:
        clock.observe(sym, e)
    newest = max((e for _, e in events), default=None)
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"):
        mine = [e for s, e in events if s.upper() == sym]
        if mine:
            assert clock.now_ms(sym) == max(mine)  # out-of-order frames never move it back
            assert clock.now_ms(sym.lower()) == max(mine)
        elif newest is not None:
            assert clock.now_ms(sym) == newest  # one exchange, one clock
        else:
            assert clock.now_ms(sym) == fallback_ms


async def test_a_market_clock_waits_for_the_first_frame_of_each_symbol() -> None:
    clock = MarketClock(fallback=lambda: 0)
    waiting = asyncio.ensure_future(clock.wait_observed(["BTCUSDT", "ETHUSDT"], 10))
    await asyncio.sleep(0)
    clock.observe("BTCUSDT", 5)
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.observe("ETHUSDT", 6)
    assert await asyncio.wait_for(waiting, 5) is True
    assert await clock.wait_observed(["XRPUSDT"], 0.01) is False
    # after a reconnect: frames newer than the mark, not the ones from before the outage
    mark = clock.mark()
    assert await clock.wait_observed(["BTCUSDT"], 0.01, since=mark) is False
    waiting = asyncio.ensure_future(clock.wait_observed(["btcusdt"], 10, since=mark))
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.observe("BTCUSDT", 7)
    assert await asyncio.wait_for(waiting, 5) is True


# --- ExchangeClock: the estimate and its bound -----------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    true_offset_ms=st.integers(-86_400_000, 86_400_000),
    wall_minus_mono_ms=st.integers(0, 2 * 10**12),
    legs=st.lists(
        st.tuples(st.integers(0, 400_000_000), st.integers(0, 400_000_000)),  # ns out, ns back
        min_size=1,
        max_size=7,
    ),
)
def test_the_offset_estimate_is_within_half_the_slowest_round_trip(
    true_offset_ms: int, wall_minus_mono_ms: int, legs: list[tuple[int, int]]
) -> None:
    """Asymmetric delays (the worst case for the midpoint rule) never push the median offset
    past the bound the clock reports."""
    mono = [10**15]
    trips = iter(legs * 2)

    async def fetch() -> int:
        out, back = next(trips)
        mono[0] += out
        server = (mono[0] // 1_000_000) + true_offset_ms  # the server truncates to ms
        mono[0] += back
        return server

    clock = ExchangeClock(
        fetch,
        samples=len(legs),
        monotonic_ns=lambda: mono[0],
        wall_ns=lambda: mono[0] + wall_minus_mono_ms * 1_000_000,
    )
    asyncio.run(clock.sync("manual"))
    bound = clock.uncertainty_ms
    assert bound is not None
    assert bound == max(a + b for a, b in legs) / 2e6 + 1
    truth_now = mono[0] / 1e6 + true_offset_ms
    assert abs(clock.now_ms() - truth_now) <= bound + 1  # + 1: now_ms() is an integer
    assert abs(clock.offset_ms - (true_offset_ms - wall_minus_mono_ms)) <= bound


@pytest.mark.parametrize("skew_ms", [10_000, -10_000, 0])
async def test_the_measured_offset_is_the_servers_skew_within_the_round_trip_bound(
    sim: ExchangeSimulator, skew_ms: int
) -> None:
    sim.faults.clock_skew_ms = skew_ms
    clock = ExchangeClock.for_rest_url(sim.rest_url)
    before = metric("tessera_exchange_clock_resyncs_total", reason="startup")
    try:
        assert not clock.synced
        await clock.sync("startup")
        bound = clock.uncertainty_ms
        assert clock.synced and bound is not None and bound < 1000
        assert abs(clock.offset_ms - skew_ms) <= bound
        local = time.time_ns() / 1e6
        assert abs(clock.now_ms() - (local + skew_ms)) <= bound + 5
        assert sim.stats.rest_requests["/api/v3/time"] == clock.samples
        assert metric("tessera_exchange_clock_offset_ms") == clock.offset_ms
        assert metric("tessera_exchange_clock_resyncs_total", reason="startup") == before + 1
    finally:
        await clock.close()


async def test_a_burst_of_resync_requests_takes_one_measurement(sim: ExchangeSimulator) -> None:
    """Every request in flight when the exchange's clock jumps gets -1021 at once; they must
    not each take five samples."""
    sim.faults.clock_skew_ms = 10_000
    clock = ExchangeClock.for_rest_url(sim.rest_url, samples=3)
    before = metric("tessera_exchange_clock_resyncs_total", reason="recv_window")
    try:
        await asyncio.gather(*(clock.sync("recv_window") for _ in range(10)))
        assert sim.stats.rest_requests["/api/v3/time"] == 3
        assert metric("tessera_exchange_clock_resyncs_total", reason="recv_window") == before + 1
        assert abs(clock.offset_ms - 10_000) <= (clock.uncertainty_ms or 0)
    finally:
        await clock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_sync_without_an_answer_is_counted_and_keeps_the_last_offset(
    market: SimMarket,
) -> None:
    sim = ExchangeSimulator(market, speed=None, autostart=False, faults=FaultPlan())
    sim.faults.clock_skew_ms = -10_000
    async with sim:
        clock = ExchangeClock.for_rest_url(sim.rest_url, timeout_s=2)
        await clock.sync("startup")
        offset = clock.offset_ms
        sim.faults.rest_5xx = 100  # the exchange answers nothing useful for a while
        failures = metric("tessera_exchange_clock_sync_failures_total")
        with pytest.raises(ClockSyncError, match="503"):
            await clock.sync("periodic")
        assert metric("tessera_exchange_clock_sync_failures_total") == failures + 1
        assert sim.stats.faults["rest_5xx"] == 2  # gave up after two, not five
        assert clock.offset_ms == offset and clock.synced
        assert abs(clock.now_ms() - (time.time_ns() / 1e6 - 10_000)) < 1000
        await clock.close()
    nowhere = ExchangeClock.for_rest_url(f"http://127.0.0.1:{closed_port()}", timeout_s=2)
    try:
        with pytest.raises(ClockSyncError):
            await nowhere.sync("startup")
        assert not nowhere.synced  # still the local clock: nothing was measured
    finally:
        await nowhere.close()


async def test_a_stale_clock_resyncs_in_the_background_and_on_its_own_schedule(
    sim: ExchangeSimulator,
) -> None:
    clock = ExchangeClock.for_rest_url(sim.rest_url, samples=1, resync_interval_s=3600)
    try:
        await clock.sync("startup")
        clock.refresh_if_due()  # fresh: nothing to do
        assert sim.stats.rest_requests["/api/v3/time"] == 1
        clock.resync_interval_s = 0
        sim.faults.clock_skew_ms = 10_000
        before = metric("tessera_exchange_clock_resyncs_total", reason="periodic")
        clock.refresh_if_due()
        assert clock._refresh is not None
        await asyncio.wait_for(clock._refresh, 10)
        assert metric("tessera_exchange_clock_resyncs_total", reason="periodic") == before + 1
        assert abs(clock.offset_ms - 10_000) <= (clock.uncertainty_ms or 0)
    finally:
        await clock.close()
    # the loop form, for a caller that keeps a task: resyncs until told to stop
    synced = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        if calls >= 3:
            synced.set()
        return time.time_ns() // 1_000_000

    looped = ExchangeClock(fetch, samples=1, resync_interval_s=0.001)
    stop = asyncio.Event()
    task = asyncio.ensure_future(looped.run(stop))
    await asyncio.wait_for(synced.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert looped.synced


# --- end to end: REST klines mid-bar against the replay -------------------------------------


async def test_klines_fetched_mid_bar_of_a_replay_drop_the_forming_bar_and_keep_the_real_one(
    market: SimMarket,
) -> None:
    """The bot's warm-up/reconnect fetch, against the simulator replaying a real recording.

    The local clock says every recorded bar is long over; the stream's event times say where
    the market is. By the market clock the newest REST row is still forming and is dropped;
    the stream later closes that bar with its real content, which is what the bot must see."""
    first = market.clock_ms[0]
    target = first - first % MINUTE + 2 * MINUTE + 20_000  # 20 s into a bar, 40 s before its end
    clock = MarketClock(fallback=lambda: time.time_ns() // 1_000_000)
    finals: dict[int, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    now_then = 0
    closed: list[list[Any]] = []
    url_ws = "/stream?streams=btcusdt@trade/btcusdt@kline_1m"
    async with (
        # paced like a live market (30x): REST and the stream agree on where the market is
        ExchangeSimulator(market, speed=30.0) as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(sim.ws_url + url_ws, max_msg_size=0) as ws,
    ):
        async for msg in ws:
            d = orjson.loads(msg.data)["data"]
            clock.observe(d["s"], int(d["E"]))  # what the bot's feed does with every frame
            if d["e"] == "kline" and d["k"]["x"]:
                finals[int(d["k"]["t"])] = d["k"]
            if not rows and clock.now_ms("BTCUSDT") >= target:
                async with http.get(
                    f"{sim.rest_url}/api/v3/klines",
                    params={"symbol": "BTCUSDT", "interval": "1m", "limit": "100"},
                ) as resp:
                    rows = await resp.json()
                now_then = clock.now_ms("BTCUSDT")
                closed = clock.closed("BTCUSDT", rows)  # what the bot keeps at this moment
            if rows and int(rows[-1][0]) in finals:
                break
        with contextlib.suppress(Exception):
            await ws.close()
    assert rows, "the replay never reached the target time"
    forming = rows[-1]
    assert forming[0] <= now_then <= forming[6]  # Binance's newest row: the bar still open
    old_rule = [r for r in rows if int(r[6]) < time.time_ns() // 1_000_000]
    assert old_rule == rows  # by the local clock the forming bar passes as closed: the defect
    assert closed == rows[:-1] and len(closed) >= 2  # by the market's clock it does not
    for r in closed:  # what REST gave as closed is what the stream closed
        k = finals[int(r[0])]
        assert [k["o"], k["h"], k["l"], k["c"], k["v"], k["T"]] == r[1:7]
    real = finals[int(forming[0])]
    # the bar the old rule would have recorded as closed is not the bar that closed
    assert float(real["v"]) > float(forming[5]) and int(real["n"]) > int(forming[8])


# --- the bot on a host whose clock is off the exchange's ------------------------------------


@pytest.mark.slow
def test_a_bot_whose_host_clock_is_10s_off_the_exchange_starts_trades_and_agrees_with_it(
    tmp_path: Path,
) -> None:
    """The defect as a user meets it: ``tessera run`` with the exchange 10 s ahead of the host.
    Before, the first balance load raised a -1021 traceback; now every signed request carries
    the exchange's time and the run ends with our ledger equal to the exchange's."""
    import subprocess

    from live_bot_helpers import KEY, SECRET, TESSERA, assert_ledger_matches, bot_env

    from tessera.execution.persistence import ExecutionStore
    from tessera.sim.server import SimulatorThread
    from tessera.sim.trading import TradingConfig, TradingEngine

    simulator = ExchangeSimulator(speed=10.0, loop_replay=True)
    simulator.faults.clock_skew_ms = 10_000
    engine = TradingEngine(simulator, TradingConfig(api_key=KEY, api_secret=SECRET))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with SimulatorThread(simulator):
        res = subprocess.run(
            [TESSERA, "--metrics-port", "0", "run", "--interval", "1s", "--no-ingest",
             "--mode", "live", "--i-understand-live-trading",
             "--strategy", "sma_cross:fast=3,slow=8,qty=0.001", "--duration", "15"],
            env=bot_env(tmp_path, db, simulator),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-4000:]
        assert "Traceback" not in out and "recvWindow" not in out, out[-4000:]
        assert "local clock is off from the exchange" in out  # said once, with the offset
        store = ExecutionStore(db)
        try:
            assert_ledger_matches(store, engine)
            assert store.load_halt("main") is None
        finally:
            store.close()
