"""The `tessera` CLI as a user runs it: a real subprocess, real exit codes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "xyz-top-secret-42"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    base.update(env or {})
    base.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=120,
    )


def test_help_explains_every_command() -> None:
    res = run("--help")
    assert res.returncode == 0
    for word in ("config", "version", "--mode", "--config-dir", "--seed", "--metrics-port"):
        assert word in res.stdout
    for cmd in (
        ["config", "--help"],
        ["config", "show", "--help"],
        ["config", "validate", "--help"],
        ["version", "--help"],
    ):
        sub = run(*cmd)
        assert sub.returncode == 0, sub.stderr
        assert "Usage" in sub.stdout and len(sub.stdout.splitlines()) > 4


def test_version() -> None:
    res = run("version")
    assert res.returncode == 0
    assert "tessera" in res.stdout and "python" in res.stdout
    assert "lightgbm" in res.stdout and "not installed" not in res.stdout


def test_paper_mode_logs_json_with_run_id_and_never_the_secret() -> None:
    env = {
        "TESSERA_MODE": "paper",
        "TESSERA_EXCHANGE__API_SECRET": SECRET,
        "TESSERA_EXCHANGE__API_KEY": "key-" + SECRET,
    }
    for fmt in ("table", "json", "yaml"):
        res = run("config", "show", "--format", fmt, env=env)
        assert res.returncode == 0, res.stderr
        assert SECRET not in res.stdout + res.stderr
        records = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
        assert records, res.stderr
        assert all(r.get("run_id") for r in records)
        assert records[0]["event"] == "tessera started"
        assert records[0]["mode"] == "paper"
    shown = json.loads(run("config", "show", "--format", "json", env=env).stdout)
    assert shown["exchange"]["api_secret"] == "**********"
    assert shown["mode"] == "paper"
    assert shown["log_json"] is True


def test_show_reports_sources(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "risk.yaml").write_text("max_drawdown_pct: 4\n")
    res = run(
        "--config-dir",
        str(cfg),
        "config",
        "show",
        "--section",
        "risk",
        env={"TESSERA_RISK__MAX_OPEN_ORDERS": "3"},
    )
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if "risk.max_drawdown_pct" in line)
    assert "4.0" in row and "risk.yaml" in row
    row = next(line for line in res.stdout.splitlines() if "risk.max_open_orders" in line)
    assert "env TESSERA_RISK__MAX_OPEN_ORDERS" in row


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("max_drawdown_pct: ten\n", "`max_drawdown_pct` (line 1)"),
        ("max_drawdown_pct: 5\nmax_drawdon_pct: 6\n", "`max_drawdon_pct` (line 2): unknown key"),
        ("max_drawdown_pct: [5\n", "line 2, column 1: this is not valid YAML"),
    ],
    ids=["wrong-type", "unknown-key", "broken-yaml"],
)
def test_broken_risk_yaml_is_one_paragraph_and_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    cfg = tmp_path / "configs"
    cfg.mkdir()
    (cfg / "risk.yaml").write_text(content)
    for args in (("config", "show"), ("config", "validate")):
        res = run("--config-dir", str(cfg), *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        text = " ".join(res.stderr.split())  # undo terminal wrapping
        assert str(cfg / "risk.yaml") in text
        assert expected in text


def test_validate_repo_configs() -> None:
    res = run("config", "validate")
    assert res.returncode == 0, res.stderr
    assert "risk.yaml" in res.stdout and "valid" in res.stdout


def test_bad_option_value_is_a_usage_error() -> None:
    res = run("--mode", "prod", "config", "show")
    assert res.returncode == 2
    assert "prod" in res.stderr


def test_config_show_never_prints_a_database_or_redis_password() -> None:
    env = {
        "TESSERA_DATABASE_URL": "postgresql://u:hunter2@h/db",
        "TESSERA_REDIS_URL": "redis://:s3cret@h:6379/0",
    }
    for fmt in ("table", "json", "yaml"):
        res = run("config", "show", "--format", fmt, env=env)
        assert res.returncode == 0, res.stderr
        for password in ("hunter2", "s3cret"):
            assert password not in res.stdout + res.stderr, (fmt, password)
    shown = json.loads(run("config", "show", "--format", "json", env=env).stdout)
    assert shown["database_url"] == "postgresql://u:**********@h/db"
    assert shown["redis_url"] == "redis://:**********@h:6379/0"


def test_exchange_testnet_is_refused_with_exit_2_and_the_way_to_a_testnet(tmp_path: Path) -> None:
    (tmp_path / "tessera.yaml").write_text("exchange:\n  testnet: true\n")
    res = run("--config-dir", str(tmp_path), "config", "show")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())  # undo terminal wrapping
    assert "`exchange.testnet` (from" in text
    assert "exchange.rest_url" in text and "--i-understand-live-trading" in text
