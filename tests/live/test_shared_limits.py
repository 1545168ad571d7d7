"""One API key, one exchange budget: two `tessera run` processes sharing a key and a Redis stay
inside the simulator's order-count limit together, and the limiter learns other clients'
request weight from the exchange's headers.

The simulator runs in this process's background thread and is reached over sockets; its
orders-per-10-s limit is set low (and advertised in its exchangeInfo, as Binance advertises its
own), and every HTTP answer it gives is counted by status.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from live_bot_helpers import free_port, wait_for

from tessera.sim.market import SimMarket
from tessera.sim.recording import BUNDLED_RECORDINGS
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine, with_order_limit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
TESSERA = [sys.executable, "-m", "tessera.cli"]
SECRET = "shared-test-secret"
ORDER_LIMIT = 10  # orders per 10 s
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BUSY = "sma_cross:fast=1,slow=2,qty=0.01"  # trades on nearly every turn of the price


def http_get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def metric_sum(text: str, name: str) -> float:
    """Sum of a metric's samples over all label sets."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:\{{.*\}})? (\S+)$", text, re.M))


class StatusCounter:
    """Counts every HTTP status the simulator answers (outermost middleware: the gateway's
    own 429/418 answers for request weight are seen too)."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()

    def install(self, app: web.Application) -> None:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                resp: web.StreamResponse = await handler(request)
            except web.HTTPException as exc:
                self.statuses[exc.status] += 1
                raise
            self.statuses[resp.status] += 1
            return resp

        app.middlewares.insert(0, count)


@pytest.fixture(scope="module")
def market() -> SimMarket:
    base = SimMarket.from_recording(BUNDLED_RECORDINGS)
    # this module's own market object: it may advertise the limit the engine enforces
    base.exchange_info = with_order_limit(base.exchange_info, ORDER_LIMIT)
    return base


@pytest.fixture
def api_key() -> str:
    return f"shared-test-{secrets.token_hex(4)}"


@pytest.fixture
def venue(
    market: SimMarket, api_key: str
) -> Iterator[tuple[ExchangeSimulator, TradingEngine, StatusCounter, SimulatorThread]]:
    sim = ExchangeSimulator(market, speed=10.0, loop_replay=True)
    engine = TradingEngine(
        sim, TradingConfig(api_key=api_key, api_secret=SECRET, max_orders_10s=ORDER_LIMIT)
    )
    counter = StatusCounter()
    sim.add_routes(counter.install)
    thread = SimulatorThread(sim)
    thread.start()
    yield sim, engine, counter, thread
    thread.stop()


async def _replay_then_hold(sim: ExchangeSimulator, seconds: float) -> None:
    """Replay ``seconds`` of the market (closed bars for the bots' warm-up), then stand still."""
    sim.start_replay()
    await asyncio.sleep(seconds)
    sim.pause()


async def _resume(sim: ExchangeSimulator) -> None:
    sim.resume()


@pytest.fixture
def limiter_keys(api_key: str) -> Iterator[str]:
    """The limiter's Redis key prefix for ``api_key``; its keys are removed afterwards."""
    import redis

    from tessera.live.ratelimit import key_prefix

    prefix = key_prefix(api_key)
    yield prefix
    r = redis.Redis(host="127.0.0.1", port=6379)
    for k in r.scan_iter(match=f"{prefix}:*"):
        r.delete(k)
    r.close()


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    import psycopg

    name = f"tessera_t_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_bot(
    sim: ExchangeSimulator, api_key: str, db_url: str, tmp_path: Path, name: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=db_url,
        TESSERA_REDIS_URL="redis://127.0.0.1:6379/0",
        # a stream per bot: each executes its own signals; the rate limit is what they share
        TESSERA_LIVE__SIGNAL_STREAM=f"tessera:test:{secrets.token_hex(4)}:signals",
        TESSERA_EXCHANGE__REST_URL=sim.rest_url,
        TESSERA_EXCHANGE__WS_URL=sim.ws_url,
        TESSERA_EXCHANGE__API_KEY=api_key,
        TESSERA_EXCHANGE__API_SECRET=SECRET,
        TESSERA_DATA_DIR=str(tmp_path / name),
    )
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    argv = [*TESSERA, "--metrics-port", str(port), "run", "--mode", "dev", "--strategy", BUSY]
    argv += ["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--interval", "1s", "--no-ingest"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return proc, port, log_path


@pytest.mark.slow
def test_two_bots_sharing_a_key_stay_inside_the_order_limit(
    venue: tuple[ExchangeSimulator, TradingEngine, StatusCounter, SimulatorThread],
    api_key: str,
    limiter_keys: str,
    fresh_postgres_url: str,
    second_postgres_url: str,
    tmp_path: Path,
) -> None:
    import redis

    sim, engine, counter, thread = venue
    # One account, two ledgers: a bot whose start-up reconciliation finds the other's trades
    # on the account halts (trades of no order of its own), as it must — and as one of them
    # did in a CI run where the other had started trading first. So the market replays a few
    # bars for their warm-up, then stands still until both have reconciled and run.
    thread.call(_replay_then_hold(sim, 1.0))
    bots = [
        start_bot(sim, api_key, url, tmp_path, f"bot{i}")
        for i, url in enumerate((fresh_postgres_url, second_postgres_url))
    ]
    r = redis.Redis(host="127.0.0.1", port=6379)
    seen: dict[str, int] = {}  # limiter window key -> highest count seen
    try:
        for proc, _, log_path in bots:
            wait_for(
                "the bots to run",
                lambda p=proc, lp=log_path: "bot running" in lp.read_text(),  # type: ignore[misc]
                40,
                lambda lp=log_path: lp.read_text()[-3000:],  # type: ignore[misc]
            )
        thread.call(_resume(sim))
        # two windows of 10 s: together the strategies want far more than 10 orders in each
        deadline = time.monotonic() + 21
        while time.monotonic() < deadline:
            for key in r.scan_iter(match=f"{limiter_keys}:orders_10s:*"):
                value = r.get(key)
                if value is not None:
                    seen[key.decode()] = max(seen.get(key.decode(), 0), int(value))
            time.sleep(0.1)
        sampled_until_ms = time.time_ns() // 1_000_000
        texts = [http_get(f"http://127.0.0.1:{port}/metrics") for _, port, _ in bots]
    finally:
        for proc, _, _ in bots:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc, _, _ in bots]
        r.close()
    logs = [lp.read_text() for _, _, lp in bots]
    assert codes == [0, 0], [log[-3000:] for log in logs]

    # the exchange never had to refuse anything for rate limits
    assert engine.rate_limited == 0
    assert counter.statuses[429] == 0 and counter.statuses[418] == 0, counter.statuses
    assert "rate limit hit" not in "".join(logs)
    assert "trading halted" not in "".join(logs), [log[-4000:] for log in logs]

    # both processes traded, and together they used the budget to the full but not beyond
    orders = list(engine.orders.values())
    by_bot = Counter(o.client_order_id.rsplit("-", 1)[0] for o in orders)
    assert len(by_bot) == 2 and min(by_bot.values()) >= 1, (
        by_bot,
        counter.statuses,
        [metric_sum(t, "tessera_signals_total") for t in texts],
        [log[-4000:] for log in logs],
    )
    per_window = Counter(o.time_ms // 10_000 for o in orders)
    assert max(per_window.values()) == ORDER_LIMIT, per_window
    signals = sum(metric_sum(t, "tessera_signals_total") for t in texts)
    assert signals > 2 * ORDER_LIMIT  # the strategies wanted more than the budget allowed
    waits = sum(metric_sum(t, "tessera_rate_limit_waits_total") for t in texts)
    assert waits >= 1  # ... so the limiter made them wait

    # one budget in Redis, keyed by the API key's hash: its windows held at most the limit,
    # and it reserved every order the exchange saw in them
    assert seen, "no limiter window keys in Redis"
    assert max(seen.values()) <= ORDER_LIMIT, seen
    assert max(seen.values()) == ORDER_LIMIT, seen
    checked = 0
    for key, used in seen.items():
        start_ms = int(key.rsplit(":", 1)[1])
        if start_ms + 10_000 > sampled_until_ms - 200:
            # a window still open when the sampling stopped (the bots trade on until their
            # SIGTERM): its last reservations were never read
            continue
        window = start_ms // 10_000
        assert per_window.get(window, 0) <= used, (key, used, per_window)
        checked += 1
    assert checked >= 1, (seen, sampled_until_ms)  # 21 s of sampling hold a whole window
    assert api_key not in "".join(seen)


async def test_the_limiter_learns_other_clients_weight_from_the_headers(
    venue: tuple[ExchangeSimulator, TradingEngine, StatusCounter, SimulatorThread],
    api_key: str,
    limiter_keys: str,
    redis_client: Any,
) -> None:
    from tessera.live.ratelimit import RedisRateLimiter, limits_from_exchange_info
    from tessera.venues.binance_spot.exchange import CcxtExchange

    sim, _, counter, _ = venue
    async with aiohttp.ClientSession() as session:
        async with session.get(sim.rest_url + "/api/v3/exchangeInfo") as resp:
            limits = limits_from_exchange_info(await resp.json(content_type=None))
        limiter = RedisRateLimiter(redis_client, limits, api_key=api_key)
        ours = CcxtExchange(sim.rest_url, api_key, SECRET, limiter=limiter)
        try:
            for _ in range(3):  # a minute boundary between the steps resets both counts: redo
                minute = int(time.time() // 60)
                await ours.balances()  # our own usage: markets (20) + account (20)
                before = await limiter.used("request_weight_1m")
                # a third client on the same IP spends weight without telling our limiter
                for _ in range(5):
                    async with session.get(sim.rest_url + "/api/v3/trades?symbol=BTCUSDT") as r:
                        assert r.status == 200
                        third_party = int(r.headers["X-MBX-USED-WEIGHT-1M"])
                assert await limiter.used("request_weight_1m") == before  # not yet known to us
                await ours.balances()  # the answer's X-MBX-USED-WEIGHT-1M tells us
                after = await limiter.used("request_weight_1m")
                if int(time.time() // 60) == minute:
                    break
            else:
                pytest.fail("three minute boundaries in a row")
        finally:
            await ours.close()
    assert third_party >= before + 5 * 25
    assert after >= third_party + 20  # theirs and our latest request, not only ours
    assert after == sim.rest.used_weight("127.0.0.1")
    assert counter.statuses[429] == 0
