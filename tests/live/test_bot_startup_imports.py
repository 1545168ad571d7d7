"""What a trading bot loads: only the libraries its configuration uses (issue 20, start-up).

Every `tessera run` pays its imports before it trades, and so does every restart after a crash:
a dev bot on the embedded defaults (SQLite, the in-process signal queue, no model, no ingest)
needs ccxt, aiohttp, SQLAlchemy — not polars, pyarrow or NumPy (research), nor redis-py or
psycopg (servers it was not configured to use). Each was loaded by an import that needed one
name (an interval table, a header's name, a type annotation). No timing is asserted (the
machine is shared); `bench/bench_startup.py` and docs/benchmarks.md measure the seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from inprocess_bot import running_simulator
from live_bot_helpers import bot_env

from cli_probe import probe
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine

NOT_FOR_AN_EMBEDDED_BOT = ("polars", "pyarrow", "numpy", "pandas", "redis", "psycopg", "duckdb")


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
    res = probe(args, tmp_path, env)
    assert res.code in (0, None), (res.stdout + res.stderr)[-3000:]
    assert engine.orders, "the bot placed no order: its imports were not all exercised"
    assert res.loaded(("ccxt", "aiohttp", "sqlalchemy")) == ["aiohttp", "ccxt", "sqlalchemy"]
    assert res.loaded(NOT_FOR_AN_EMBEDDED_BOT) == []


def test_a_run_refused_for_its_settings_loads_neither_the_bot_nor_a_simulator(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {"TESSERA_EXCHANGE__NAME": "kraken", "TESSERA_DATA_DIR": str(tmp_path / "data")}
    res = probe(["run", "--mode", "dev", "--symbol", "BTCUSDT"], tmp_path, env)
    assert res.code == 2, (res.stdout + res.stderr)[-3000:]
    out = res.stdout + res.stderr
    assert "exchange.name 'kraken' is not supported for trading" in out
    assert "Traceback" not in out and "simulator" not in out  # refused before anything started
    assert res.loaded(("ccxt", "aiohttp", "sqlalchemy", "pyarrow")) == []


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--interval", "7m"], "--interval '7m' (or features.interval): use one of 1s, 1m"),
        (["--duration", "-5"], "--duration -5: give the seconds to run, above 0"),
        (["--duration", "0"], "--duration 0: give the seconds to run, above 0"),
        (["--model", "nosuch"], "--model nosuch: no model named 'nosuch'"),
    ],
    ids=["interval", "negative-duration", "zero-duration", "unknown-model"],
)
def test_a_bad_run_option_is_exit_2_naming_it_before_anything_starts(
    tmp_path: Path, option: list[str], said: str
) -> None:
    """An unknown interval was refused only once the bot ran (exit 3, the simulator loaded); a
    duration of 0 or less ran a bot that stopped at once (exit 0); an unknown model was a
    traceback from the bot's set-up (exit 1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {"TESSERA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    args = ["run", "--mode", "dev", "--no-ingest", "--strategy", "sma_cross:fast=2,slow=3"]
    res = probe([*args, *option], tmp_path, env)
    out = res.stdout + res.stderr
    assert res.code == 2, out[-3000:]
    assert said in out
    assert "Traceback" not in out and "simulator" not in out
    assert res.loaded(("ccxt", "aiohttp", "sqlalchemy")) == []
