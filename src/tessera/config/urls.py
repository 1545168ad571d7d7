"""Credentials inside URLs: find them, and hide them wherever settings are shown.

A database or Redis URL carries its password in the user-info part
(``postgresql://user:password@host/db``, ``redis://:password@host:6379/0``). Such a URL is a
secret as much as an API key: `redact_url` masks the password and keeps everything a person
needs to recognise the endpoint (scheme, user, host, port, path).

Parsing is deliberately forgiving. A password written without percent-encoding may contain
``@``, ``:``, ``/``, ``?`` or ``#``; the user-info then ends at the *last* ``@``, and when in doubt
more is masked, never less: showing too little of a URL is harmless, showing a password is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from tessera.logging import REDACTED

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _userinfo(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme://, user, password, @rest)`` of a URL whose user-info holds a password."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end() :]
    if "@" not in rest:
        return None
    # the last "@": a password with an unencoded "@", "/", "?" or "#" (``:@/@host``) has "@"s
    # of its own, and would end an authority split at "/" too early; an "@" in a path makes
    # the mask cover the host too (more masked, never less)
    info_end = rest.rindex("@")
    user, colon, password = rest[:info_end].partition(":")
    if not colon or not password or any(c in user for c in "/?#"):
        return None  # no password, or the ":" and "@" belong to a path, not to user-info
    return url[: scheme.end()], user, password, rest[info_end:]


def url_password(url: str) -> str | None:
    """The password inside ``url`` as written (percent-encoded or not), or None."""
    parts = _userinfo(url)
    return parts[2] if parts else None


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info masked; any other string is returned as is."""
    parts = _userinfo(url)
    if parts is None:
        return url
    scheme, user, _, rest = parts
    return f"{scheme}{user}:{REDACTED}{rest}"


def redact_urls(value: Any) -> Any:
    """`redact_url` applied to every string inside nested mappings and lists."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_urls(v) for v in value)
    return value


def url_secrets(value: Any) -> list[str]:
    """Every URL password inside ``value`` (nested mappings and lists), as written and decoded,
    for the log redactor: a password must stay hidden wherever a log line might carry it."""
    if isinstance(value, str):
        password = url_password(value)
        return [] if password is None else sorted({password, unquote(password)})
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in url_secrets(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in url_secrets(v)]
    return []


def redacted_repr_args(args: Iterable[tuple[str | None, Any]]) -> Iterator[tuple[str | None, Any]]:
    """A pydantic model's ``__repr_args__`` with URL passwords masked: a repr ends up in
    tracebacks and debug logs. Config models use it so that a nested model hides them too."""
    for name, value in args:
        yield name, redact_url(value) if isinstance(value, str) else value
