"""The start-up heap frozen out of garbage collection while a bot trades, and every collector
pause timed (`tessera.live.heap`); the bot samples its event loop's lag meanwhile."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

from inprocess_bot import bot_options, running_simulator, wait_until

from tessera import metrics
from tessera.live.bot import TradingBot
from tessera.live.heap import freeze_startup_heap, release_startup_heap, watch_gc_pauses


class _Node:
    """Something the collector can only free as a cycle."""

    def __init__(self) -> None:
        self.me = self


def _pauses(generation: str) -> float:
    """How many pauses of ``generation`` the histogram holds."""
    for metric in metrics.GC_PAUSE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == generation:
                return sample.value
    return 0.0


def test_every_collection_of_the_oldest_generation_is_timed() -> None:
    watch_gc_pauses()
    watch_gc_pauses()  # once only: a second bot in the process does not double the counts
    before = _pauses("2")
    gc.collect()
    gc.collect()
    assert _pauses("2") == before + 2


def test_a_frozen_cycle_outlives_collections_until_released_and_new_garbage_is_still_freed() -> (
    None
):
    kept = _Node()
    kept_ref = weakref.ref(kept)
    frozen = freeze_startup_heap()
    try:
        assert 0 < gc.get_freeze_count() <= frozen
        assert metrics.GC_FROZEN_OBJECTS._value.get() == frozen
        del kept
        gc.collect()
        assert kept_ref() is not None  # frozen: no collection walks it
        made_after = _Node()
        after_ref = weakref.ref(made_after)
        del made_after
        gc.collect()
        assert after_ref() is None  # what the bot makes later is collected as ever
    finally:
        release_startup_heap()
    assert gc.get_freeze_count() == 0 and metrics.GC_FROZEN_OBJECTS._value.get() == 0
    gc.collect()
    assert kept_ref() is None  # released: the earlier bot's garbage is freed


async def _trade_until_stopped(tmp_path: Path) -> weakref.ref[TradingBot]:
    """A paper bot run to readiness and stopped; what is checked while it trades is checked
    here. Answers a weak reference: nothing else keeps the bot once this returns."""
    with running_simulator() as (sim, _engine):
        bot = TradingBot(bot_options(sim, f"sqlite:///{tmp_path / 'bot.db'}", mode="paper"))
        task = asyncio.create_task(bot.run())
        await wait_until(lambda: bot.health.ready or task.done(), 60, "the bot ready")
        assert not task.done(), bot.problems
        frozen: Any = metrics.GC_FROZEN_OBJECTS._value.get()
        # objects freed by their reference count leave the frozen set meanwhile
        assert frozen > 100_000 and 0 < gc.get_freeze_count() <= frozen
        gen2 = _pauses("2")
        gc.collect()  # what the interpreter does now and then: timed, and walks less
        assert _pauses("2") == gen2 + 1
        # the loop's lag is sampled while it trades (tessera.live.looplag)
        await wait_until(lambda: len(bot.loop_lag.samples) >= 3, 10, "loop-lag samples")
        bot._request_stop()
        assert await asyncio.wait_for(task, 60) == 0, bot.problems
        return weakref.ref(bot)


async def test_a_trading_bot_freezes_its_start_up_heap_and_gives_it_back_when_it_stops(
    tmp_path: Path,
) -> None:
    bot_ref = await _trade_until_stopped(tmp_path)
    assert gc.get_freeze_count() == 0 and metrics.GC_FROZEN_OBJECTS._value.get() == 0
    gc.collect()
    assert bot_ref() is None  # the stopped bot, frozen with the rest, is freed
