"""`tessera fills funding` and the funding of `tessera positions`: the ledger's funding
payments through the real ``tessera`` root app, against a SQLite database written by
`ExecutionStore` (Binance's real income row of ccxt's fixture, and that payment a second time
as the stream reported it)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tessera.cli import app
from tessera.execution.persistence import ExecutionStore, FundingRecord

# /fapi/v1/income, fetchFundingHistory in samples/ccxt-fixtures/response-binance.json
REAL_INCOME = FundingRecord(
    "BTCUSDT", 1707465600000, Decimal("-0.04618913"), "USDT", "income", "8082457372019390060"
)


@pytest.fixture
def tessera_env(clean_env: Path) -> dict[str, str]:
    url = f"sqlite:///{clean_env / 'tessera.db'}"
    store = ExecutionStore(url)
    stream = FundingRecord("BTCUSDT", REAL_INCOME.ts_ms, REAL_INCOME.amount, "USDT", "user_data")
    store.record_funding("main", stream)
    store.record_funding("main", REAL_INCOME)
    store.close()
    (clean_env / "configs").mkdir()
    return {"TESSERA_DATABASE_URL": url, "TESSERA_DATA_DIR": str(clean_env / "data")}


def tessera(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["--env-file", "none.env", *args], env=env)


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_fills_funding_lists_each_payment_once_with_every_digit(
    tessera_env: dict[str, str],
) -> None:
    rows = json_of(tessera(tessera_env, "fills", "funding", "--json"))
    assert rows == [
        {
            "time": "2024-02-09T08:00:00.000Z",
            "time_ms": 1707465600000,
            "symbol": "BTCUSDT",
            "amount": "-0.04618913",
            "asset": "USDT",
            "source": "user_data",
            "venue_id": "8082457372019390060",
        }
    ]
    assert json_of(tessera(tessera_env, "fills", "funding", "--symbol", "ETHUSDT", "--json")) == []
    table = tessera(tessera_env | {"COLUMNS": "300"}, "fills", "funding")
    assert table.exit_code == 0, table.output
    assert "-0.04618913" in table.stdout and "2024-02-09 08:00:00.000" in table.stdout


def test_positions_shows_the_funding_each_symbol_paid(tessera_env: dict[str, str]) -> None:
    table = tessera(tessera_env | {"COLUMNS": "300"}, "positions")
    assert table.exit_code == 0, table.output
    [line] = [ln for ln in table.stdout.splitlines() if "BTCUSDT" in ln]
    cells = [c.strip() for c in line.split("│")[1:-1]]
    assert cells == ["BTCUSDT", "-0.04618913 USDT", "1"]
