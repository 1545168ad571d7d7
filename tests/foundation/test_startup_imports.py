"""What `tessera` imports before a command does its own work (issue 20, start-up time).

Each case runs the CLI in a fresh interpreter, exactly as a user's shell would, and lists the
modules loaded by the time it exits. No timing is asserted here (a shared machine makes that
flaky); `bench/bench_startup.py` measures the seconds. What is asserted is the cause: a
library that costs 0.05-2 s to import and is not needed for the answer must not be loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_probe import Run, probe

REPO = Path(__file__).resolve().parents[2]

# Libraries some command needs and `tessera --help` never does (top-level package names).
HEAVY = (
    "numba",
    "llvmlite",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "polars",
    "pyarrow",
    "duckdb",
    "numpy",
    "pandas",
    "plotly",
    "aiohttp",
    "websockets",
    "ccxt",
    "lightgbm",
    "torch",
    "optuna",
    "cmaes",
    "ray",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "httpx",
    "apprise",
    "argon2",
)
# The bootstrap's own libraries (settings, logging, metrics): not needed to list the commands.
BOOTSTRAP = ("pydantic", "pydantic_settings", "structlog", "prometheus_client", "yaml")
# Needed by no command's help (they train, search or report; a help only describes options).
NEVER_FOR_HELP = ("torch", "lightgbm", "optuna", "cmaes", "ray", "plotly", "pandas")


def run_cli(*args: str) -> Run:
    """`tessera ARGS` in a new interpreter: its exit code, output and the modules it loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return probe(list(args), REPO, {**env, "COLUMNS": "200"})


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], []])
def test_the_root_help_and_version_load_no_heavy_library_and_no_bootstrap(
    args: list[str],
) -> None:
    res = run_cli(*args)
    assert res.code in (0, 2, None), res.stderr  # no arguments: the help, exit code 2 or 0
    assert "tessera" in res.stdout
    assert res.loaded(HEAVY) == [], f"`tessera {' '.join(args)}` imported {res.loaded(HEAVY)}"
    assert res.loaded(BOOTSTRAP) == [], res.loaded(BOOTSTRAP)
    assert "tessera.bootstrap" not in res.modules


# (arguments, libraries this help must not load beyond `NEVER_FOR_HELP`). Every top-level
# command is here; a command whose module needs a library at import time says so by its
# absence from the list.
COMMAND_HELPS: list[tuple[list[str], tuple[str, ...]]] = [
    (["backtest"], HEAVY),
    (["sweep"], HEAVY),
    (["optimize"], HEAVY),
    (["positions"], HEAVY),
    (["ingest"], HEAVY),
    (["train"], HEAVY),
    (["predict"], HEAVY),
    (["run"], HEAVY),
    (["orders", "list"], HEAVY),
    (["fills", "list"], HEAVY),
    (["risk", "status"], HEAVY),
    (["db", "upgrade"], HEAVY),
    (["data"], HEAVY),
    (["data", "info"], HEAVY),
    (["data", "query"], HEAVY),
    (["sim", "serve"], HEAVY),
    (["features", "build"], HEAVY),
    (["models", "list"], HEAVY),
    (["strategy", "list"], HEAVY),
    (["control"], HEAVY),
    (["notify"], HEAVY),
    (["config", "show"], HEAVY),
    (["doctor"], HEAVY),
    (["version"], HEAVY),
]


@pytest.mark.parametrize(
    ("args", "forbidden"), COMMAND_HELPS, ids=[" ".join(a) for a, _ in COMMAND_HELPS]
)
def test_a_command_help_loads_only_what_describing_the_command_needs(
    args: list[str], forbidden: tuple[str, ...]
) -> None:
    res = run_cli(*args, "--help")
    assert res.code in (0, None), res.stderr
    assert "Usage" in res.stdout
    loaded = res.loaded(tuple(sorted({*forbidden, *NEVER_FOR_HELP})))
    assert loaded == [], f"`tessera {' '.join(args)} --help` imported {loaded}"
    if args[0] not in BOOTSTRAPS_AT_IMPORT:  # the help runs no bootstrap: nothing loads it
        assert "tessera.bootstrap" not in res.modules
        assert res.loaded(("pydantic_settings", "prometheus_client")) == []


# Command modules that still import the bootstrap (settings, metrics) at their top.
BOOTSTRAPS_AT_IMPORT: tuple[str, ...] = ()


@pytest.mark.parametrize("args", [["backtest", "--help"], ["data", "info", "-h"], ["data"]])
def test_a_command_help_skips_the_bootstrap_so_it_logs_nothing_and_reads_no_config(
    args: list[str], tmp_path: Path
) -> None:
    """Help describes options: it needs no settings, so a broken config does not hide it."""
    bad = tmp_path / "configs"
    bad.mkdir()
    (bad / "risk.yaml").write_text("max_drawdown_pct: [not, a, number\n")
    res = run_cli("--config-dir", str(bad), *args)
    assert res.code in (0, 2, None), res.stderr
    assert "Usage" in res.stdout
    assert "tessera started" not in res.stderr
    assert "error" not in res.stderr.lower(), res.stderr


def test_a_help_that_is_an_option_value_does_not_skip_the_bootstrap(tmp_path: Path) -> None:
    """``--strategy --help`` passes the text "--help" to --strategy: the command runs (and
    here stops on the broken config), it does not print its help."""
    bad = tmp_path / "configs"
    bad.mkdir()
    (bad / "risk.yaml").write_text("max_drawdown_pct: [not, a, number\n")
    res = run_cli("--config-dir", str(bad), "backtest", "--strategy", "--help")
    assert "Usage: tessera backtest" not in res.stdout
    assert res.code == 2, res.stdout + res.stderr
    assert "risk.yaml" in res.stderr


def test_a_real_command_still_runs_the_bootstrap_first() -> None:
    res = run_cli("config", "show", "--format", "json")
    assert res.code in (0, None), res.stderr
    assert "tessera started" in res.stderr
    assert json.loads(res.stdout)["mode"]
    assert "tessera.bootstrap" in res.modules
    assert res.loaded(("polars", "numpy", "sqlalchemy", "torch")) == []


# What a command that does not touch them never loads (checked on real runs below).
NOT_FOR_A_BACKTEST = (
    "plotly",  # only with --report
    "sqlalchemy",
    "alembic",
    "duckdb",
    "aiohttp",
    "ccxt",
    "torch",
    "lightgbm",
    "optuna",
    "fastapi",
    "uvicorn",
    "apprise",
)


@pytest.mark.slow
def test_a_backtest_without_a_report_loads_no_plotting_database_or_ml_library(
    tmp_path: Path,
) -> None:
    res = run_cli("backtest", "--json", "--out", str(tmp_path / "out"))
    assert res.code in (0, None), res.stderr
    assert json.loads(res.stdout)["run"]["bars"][0]["bars"] > 40_000  # the bundled sample ran
    assert res.loaded(NOT_FOR_A_BACKTEST) == []
    assert res.loaded(("polars", "numpy")) == ["numpy", "polars"]  # it did load what it uses


@pytest.mark.parametrize(
    "args", [["orders", "list"], ["fills", "list"], ["positions"], ["risk", "status"], ["db"]]
)
def test_execution_database_helps_load_neither_the_database_nor_the_settings(
    args: list[str],
) -> None:
    """SQLAlchemy, Alembic and the bootstrap (settings, metrics) load in the commands."""
    res = run_cli(*args, "--help")
    assert res.code in (0, None), res.stderr
    assert res.loaded(("sqlalchemy", "alembic", "prometheus_client", "pydantic_settings")) == []
    assert "tessera.bootstrap" not in res.modules and "tessera.config" not in res.modules


@pytest.mark.parametrize("args", [["strategy", "list"], ["models", "list"], ["version"]])
def test_listing_commands_load_no_data_or_ml_library(args: list[str]) -> None:
    res = run_cli(*args)
    assert res.code in (0, None), res.stderr
    assert "tessera started" in res.stderr  # a real run, not a help
    assert res.loaded(("polars", "pyarrow", "numpy", "torch", "lightgbm", "sqlalchemy")) == []
