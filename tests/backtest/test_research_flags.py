"""`tessera backtest` reads the bars its flags and settings name, and says which.

Run through the real command line on the bundled real data imported into a store; the bars a run
used (its equity curve has one point per bar close) are compared with DuckDB's count of the
store's klines over the same window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tessera.data.catalog import Catalog
from tessera.data.importers import import_btc_perp_bars, import_coinbase_hourly
from tessera.data.store import ParquetStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("research")
    import_btc_perp_bars(root / "data" / "store")
    import_coinbase_hourly(root / "data" / "store")
    return root / "data"


def _backtest(data_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "backtest",
            "--no-baselines",
            "--out",
            str(out),
            *list(args),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_symbol_timeframe_and_timerange_choose_the_bars_the_backtest_runs_on(
    data_dir: Path, tmp_path: Path
) -> None:
    res = _backtest(
        data_dir,
        tmp_path / "a",
        "--symbol",
        "BTCPERP",
        "--timeframe",
        "15m",
        "--timerange",
        "20220110-20220117",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BTCPERP (nautilus, 15m): 672 bars" in res.stdout
    assert "resampled 1m → 15m" in res.stdout
    equity = pl.read_parquet(tmp_path / "a" / "equity.parquet")
    catalog = Catalog(ParquetStore(data_dir / "store"))
    (count,) = catalog.query(
        "SELECT count(DISTINCT time_bucket(INTERVAL 15 MINUTE, open_time::TIMESTAMPTZ)) AS n "
        "FROM klines WHERE symbol = 'BTCPERP' AND interval = '1m' "
        "AND open_time::TIMESTAMPTZ >= TIMESTAMPTZ '2022-01-10 00:00:00+00' "
        "AND open_time::TIMESTAMPTZ < TIMESTAMPTZ '2022-01-17 00:00:00+00'"
    )["n"].to_pylist()
    assert len(equity) == count == 7 * 24 * 4


def test_the_backtest_settings_choose_the_window_when_no_flag_does(
    data_dir: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "bt.yaml"
    cfg.write_text(
        "symbols: ['coinbase:BTCUSD']\ninterval: 4h\nstart: '2019-03-01'\nend: '2019-04-01'\n"
    )
    res = _backtest(data_dir, tmp_path / "b", "--config", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BTCUSD (coinbase, 4h): 186 bars, 2019-03-01 00:00 → 2019-03-31 20:00" in res.stdout
    assert len(pl.read_parquet(tmp_path / "b" / "equity.parquet")) == 31 * 6


def test_two_symbols_run_in_one_account(data_dir: Path, tmp_path: Path) -> None:
    a = REPO / "samples" / "bars" / "bitstamp_BTCUSD_1d.csv.gz"
    b = REPO / "samples" / "bars" / "bitstamp_ETHUSD_1d.csv.gz"
    res = _backtest(
        data_dir,
        tmp_path / "c",
        "--bars",
        str(a),
        "--bars",
        str(b),
        "--timerange",
        "20180101-",
        "-p",
        "size=0.45",  # of equity per entry: both symbols can be held at once
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BTCUSD (bitstamp, 1d)" in res.stdout and "ETHUSD (bitstamp, 1d)" in res.stdout
    doc = json.loads((tmp_path / "c" / "result.json").read_text())
    traded = {f["symbol"] for f in pl.read_parquet(tmp_path / "c" / "fills.parquet").to_dicts()}
    assert traded == {"BTCUSD", "ETHUSD"}
    assert doc["metrics"]["trades"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbol", "ETHUSDT"), "no klines of it in the store"),
        (("--timerange", "2022-01-01"), "expected START-END"),
        (("--symbol", "coinbase:BTCUSD", "--timeframe", "1m"), "none of which divides 1m"),
        (("--timeframe", "7m"), "use one of"),
    ],
)
def test_a_bad_universe_or_window_is_one_paragraph_and_exit_2(
    data_dir: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    res = _backtest(data_dir, tmp_path / "d", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_json_prints_the_result_document_alone_on_stdout(data_dir: Path, tmp_path: Path) -> None:
    res = _backtest(data_dir, tmp_path / "e", "--symbol", "BTCPERP", "--timeframe", "1h", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)  # nothing but the document on stdout
    assert doc == json.loads((tmp_path / "e" / "result.json").read_text())
    (bars,) = doc["run"]["bars"]
    assert (bars["symbol"], bars["venue"], bars["interval"]) == ("BTCPERP", "nautilus", "1h")
    assert bars["notes"] == ["resampled 1m → 1h"]
    assert set(doc["risk"]) >= {"halted_at_ns", "denials", "return_as_traded"}
    assert "BTCPERP (nautilus, 1h)" in res.stderr  # the human-readable lines still appear


def _sweep(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "sweep", "--workers", "1", "--json", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sweep_reads_the_same_bars_and_its_point_equals_the_backtest(
    data_dir: Path, tmp_path: Path
) -> None:
    window = ("--symbol", "BTCPERP", "--timeframe", "1h", "--timerange", "20220101-20220120")
    swept = _sweep(data_dir, *window, "-g", "fast=10", "-g", "slow=30")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    doc = json.loads(swept.stdout)
    (row,) = doc["rows"]
    assert doc["bars"][0]["bars"] == 19 * 24
    single = _backtest(data_dir, tmp_path / "f", *window, "-p", "fast=10", "-p", "slow=30")
    assert single.returncode == 0, single.stdout + single.stderr
    metrics = json.loads((tmp_path / "f" / "result.json").read_text())["metrics"]
    for key in ("total_return", "sharpe", "max_drawdown", "trades", "fees_paid"):
        assert row[key] == metrics[key], key


def test_a_sweep_over_two_symbols_runs_each_point_as_one_portfolio(data_dir: Path) -> None:
    bars = [REPO / "samples" / "bars" / f"bitstamp_{s}USD_1d.csv.gz" for s in ("BTC", "ETH")]
    res = _sweep(
        data_dir,
        "--bars",
        str(bars[0]),
        "--bars",
        str(bars[1]),
        "-g",
        "fast=5,10",
        "-g",
        "slow=30",
        "-g",
        "size=0.45",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert [b["symbol"] for b in doc["bars"]] == ["BTCUSD", "ETHUSD"]
    assert {r["engine"] for r in doc["rows"]} == {"event"}
    assert {r["fallback"] for r in doc["rows"]} == {"the vectorized path simulates one symbol"}
    assert all(r["trades"] > 0 and r["error"] == "" for r in doc["rows"])


def test_a_portfolio_backtest_attributes_its_result_to_each_symbol(
    data_dir: Path, tmp_path: Path
) -> None:
    bars = [REPO / "samples" / "bars" / f"bitstamp_{s}USD_1d.csv.gz" for s in ("BTC", "ETH", "LTC")]
    args = [a for p in bars for a in ("--bars", str(p))]
    res = _backtest(
        data_dir,
        tmp_path / "g",
        *args,
        "-s",
        "cross_sectional",
        "-p",
        "score=momentum",
        "-p",
        "k=2",
        "--timerange",
        "20180101-",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Per symbol" in res.stdout
    doc = json.loads((tmp_path / "g" / "result.json").read_text())
    rows = {r["symbol"]: r for r in doc["run"]["per_symbol"]}
    assert set(rows) == {"BTCUSD", "ETHUSD", "LTCUSD", "total"}
    parts = sum(float(rows[s]["pnl"]) for s in ("BTCUSD", "ETHUSD", "LTCUSD"))
    assert abs(parts - float(rows["total"]["pnl"])) < 1e-6
    assert abs(float(doc["final_equity"]) - 10_000 - float(rows["total"]["pnl"])) < 1e-6
