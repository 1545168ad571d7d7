"""`tessera doctor`: check the environment and say what to fix."""

from __future__ import annotations

import importlib
import platform
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from tessera.config import TesseraSettings

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def run_checks(settings: TesseraSettings) -> list[Check]:
    checks: list[Check] = []
    py = sys.version_info
    checks.append(
        Check(
            "python",
            OK if py >= (3, 11) else FAIL,
            platform.python_version(),
            "" if py >= (3, 11) else "install Python 3.11 or newer",
        )
    )
    for mod, why in (
        ("polars", "research"),
        ("duckdb", "the store"),
        ("lightgbm", "models"),
        ("ccxt", "exchange access"),
        ("torch", "the MLP model (optional)"),
    ):
        try:
            importlib.import_module(mod)
            checks.append(Check(f"package {mod}", OK, "importable"))
        except ImportError:
            status = WARN if mod == "torch" else FAIL
            checks.append(
                Check(
                    f"package {mod}",
                    status,
                    f"missing ({why})",
                    "run `make setup`" if status == FAIL else "pip install '.[ml]'",
                )
            )
    # Services (optional: embedded defaults need none)
    db = settings.database_url or ""
    if db.startswith("sqlite"):
        checks.append(Check("database", OK, "SQLite (embedded default)"))
    else:
        u = urlparse(db)
        ok = _reachable(u.hostname or "127.0.0.1", u.port or 5432)
        checks.append(
            Check(
                "database",
                OK if ok else FAIL,
                f"PostgreSQL at {u.hostname}:{u.port or 5432} "
                f"{'reachable' if ok else 'not reachable'}",
                "" if ok else "start PostgreSQL or unset TESSERA_DATABASE_URL",
            )
        )
    if settings.redis_url:
        u = urlparse(settings.redis_url)
        ok = _reachable(u.hostname or "127.0.0.1", u.port or 6379)
        checks.append(
            Check(
                "redis",
                OK if ok else FAIL,
                f"{u.hostname}:{u.port or 6379} {'reachable' if ok else 'not reachable'}",
                "" if ok else "start Redis or unset TESSERA_REDIS_URL (in-process queue)",
            )
        )
    else:
        checks.append(Check("redis", OK, "not configured: in-process queue and rate limiter"))
    port_ok = settings.metrics_port == 0 or _port_free(settings.metrics_host, settings.metrics_port)
    checks.append(
        Check(
            "metrics port",
            OK if port_ok else WARN,
            f"{settings.metrics_host}:{settings.metrics_port} {'free' if port_ok else 'in use'}",
            "" if port_ok else "pass --metrics-port 0 or another free port",
        )
    )
    samples = Path(__file__).resolve().parents[2] / "samples"
    checks.append(
        Check(
            "bundled data",
            OK if samples.is_dir() else WARN,
            str(samples) if samples.is_dir() else "samples/ not found",
            "" if samples.is_dir() else "run from a clone of the repository",
        )
    )
    store = settings.data.store_dir or settings.data_dir / "store"
    has_store = store.is_dir() and any(store.rglob("*.parquet"))
    checks.append(
        Check(
            "market data store",
            OK if has_store else WARN,
            str(store) + ("" if has_store else " (empty)"),
            "" if has_store else "`tessera data import --bundled` or `make demo`",
        )
    )
    creds = settings.exchange.api_key is not None and settings.exchange.api_secret is not None
    if settings.mode == "live":
        checks.append(
            Check(
                "credentials",
                OK if creds else FAIL,
                "set" if creds else "missing for live mode",
                "" if creds else "set TESSERA_EXCHANGE__API_KEY and __API_SECRET",
            )
        )
    else:
        checks.append(
            Check("credentials", OK, "set" if creds else f"not needed in {settings.mode}")
        )
    for tool, why in (("promtool", "alert rule tests"), ("docker-compose", "compose validation")):
        found = shutil.which(tool)
        checks.append(
            Check(
                f"tool {tool}",
                OK if found else WARN,
                found or f"missing ({why})",
                "" if found else "`make tools` (Debian) installs it",
            )
        )
    return checks


def print_report(checks: list[Check], console: Console) -> int:
    table = Table(title="tessera doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("what to do")
    colors = {OK: "green", WARN: "yellow", FAIL: "red"}
    for c in checks:
        table.add_row(c.name, f"[{colors[c.status]}]{c.status}[/]", c.detail, c.fix)
    console.print(table)
    failed = [c for c in checks if c.status == FAIL]
    console.print(
        f"{len(failed)} problem(s) to fix" if failed else "[green]all required checks pass[/]"
    )
    return 1 if failed else 0
