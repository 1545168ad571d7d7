"""`tessera notify relay` (Alertmanager webhook -> Apprise) and `tessera notify test`, over real
sockets to a local HTTP receiver."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from notify_receiver import Receiver, serve
from typer.testing import CliRunner

from tessera.notify.delivery import Delivery
from tessera.notify.relay import PATH, start_relay

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from serve()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What Alertmanager 0.25 posts (webhook version 4) for one firing kill-switch alert.
PAYLOAD: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="TesseraKillSwitchEngaged"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "tessera-critical",
    "groupLabels": {"alertname": "TesseraKillSwitchEngaged", "severity": "critical"},
    "commonLabels": {
        "alertname": "TesseraKillSwitchEngaged",
        "severity": "critical",
        "instance": "bot:9090",
        "stack": "tessera",
    },
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "TesseraKillSwitchEngaged",
                "severity": "critical",
                "instance": "bot:9090",
                "stack": "tessera",
            },
            "annotations": {
                "summary": "Drawdown kill-switch engaged: trading is HALTED",
                "description": "Drawdown 5.3. Trading stays halted until reset.",
                "runbook": "docs/operations.md#tesserakillswitchengaged",
            },
            "startsAt": "2026-03-02T07:30:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "abc",
        }
    ],
}


@pytest.fixture
async def relay_url(rx: Receiver) -> AsyncIterator[str]:
    delivery = Delivery([f"json://127.0.0.1:{rx.port}/relayed"], timeout_s=2, retries=0)
    runner, port = await start_relay(delivery, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    delivery.close()


async def test_the_relay_sends_an_alertmanager_group_as_one_message(
    rx: Receiver, relay_url: str
) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(relay_url + PATH, json=PAYLOAD)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"delivered": {"json#1": True}}
        resolved = json.loads(json.dumps(PAYLOAD))
        resolved["status"] = "resolved"
        resolved["alerts"][0]["status"] = "resolved"
        assert (await client.post(relay_url + PATH, json=resolved)).status_code == 200
    first, second = rx.bodies()
    assert first["title"] == "[FIRING:1] TesseraKillSwitchEngaged (critical)"
    assert first["type"] == "failure"
    text = first["message"]
    assert "FIRING: Drawdown kill-switch engaged: trading is HALTED" in text
    assert "instance=bot:9090, stack=tessera" in text
    assert "runbook: docs/operations.md#tesserakillswitchengaged" in text
    assert "since 2026-03-02T07:30:00Z" in text
    assert second["title"] == "[RESOLVED:1] TesseraKillSwitchEngaged (critical)"
    assert second["type"] == "success"


async def test_the_relay_answers_502_when_delivery_fails_and_400_to_garbage(
    rx: Receiver, relay_url: str
) -> None:
    rx.status = 500
    async with httpx.AsyncClient() as client:
        failed = await client.post(relay_url + PATH, json=PAYLOAD)
        garbage = await client.post(relay_url + PATH, content=b"not json")
        not_alerts = await client.post(relay_url + PATH, json={"hello": 1})
        health = await client.get(relay_url + "/healthz")
    assert failed.status_code == 502, "Alertmanager retries a group its receiver failed"
    assert garbage.status_code == 400 and not_alerts.status_code == 400
    assert health.json() == {"status": "ok", "targets": 1}
    assert rx.count() == 1


def test_notify_test_says_which_url_took_the_message_and_exits_1_if_one_failed(
    rx: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from tessera.notify.cli import app

    secret = "tok-ab12cd34ef"
    urls = [f"json://127.0.0.1:{rx.port}/{secret}", f"form://127.0.0.1:{closed_port()}/{secret}"]
    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.startswith("TESSERA_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("TESSERA_NOTIFY__URLS", json.dumps(urls))
    monkeypatch.setenv("TESSERA_NOTIFY__RETRIES", "0")
    res = CliRunner().invoke(app, ["test", "-m", "hello from the test"])
    assert res.exit_code == 1, res.output
    assert "json#1" in res.output and "sent" in res.output
    assert "form#2" in res.output and "FAILED" in res.output
    assert secret not in res.output
    assert [b["message"] for b in rx.bodies()] == ["hello from the test"]

    monkeypatch.setenv("TESSERA_NOTIFY__URLS", json.dumps(urls[:1]))
    ok = CliRunner().invoke(app, ["test"])
    assert ok.exit_code == 0, ok.output
    assert "all 1 URLs took the test message" in ok.output

    monkeypatch.setenv("TESSERA_NOTIFY__URLS", "[]")
    none = CliRunner().invoke(app, ["test"])
    assert none.exit_code == 2 and "no URLs configured" in none.output


async def test_a_relay_without_urls_refuses_alerts_with_503_so_alertmanager_reports_them() -> None:
    delivery = Delivery([], timeout_s=1, retries=0)
    runner, port = await start_relay(delivery, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            resp = await client.post(f"http://127.0.0.1:{port}{PATH}", json=PAYLOAD)
    finally:
        await runner.cleanup()
        delivery.close()
    assert resp.status_code == 503
    assert resp.json() == {"detail": "no notify URLs configured"}
