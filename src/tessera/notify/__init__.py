"""Notifications to people: the bot's trading events and a daily summary through Apprise
(`Notifier`), and `tessera notify test` to check the configured URLs.

The names load on first use, so `tessera notify --help` does not import Apprise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.lazy import lazy_getattr

if TYPE_CHECKING:
    from tessera.notify.delivery import NotifyError
    from tessera.notify.messages import Message
    from tessera.notify.notifier import Notifier

__all__ = ["Message", "Notifier", "NotifyError"]

_WHERE = {
    "Message": "tessera.notify.messages",
    "Notifier": "tessera.notify.notifier",
    "NotifyError": "tessera.notify.delivery",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
