"""``exchange.name: binance-usdm``: the bot takes it in dev mode (against the simulator) with
``live.perp_leverage`` and ``live.perp_margin_mode``, in paper mode (`PerpPaperExchange`) and
in live mode (its gates: tests/live/test_usdm_live.py); the market-data commands still refuse
it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tessera.config import load_settings
from tessera.config.settings import require_supported_exchange
from tessera.live.assembly import bot_options
from tessera.live.bot import BotOptions


def test_binance_usdm_runs_in_dev_paper_and_live_mode_with_the_configured_leverage_and_margin_mode(
    tmp_path: Path,
) -> None:
    (tmp_path / "tessera.yaml").write_text("exchange:\n  name: binance-usdm\n")
    (tmp_path / "live.yaml").write_text("perp_leverage: 3\nperp_margin_mode: isolated\n")
    settings = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)

    def options(mode: str) -> BotOptions:
        return bot_options(
            settings,
            mode=mode,
            strategies=[],
            symbols=["BTCUSDT"],
            rest_url="http://127.0.0.1:1",
            ws_url="",
            database_url="sqlite://",
            run_id="r-usdm",
        )

    dev = options("dev")
    assert (dev.exchange_id, dev.perp_leverage, dev.perp_margin_mode) == (
        "binance-usdm",
        3,
        "ISOLATED",
    )
    assert options("paper").perp_leverage == 3
    assert (options("live").perp_leverage, options("live").perp_margin_mode) == (3, "ISOLATED")
    assert require_supported_exchange("binance-usdm", "trading") == "binanceusdm"
    assert require_supported_exchange("binance-usdm", "market data") == "binanceusdm"


def test_tessera_run_dev_on_binance_usdm_trades_the_embedded_perpetual_simulator(
    tmp_path: Path,
) -> None:
    """`tessera run --mode dev` with exchange.name binance-usdm and no rest_url: the embedded
    USDⓈ-M simulator replays the bundled perpetual recording, start-up reconciliation sets the
    configured leverage, the strategy trades, and the run ends with the replay (exit 0)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env |= {
        "TESSERA_EXCHANGE__NAME": "binance-usdm",
        "TESSERA_LIVE__PERP_LEVERAGE": "4",
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-m", "tessera.cli", "--json", "--metrics-port", "0", "run"]
    argv += ["--mode", "dev", "--strategy", "sma_cross:fast=1,slow=2,qty=0.01"]
    argv += ["--symbol", "BTCUSDT", "--interval", "1s", "--no-ingest", "--speed", "100x"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert '"event": "leverage set"' in out and '"leverage": 4' in out
    assert '"event": "reconciliation clean"' in out
    [stopped] = [json.loads(line) for line in out.splitlines() if '"bot stopped"' in line]
    assert stopped["orders"] > 0  # orders went out (and the spot order-rate gate still held)


@pytest.mark.parametrize("setting", ["max_leverage", "min_liquidation_distance_pct"])
def test_tessera_run_on_spot_refuses_a_leverage_limit_which_only_perpetuals_have(
    tmp_path: Path, setting: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env |= {
        "TESSERA_EXCHANGE__NAME": "binance",
        f"TESSERA_RISK__{setting.upper()}": "3",
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-m", "tessera.cli", "run", "--mode", "dev"]
    argv += ["--strategy", "sma_cross:fast=1,slow=2,qty=0.01", "--symbol", "BTCUSDT"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    assert f"risk.{setting} (3" in out and f"TESSERA_RISK__{setting.upper()}" in out
    assert "perpetuals only" in out
    assert "simulator" not in out  # refused before dev mode's simulator loaded its replay


def test_a_perpetual_run_talks_to_usdm_hosts_unless_exchange_urls_say_otherwise(
    tmp_path: Path,
) -> None:
    """``data.rest_url``/``ws_url`` are spot's (the ingest's): a paper run on binance-usdm
    with no ``exchange.rest_url`` would otherwise read its quotes from spot's hosts."""
    from tessera.venues.contract import exchange_hosts

    (tmp_path / "tessera.yaml").write_text("exchange:\n  name: binance-usdm\n")
    usdm = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    assert exchange_hosts(usdm) == ("https://fapi.binance.com", "wss://fstream.binance.com")
    (tmp_path / "tessera.yaml").write_text(
        "exchange:\n  name: binance-usdm\n  rest_url: http://127.0.0.1:9\n"
        "  ws_url: ws://127.0.0.1:9\n"
    )
    told = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    assert exchange_hosts(told) == ("http://127.0.0.1:9", "ws://127.0.0.1:9")
    (tmp_path / "tessera.yaml").write_text("exchange:\n  name: binance\n")
    spot = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    assert exchange_hosts(spot) == (spot.data.rest_url, spot.data.ws_url)
    assert spot.data.rest_url == "https://api.binance.com"
