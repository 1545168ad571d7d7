"""How late the bot's event loop runs what is due: the lag an order meets before any I/O.

Everything the bot does for an order — the frame's decode, the model, the strategy, the risk
checks, the intent's write, the request — runs on one event loop. Anything holding that loop (a
blocking call, a long computation, a garbage collection) delays every frame and order behind it,
and the order's trace then shows the delay in whichever stage was waiting, not where it came
from. So a task asks to wake every ``interval_s`` and measures how late it woke: the excess is
time the loop spent on something else. It goes to ``tessera_event_loop_lag_seconds``; the
newest samples stay here, stamped with the wall clock of `LatencyTrace`, so that a slow order
can be matched with a stall of the loop (`bench/bench_live.py` does).

The cost is one wake-up per interval (a few µs each: ~0.1 ms per second at the default 50 ms).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from tessera import metrics


class LoopLagMonitor:
    """Samples the event loop's lag; ``samples`` holds (wall-clock ns at wake-up, lag in s)."""

    def __init__(self, interval_s: float = 0.05, keep: int = 20_000) -> None:
        self.interval_s = interval_s
        self.samples: deque[tuple[int, float]] = deque(maxlen=keep)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        observe = metrics.EVENT_LOOP_LAG.observe
        while not stop.is_set():
            due = loop.time() + interval
            await asyncio.sleep(interval)
            if stop.is_set():
                return  # the shutdown's own work (closing connections) is not trading's lag
            lag = max(loop.time() - due, 0.0)
            self.samples.append((time.time_ns(), lag))
            observe(lag)

    def stall_within(self, start_ns: int, end_ns: int, over_s: float = 0.001) -> float:
        """The longest lag over ``over_s`` whose stall overlapped the wall-clock span from
        ``start_ns`` to ``end_ns`` (a stall ends at the wake-up that measured it), 0.0 if none."""
        return max(
            (
                lag
                for ns, lag in self.samples
                if lag > over_s and ns >= start_ns and ns - int(lag * 1e9) <= end_ns
            ),
            default=0.0,
        )
