"""`Notifier`: the bot's trading events to people, through Apprise.

It subscribes to the bot's `EventHub` for the kinds in ``notify.events`` and sends one short
message per event. Fills come in bursts (a strategy rebalancing, a grid filling), so a fill
opens a short window (``batch_window_s``, 2 s) and every fill that arrives in it goes into the
same message: hundreds of fills make one delivery, not hundreds. Any other event closes the
window at once (a halt is not held back behind fills). When the notifier falls behind, the hub
drops the oldest events of its queue; the count is put on the next message and in
``tessera_notifications_total{result="dropped"}``.

Once a day at ``notify.daily_summary_utc`` (when ``daily_summary`` is among the events) it
sends a summary built from the ``summary`` callable the bot gives (equity, the day's PnL per
strategy, fills, state) plus what the notifier itself saw since the last one. The clock is a
parameter so a test can put "now" a second before the summary time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from tessera.config.models import NotifyConfig
from tessera.control.events import BotEvent, EventHub, Subscription
from tessera.logging import get_logger
from tessera.notify import metrics
from tessera.notify.delivery import Delivery
from tessera.notify.messages import (
    Message,
    dropped_note,
    format_event,
    format_fills,
    format_summary,
)
from tessera.notify.schedule import NS, day_of, next_daily, parse_hhmm

log = get_logger(__name__)

SummaryFn = Callable[[], Awaitable[Mapping[str, str]]]
# The summary loop re-reads the clock at least this often (a suspended laptop, a clock step).
MAX_SLEEP_S: Final = 30.0


class Notifier:
    """Sends the bot's events and a daily summary to the Apprise URLs of ``config``.

    ``run()`` runs until cancelled (the bot starts it as a task and cancels it on shutdown);
    ``send()`` sends one message now (the bot or `tessera notify test` may call it directly).
    """

    def __init__(
        self,
        config: NotifyConfig,
        hub: EventHub,
        *,
        bot_name: str,
        summary: SummaryFn | None = None,
        clock: Callable[[], int] = time.time_ns,
        batch_window_s: float = 2.0,
        backoff_s: float = 0.5,
        queue_size: int = 1_000,
    ) -> None:
        parse_hhmm(config.daily_summary_utc)  # a bad time fails at start, not at midnight
        self.config = config
        self.hub = hub
        self.bot_name = bot_name
        self.events = frozenset(config.events)
        self.summary = summary
        self.clock = clock
        self.batch_window_s = batch_window_s
        self.queue_size = queue_size
        self.delivery = Delivery(
            [url.get_secret_value() for url in config.urls],
            timeout_s=config.timeout_s,
            retries=config.retries,
            backoff_s=backoff_s,
        )
        self.seen: Counter[str] = Counter()
        self.dropped = 0  # events the hub dropped from this notifier's queue, in total
        self._dropped_since_summary = 0
        self.summaries_sent = 0

    # --- sending ------------------------------------------------------------------------------

    async def send(self, title: str, body: str, kind: str = "test") -> bool:
        """Send one message to every URL; True when every URL took it."""
        results = await self.send_each(title, body, kind)
        return bool(results) and all(results.values())

    async def send_each(self, title: str, body: str, kind: str = "test") -> dict[str, bool]:
        """Each URL's outcome by its name (``json#1``: scheme and position, never the URL)."""
        return await self.delivery.deliver(Message(kind, title, body))

    async def close(self) -> None:
        self.delivery.close()

    # --- the loops ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver events and daily summaries until cancelled."""
        if not self.delivery.targets:
            log.info("notifier off: no notify URLs")
            return
        kinds: set[str] = {str(k) for k in self.events if k != "daily_summary"}
        sub = self.hub.subscribe(maxsize=self.queue_size, kinds=kinds)
        log.info(
            "notifier started",
            targets=[t.name for t in self.delivery.targets],
            events=sorted(self.events),
            daily_summary_utc=self.config.daily_summary_utc
            if "daily_summary" in self.events
            else None,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                if kinds:
                    tg.create_task(self._event_loop(sub))
                if "daily_summary" in self.events:
                    tg.create_task(self._summary_loop())
        finally:
            sub.close()
            self.delivery.close()

    async def _event_loop(self, sub: Subscription) -> None:
        while True:
            event = await sub.get()
            for message in await self._messages(sub, event):
                await self.delivery.deliver(message)

    async def _messages(self, sub: Subscription, first: BotEvent) -> list[Message]:
        """The message(s) for ``first`` and, for a fill, the fills that follow it within the
        batch window (plus the message of a non-fill event that closed the window)."""
        events = [first]
        if first.kind == "fill":
            deadline = time.monotonic() + self.batch_window_s
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    nxt = await asyncio.wait_for(sub.get(), remaining)
                except TimeoutError:
                    break
                events.append(nxt)
                if nxt.kind != "fill":
                    break
        self.seen.update(e.kind for e in events)
        fills = [e for e in events if e.kind == "fill"]
        others = [e for e in events if e.kind != "fill"]
        messages = []
        try:
            if fills:
                messages.append(format_fills(self.bot_name, fills))
            messages += [format_event(self.bot_name, e) for e in others]
        except Exception as exc:  # odd event data must not stop the notifier
            log.warning(
                "notification not formatted",
                kinds=[e.kind for e in events],
                error=type(exc).__name__,
            )
            return []
        new_drops = sub.dropped - self.dropped
        if new_drops > 0:
            self.dropped = sub.dropped
            self._dropped_since_summary += new_drops
            metrics.count("other", "dropped", new_drops)
            log.warning("notifier fell behind: events dropped", dropped=new_drops)
            m = messages[0]
            messages[0] = Message(
                m.kind, m.title, f"{m.body}\n{dropped_note(new_drops)}", m.notify_type
            )
        return messages

    async def _summary_loop(self) -> None:
        while True:
            due = next_daily(self.clock(), self.config.daily_summary_utc)
            while (remaining := (due - self.clock()) / NS) > 0:  # noqa: ASYNC110 (a clock, not an event)
                await asyncio.sleep(min(remaining, MAX_SLEEP_S))
            await self.send_summary(due)

    async def send_summary(self, due_ns: int | None = None) -> bool:
        """Build and send the daily summary now (``due_ns`` names its day)."""
        values: Mapping[str, str] = {}
        if self.summary is not None:
            try:
                values = await asyncio.wait_for(self.summary(), self.config.timeout_s)
            except Exception as exc:  # the summary says so instead of not arriving
                log.warning("daily summary figures unavailable", error=type(exc).__name__)
                values = {"figures": f"unavailable ({type(exc).__name__})"}
        day = day_of(self.clock() if due_ns is None else due_ns)
        message = format_summary(
            self.bot_name, day, values, dict(self.seen), self._dropped_since_summary
        )
        self.hub.publish("daily_summary", {"day": day, **values})
        self.seen.clear()
        self._dropped_since_summary = 0
        results = await self.delivery.deliver(message)
        self.summaries_sent += 1
        return bool(results) and all(results.values())
