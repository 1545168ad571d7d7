"""freqtrade's futures backtest as a peer: its own venv, its datadir laid out, one offline run.

freqtrade pins its own pandas, NumPy, ccxt and SQLAlchemy, which conflict with ours, so it
runs from `bench/.venv-freqtrade`, created on first use with a pinned release from PyPI (as
nautilus_trader runs from `bench/.venv-nautilus`). This module needs only the standard library:
it can run from our venv or any Python 3.11.

What a run is (the freqtrade side of issue 17's perpetual cross-check):
- the bundled real Binance XRP/USDT:USDT data (samples/freqtrade/futures, freqtrade's own test
  data) copied into a fresh freqtrade datadir (`futures/` subfolder, freqtrade's file names);
- `bench/peers/freqtrade_futures/config.json` (futures, isolated, stake 1000 USDT, fee 0.0004,
  wallet 10000) and the strategy `SmaFlipFutures` (SMA 10/30 long/short flips, leverage 3);
- `freqtrade backtesting` through `freqtrade_futures/offline_backtest.py`, which gives
  freqtrade its markets from samples/binance-usdm/exchange_info.json instead of the network.

Two layouts of the mark and funding data (``scenario``):
- ``mark8h`` (default): the 8h mark file and the 8h funding file, with freqtrade told to use 8h
  for both (``exchange._ft_has_params``), as freqtrade's own futures tests do and as
  docs/futures.md's month figure does; funding data cover the whole backtest.
- ``mark1h``: freqtrade 2026.9's Binance defaults (mark and funding timeframe 1h): the 1h mark
  file, and the 8h funding rows stored under the 1h name (what `download-data` writes now: one
  row per funding time). The 1h mark file ends 2021-11-19 09:00, and freqtrade joins funding
  and mark rows with an inner join, so later funding times are dropped without a word.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV = HERE.parent / ".venv-freqtrade"
FREQTRADE_PIN = "freqtrade==2026.9"
PEER_DIR = HERE / "freqtrade_futures"
SAMPLES = REPO / "samples" / "freqtrade" / "futures"
EXCHANGE_INFO = REPO / "samples" / "binance-usdm" / "exchange_info.json"
SYMBOL = "XRPUSDT"
PAIR_FILE = "XRP_USDT_USDT"
SCENARIOS = ("mark8h", "mark1h")


def ensure_freqtrade_venv(venv: Path = VENV) -> Path:
    """The venv's python, creating the venv with the pinned freqtrade on first use.

    The install time is printed to stderr: 75 s here for the first install (about 95
    packages, TA-Lib and pyarrow among them), 66 s again with pip's cache warm.
    """
    py = venv / "bin" / "python"
    if not (venv / "bin" / "freqtrade").exists():  # a venv whose install failed is redone
        print(f"creating {venv} with {FREQTRADE_PIN} (first run only)…", file=sys.stderr)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", FREQTRADE_PIN], check=True)
        print(f"installed {FREQTRADE_PIN} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return py


def prepare_workdir(workdir: Path, scenario: str = "mark8h", leverage: int = 3) -> Path:
    """Lay out datadir, user_data (with the strategy) and config.json; return the config path."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    data = workdir / "data" / "futures"
    strategies = workdir / "user_data" / "strategies"
    data.mkdir(parents=True, exist_ok=True)
    strategies.mkdir(parents=True, exist_ok=True)
    shutil.copy(PEER_DIR / "strategies" / "SmaFlipFutures.py", strategies)
    shutil.copy(SAMPLES / f"{PAIR_FILE}-1h-futures.feather", data)
    if scenario == "mark8h":
        shutil.copy(SAMPLES / f"{PAIR_FILE}-8h-mark.feather", data)
        shutil.copy(SAMPLES / f"{PAIR_FILE}-8h-funding_rate.feather", data)
    else:
        shutil.copy(SAMPLES / f"{PAIR_FILE}-1h-mark.feather", data)
        shutil.copy(
            SAMPLES / f"{PAIR_FILE}-8h-funding_rate.feather",
            data / f"{PAIR_FILE}-1h-funding_rate.feather",
        )
    config = json.loads((PEER_DIR / "config.json").read_text())
    config.pop("$comment", None)
    config["datadir"] = str(workdir / "data")
    config["user_data_dir"] = str(workdir / "user_data")
    config["cross_check_leverage"] = leverage
    if scenario == "mark8h":
        config["exchange"]["_ft_has_params"] = {
            "mark_ohlcv_timeframe": "8h",
            "funding_fee_timeframe": "8h",
        }
    path = workdir / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def run_freqtrade_futures(
    scenario: str = "mark8h", leverage: int = 3, workdir: Path | None = None
) -> dict[str, Any]:
    """Run the backtest offline in freqtrade's venv; return its JSON document (see the runner)."""
    py = ensure_freqtrade_venv()
    with tempfile.TemporaryDirectory(prefix="freqtrade-futures-") as tmp:
        wd = workdir or Path(tmp)
        config = prepare_workdir(wd, scenario, leverage)
        results = wd / "user_data" / "backtest_results"
        cmd = [
            str(py),
            str(PEER_DIR / "offline_backtest.py"),
            str(EXCHANGE_INFO),
            SYMBOL,
            str(results),
            "--",
            "backtesting",
            "--config",
            str(config),
            "--userdir",
            str(wd / "user_data"),
            "--datadir",
            str(wd / "data"),
            "--export",
            "trades",
            "--cache",
            "none",
            "--logfile",
            str(wd / "freqtrade.log"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=wd)
        if proc.returncode != 0:
            raise RuntimeError(
                f"freqtrade backtesting failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        doc: dict[str, Any] = json.loads(proc.stdout)
        print(
            f"freqtrade backtesting ({scenario}): {time.perf_counter() - t0:.1f} s", file=sys.stderr
        )
    doc["scenario"] = scenario
    doc["leverage"] = leverage
    doc["command"] = (
        f"bench/peers/freqtrade_futures_run.py --scenario {scenario} --leverage {leverage}"
    )
    return doc


if __name__ == "__main__":  # `make peers`: create the venv (tests/sim/test_freqtrade_client.py)
    print(ensure_freqtrade_venv())
