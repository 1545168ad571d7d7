"""The notifier over real sockets: events published to an `EventHub` reach a local HTTP
receiver through Apprise ``json://`` and ``form://`` targets, with the numbers a person needs;
bursts of fills make one message; failures are retried, counted and logged without the URL's
secrets; the daily summary fires at its configured time."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from notify_receiver import Receiver, serve, wait_until
from pydantic import SecretStr

from tessera.config.models import NotifyConfig
from tessera.control.events import EventHub
from tessera.notify import Notifier, NotifyError
from tessera.notify import metrics as notify_metrics

pytestmark = pytest.mark.timeout(60)

SECRET_PATH = "s3cr3t-path-7f1c9a"
SECRET_PASSWORD = "pw-9b2e41d0"
SECRET_QUERY = "q-tok-55aa31"


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from serve()


def config(*urls: str, **fields: Any) -> NotifyConfig:
    return NotifyConfig(urls=[SecretStr(u) for u in urls], **fields)


async def started(notifier: Notifier, hub: EventHub) -> asyncio.Task[None]:
    before = hub.subscribers
    task = asyncio.create_task(notifier.run())
    await wait_until("the notifier to subscribe", lambda: hub.subscribers > before, 5)
    return task


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[None]]]:
    running: list[asyncio.Task[None]] = []
    yield running
    for t in running:
        t.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def fill(symbol: str = "BTCUSDT", side: str = "buy", qty: str = "0.01", price: str = "43250.5"):
    return {
        "trade_id": "t1",
        "client_order_id": "tess-abc",
        "symbol": symbol,
        "strategy": "sma_cross",
        "side": side,
        "qty": qty,
        "price": price,
        "fee": "0.4325",
        "fee_asset": "USDT",
        "liquidity": "taker",
    }


async def test_each_trading_event_arrives_as_one_message_with_its_numbers(
    rx: Receiver, tasks: list[asyncio.Task[None]]
) -> None:
    hub = EventHub()
    notifier = Notifier(
        config(f"json://127.0.0.1:{rx.port}/events"), hub, bot_name="paper-1", batch_window_s=0.2
    )
    tasks.append(await started(notifier, hub))

    hub.publish("fill", fill())
    await wait_until("the fill", lambda: rx.count() == 1)
    hub.publish("halt", {"reason": "manual stop before FOMC", "by": "alice", "drawdown_pct": 1.5})
    hub.publish("kill_switch", {"drawdown_pct": 5.23, "limit_pct": 5.0, "equity": "9477.0"})
    hub.publish("strategy_paused", {"strategy": "sma_cross", "by": "bob", "reason": "too noisy"})
    hub.publish(
        "reconciliation",
        {"symbol": "ETHUSDT", "ours": "1.5", "exchange": "1.2", "action": "halted"},
    )
    hub.publish(
        "control_action",
        {
            "action": "cancel",
            "target": "tess-xyz",
            "actor": "alice",
            "reason": "stale",
            "outcome": "done",
        },
    )
    await wait_until("six messages", lambda: rx.count() == 6)
    by_title = {b["title"]: b for b in rx.bodies()}
    titles = list(by_title)

    assert titles[0] == "[paper-1] BUY 0.01 BTCUSDT @ 43250.5"
    assert "strategy: sma_cross" in by_title[titles[0]]["message"]
    assert "fee: 0.4325 USDT" in by_title[titles[0]]["message"]
    assert titles[1] == "[paper-1] HALTED: manual stop before FOMC"
    halt = by_title[titles[1]]
    assert "by: alice" in halt["message"] and "drawdown: 1.50%" in halt["message"]
    assert halt["type"] == "failure"
    assert titles[2] == "[paper-1] KILL-SWITCH engaged: drawdown 5.23% (limit 5.00%)"
    assert "equity: 9477.0" in by_title[titles[2]]["message"]
    assert titles[3] == "[paper-1] Strategy sma_cross paused by bob"
    assert "reason: too noisy" in by_title[titles[3]]["message"]
    assert titles[4] == "[paper-1] Reconciliation mismatch: ETHUSDT"
    recon = by_title[titles[4]]["message"]
    assert "ours: 1.5" in recon and "exchange: 1.2" in recon
    assert titles[5] == "[paper-1] cancel tess-xyz by alice: done"
    assert all(r.path == "/events" for r in rx.requests)


async def test_a_burst_of_fills_is_sent_as_one_message(
    rx: Receiver, tasks: list[asyncio.Task[None]]
) -> None:
    hub = EventHub()
    notifier = Notifier(
        config(f"form://127.0.0.1:{rx.port}/fills"), hub, bot_name="grid", batch_window_s=1.0
    )
    tasks.append(await started(notifier, hub))
    sent_before = notify_metrics.value("fill", "sent")

    for i in range(300):
        hub.publish("fill", fill(side="buy" if i % 3 else "sell", qty=f"0.00{i % 9 + 1}"))
        if i % 50 == 0:
            await asyncio.sleep(0.01)  # a burst over a few event-loop turns, not one
    await wait_until("the batch", lambda: rx.count() >= 1)
    # a second message would come at most one window later
    await asyncio.sleep(1.2)
    assert rx.count() == 1, [b["title"] for b in rx.bodies()]
    body = rx.bodies()[0]
    assert body["title"] == "[grid] 300 fills: BTCUSDT buy x200, BTCUSDT sell x100"
    assert "... and 280 more" in body["message"]
    assert body["message"].count(" @ 43250.5") == 20
    assert notify_metrics.value("fill", "sent") == sent_before + 1


async def test_events_not_in_the_config_are_not_sent(
    rx: Receiver, tasks: list[asyncio.Task[None]]
) -> None:
    hub = EventHub()
    notifier = Notifier(
        config(f"json://127.0.0.1:{rx.port}/x", events=["halt"]),
        hub,
        bot_name="b",
        batch_window_s=0.1,
    )
    tasks.append(await started(notifier, hub))
    hub.publish("fill", fill())
    hub.publish("reset", {"by": "alice", "reason": "ok"})
    hub.publish("strategy_paused", {"strategy": "s"})
    hub.publish("halt", {"reason": "only this one"})
    await wait_until("the halt", lambda: rx.count() >= 1)
    await asyncio.sleep(0.3)
    assert [b["title"] for b in rx.bodies()] == ["[b] HALTED: only this one"]


async def test_events_dropped_by_a_full_queue_are_reported_on_the_next_message(
    rx: Receiver, tasks: list[asyncio.Task[None]]
) -> None:
    hub = EventHub()
    notifier = Notifier(config(f"json://127.0.0.1:{rx.port}/x"), hub, bot_name="b", queue_size=5)
    dropped_before = notify_metrics.value("other", "dropped")
    tasks.append(await started(notifier, hub))
    for i in range(50):  # in one go: the notifier cannot read between them
        hub.publish("reset", {"by": f"person{i}"})
    await wait_until("five messages", lambda: rx.count() == 5)
    bodies = rx.bodies()
    assert bodies[0]["title"] == "[b] Trading resumed: reset by person45"
    assert "(45 earlier events dropped: the notifier fell behind)" in bodies[0]["message"]
    assert notify_metrics.value("other", "dropped") == dropped_before + 45


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.text.write(self.format(record) + "\n")
        if record.exc_info:
            self.text.write(logging.Formatter().formatException(record.exc_info) + "\n")


@pytest.fixture
def all_logs() -> Iterator[_Records]:
    """Every stdlib record at DEBUG (Apprise's, urllib3's request lines), unformatted by the
    project's scrubbing formatter: what the notifier itself lets through."""
    handler = _Records()
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in ("apprise", "urllib3")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in saved[1]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def assert_no_secret(text: str) -> None:
    for secret in (SECRET_PATH, SECRET_PASSWORD, SECRET_QUERY):
        assert secret not in text, f"{secret} leaked into the logs:\n{text}"


async def test_a_failing_receiver_is_retried_then_counted_and_logged_without_the_secret(
    rx: Receiver, all_logs: _Records
) -> None:
    rx.status = 500
    url = f"json://alert:{SECRET_PASSWORD}@127.0.0.1:{rx.port}/hooks/{SECRET_PATH}?-token={SECRET_QUERY}"
    notifier = Notifier(config(url, retries=2), EventHub(), bot_name="b", backoff_s=0.05)
    failed_before = notify_metrics.value("halt", "failed")
    with structlog.testing.capture_logs() as events:
        ok = await notifier.send("[b] HALTED: test", "body", "halt")
    await notifier.close()

    assert ok is False
    assert rx.count() == 3, "one try and two retries"
    first = rx.requests[0]
    # the secrets did reach the receiver (so they were in play), just not the logs
    assert first.path == f"/hooks/{SECRET_PATH}" and first.query["token"] == [SECRET_QUERY]
    assert notify_metrics.value("halt", "failed") == failed_before + 1
    failures = [e for e in events if e["event"] == "notification failed"]
    assert len(failures) == 1 and failures[0]["target"] == "json#1"
    assert failures[0]["attempts"] == 3
    logged = all_logs.text.getvalue()
    assert "Failed to send JSON" in logged and "POST ***" in logged, "apprise and urllib3 logged"
    assert_no_secret(all_logs.text.getvalue() + repr(events))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_receiver_that_is_down_fails_after_its_retries_and_the_others_still_get_it(
    rx: Receiver, all_logs: _Records
) -> None:
    down = f"form://127.0.0.1:{closed_port()}/{SECRET_PATH}?-key={SECRET_QUERY}"
    notifier = Notifier(
        config(down, f"json://127.0.0.1:{rx.port}/ok", retries=1, timeout_s=2),
        EventHub(),
        bot_name="b",
        backoff_s=0.05,
    )
    with structlog.testing.capture_logs() as events:
        results = await notifier.send_each("[b] test", "hello", "test")
    await notifier.close()
    assert results == {"form#1": False, "json#2": True}
    assert [b["message"] for b in rx.bodies()] == ["hello"], "the working URL once, no retry"
    assert any(e.get("target") == "form#1" for e in events)
    assert_no_secret(all_logs.text.getvalue() + repr(events))


async def test_the_daily_summary_is_sent_at_the_configured_utc_time(
    rx: Receiver, tasks: list[asyncio.Task[None]]
) -> None:
    # "now" is 07:29:58 UTC (plus real time elapsed): the 07:30 summary is two seconds away.
    start = datetime(2026, 3, 2, 7, 29, 58, tzinfo=UTC)
    offset = int(start.timestamp() * 1e9) - time.time_ns()
    calls = 0

    async def summary() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {
            "equity": "10234.50 USDT",
            "PnL sma_cross": "+12.30 USDT",
            "PnL rsi": "-3.10 USDT",
            "fills": "14",
            "state": "trading",
        }

    hub = EventHub()
    notifier = Notifier(
        config(f"json://127.0.0.1:{rx.port}/d", daily_summary_utc="07:30"),
        hub,
        bot_name="paper-1",
        summary=summary,
        clock=lambda: time.time_ns() + offset,
        batch_window_s=0.1,
    )
    tasks.append(await started(notifier, hub))
    hub.publish("halt", {"reason": "x"})
    await wait_until("the halt and the summary", lambda: rx.count() == 2, limit_s=10)
    (summary_msg,) = [b for b in rx.bodies() if "Daily summary" in b["title"]]
    assert summary_msg["title"] == "[paper-1] Daily summary 2026-03-02"
    for line in (
        "equity: 10234.50 USDT",
        "PnL sma_cross: +12.30 USDT",
        "PnL rsi: -3.10 USDT",
        "fills: 14",
        "state: trading",
        "events: halt 1",
    ):
        assert line in summary_msg["message"]
    assert calls == 1
    assert hub.recent[-1].kind == "daily_summary"
    # the next one is due a day later, not again now
    await asyncio.sleep(0.5)
    assert rx.count() == 2 and notifier.summaries_sent == 1


def test_next_daily_is_strictly_after_now_and_midnight_reports_the_day_that_ended() -> None:
    from tessera.notify.schedule import day_of, next_daily

    at = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    ns = int(at.timestamp()) * 1_000_000_000
    assert next_daily(ns - 1, "07:30") == ns
    assert next_daily(ns, "07:30") == ns + 86_400 * 1_000_000_000
    midnight = int(datetime(2026, 3, 3, tzinfo=UTC).timestamp()) * 1_000_000_000
    assert day_of(midnight) == "2026-03-02"
    assert day_of(ns) == "2026-03-02"
    assert next_daily(ns, "00:00") == midnight
    assert datetime.fromtimestamp(midnight / 1e9, tz=UTC) - at == timedelta(hours=16, minutes=30)


def test_a_url_apprise_cannot_use_is_a_clear_error_that_does_not_repeat_it() -> None:
    with pytest.raises(NotifyError) as exc:
        Notifier(config(f"nosuchscheme://{SECRET_PATH}"), EventHub(), bot_name="b")
    assert "entry 1 (scheme 'nosuchscheme')" in str(exc.value)
    assert SECRET_PATH not in str(exc.value)
