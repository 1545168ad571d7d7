"""The bot's start-up heap and the interpreter's garbage collector.

A running bot holds a few hundred thousand objects it made before its first order: the imported
libraries (ccxt alone is tens of thousands), the loaded model, the settings, the warm-up bars.
None of them will ever be garbage, yet every collection of CPython's oldest generation walks
all of them — 100-200 ms on this project's CI machine, during which the event loop runs nothing:
a market frame that arrives then waits, and its order with it. Such a collection runs whenever
the objects that survived younger collections have grown by a quarter since the last one, so a
bot that keeps bars, orders and fills in memory meets it now and then for as long as it runs.

`freeze_startup_heap` moves everything alive once the bot is warmed up into the collector's
permanent generation (`gc.freeze`, an O(1) splice): later collections walk only what the bot
made since. The young generations are collected first, so that the warm-up's own garbage is not
kept. `release_startup_heap` (at shutdown) gives the frozen objects back to the collector, so
that a process that runs several bots in turn (the tests, a notebook) keeps collecting what the
earlier ones left. Each pause is timed (`tessera_gc_pause_seconds`, by generation) whether or
not the heap is frozen: the operator sees what the collector costs, and what freezing saved.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from tessera import metrics

_watching = False
_started = 0.0


def _time_pause(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    else:
        metrics.GC_PAUSE.labels(generation=str(info["generation"])).observe(
            time.perf_counter() - _started
        )


def watch_gc_pauses() -> None:
    """Time every collection of this process into ``tessera_gc_pause_seconds`` (once)."""
    global _watching
    if not _watching:
        _watching = True
        for gen in ("0", "1", "2"):
            metrics.GC_PAUSE.labels(generation=gen)
        gc.callbacks.append(_time_pause)


def freeze_startup_heap() -> int:
    """Collect the young generations, then exempt every object alive from later collections.
    Returns how many objects the collector no longer walks."""
    gc.collect(1)
    gc.freeze()
    frozen = gc.get_freeze_count()
    metrics.GC_FROZEN_OBJECTS.set(frozen)
    return frozen


def release_startup_heap() -> None:
    """Give the frozen objects back to the collector (they join the oldest generation)."""
    gc.unfreeze()
    metrics.GC_FROZEN_OBJECTS.set(0)
