"""The scriptable CLI: ``--json`` documents a script can parse, tables that a pipe does not cut,
the exit code of ``tessera risk status`` and ``tessera --version``.

Every command runs through the real ``tessera`` root app (its bootstrap, its logging on stderr)
against a real SQLite execution database written by `ExecutionStore`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tessera.cli import app
from tessera.execution import (
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStateMachine,
    OrderType,
    Position,
)
from tessera.execution.cli import EXIT_HALTED
from tessera.execution.orders import ExitReason
from tessera.execution.persistence import ExecutionStore
from tessera.models.registry import ModelRegistry

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()
T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z, in ns


@pytest.fixture
def tessera_env(clean_env: Path) -> dict[str, str]:
    """A SQLite execution database with a filled entry and its open stop-loss leg (OCO)."""
    url = f"sqlite:///{clean_env / 'tessera.db'}"
    store = ExecutionStore(url)
    store.start_run("run-1", "paper", "0.1.0", ["sma_cross"])
    entry = Order("t-entry-1", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, D("0.50"),
                  D("50000.01"), strategy="sma_cross", ts_created=T0)  # fmt: skip
    store.record_intent(entry, "run-1", 1)
    SM.apply(entry, OrderEvent(K.SUBMITTED, T0 + 1))
    fill = Fill("9001", entry.client_order_id, "BTCUSDT", OrderSide.BUY, D("50000.01"),
                D("0.5"), D("0.00050000"), "BNB", Liquidity.MAKER, T0 + 5_000_000,
                "sma_cross")  # fmt: skip
    filled = OrderEvent(K.FILLED, T0 + 5_000_000, fill=fill)
    SM.apply(entry, filled)
    position = Position("BTCUSDT", "sma_cross")
    position.apply_fill(fill)
    store.record_fill(entry, filled, position)
    stop = Order("t-stop-2", "BTCUSDT", OrderSide.SELL, OrderType.STOP_LOSS, D("0.5"),
                 stop_price=D("48123.50"), strategy="sma_cross", ts_created=T0 + 10**9,
                 reason=ExitReason.STOP_LOSS, list_id="oco-1", reduce_only=True)  # fmt: skip
    store.record_intent(stop, "run-1", 2)
    SM.apply(stop, OrderEvent(K.SUBMITTED, T0 + 10**9 + 1))
    store.record_event(stop, OrderEvent(K.SUBMITTED, T0 + 10**9 + 1))
    store.close()
    (clean_env / "configs").mkdir()
    return {"TESSERA_DATABASE_URL": url, "TESSERA_DATA_DIR": str(clean_env / "data")}


def tessera(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["--env-file", "none.env", *args], env=env)


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # the whole of stdout is one JSON document


def test_orders_list_json_has_the_tables_rows_with_decimal_strings_and_utc_times(
    tessera_env: dict[str, str],
) -> None:
    rows = json_of(tessera(tessera_env, "orders", "list", "--json"))
    assert [r["client_order_id"] for r in rows] == ["t-stop-2", "t-entry-1"]  # newest first
    stop, entry = rows
    assert stop["type"] == "STOP_LOSS" and stop["price"] is None
    assert stop["stop_price"] == "48123.5" and stop["list_id"] == "oco-1"
    assert stop["reason"] == "stop_loss" and stop["reduce_only"] is True
    assert stop["created"] == "2023-11-14T22:13:21.123Z"
    assert stop["created_ms"] == 1_700_000_001_123
    assert entry["status"] == "FILLED" and entry["qty"] == "0.5"
    assert entry["filled_qty"] == "0.5" and entry["avg_price"] == "50000.01"
    table = tessera(tessera_env | {"COLUMNS": "300"}, "orders", "list")
    assert table.exit_code == 0, table.output
    in_table = [line.split("│")[2].strip() for line in table.stdout.splitlines() if "t-" in line]
    assert in_table == [r["client_order_id"] for r in rows]


def test_orders_list_json_applies_the_same_limit_and_status_filter_as_the_table(
    tessera_env: dict[str, str],
) -> None:
    newest = json_of(tessera(tessera_env, "orders", "list", "--limit", "1", "--json"))
    assert [r["client_order_id"] for r in newest] == ["t-stop-2"]
    filled = json_of(tessera(tessera_env, "orders", "list", "--status", "filled", "--json"))
    assert [r["client_order_id"] for r in filled] == ["t-entry-1"]


def test_fills_list_and_positions_json_keep_every_digit_of_the_decimals(
    tessera_env: dict[str, str],
) -> None:
    (fill,) = json_of(tessera(tessera_env, "fills", "list", "--json"))
    assert fill == {
        "time": "2023-11-14T22:13:20.128Z",
        "time_ms": 1_700_000_000_128,
        "trade_id": "9001",
        "client_order_id": "t-entry-1",
        "strategy": "sma_cross",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "qty": "0.5",
        "price": "50000.01",
        "fee": "0.0005",
        "fee_asset": "BNB",
        "liquidity": "maker",
        "reason": "signal",
    }
    assert json_of(tessera(tessera_env, "fills", "list", "--symbol", "ETHUSDT", "--json")) == []
    (pos,) = json_of(tessera(tessera_env, "positions", "--json"))
    assert (pos["symbol"], pos["qty"], pos["avg_price"]) == ("BTCUSDT", "0.5", "50000.01")
    assert pos["realized_pnl"] == "0" and pos["updated_ms"] == 1_700_000_000_128


def test_risk_status_exits_3_while_trading_is_halted_and_0_once_reset(
    tessera_env: dict[str, str],
) -> None:
    active = tessera(tessera_env, "risk", "status", "--json")
    assert active.exit_code == 0 and json.loads(active.stdout)["state"] == "ACTIVE"
    assert tessera(tessera_env, "risk", "halt", "--reason", "maintenance").exit_code == 0
    halted = tessera(tessera_env, "risk", "status", "--json")
    assert halted.exit_code == EXIT_HALTED == 3, halted.output
    doc = json.loads(halted.stdout)
    assert doc["halted"] is True and doc["reason"] == "manual: maintenance"
    assert doc["since"].endswith("Z") and isinstance(doc["since_ms"], int)
    text = tessera(tessera_env, "risk", "status")
    assert text.exit_code == 3 and "HALTED" in text.stdout
    assert tessera(tessera_env, "risk", "reset", "--by", "ops").exit_code == 0
    assert tessera(tessera_env, "risk", "status").exit_code == 0


def test_models_list_and_show_json_turn_nan_into_null(
    tessera_env: dict[str, str], clean_env: Path
) -> None:
    manifest = {
        "created_at": "2024-05-01T12:00:00.250000+00:00",
        "kind": "lightgbm",
        "label": {"kind": "forward_return", "horizon": 15},
        "data": {"rows_used": 44_000},
        "metrics": {"overall": {"model": {"ic": 0.0123}, "baseline": {"ic": float("nan")}}},
    }
    ModelRegistry(clean_env / "data" / "models").publish("btc", lambda _: manifest)
    (row,) = json_of(tessera(tessera_env, "models", "list", "--json"))
    assert (row["name"], row["version"], row["kind"]) == ("btc", "v0001", "lightgbm")
    assert row["created_ms"] == 1_714_564_800_250 and row["rows"] == 44_000
    assert row["oos_ic"] == 0.0123 and row["baseline_ic"] is None
    shown = json_of(tessera(tessera_env, "models", "show", "btc", "--json"))
    assert shown["metrics"]["overall"]["baseline"]["ic"] is None
    assert shown["version"] == "v0001"


def test_a_piped_table_is_not_cut_to_80_columns(tessera_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    piped = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "orders", "list"],
        env=env | tessera_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    # What the check below catches: at 80 columns the same table loses cells to "…".
    narrow = tessera(tessera_env | {"COLUMNS": "80"}, "orders", "list")
    assert "…" in narrow.stdout and "48123.5" not in narrow.stdout
    assert "…" not in piped.stdout
    (row,) = [line for line in piped.stdout.splitlines() if "t-stop-2" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["2023-11-14 22:13:21.123", "t-stop-2", "sma_cross", "BTCUSDT", "SELL",
                     "STOP_LOSS", "0.5", "", "48123.5", "0", "", "SUBMITTED", "oco-1",
                     "stop_loss (reduce only)"]  # fmt: skip


def test_tessera_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"tessera {version('tessera')}\n"


def test_the_start_line_names_the_mode_and_where_it_came_from(clean_env: Path) -> None:
    (clean_env / "configs").mkdir()
    result = CliRunner().invoke(
        app, ["--env-file", "none.env", "config", "show", "-f", "json"],
        env={"TESSERA_MODE": "paper"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = json.loads(result.stderr.splitlines()[0])  # paper mode logs JSON lines
    assert first["event"] == "tessera started" and first["command"] == "config"
    assert (first["mode"], first["mode_source"]) == ("paper", "env TESSERA_MODE")
    by_option = CliRunner().invoke(app, ["--mode", "live", "--json", "config", "show"])
    started = json.loads(by_option.stderr.splitlines()[0])
    assert (started["mode"], started["mode_source"]) == ("live", "cli option")
