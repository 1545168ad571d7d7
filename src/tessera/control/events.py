"""`EventHub`: the bot's in-process event bus.

The bot publishes what a person watching it cares about — order updates, fills, halts and
resets, strategy pauses, reconciliation mismatches, equity samples, control actions — and any
number of subscribers (the console's server-sent events, the notifier) read them from their own
bounded queue. A slow subscriber never blocks the bot: when its queue is full the oldest event
is dropped and counted on that subscription (``dropped``), so the subscriber can say so.
Publishing is synchronous and does no I/O, so the trading path can call it anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "order",
    "fill",
    "halt",
    "kill_switch",
    "reset",
    "strategy_paused",
    "strategy_resumed",
    "reconciliation",
    "equity",
    "control_action",
    "log",
    "daily_summary",
]


@dataclass(frozen=True, slots=True)
class BotEvent:
    """One event: its kind, when it happened (ns since the epoch, UTC), and a JSON-able body
    (strings for money and quantities)."""

    kind: EventKind
    ts: int
    data: Mapping[str, Any]


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue. Iterate it (``async for event in sub``) or `get` one event."""

    hub: EventHub
    maxsize: int
    kinds: frozenset[str] | None = None
    dropped: int = 0
    _queue: deque[BotEvent] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, event: BotEvent) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    async def get(self) -> BotEvent:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[BotEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[BotEvent]:
        while True:
            yield await self.get()


class EventHub:
    """Fan-out of `BotEvent`s to subscribers; keeps the last ``history`` events for late
    subscribers (the console's first page shows recent events)."""

    def __init__(self, history: int = 200) -> None:
        self._subs: list[Subscription] = []
        self.recent: deque[BotEvent] = deque(maxlen=history)
        self.published = 0

    def publish(self, kind: EventKind, data: Mapping[str, Any], ts: int | None = None) -> BotEvent:
        event = BotEvent(kind, time.time_ns() if ts is None else ts, dict(data))
        self.published += 1
        self.recent.append(event)
        for sub in list(self._subs):
            sub.put(event)
        return event

    def subscribe(self, maxsize: int = 1_000, kinds: set[str] | None = None) -> Subscription:
        """A new subscription; call it from the event loop that will read it."""
        sub = Subscription(self, maxsize, frozenset(kinds) if kinds is not None else None)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
