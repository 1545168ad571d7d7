"""Signal queues: Redis Streams on the real Redis, and the in-process twin, one contract."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from tessera.live.signals import LocalSignalQueue, RedisSignalQueue, Signal, SignalQueue


def sig(i: int) -> Signal:
    return Signal(
        f"sma:BTCUSDT:{i}", "sma", "BTCUSDT", "0.01", ts_event=i, ts_recv=i + 1, ts_signal=i + 2
    )


@pytest.fixture(params=["redis", "local"])
async def queue(request: pytest.FixtureRequest, redis_client: Any) -> Any:
    if request.param == "local":
        yield LocalSignalQueue()
        return
    stream = f"tessera:test:signals:{secrets.token_hex(4)}"
    q = RedisSignalQueue(redis_client, stream=stream, group="executors", maxlen=1000)
    yield q
    await redis_client.delete(stream)


async def test_each_signal_goes_to_one_consumer_and_round_trips(queue: SignalQueue) -> None:
    for i in range(10):
        await queue.publish(sig(i))
    a = await queue.consume("a", count=6, block_ms=200)
    b = await queue.consume("b", count=10, block_ms=200)
    got = [d.signal for d in a + b]
    assert got == [sig(i) for i in range(10)]  # order kept, nothing lost, nothing twice
    assert await queue.pending() == 10
    for d in a + b:
        await queue.ack(d.entry_id)
    assert await queue.pending() == 0
    assert await queue.consume("a", block_ms=50) == []


async def test_a_consumer_waiting_on_an_empty_queue_gets_what_is_published_meanwhile(
    queue: SignalQueue,
) -> None:
    waiting = asyncio.create_task(queue.consume("a", count=4, block_ms=2_000))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await queue.publish(sig(1))
    got = await asyncio.wait_for(waiting, 2)
    assert [d.signal for d in got] == [sig(1)]


async def test_unacked_signals_of_a_dead_consumer_are_claimed(queue: SignalQueue) -> None:
    for i in range(3):
        await queue.publish(sig(i))
    taken = await queue.consume("dies", count=3, block_ms=200)
    await queue.ack(taken[0].entry_id)  # acked one, then "crashed"
    assert await queue.claim_stale("survivor", min_idle_ms=10_000) == []  # not idle long enough
    await asyncio.sleep(0.06)
    claimed = await queue.claim_stale("survivor", min_idle_ms=50)
    assert [d.signal for d in claimed] == [sig(1), sig(2)]
    assert all(d.deliveries > 1 for d in claimed)
    for d in claimed:
        await queue.ack(d.entry_id)
    assert await queue.pending() == 0


async def test_stream_is_capped(redis_client: Any) -> None:
    stream = f"tessera:test:signals:{secrets.token_hex(4)}"
    q = RedisSignalQueue(redis_client, stream=stream, maxlen=100)
    for i in range(1000):
        await q.publish(sig(i))
    length = await redis_client.xlen(stream)
    assert 100 <= length < 300  # approximate MAXLEN trims in whole macro-nodes
    await redis_client.delete(stream)


async def test_consumer_recovers_after_redis_loses_the_stream(redis_client: Any) -> None:
    stream = f"tessera:test:signals:{secrets.token_hex(4)}"
    q = RedisSignalQueue(redis_client, stream=stream)
    await q.publish(sig(1))
    assert len(await q.consume("c", block_ms=100)) == 1
    await redis_client.delete(stream)  # what a Redis restart without persistence looks like
    assert await q.consume("c", block_ms=50) == []
    await q.publish(sig(2))
    assert [d.signal for d in await q.consume("c", block_ms=200)] == [sig(2)]
    await redis_client.delete(stream)
