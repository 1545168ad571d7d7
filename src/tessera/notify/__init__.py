"""Notifications to people: the bot's trading events and a daily summary through Apprise
(`Notifier`), and `tessera notify test` to check the configured URLs."""

from __future__ import annotations

from tessera.notify.delivery import NotifyError
from tessera.notify.messages import Message
from tessera.notify.notifier import Notifier

__all__ = ["Message", "Notifier", "NotifyError"]
