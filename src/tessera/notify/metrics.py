"""The notifier's Prometheus counter, on the default registry like every metric of
`tessera.metrics` (which stays the one place for the trading metrics; this module only adds
the notifier's own, so that the notify package needs nothing from outside it)."""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY, Counter

from tessera.config.models import NOTIFY_EVENTS
from tessera.metrics import bounded

# kind: the event kind (or "daily_summary", "test", "alert"); result: "sent" (delivered to one URL),
# "failed" (one URL still failing after every retry), "dropped" (events the hub dropped
# because the notifier's queue was full; each is counted, none is delivered).
KINDS: Final = frozenset(
    # the trading events, a `tessera notify test` message, an Alertmanager group relayed by
    # `tessera notify relay`
    {*NOTIFY_EVENTS, "test", "alert"}
)
RESULTS: Final = frozenset({"sent", "failed", "dropped"})

NOTIFICATIONS = Counter(
    "tessera_notifications",
    "Notifications to people through Apprise, per delivery to one URL (or dropped events)",
    ["kind", "result"],
)


def count(kind: str, result: str, n: int = 1) -> None:
    """Count ``n`` notifications of ``kind`` with ``result`` (labels bounded: see `bounded`)."""
    if n > 0:
        NOTIFICATIONS.labels(kind=bounded(kind, KINDS), result=bounded(result, RESULTS)).inc(n)


def value(kind: str, result: str) -> float:
    """The counter's current value (tests and `tessera notify test` read it)."""
    sample = REGISTRY.get_sample_value(
        "tessera_notifications_total", {"kind": kind, "result": result}
    )
    return float(sample or 0.0)
