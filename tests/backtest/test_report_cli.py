from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.report import monthly_returns, write_report
from tessera.config import BacktestConfig
from tessera.strategies import BuyAndHold, SmaCross

REPO = Path(__file__).resolve().parents[2]


def test_report_is_self_contained_with_all_sections(btc_series: BarSeries, tmp_path: Path) -> None:
    cfg = BacktestConfig()
    res = BacktestEngine(cfg).run([btc_series], [SmaCross(["BTCUSDT"], fast=20, slow=120)])
    hold = BacktestEngine(cfg).run([btc_series], [BuyAndHold(["BTCUSDT"])])
    path = write_report(res, btc_series, tmp_path / "r.html", baselines={"buy & hold": hold})
    text = path.read_text()
    # equity + drawdown, the symbol's price and PnL, the trade PnL distribution
    assert text.count('class="plotly-graph-div"') == 3
    assert "<script src=" not in text  # plotly.js is inlined: the file opens offline
    for needle in (
        "Equity",
        "Drawdown",
        "Daily returns",  # a one-month run: a daily calendar, not a 12-month heatmap
        "Per symbol",
        "MAE",
        "Trade PnL distribution",
        "buy &amp; hold",
        "Sharpe",
        "<h2>Trades</h2>",
    ):
        assert needle in text, needle


def test_monthly_returns_compound_to_total(btc_series: BarSeries) -> None:
    res = BacktestEngine(BacktestConfig()).run([btc_series], [BuyAndHold(["BTCUSDT"])])
    months = monthly_returns(res)
    total = float((months["return"] + 1).product() - 1)
    assert abs(total - res.metrics["total_return"]) < 1e-12
    assert months["month"].to_list() == [12, 1, 2]


def test_cli_backtest_writes_results_and_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path / "data")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "backtest",
            "-p",
            "fast=20",
            "-p",
            "slow=120",
            "--report",
            str(tmp_path / "report.html"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "total return" in res.stdout and "buy & hold" in res.stdout
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["metrics"]["bars"] == 45031
    trades = pl.read_parquet(tmp_path / "out" / "trades.parquet")
    # a position open at the end is listed as closed at the last close (end_of_data), not
    # counted in the trade statistics
    at_end = (trades["exit_reason"] == "end_of_data").sum()
    assert len(trades) == doc["metrics"]["trades"] + trades["exit_time"].null_count() + at_end
    assert sum(doc["exit_reasons"].values()) == len(trades) - trades["exit_time"].null_count()
    assert (tmp_path / "report.html").stat().st_size > 1_000_000


def test_cli_bad_strategy_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "backtest", "--strategy", "nope"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 2
    assert "unknown strategy 'nope'" in res.stderr and "Traceback" not in res.stderr
