"""Alertmanager routes the alerts of infra/prometheus/rules/alerts.yml: the config passes
``amtool check-config``, every alert's severity reaches its receiver, and — with the real
Debian binaries — an alert that Prometheus fires on scraped metrics arrives at a webhook over
real sockets with its labels and annotations.

The live test runs Prometheus (1 s scrapes and evaluations) on infra's alert and recording
rules, scraping a tiny metrics server in this process that trips two rules without a ``for:``
(the kill-switch, critical; websocket reconnects, warning), and Alertmanager with
infra/alertmanager/alertmanager.yml where only the receivers' URL (the local webhook) and the
group timings (seconds, not minutes) differ: routes, matchers, receivers and inhibit rules are
the file's own. About 5-10 s.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_required import missing

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
AM_CONFIG = INFRA / "alertmanager" / "alertmanager.yml"
ALERT_RULES = INFRA / "prometheus" / "rules" / "alerts.yml"


def need(binary: str) -> str:
    """The binary's path; without it the test is skipped on a workstation and fails in CI
    (where `make tools` installs it)."""
    path = shutil.which(binary)
    if path is None:
        missing(f"{binary} is not on PATH: run `make tools` (Debian prometheus-alertmanager)")
    return path


def alerts() -> list[dict[str, Any]]:
    return [
        rule
        for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_amtool_check_config_passes() -> None:
    amtool = need("amtool")
    res = subprocess.run(
        [amtool, "check-config", str(AM_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_is_routed_to_the_receiver_of_its_severity() -> None:
    amtool = need("amtool")
    expected = {"critical": "tessera-critical", "warning": "tessera-warning"}
    seen = set()
    for rule in alerts():
        severity = rule["labels"]["severity"]
        assert severity in expected, f"{rule['alert']}: severity {severity!r} has no route"
        res = subprocess.run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={AM_CONFIG}",
                f"alertname={rule['alert']}",
                f"severity={severity}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.stdout.strip() == expected[severity], (rule["alert"], res.stdout, res.stderr)
        seen.add(severity)
    assert seen == set(expected)


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager() -> None:
    prom = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t
        for am in prom["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    am = compose["services"]["alertmanager"]
    assert targets == ["alertmanager:9093"]
    assert am["image"].startswith("prom/alertmanager:v0.25"), "the version amtool checks"
    assert any(v.startswith("./alertmanager:/etc/alertmanager") for v in am["volumes"])
    assert "alert-relay" in compose["services"], "the default receiver's URL"
    relay = compose["services"]["alert-relay"]
    assert relay["command"][:3] == ["tessera", "notify", "relay"]
    assert "stack" in prom["global"]["external_labels"], "the inhibit rules' `equal`"


# --- the live test ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.reconnects = 0.0

    def add(self, doc: dict[str, Any]) -> None:
        with self.lock:
            self.posts.append(doc)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts)


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def webhook_port(recorder: Recorder) -> Iterator[int]:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            doc = json.loads(raw)
            doc["_path"] = self.path
            recorder.add(doc)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    yield from serve(Hook)


@pytest.fixture
def metrics_port(recorder: Recorder) -> Iterator[int]:
    """A bot's /metrics as far as two rules care: the kill-switch engaged, and a reconnect
    counter that climbs by 50 per scrape (increase over 10 m > 5 after two scrapes)."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with recorder.lock:
                recorder.reconnects += 50
                value = recorder.reconnects
            body = (
                "# TYPE tessera_kill_switch_engaged gauge\n"
                "tessera_kill_switch_engaged 1\n"
                "# TYPE tessera_ws_reconnects_total counter\n"
                f'tessera_ws_reconnects_total{{reason="closed"}} {value}\n'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    yield from serve(Metrics)


def alertmanager_config(tmp: Path, webhook: str) -> Path:
    """infra's config with every receiver's webhook URL swapped for ``webhook`` and group
    timings in seconds; everything else as committed."""
    doc = yaml.safe_load(AM_CONFIG.read_text())
    swapped = 0
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook
            swapped += 1
    assert swapped == len(doc["receivers"]), "every receiver has a webhook to swap"
    for route in [doc["route"], *doc["route"].get("routes", [])]:
        route["group_wait"] = "1s"
        route["group_interval"] = "2s"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prometheus_config(tmp: Path, metrics: int, alertmanager: int) -> Path:
    infra = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    rules = []
    for src in sorted((INFRA / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
        (tmp / src.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        rules.append(str(tmp / src.name))
    config = {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
            "external_labels": infra["global"]["external_labels"],
        },
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager}"]}]}]
        },
        "rule_files": rules,
        "scrape_configs": [
            {
                "job_name": infra["scrape_configs"][0]["job_name"],
                "static_configs": [{"targets": [f"127.0.0.1:{metrics}"]}],
            }
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
            )
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.2)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def firing(posts: list[dict[str, Any]], alertname: str) -> dict[str, Any] | None:
    for post in posts:
        for alert in post["alerts"]:
            if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                return {"post": post, "alert": alert}
    return None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_alert_fired_by_prometheus_reaches_the_webhook_through_alertmanager(
    tmp_path: Path, recorder: Recorder, webhook_port: int, metrics_port: int
) -> None:
    prometheus = need("prometheus")
    alertmanager = need("prometheus-alertmanager")
    am_port, prom_port = free_port(), free_port()
    webhook = f"http://127.0.0.1:{webhook_port}/alertmanager"
    logs = [tmp_path / "alertmanager.log", tmp_path / "prometheus.log"]
    procs = []
    started = time.monotonic()
    try:
        procs.append(
            spawn(
                [
                    alertmanager,
                    f"--config.file={alertmanager_config(tmp_path, webhook)}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip port: a single instance
                    "--log.level=warn",
                ],
                logs[0],
            )
        )
        wait_for(
            "Alertmanager to be ready",
            lambda: ready(f"http://127.0.0.1:{am_port}/-/ready"),
            30,
            logs,
        )
        procs.append(
            spawn(
                [
                    prometheus,
                    f"--config.file={prometheus_config(tmp_path, metrics_port, am_port)}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                logs[1],
            )
        )

        def both_arrived() -> bool:
            for p in procs:
                assert p.poll() is None, f"{p.args[0]} exited with {p.returncode}"
            posts = recorder.snapshot()
            return bool(
                firing(posts, "TesseraKillSwitchEngaged")
                and firing(posts, "TesseraWebsocketReconnecting")
            )

        wait_for("both alerts at the webhook", both_arrived, 60, logs)
        elapsed = time.monotonic() - started
    finally:
        for p in reversed(procs):
            stop(p)

    posts = recorder.snapshot()
    kill = firing(posts, "TesseraKillSwitchEngaged")
    assert kill is not None
    post, alert = kill["post"], kill["alert"]
    assert post["_path"] == "/alertmanager"
    assert post["receiver"] == "tessera-critical"
    assert post["groupLabels"] == {"alertname": "TesseraKillSwitchEngaged", "severity": "critical"}
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "tessera-bot"
    assert alert["labels"]["stack"] == "tessera", "Prometheus's external label"
    assert alert["annotations"]["summary"] == "Drawdown kill-switch engaged: trading is HALTED"
    assert alert["annotations"]["description"].startswith("Drawdown 1.")
    assert alert["annotations"]["runbook"] == "docs/operations.md#tesserakillswitchengaged"

    ws = firing(posts, "TesseraWebsocketReconnecting")
    assert ws is not None
    assert ws["post"]["receiver"] == "tessera-warning"
    assert ws["alert"]["labels"]["severity"] == "warning"
    # one group per alert name and severity: no post mixes the two
    for p in posts:
        assert len({a["labels"]["alertname"] for a in p["alerts"]}) == 1
    assert elapsed < 60
