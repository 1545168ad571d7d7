"""Structured logging: structlog over the stdlib, one format for our loggers and everyone else's.

- ``configure_logging(level, json)`` routes structlog *and* stdlib loggers (ccxt, sqlalchemy,
  asyncio, websockets) through the same processor chain and one handler on stderr.
- Every line carries ``timestamp`` (ISO-8601 UTC), ``level``, ``logger``, ``event`` and the
  context variables ``run_id``, ``strategy``, ``symbol`` once bound with :func:`bind_context`;
  asyncio tasks inherit them because they live in :mod:`contextvars`.
- Redaction runs last before rendering and again on the rendered line: values of keys that
  look secret, ``SecretStr`` values, registered secret strings anywhere in any value, and
  passwords inside URLs never reach an output.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import IO, Any

import structlog
from pydantic import SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "**********"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|api[_-]?key|apikey|token|signature|private[_-]?key|listen[_-]?key)",
    re.IGNORECASE,
)
# user:password@host in URLs, and signature=/apiKey= style query parameters.
# the user may be empty: redis://:password@host is Redis's own form
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>(?:signature|api[_-]?key|apikey|secret|token)=)[^&\s\"']+", re.IGNORECASE
)

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(*values: str | SecretStr | None) -> None:
    """Remember secret values so that they are masked wherever they appear in a log line."""
    global _secret_pattern
    with _lock:
        for v in values:
            raw = v.get_secret_value() if isinstance(v, SecretStr) else v
            # Very short strings would mask ordinary words; real keys are long.
            if raw and len(raw) >= 3:
                _secrets.add(raw)
        if _secrets:
            alternatives = sorted(_secrets, key=len, reverse=True)
            _secret_pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def scrub(text: str) -> str:
    """Mask registered secrets, URL passwords and secret query parameters in ``text``."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


def redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every field of the event."""
    return {k: _redact_value(k, v) for k, v in event_dict.items()}


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """Second line of defence: scrub the fully rendered line, whatever produced it."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.StackInfoRenderer(),
    ]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when logging was set up.

    A command run in-process (tests, `typer.testing.CliRunner`) swaps ``sys.stderr`` and closes
    its stand-in afterwards; a handler holding the stand-in fails on every later line, and
    logging's error report prints the exception chain of the failed line — which can hold the
    very text the redaction removed (a URL with a token in a library's exception)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(
    level: str = "INFO", json: bool = False, stream: IO[str] | None = None
) -> None:
    """Configure structlog and the stdlib root logger. Idempotent: call once per process.

    ``json=True`` writes one JSON object per line (paper/live); otherwise a console format,
    colored when ``stream`` is a terminal (dev).
    """
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        raise ValueError(f"unknown log level {level!r}")
    stream = stream or sys.stderr
    shared = _shared_processors()
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        final_chain: list[Processor] = [
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ]
    else:
        colors = bool(getattr(stream, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
        final_chain = [
            redact_processor,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ]
    from tessera.control.logbuffer import log_buffer_processor  # recent lines for the console

    final_chain.insert(final_chain.index(redact_processor) + 1, log_buffer_processor)
    formatter = _RedactingFormatter(foreign_pre_chain=shared, processors=final_chain)
    handler = logging.StreamHandler(stream) if stream is not sys.stderr else _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name("tessera")

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "tessera" or isinstance(old, logging.StreamHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    # Chatty libraries: keep their warnings, drop their per-request debug noise.
    # apprise says "Notifying 1 service(s)" at INFO for every message; uvicorn's access log
    # would log every console request (the bot logs the actions themselves)
    quiet = ("alembic", "apprise", "uvicorn.access")
    for name in ("asyncio", "websockets", "aiohttp.access", "urllib3", "ccxt", *quiet):
        logging.getLogger(name).setLevel(
            max(level_no, logging.WARNING if name in quiet else logging.INFO)
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (use the module's ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


CONTEXT_KEYS = ("run_id", "strategy", "symbol")


def bind_context(**values: str | None) -> None:
    """Bind ``run_id``/``strategy``/``symbol`` for this context and the asyncio tasks it starts."""
    unknown = set(values) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"unknown context keys {sorted(unknown)}; allowed: {CONTEXT_KEYS}")
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_context(keys: Iterable[str] = CONTEXT_KEYS) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


def context() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()
