"""`exchange.name` is honoured by the market-data commands too: another venue is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ("data", "download", "--symbol", "BTCUSDT", "--start", "2024-01-01"),
        ("ingest", "--duration", "1"),
    ],
)
def test_market_data_from_an_unsupported_exchange_is_refused_before_connecting(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {"TESSERA_DATA_DIR": str(tmp_path / "data"), "TESSERA_EXCHANGE__NAME": "kraken"}
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = res.stdout + res.stderr
    assert res.returncode == 2, text
    assert "exchange.name 'kraken' is not supported for market data" in text
    assert "Traceback" not in text
    assert not (tmp_path / "data" / "downloads").exists()
