from __future__ import annotations

from pathlib import Path

from tessera.config import load_settings
from tessera.doctor import FAIL, OK, run_checks


def by_name(checks: list) -> dict[str, object]:  # type: ignore[type-arg]
    return {c.name: c for c in checks}


def test_default_environment_passes(clean_env: Path) -> None:
    checks = by_name(run_checks(load_settings(config_dir=clean_env, metrics_port=0)))
    assert checks["python"].status == OK  # type: ignore[attr-defined]
    assert checks["database"].status == OK  # type: ignore[attr-defined]
    assert all(c.status != FAIL for c in checks.values())  # type: ignore[attr-defined]


def test_live_without_credentials_and_dead_services_fail(clean_env: Path) -> None:
    s = load_settings(
        config_dir=clean_env,
        mode="live",
        database_url="postgresql://u@127.0.0.1:1/x",
        redis_url="redis://127.0.0.1:1/0",
    )
    checks = by_name(run_checks(s))
    for name in ("credentials", "database", "redis"):
        assert checks[name].status == FAIL, name  # type: ignore[attr-defined]
        assert checks[name].fix  # type: ignore[attr-defined]
