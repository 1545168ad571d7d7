"""Delivery through Apprise: one target per URL, each tried with a timeout and retried with
backoff, and no URL ever in a log line.

Why one Apprise object per URL: the result of each URL is wanted separately (a failed Telegram
must be retried without sending the Slack message twice, and `tessera notify test` says which
URL works). Apprise's ``notify`` blocks (requests), so it runs in a worker thread; the socket
timeouts of the plugin are set to ``timeout_s`` and the thread is also awaited with a deadline.

Apprise URLs carry their secrets in the URL itself (``tgram://<bot token>/<chat>``,
``json://host/<key>?token=...``). We log a target as ``<scheme>#<n>`` only, and a filter on the
loggers that could print a URL (Apprise's own, urllib3's request lines, requests') replaces
every secret-looking part of the configured URLs — host, user, password, path segments, query
values — with ``***`` before any handler sees the record.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import apprise

from tessera.logging import get_logger
from tessera.notify import metrics
from tessera.notify.messages import Message

log = get_logger(__name__)

# Loggers that may print a URL while Apprise delivers.
URL_LOGGERS: Final = ("apprise", "urllib3.connectionpool", "requests")
# Parts of a URL shorter than this are not treated as secrets (they would mask common words).
MIN_SECRET_LEN: Final = 4
MASK: Final = "***"


class NotifyError(ValueError):
    """A notify URL Apprise cannot use (the message names it by position and scheme only)."""


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


def secret_parts(url: str) -> set[str]:
    """Every part of ``url`` that may be a secret, raw and percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    found = {url, url.split("://", 1)[-1]}
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        user, _, password = netloc[0].partition(":")
        found |= {user, password}
    found.add(netloc[-1].split(":", 1)[0])
    found |= set(parts.path.split("/"))
    found.add(parts.path)
    found.add(parts.query)
    for key_value in parts.query.split("&"):
        found.add(key_value.partition("=")[2])
    found.add(parts.fragment)
    decoded = {urllib.parse.unquote_plus(p) for p in found}
    return {p for p in found | decoded if len(p) >= MIN_SECRET_LEN}


class RedactingFilter(logging.Filter):
    """Masks the given secret strings in a record's rendered message (and drops its args, so
    a handler cannot re-render them)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # longest first: a URL is masked whole before its parts are
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, MASK)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(s in text for s in self.secrets):
                record.exc_info, record.exc_text = None, None
        return True


@dataclass
class Target:
    """One Apprise URL: ``name`` (``json#1``) is what logs and results show."""

    name: str
    scheme: str
    apprise: apprise.Apprise


def build_targets(urls: Sequence[str], timeout_s: float) -> list[Target]:
    """An Apprise object per URL, with its socket timeouts set to ``timeout_s``; a URL Apprise
    does not understand is a `NotifyError` naming its position and scheme, never its text."""
    targets = []
    for i, url in enumerate(urls, start=1):
        scheme = scheme_of(url)
        name = f"{scheme}#{i}"
        plugin: Any = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise NotifyError(
                f"notify.urls entry {i} (scheme {scheme!r}) is not a URL Apprise can send to: "
                "check the scheme and its required parts (see `apprise --details`)"
            )
        plugin.socket_connect_timeout = timeout_s
        plugin.socket_read_timeout = timeout_s
        app = apprise.Apprise()
        app.add(plugin)
        targets.append(Target(name, scheme, app))
    return targets


class Delivery:
    """Sends a `Message` to every target, each with ``retries`` retries (backoff doubling from
    ``backoff_s``), counts each target's outcome in ``tessera_notifications_total`` and logs
    failures by target name. Call `close` to remove the log filter it installs."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float = 0.5,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._filter = RedactingFilter(s for url in urls for s in secret_parts(url))
        for name in URL_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self.targets = build_targets(urls, timeout_s)

    def close(self) -> None:
        for name in URL_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    async def deliver(self, message: Message) -> dict[str, bool]:
        """Each target's outcome, by target name (all targets are tried concurrently)."""
        results = await asyncio.gather(*(self._to_target(t, message) for t in self.targets))
        return {t.name: ok for t, ok in zip(self.targets, results, strict=True)}

    async def _to_target(self, target: Target, message: Message) -> bool:
        attempts = 1 + self.retries
        started = time.monotonic()
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                ok = await asyncio.wait_for(
                    asyncio.to_thread(self._notify, target, message),
                    # the plugin's own socket timeouts apply per connect/read; this bounds
                    # the whole call (a slow server that trickles bytes)
                    timeout=self.timeout_s * 2 + 1,
                )
                error = "" if ok else "the service refused it or did not answer"
            except TimeoutError:
                ok, error = False, f"no answer within {self.timeout_s * 2 + 1:.0f} s"
            except Exception as exc:  # a plugin bug must not kill the notifier
                ok, error = False, type(exc).__name__
            if ok:
                metrics.count(message.kind, "sent")
                if attempt > 1:
                    log.info(
                        "notification delivered after retry",
                        target=target.name,
                        kind=message.kind,
                        attempts=attempt,
                    )
                return True
            if attempt < attempts:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
        metrics.count(message.kind, "failed")
        log.warning(
            "notification failed",
            target=target.name,
            kind=message.kind,
            attempts=attempts,
            error=error,
            elapsed_s=round(time.monotonic() - started, 3),
        )
        return False

    @staticmethod
    def _notify(target: Target, message: Message) -> bool:
        return bool(
            target.apprise.notify(
                body=message.body, title=message.title, notify_type=message.notify_type
            )
        )
