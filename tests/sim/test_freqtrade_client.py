"""freqtrade (2026.9, its own venv) as a client of `tessera sim serve`, spot and USDⓈ-M.

Why: the issue asks that freqtrade's ``download-data`` and a short dry run of a simple strategy
work against the simulator for both venues, so that a freqtrade user can point a bot at it. The
simulator runs as the command (`tessera sim serve`, in a subprocess); freqtrade runs from
``bench/.venv-freqtrade`` (`bench/peers/freqtrade_venv.py`, made by ``make peers`` before the
tests) with only its config pointing it at the simulator: ``exchange.ccxt_config.urls.api``
(spot: ``public``/``private``; USDⓈ-M: the ``fapi*`` keys) and the ccxt options that keep
``load_markets`` on the one venue (``fetchMarkets.types``). Three freqtrade settings are not
about the simulator but about running offline: ``enable_ws`` false (its websocket candles
would go to Binance's own stream host), ``only_from_ccxt`` (spot 1m ``download-data`` first
tries data.binance.vision's archives), and ``initial_state`` running.

Data: spot, the bundled month of 1m BTC bars (samples/bars, replayed as BTCUSDT, the spot bar
mode's file); USDⓈ-M, the real XRP/USDT perpetual 1h candles, 1h mark klines and 8h funding
rates (samples/freqtrade/futures). What a run shows: markets loaded (the pair survives the
whitelist, which freqtrade checks against them), tickers fetched (the PriceFilter pairlist
needs the pair's ticker with a price to keep it), candles fetched and turned into a dataframe,
``download-data`` wrote candles (and mark and funding rows on USDⓈ-M), and no ERROR line.
The one WARNING allowed is "Outdated history": freqtrade judges candle freshness by the host's
clock, and the replayed candles are from 2021/2022.

Runtime: about 30 s for both venues (freqtrade takes ~2-3 s to start, per command).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import SAMPLES

from ci_required import missing

REPO = Path(__file__).resolve().parents[2]
FREQTRADE = REPO / "bench" / ".venv-freqtrade" / "bin" / "freqtrade"
FUTURES = SAMPLES / "freqtrade" / "futures"
SPOT_BARS = SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"

STRATEGY = '''
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class SimProbe(IStrategy):
    """Reads candles, never trades."""

    INTERFACE_VERSION = 3
    timeframe = "{timeframe}"
    can_short = {can_short}
    stoploss = -0.5
    minimal_roi = {{"0": 100}}
    startup_candle_count = 10

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["sma"] = dataframe["close"].rolling(5).mean()
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 0
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
'''


def freqtrade() -> Path:
    """The venv's freqtrade; fails in CI (``make test`` makes it first), skips elsewhere."""
    if FREQTRADE.exists():
        return FREQTRADE
    missing(f"{FREQTRADE} missing: run `make peers` (creates freqtrade's venv, ~70 s)")


def serve(*args: str) -> Iterator[str]:
    """`tessera sim serve ARGS` on a free port; yields its REST address, stops it after."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tessera.sim.cli import app; app(prog_name='tessera sim')",
         "serve", "--port", "0", "--start-now", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        rest = None
        deadline = time.monotonic() + 60
        while rest is None and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
            m = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", lines[-1])
            rest = m.group(1) if m else None
        assert rest is not None, "".join(lines)
        yield rest
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def workdir(tmp: Path, config: dict[str, Any], timeframe: str, can_short: bool) -> Path:
    strategies = tmp / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    (strategies / "SimProbe.py").write_text(
        STRATEGY.format(timeframe=timeframe, can_short=can_short)
    )
    base: dict[str, Any] = {
        "max_open_trades": 1,
        "stake_currency": "USDT",
        "stake_amount": 100,
        "dry_run": True,
        "dry_run_wallet": 10000,
        "initial_state": "running",
        "timeframe": timeframe,
        "dataformat_ohlcv": "feather",
        "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "pairlists": [{"method": "StaticPairList"}, {"method": "PriceFilter", "min_price": 1e-8}],
        "internals": {"process_throttle_secs": 1},
    }
    (tmp / "config.json").write_text(json.dumps({**base, **config}, indent=1))
    return tmp


# freqtrade logs through rich, which wraps lines at the terminal width: no wrapping here
UNWRAPPED = {**os.environ, "COLUMNS": "100000"}


def run(tmp: Path, *args: str) -> str:
    """A freqtrade command (debug log, to see the simulator paths it asks for); its output."""
    out = subprocess.run(
        [str(freqtrade()), *args, "-v", "-c", "config.json", "--userdir", "user_data",
         "--datadir", "data"],
        cwd=tmp, capture_output=True, text=True, timeout=180, env=UNWRAPPED,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def dry_run(tmp: Path, pair: str) -> str:
    """``freqtrade trade --dry-run`` until it has analysed candles twice, then SIGINT."""
    log = tmp / "trade.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [str(freqtrade()), "trade", "--dry-run", "-v", "-c", "config.json",
             "--userdir", "user_data", "--datadir", "data", "--strategy", "SimProbe",
             "--db-url", "sqlite://"],
            cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, env=UNWRAPPED,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text() if log.exists() else ""
            if text.count("Refreshing candle (OHLCV) data for 1 pairs") >= 2:
                break
            time.sleep(0.25)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Changing state to: RUNNING" in text, text[-3000:]
    assert f"Whitelist with 1 pairs: ['{pair}']" in text  # the market and its ticker are known
    assert "Removed" not in text  # the PriceFilter had the ticker's price
    assert f"Converting candle (OHLCV) data to dataframe for pair {pair}." in text
    return text


def requested(text: str) -> set[str]:
    """The simulator paths freqtrade's ccxt asked for, with their status (urllib3/aiohttp
    debug lines: ``"GET /fapi/v1/klines?... HTTP/1.1" 200``)."""
    return {
        f"{m.group(1)} {m.group(2)}"
        for m in re.finditer(r'"GET (/[a-zA-Z0-9/]+)[^" ]* HTTP/1\.1" (\d{3})', text)
    }


def assert_no_error(text: str) -> None:
    errors = [line for line in text.splitlines() if " - ERROR - " in line]
    assert errors == []
    warnings = [line for line in text.splitlines() if " - WARNING - " in line]
    assert all("Outdated history for pair" in w for w in warnings), warnings


def urls(rest: str, *keys: str) -> dict[str, str]:
    paths = {"public": "/api/v3", "private": "/api/v3", "fapiPublic": "/fapi/v1",
             "fapiPrivate": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPrivateV2": "/fapi/v2",
             "fapiPublicV3": "/fapi/v3", "fapiPrivateV3": "/fapi/v3"}  # fmt: skip
    return {k: rest + paths[k] for k in keys}


@pytest.fixture
def spot_sim() -> Iterator[str]:
    yield from serve("--bars", str(SPOT_BARS), "--history", "300", "--speed", "60x")


@pytest.fixture
def usdm_sim() -> Iterator[str]:
    yield from serve(
        "--usdm", "--speed", "3600x", "--history", "60",
        "--bars", str(FUTURES / "XRP_USDT_USDT-1h-futures.feather"),
        "--mark", str(FUTURES / "XRP_USDT_USDT-1h-mark.feather"),
        "--funding", str(FUTURES / "XRP_USDT_USDT-8h-funding_rate.feather"),
    )  # fmt: skip


def test_freqtrade_downloads_spot_candles_and_dry_runs_against_the_simulator(
    spot_sim: str, tmp_path: Path
) -> None:
    freqtrade()
    exchange = {
        "name": "binance", "key": "", "secret": "", "enable_ws": False, "only_from_ccxt": True,
        "ccxt_config": {
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False,
                        "fetchCurrencies": False},
            "urls": {"api": urls(spot_sim, "public", "private")},
        },
        "pair_whitelist": ["BTC/USDT"], "pair_blacklist": [],
    }  # fmt: skip
    tmp = workdir(tmp_path, {"trading_mode": "spot", "exchange": exchange}, "1m", False)
    out = run(tmp, "download-data", "--timerange", "20211231-20220101", "-t", "1m",
              "--pairs", "BTC/USDT")  # fmt: skip
    assert re.search(r"Downloaded data for BTC/USDT, 1m, spot with length \d{3}", out), out
    assert (tmp / "data" / "BTC_USDT-1m.feather").exists()
    assert_no_error(out)
    text = dry_run(tmp, "BTC/USDT")
    assert "/api/v3/ticker/24hr 200" in requested(text)  # the PriceFilter's tickers
    assert_no_error(text)


def test_freqtrade_downloads_usdm_candles_mark_and_funding_and_dry_runs_against_the_simulator(
    usdm_sim: str, tmp_path: Path
) -> None:
    freqtrade()
    keys = ("fapiPublic", "fapiPrivate", "fapiPublicV2", "fapiPrivateV2", "fapiPublicV3",
            "fapiPrivateV3")  # fmt: skip
    exchange = {
        "name": "binance", "key": "", "secret": "", "enable_ws": False,
        "ccxt_config": {"options": {"fetchMarkets": {"types": ["linear"]}},
                        "urls": {"api": urls(usdm_sim, *keys)}},
        "pair_whitelist": ["XRP/USDT:USDT"], "pair_blacklist": [],
    }  # fmt: skip
    config = {"trading_mode": "futures", "margin_mode": "isolated", "exchange": exchange}
    tmp = workdir(tmp_path, config, "1h", True)
    out = run(tmp, "download-data", "--timerange", "20211117-20211119", "-t", "1h",
              "--pairs", "XRP/USDT:USDT")  # fmt: skip
    for kind in ("futures", "mark", "funding_rate"):
        assert re.search(rf"Downloaded data for XRP/USDT:USDT, 1h, {kind} with length \d", out)
    data = tmp / "data" / "futures"
    assert {p.name for p in data.iterdir()} >= {
        "XRP_USDT_USDT-1h-futures.feather",
        "XRP_USDT_USDT-1h-mark.feather",
        "XRP_USDT_USDT-1h-funding_rate.feather",
    }
    assert_no_error(out)
    text = dry_run(tmp, "XRP/USDT:USDT")
    # the PriceFilter's tickers: freqtrade's Binance futures tickers merge in the bid/ask
    assert {"/fapi/v1/ticker/24hr 200", "/fapi/v1/ticker/bookTicker 200"} <= requested(text)
    assert_no_error(text)
