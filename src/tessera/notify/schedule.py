"""When the daily summary is due: the next ``HH:MM`` UTC strictly after a given time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

NS = 1_000_000_000


def parse_hhmm(hhmm: str) -> tuple[int, int]:
    """``"07:30"`` -> ``(7, 30)``; anything else is a clear ValueError."""
    hours, sep, minutes = hhmm.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"daily_summary_utc must be HH:MM (UTC), got {hhmm!r}")
    h, m = int(hours), int(minutes)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"daily_summary_utc must be HH:MM (UTC), got {hhmm!r}")
    return h, m


def next_daily(now_ns: int, hhmm: str) -> int:
    """The next time (ns since the epoch) at ``hhmm`` UTC that is strictly after ``now_ns``."""
    h, m = parse_hhmm(hhmm)
    # whole seconds and integer ns: a float of ns since the epoch cannot tell 1 ns apart
    day = datetime.fromtimestamp(now_ns // NS, tz=UTC)
    due = day.replace(hour=h, minute=m, second=0, microsecond=0)
    due_ns = int(due.timestamp()) * NS
    return due_ns if due_ns > now_ns else due_ns + 86_400 * NS


def day_of(ts_ns: int) -> str:
    """The UTC date a summary due at ``ts_ns`` reports on: the day that just ended when the
    summary is at midnight, else the current day."""
    moment = datetime.fromtimestamp(ts_ns // NS, tz=UTC)
    if moment.hour == 0 and moment.minute == 0:
        moment -= timedelta(minutes=1)
    return moment.strftime("%Y-%m-%d")
