"""What a trading bot loads: only the libraries its configuration uses (issue 20, start-up).

Every `tessera run` pays its imports before it trades, and so does every restart after a crash:
a dev bot on the embedded defaults (SQLite, the in-process signal queue, no model, no ingest)
needs ccxt, aiohttp, SQLAlchemy — not polars, pyarrow or NumPy (research), nor redis-py or
psycopg (servers it was not configured to use). Each was loaded by an import that needed one
name (an interval table, a header's name, a type annotation). No timing is asserted (the
machine is shared); `bench/bench_startup.py` and docs/benchmarks.md measure the seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from inprocess_bot import running_simulator
from live_bot_helpers import bot_env

from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine

NOT_FOR_AN_EMBEDDED_BOT = ("polars", "pyarrow", "numpy", "pandas", "redis", "psycopg", "duckdb")

_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.argv = ["tessera", *json.loads(sys.argv[1])]
    import tessera.cli
    try:
        tessera.cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    print("\\nIMPORTED " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
    """
)


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[object, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    shown, sep, tail = proc.stdout.rpartition("\nIMPORTED ")
    assert sep, f"tessera {' '.join(args)} did not finish:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(tail)
    return report["code"], shown + proc.stderr, {m.partition(".")[0] for m in report["modules"]}


@pytest.fixture
def sim() -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    with running_simulator(speed=10.0) as pair:
        yield pair


def test_a_dev_bot_on_the_embedded_defaults_trades_without_research_or_server_libraries(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    env = bot_env(tmp_path, f"sqlite:///{tmp_path / 'tessera.db'}", simulator)
    args = ["--metrics-port", "0", "run", "--mode", "dev", "--no-ingest", "--duration", "8"]
    args += ["--strategy", "sma_cross:fast=2,slow=3,qty=0.001", "--interval", "1s"]
    code, out, loaded = _run(tmp_path, env, *args)
    assert code in (0, None), out[-3000:]
    assert engine.orders, "the bot placed no order: its imports were not all exercised"
    assert {"ccxt", "aiohttp", "sqlalchemy"} <= loaded  # what it does use
    assert sorted(loaded & set(NOT_FOR_AN_EMBEDDED_BOT)) == []


def test_a_run_refused_for_its_settings_loads_neither_the_bot_nor_a_simulator(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {"TESSERA_EXCHANGE__NAME": "kraken", "TESSERA_DATA_DIR": str(tmp_path / "data")}
    code, out, loaded = _run(tmp_path, env, "run", "--mode", "dev", "--symbol", "BTCUSDT")
    assert code == 2, out[-3000:]
    assert "not supported for trading" in out
    assert sorted(loaded & {"ccxt", "aiohttp", "sqlalchemy", "pyarrow"}) == []
