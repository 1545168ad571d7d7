"""One short title and body per bot event, with the numbers a person needs on a phone.

The event data follow the control API's schemas (`tessera.control.schemas`): a fill carries
``FillOut``'s fields (side, qty, symbol, price, strategy, fee, fee_asset, liquidity,
client_order_id), a halt ``HaltOut``'s (reason, by, drawdown_pct), a control action
``ActionOut``'s (action, target, actor, reason, outcome, detail). A missing field is left out
rather than printed as "None"; fields a formatter does not know are listed as ``key: value`` so
that nothing the bot published is lost. Titles start with the bot's name: one phone may get
several bots' messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tessera.control.events import BotEvent

# Apprise notify types: the colour/icon a service shows.
INFO: Final = "info"
SUCCESS: Final = "success"
WARNING: Final = "warning"
FAILURE: Final = "failure"

# A batch of fills lists at most this many, then "... and N more".
MAX_FILL_LINES: Final = 20


@dataclass(frozen=True, slots=True)
class Message:
    """What is sent: ``kind`` labels the metric; ``notify_type`` is Apprise's severity."""

    kind: str
    title: str
    body: str
    notify_type: str = INFO


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _pct(value: Any) -> str:
    """A percentage 0..100 as ``2.35%``; text that is not a number is shown as it is."""
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):.2f}%"
    except (TypeError, ValueError):
        return str(value)


def utc_time(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _lines(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    return [f"{label}: {_text(v)}" for label, v in pairs if v not in (None, "")]


def _rest(data: Mapping[str, Any], known: set[str]) -> list[str]:
    return [f"{k}: {_text(v)}" for k, v in data.items() if k not in known and v not in (None, "")]


def _body(lines: list[str], ts: int) -> str:
    return "\n".join([*lines, utc_time(ts)])


def _fill_line(d: Mapping[str, Any]) -> str:
    side = _text(d.get("side")).upper()
    line = f"{side} {_text(d.get('qty'))} {_text(d.get('symbol'))} @ {_text(d.get('price'))}"
    extra = []
    if d.get("strategy"):
        extra.append(_text(d["strategy"]))
    if d.get("fee") not in (None, ""):
        extra.append(f"fee {_text(d['fee'])} {_text(d.get('fee_asset'))}".rstrip())
    return f"{line} ({', '.join(extra)})" if extra else line


_FILL_KEYS: Final = {"side", "qty", "symbol", "price", "strategy", "fee", "fee_asset", "ts"}


def format_fills(bot: str, events: Sequence[BotEvent]) -> Message:
    """One fill as one line with its details; several (a burst) as one message listing them."""
    if len(events) == 1:
        d = events[0].data
        lines = _lines([("strategy", d.get("strategy"))])
        if d.get("fee") not in (None, ""):
            lines.append(f"fee: {_text(d['fee'])} {_text(d.get('fee_asset'))}".rstrip())
        lines += _rest(d, _FILL_KEYS)
        title = f"[{bot}] " + _fill_line({k: d.get(k) for k in ("side", "qty", "symbol", "price")})
        return Message("fill", title, _body(lines, events[0].ts))
    per_side: Counter[str] = Counter()
    for e in events:
        per_side[f"{_text(e.data.get('symbol'))} {_text(e.data.get('side')).lower()}"] += 1
    summary = ", ".join(f"{k} x{n}" for k, n in sorted(per_side.items()))
    lines = [_fill_line(e.data) for e in events[:MAX_FILL_LINES]]
    if len(events) > MAX_FILL_LINES:
        lines.append(f"... and {len(events) - MAX_FILL_LINES} more")
    title = f"[{bot}] {len(events)} fills: {summary}"
    return Message("fill", title, _body(lines, events[-1].ts))


def format_event(bot: str, event: BotEvent) -> Message:
    """The message for one event that is not a fill (fills go through `format_fills`)."""
    d = event.data
    kind = event.kind
    if kind == "fill":
        return format_fills(bot, [event])
    if kind == "halt":
        title = f"[{bot}] HALTED: {_text(d.get('reason')) or 'no reason given'}"
        lines = _lines([("by", d.get("by")), ("drawdown", _pct(d.get("drawdown_pct")))])
        lines += _rest(d, {"reason", "by", "drawdown_pct", "ts"})
        lines.append("New orders are refused until `tessera risk reset --by <name>`.")
        return Message(kind, title, _body(lines, event.ts), FAILURE)
    if kind == "kill_switch":
        limit = _pct(d.get("limit_pct") or d.get("max_drawdown_pct"))
        title = f"[{bot}] KILL-SWITCH engaged: drawdown {_pct(d.get('drawdown_pct'))}"
        if limit:
            title += f" (limit {limit})"
        known = {"drawdown_pct", "limit_pct", "max_drawdown_pct", "ts"}
        lines = _rest(d, known)
        lines.append("Trading is halted until `tessera risk reset --by <name>`.")
        return Message(kind, title, _body(lines, event.ts), FAILURE)
    if kind == "reset":
        title = f"[{bot}] Trading resumed: reset by {_text(d.get('by')) or 'unknown'}"
        lines = _lines([("reason", d.get("reason"))]) + _rest(d, {"by", "reason", "ts"})
        return Message(kind, title, _body(lines, event.ts), SUCCESS)
    if kind in ("strategy_paused", "strategy_resumed"):
        verb = "paused" if kind == "strategy_paused" else "resumed"
        title = f"[{bot}] Strategy {_text(d.get('strategy'))} {verb}"
        if d.get("by"):
            title += f" by {_text(d['by'])}"
        lines = _lines([("reason", d.get("reason"))]) + _rest(d, {"strategy", "by", "reason", "ts"})
        severity = WARNING if verb == "paused" else SUCCESS
        return Message(kind, title, _body(lines, event.ts), severity)
    if kind == "reconciliation":
        what = _text(d.get("symbol") or d.get("asset") or d.get("what"))
        title = f"[{bot}] Reconciliation mismatch{': ' + what if what else ''}"
        known = {"symbol", "asset", "what", "ts"}
        return Message(kind, title, _body(_rest(d, known), event.ts), WARNING)
    if kind == "control_action":
        target = f" {_text(d.get('target'))}" if d.get("target") else ""
        outcome = _text(d.get("outcome")) or "done"
        title = f"[{bot}] {_text(d.get('action'))}{target} by {_text(d.get('actor'))}: {outcome}"
        lines = _lines([("reason", d.get("reason")), ("detail", d.get("detail"))])
        lines += _rest(d, {"action", "target", "actor", "outcome", "reason", "detail", "ts", "id"})
        severity = INFO if outcome == "done" else WARNING
        return Message(kind, title, _body(lines, event.ts), severity)
    title = f"[{bot}] {kind}"
    return Message(kind, title, _body(_rest(d, {"ts"}), event.ts))


def format_summary(
    bot: str, day: str, values: Mapping[str, str], seen: Mapping[str, int], dropped: int
) -> Message:
    """The daily summary: the bot's figures (equity, the day's PnL per strategy, fills, state,
    as the summary callable gives them), then what the notifier itself saw since the last
    summary (events per kind, events dropped)."""
    lines = [f"{k}: {v}" for k, v in values.items()]
    if seen:
        lines.append("events: " + ", ".join(f"{k} {n}" for k, n in sorted(seen.items())))
    if dropped:
        lines.append(f"events dropped (notifier queue full): {dropped}")
    if not lines:
        lines.append("no figures available")
    return Message("daily_summary", f"[{bot}] Daily summary {day}", "\n".join(lines))


def dropped_note(n: int) -> str:
    """Appended to the next message when the hub dropped events the notifier had not read."""
    return f"({n} earlier event{'s' if n != 1 else ''} dropped: the notifier fell behind)"
