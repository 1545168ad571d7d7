"""Deployment files: Prometheus config, rules and their unit tests, compose, Grafana dashboards."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tessera import metrics

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_promtool_check_config_and_rules() -> None:
    res = run("promtool", "check", "config", str(INFRA / "prometheus" / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(
        "promtool", "check", "rules", *map(str, (INFRA / "prometheus" / "rules").glob("*.yml"))
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_cover_every_alert() -> None:
    res = run("promtool", "test", "rules", str(INFRA / "prometheus" / "tests" / "alerts_test.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    alerts = {
        r["alert"]
        for g in yaml.safe_load((INFRA / "prometheus/rules/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    tested = {
        t["alertname"]
        for case in yaml.safe_load((INFRA / "prometheus/tests/alerts_test.yml").read_text())[
            "tests"
        ]
        for t in case.get("alert_rule_test", [])
    }
    assert alerts == tested
    required = {
        "TesseraKillSwitchEngaged",
        "TesseraDrawdownNearLimit",
        "TesseraMarketDataStale",
        "TesseraWebsocketReconnecting",
        "TesseraOrderRejectionRate",
        "TesseraOrderLatencyHigh",
        "TesseraBotDown",
        "TesseraMarginRatioHigh",
        "TesseraLiquidationNear",
    }
    assert required <= alerts


def test_the_risk_dashboard_shows_the_leverage_metrics() -> None:
    dash = json.loads((INFRA / "grafana" / "dashboards" / "risk.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for name in (
        "tessera_margin_ratio",
        "tessera_liquidation_distance_pct",
        "tessera_funding_paid_total",
        "tessera_funding_received_total",
    ):
        assert name in exprs, name


def test_every_alert_has_a_runbook_entry() -> None:
    ops = (REPO / "docs" / "operations.md").read_text().lower()
    for g in yaml.safe_load((INFRA / "prometheus/rules/alerts.yml").read_text())["groups"]:
        for rule in g["rules"]:
            assert f"### {rule['alert'].lower()}" in ops, rule["alert"]


def test_compose_file_validates(tmp_path: Path) -> None:
    work = tmp_path / "infra"
    shutil.copytree(INFRA, work)
    (work / ".env").write_text("TESSERA_LOG_LEVEL=INFO\n")
    for name in ("postgres_password", "grafana_admin_password"):
        (work / "secrets" / name).write_text("x\n")
    res = run(*compose_cmd(), "-f", "docker-compose.yml", "config", "-q", cwd=work)
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    assert set(doc["services"]) == {
        "bot",
        "redis",
        "postgres",
        "prometheus",
        "alertmanager",
        "alert-relay",
        "grafana",
    }
    for name, svc in doc["services"].items():
        assert "healthcheck" in svc, name
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    bot = doc["services"]["bot"]
    for dep in ("postgres", "redis"):
        assert bot["depends_on"][dep]["condition"] == "service_healthy", dep
    assert ".env" in bot["env_file"], "secrets reach the bot through an env file"
    assert set(doc["volumes"]) >= {
        "pgdata",
        "redisdata",
        "promdata",
        "alertmanagerdata",
        "grafanadata",
    }
    command = bot["command"]
    assert command[:2] == ["tessera", "run"], command
    if "model_signal" in command:
        assert "--model" in command, "model_signal refuses to start without --model"
    assert "API_SECRET=" not in (INFRA / "Dockerfile").read_text()


def compose_cmd() -> list[str]:
    """`docker compose` (v2 plugin) where the docker client has it, else `docker-compose`."""
    if shutil.which("docker"):
        probe = run("docker", "compose", "version")
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"]


def test_dockerfile_is_multistage_slim_nonroot_with_a_small_context() -> None:
    text = (INFRA / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2 and all("slim" in s for s in stages), stages
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), users
    # The build context is the repository root: without this, .venv and data/ would be sent.
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore
    for needed in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, re.M):
        for path in needed.split():
            assert f"!{path.rstrip('/')}/" in ignore or f"!{path}" in ignore, path


def test_dashboards_are_generated_valid_and_reference_real_metrics() -> None:
    spec = importlib.util.spec_from_file_location(
        "build", INFRA / "grafana" / "build_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, text in build.render().items():
        committed = (INFRA / "grafana" / "dashboards" / name).read_text()
        assert committed == text, f"{name} differs from build_dashboards.py: regenerate it"
    ds = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    recorded = {
        r["record"]
        for g in yaml.safe_load((INFRA / "prometheus/rules/recording.yml").read_text())["groups"]
        for r in g["rules"]
    }
    known = set(metrics.all_metric_names())
    exposed = known | {f"{n}_total" for n in known} | {f"{n}_bucket" for n in known}
    files = sorted((INFRA / "grafana" / "dashboards").glob("*.json"))
    assert {f.name for f in files} == {
        "trading.json",
        "execution.json",
        "market-data.json",
        "risk.json",
    }
    for f in files:
        dash = json.loads(f.read_text())
        assert dash["schemaVersion"] >= 36 and dash["uid"].startswith("tessera-")
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f.name
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                for name in re.findall(r"tessera[:_][a-z0-9_:]+", target["expr"]):
                    assert name in exposed or name in recorded, (f.name, name)


@pytest.mark.parametrize("path", ["prometheus/prometheus.yml", "docker-compose.yml"])
def test_yaml_parses(path: str) -> None:
    assert yaml.safe_load((INFRA / path).read_text())
