"""The event loop's lag, sampled by the bot (`tessera.live.looplag`)."""

from __future__ import annotations

import asyncio
import time

from tessera import metrics
from tessera.live.looplag import LoopLagMonitor


def _lag_count() -> float:
    for metric in metrics.EVENT_LOOP_LAG.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


async def test_a_blocking_call_on_the_loop_shows_as_lag_at_the_time_it_held_the_loop() -> None:
    monitor = LoopLagMonitor(interval_s=0.01)
    stop = asyncio.Event()
    before = _lag_count()
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.sleep(0.1)
    start_ns = time.time_ns()
    # what a blocking driver call or a long computation does to the loop
    time.sleep(0.3)  # noqa: ASYNC251 (blocking the loop is the point)
    end_ns = time.time_ns()
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert max(lag for _, lag in monitor.samples) >= 0.25
    assert _lag_count() - before == len(monitor.samples) >= 3
    assert monitor.stall_within(start_ns, end_ns) >= 0.25
    # a span the stall did not touch: before it began, and after its wake-up
    assert monitor.stall_within(start_ns - 10**9, start_ns - 10**8, over_s=0.2) == 0.0
    assert monitor.stall_within(end_ns + 10**8, end_ns + 10**9, over_s=0.2) == 0.0
