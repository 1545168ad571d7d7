"""`LogBuffer`: the last few hundred log lines of this process, for the console's log page and
``GET /api/v1/logs``.

`tessera.logging.configure_logging` installs `log_buffer_processor` in its formatter chain
right after the repository's own redaction, so every line that is written is also copied here
(the same lines, the same level filter). The copy is short and safe to show to a read-only
operator: each field value is cut to a short string, and the value of any key that looks like a
secret (token, password, secret, key, authorization, cookie, session) is replaced by ``***``
whatever it holds — a second line of defence after the log redaction, since these lines leave
the process over HTTP.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MASK = "***"
MAX_FIELD = 300  # characters of one field's value
MAX_FIELDS = 30
SECRET_KEY = re.compile(r"token|password|passwd|secret|key|authorization|cookie|session", re.I)
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
# what the log machinery adds, not the event's fields
_META = {"event", "level", "logger", "timestamp", "_record", "_from_structlog", "exc_info"}


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line: when (ns since the epoch, UTC), its level, message, logger and fields
    (every value a short string)."""

    ts: int
    level: str
    event: str
    logger: str | None
    fields: Mapping[str, str] = field(default_factory=dict)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 3] + "..."


def safe_fields(event_dict: Mapping[str, Any]) -> dict[str, str]:
    """The event's own fields as short strings, secrets masked by key."""
    out: dict[str, str] = {}
    for key, value in event_dict.items():
        if key in _META or key.startswith("_"):
            continue
        if len(out) >= MAX_FIELDS:
            break
        out[str(key)] = MASK if SECRET_KEY.search(str(key)) else _short(value)
    return out


class LogBuffer:
    """A bounded ring of `LogRecord`s; appending is thread-safe (the database's worker
    threads log too) and O(1)."""

    def __init__(self, maxlen: int = 500) -> None:
        self._lines: deque[LogRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.appended = 0

    def append(self, record: LogRecord) -> None:
        with self._lock:
            self._lines.append(record)
            self.appended += 1

    def add_event(self, event_dict: Mapping[str, Any]) -> None:
        """A structlog event dict as a `LogRecord`."""
        level = str(event_dict.get("level", "info")).lower()
        logger = event_dict.get("logger")
        self.append(
            LogRecord(
                ts=time.time_ns(),
                level=level,
                event=_short(event_dict.get("event", "")),
                logger=str(logger) if logger is not None else None,
                fields=safe_fields(event_dict),
            )
        )

    def recent(self, limit: int = 200, level: str | None = None) -> list[LogRecord]:
        """The newest ``limit`` lines, oldest first; with ``level``, that level and above
        (``warning`` gives warnings, errors and critical lines)."""
        with self._lock:
            lines = list(self._lines)
        if level:
            floor = _LEVELS.get(level.lower())
            if floor is None:
                raise ValueError(
                    f"unknown log level {level!r}: use debug, info, warning, error or critical"
                )
            lines = [r for r in lines if _LEVELS.get(r.level, 20) >= floor]
        return lines[-limit:] if limit > 0 else []

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()


# the process's buffer: what `log_buffer_processor` fills and `BotControl.recent_logs` reads
BUFFER = LogBuffer(500)


def log_buffer_processor(_: Any, __: str, event_dict: Any) -> Any:
    """structlog processor: copy the event into `BUFFER`; the event goes on unchanged. A
    failure here must never lose the log line itself, so it is swallowed."""
    with contextlib.suppress(Exception):  # a convenience: the line is still written
        BUFFER.add_event(event_dict)
    return event_dict
