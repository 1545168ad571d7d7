"""Alertmanager webhook -> Apprise: the Prometheus alerts go to the same people, through the
same Apprise URLs, as the bot's own notifications.

Alertmanager's webhook receiver POSTs a JSON document (version 4) per alert group. The relay
turns a group into one message (title: status, count, alert name and severity; body: each
alert's summary, description, labels that say where, runbook, start time) and answers 200 when
every URL took it, 502 otherwise — so Alertmanager retries the group later, as it does for any
failed receiver. It is `tessera notify relay` (compose service ``alert-relay``); it listens on
127.0.0.1 unless told otherwise and needs no secret of its own (it runs inside the compose
network, unpublished).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from tessera.logging import get_logger
from tessera.notify.delivery import Delivery
from tessera.notify.messages import FAILURE, SUCCESS, WARNING, Message

log = get_logger(__name__)

PATH: Final = "/alertmanager"
MAX_BODY_BYTES: Final = 1 << 20
# At most this many alerts of a group are listed in one message.
MAX_ALERTS: Final = 10
# Labels that say which bot/symbol/instance an alert is about (alertname and severity are
# already in the title).
WHERE_LABELS: Final = ("instance", "bot", "symbol", "stage", "stack")


class BadPayloadError(ValueError):
    """Not an Alertmanager webhook document."""


def _alert_lines(alert: Mapping[str, Any]) -> list[str]:
    labels: Mapping[str, str] = alert.get("labels") or {}
    ann: Mapping[str, str] = alert.get("annotations") or {}
    state = "RESOLVED" if alert.get("status") == "resolved" else "FIRING"
    head = ann.get("summary") or labels.get("alertname", "alert")
    lines = [f"{state}: {head}"]
    if ann.get("description"):
        lines.append(f"  {ann['description']}")
    where = ", ".join(f"{k}={labels[k]}" for k in WHERE_LABELS if labels.get(k))
    if where:
        lines.append(f"  {where}")
    if ann.get("runbook"):
        lines.append(f"  runbook: {ann['runbook']}")
    if alert.get("startsAt"):
        lines.append(f"  since {alert['startsAt']}")
    return lines


def format_alertmanager(payload: Mapping[str, Any]) -> Message:
    """One message for one Alertmanager notification (an alert group)."""
    alerts: Sequence[Mapping[str, Any]] = payload.get("alerts") or []
    if not isinstance(alerts, list) or "status" not in payload:
        raise BadPayloadError("not an Alertmanager webhook payload (no status/alerts)")
    common: Mapping[str, str] = payload.get("commonLabels") or {}
    group: Mapping[str, str] = payload.get("groupLabels") or {}
    name = group.get("alertname") or common.get("alertname") or "alerts"
    severity = group.get("severity") or common.get("severity") or ""
    firing = sum(1 for a in alerts if a.get("status") != "resolved")
    status = str(payload["status"]).upper()
    title = f"[{status}:{firing if status == 'FIRING' else len(alerts)}] {name}"
    if severity:
        title += f" ({severity})"
    lines: list[str] = []
    for alert in alerts[:MAX_ALERTS]:
        lines += _alert_lines(alert)
    if len(alerts) > MAX_ALERTS:
        lines.append(f"... and {len(alerts) - MAX_ALERTS} more")
    if payload.get("externalURL"):
        lines.append(f"Alertmanager: {payload['externalURL']}")
    kind = FAILURE if severity == "critical" else WARNING
    return Message("alert", title, "\n".join(lines), SUCCESS if status == "RESOLVED" else kind)


def relay_app(delivery: Delivery, path: str = PATH) -> web.Application:
    """The aiohttp application: POST ``path`` (the webhook), GET /healthz."""

    async def receive(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise BadPayloadError("the body is not a JSON object")
            message = format_alertmanager(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("alert relay: bad request", error=str(exc)[:200])
            return web.json_response({"detail": "not an Alertmanager webhook payload"}, status=400)
        if not delivery.targets:
            log.warning("alert relay: no notify URLs configured", title=message.title)
            return web.json_response({"detail": "no notify URLs configured"}, status=503)
        results = await delivery.deliver(message)
        ok = bool(results) and all(results.values())
        log.info("alert relayed", title=message.title, delivered=results)
        return web.json_response({"delivered": results}, status=200 if ok else 502)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "targets": len(delivery.targets)})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(path, receive)
    app.router.add_get("/healthz", healthz)
    return app


async def start_relay(delivery: Delivery, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `relay_app` on ``host:port`` (0 = a free port); returns the runner and the port."""
    runner = web.AppRunner(relay_app(delivery), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound
