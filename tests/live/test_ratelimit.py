"""Rate limiting against the real Redis: shared budget across processes, headers, 429/418."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import textwrap
from collections import Counter
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tessera.live.ratelimit import (
    BINANCE_SPOT_LIMITS,
    Limit,
    LocalRateLimiter,
    RateLimitBannedError,
    RedisRateLimiter,
    limits_from_exchange_info,
)


def backoff_waits() -> float:
    value = REGISTRY.get_sample_value(
        "tessera_rate_limit_waits_total", {"scope": "exchange_backoff"}
    )
    return value or 0.0


FAST = (
    Limit("request_weight_1m", 500, 20, "x-mbx-used-weight-1m"),
    Limit("orders_10s", 500, 6, "x-mbx-order-count-10s"),
)

WORKER = textwrap.dedent("""
    import asyncio, json, sys
    from redis.asyncio import Redis
    from tessera.live.ratelimit import Limit, RedisRateLimiter

    async def main(ns, n):
        r = Redis(host="127.0.0.1", port=6379)
        lim = RedisRateLimiter(r, (Limit("request_weight_1m", 500, 20),
                                   Limit("orders_10s", 500, 6)), api_key="k", namespace=ns)
        grants = []
        for _ in range(n):
            while True:
                status, info, _ = await lim.try_acquire(weight=2, orders=1)
                if status == 0:
                    grants.append(info)
                    break
                await asyncio.sleep(info / 1000)
        await r.aclose()
        print(json.dumps(grants))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


def test_two_processes_sharing_a_key_never_exceed_the_limits() -> None:
    ns = f"tessera:test:{secrets.token_hex(4)}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, ns, "15"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    grants: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        grants += json.loads(out)
    assert len(grants) == 30
    per_window = Counter(grants)
    # orders: 6 per 500 ms window (weight 2 x 6 = 12 <= 20 also holds)
    assert max(per_window.values()) <= 6
    assert len(per_window) >= 5  # 30 orders needed at least 5 windows


async def test_headers_raise_our_count(redis_client: Any) -> None:
    lim = RedisRateLimiter(
        redis_client, FAST, api_key="k2", namespace=f"tessera:test:{secrets.token_hex(4)}"
    )
    assert (await lim.try_acquire(weight=1))[0] == 0
    await lim.observe_headers({"X-MBX-USED-WEIGHT-1M": "19"})  # another client used the key
    assert await lim.used("request_weight_1m") == 19
    status, wait, scope = await lim.try_acquire(weight=2)
    assert status == 1 and 0 < wait <= 500 and scope == "request_weight_1m"


async def test_429_backs_off_everyone_and_418_stops(redis_client: Any) -> None:
    ns = f"tessera:test:{secrets.token_hex(4)}"
    a = RedisRateLimiter(redis_client, FAST, api_key="k3", namespace=ns)
    b = RedisRateLimiter(redis_client, FAST, api_key="k3", namespace=ns)
    await a.on_429(0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    backoffs = backoff_waits()
    waited = await b.acquire(weight=1)  # the other limiter honours the shared back-off
    assert waited >= 0.25 and loop.time() - t0 >= 0.25
    assert backoff_waits() > backoffs  # counted as the exchange's back-off, not our windows
    await a.on_418(5)
    with pytest.raises(RateLimitBannedError):
        await b.acquire(weight=1)
    other_key = RedisRateLimiter(redis_client, FAST, api_key="another", namespace=ns)
    assert (await other_key.try_acquire())[0] == 0  # bans are per key


async def test_admitting_an_order_costs_no_round_trip_and_goes_by_what_this_process_saw(
    redis_client: Any,
) -> None:
    """The gateway's check before an order's intent (`admit`) reads no Redis: a ban this
    process set or saw there stops the order, a back-off it saw is waited out; a ban only
    another process has seen is learnt by the next `acquire` (the adapter's, right before the
    request), and from then on `admit` knows it too."""
    ns = f"tessera:test:{secrets.token_hex(4)}"
    a = RedisRateLimiter(redis_client, FAST, api_key="k5", namespace=ns)
    b = RedisRateLimiter(redis_client, FAST, api_key="k5", namespace=ns)
    calls: list[str] = []
    script = b._acquire

    async def counted(**kw: Any) -> Any:
        calls.append("acquire")
        return await script(**kw)

    b._acquire = counted  # type: ignore[method-assign]
    assert await b.admit() == 0.0 and calls == []
    await a.on_429(0.3)
    assert await b.admit() == 0.0  # not seen by b yet: no round trip to find out
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await b.acquire(weight=1)  # b learns of the back-off here and waits it out
    assert loop.time() - t0 >= 0.25 and calls
    await a.on_418(5)
    assert await b.admit() == 0.0
    with pytest.raises(RateLimitBannedError):
        await b.acquire(weight=1)
    n = len(calls)
    with pytest.raises(RateLimitBannedError):
        await b.admit()  # known now
    assert len(calls) == n
    with pytest.raises(RateLimitBannedError):
        await a.admit()  # the process that set it knows it without asking
    await a.on_429(0.2)  # a back-off does not lift a ban in force
    with pytest.raises(RateLimitBannedError):
        await a.admit()


async def test_api_key_is_not_in_redis_keys(redis_client: Any) -> None:
    ns = f"tessera:test:{secrets.token_hex(4)}"
    lim = RedisRateLimiter(redis_client, FAST, api_key="SUPERSECRETKEY123", namespace=ns)
    await lim.acquire(weight=1, orders=1)
    keys = [k.decode() async for k in redis_client.scan_iter(f"{ns}:*")]
    assert keys and not any("SUPERSECRET" in k for k in keys)


def test_local_limiter_same_rules() -> None:
    now = [1_000_000]
    lim = LocalRateLimiter(FAST, clock_ms=lambda: now[0])
    granted = 0
    while lim.try_acquire(weight=2, orders=1)[0] == 0:
        granted += 1
    assert granted == 6
    status, wait, scope = lim.try_acquire(weight=2, orders=1)
    assert status == 1 and wait == 500 and scope == "orders_10s"
    now[0] += 500
    assert lim.try_acquire(weight=2, orders=1)[0] == 0
    asyncio.run(lim.observe_headers({"x-mbx-used-weight-1m": "20"}))
    assert lim.try_acquire(weight=1)[0] == 1
    asyncio.run(lim.on_418(1))
    assert lim.try_acquire()[0] == 2


def test_limits_from_real_exchange_info(samples: Any) -> None:
    import gzip

    with gzip.open(samples / "cryptofeed" / "BINANCE.0.gz", "rt") as fh:
        info = json.loads(fh.readline().split(": ", 1)[1])
    assert limits_from_exchange_info(info) == BINANCE_SPOT_LIMITS
