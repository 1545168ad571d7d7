"""`tessera optimize` end to end, in-process through the real entry point (`tessera.cli.main`:
the root bootstrap, the one-paragraph errors and their exit codes).

The data is a real slice: the first week of the bundled BTC 1-minute bars, resampled to 15
minutes. The chosen parameters must give, in `tessera backtest`, the very metrics the
optimisation reports for them; bad input must exit 2 with one sentence that names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from optimize_cli_helpers import tessera

from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig
from tessera.optimize.cli import pbo_splits, trade_returns
from tessera.strategies import SmaCross

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WINDOW = ["--timerange", "20220101-20220108", "--timeframe", "15m"]


def test_the_chosen_parameters_reproduce_in_tessera_backtest(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = env / "opt.html"
    code, out, err = tessera(
        capsys, "optimize", "-s", "sma_cross", "--space", "fast=int:5..30",
        "--space", "slow=int:40..160:10", "-n", "10", "--seed", "11", "--mc-runs", "200",
        "--walk-forward", "2", "--report", str(report), "--json", *WINDOW,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)  # stdout is the one JSON document
    best = doc["best"]
    assert doc["strategy"] == "sma_cross" and doc["trials"]["total"] == 10
    assert set(best["params"]) == {"fast", "slow"}
    assert report.is_file() and doc["report"] == str(report)
    assert "Deflated Sharpe" in err and "PBO" in err  # the summary went to stderr
    for key in ("deflated_sharpe", "pbo", "sensitivity"):
        assert doc[key] is not None, (key, doc["skipped"])
    # the DSR's N is every trial the choice was made among, pruned ones included
    tried = doc["trials"]["complete"] + doc["trials"]["pruned"]
    assert doc["deflated_sharpe"]["trials"] == tried
    assert [m["method"].split(" ")[0] for m in doc["monte_carlo"]] == ["trades", "returns"]
    windows = doc["walk_forward"]["windows"]
    assert len(windows) == 2 and all(set(w["params"]) >= {"fast", "slow"} for w in windows)
    assert "Walk-forward out-of-sample" in report.read_text(encoding="utf-8")

    params = [arg for k, v in best["params"].items() for arg in ("-p", f"{k}={v}")]
    code, out, err = tessera(
        capsys, "backtest", "-s", "sma_cross", *params, "--no-baselines", "--json",
        "--out", str(env / "bt"), *WINDOW,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    metrics = json.loads(out)["metrics"]
    # the same engine, risk, fees and fills: every figure equal, not merely close
    assert metrics == doc["best_metrics"]
    assert metrics == best["metrics"]
    assert metrics["sharpe"] == best["values"][0]


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--space", "fast=int:50..5"], "LOW 50 is above HIGH 5"),
        (["--space", "fastt=int:5..50"], "has no parameter 'fastt'"),
        (["-o", "nope"], "unknown objective 'nope'"),
        (["--space", "fast=cat:5,10,20", "--sampler", "cmaes"], "fast is categorical"),
        (["-n", "0"], "--trials 0: run at least 1 trial"),
        (["--walk-forward", "40"], "each part needs at least 20 bars"),  # 672 bars
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_no_traceback(
    env: Path, capsys: pytest.CaptureFixture[str], args: list[str], sentence: str
) -> None:
    code, out, err = tessera(capsys, "optimize", "-s", "sma_cross", *args, *WINDOW)
    assert code == 2, err[-2000:]
    assert sentence in " ".join(err.split()), err  # rich may wrap the paragraph
    assert "Traceback" not in err + out and "optimisation done" not in err  # no study ran


# A user's strategy file: the loader tests' RSI strategy (its search space declared beside its
# parameters) and, below it, a custom objective, registered as the file is loaded.
MY_RSI = Path(__file__).resolve().parents[1] / "strategies" / "fixtures" / "my_rsi.py"
OBJECTIVE = """
from tessera.optimize.objectives import register_objective


@register_objective("return_over_drawdown_h5", direction="maximize")
def return_over_drawdown(result):
    m = result.metrics
    return m["total_return"] / max(m["max_drawdown"], 0.01)
"""


def test_a_user_strategy_and_custom_objective_from_a_file_need_no_space(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = env / "strategies"
    folder.mkdir()
    source = MY_RSI.read_text(encoding="utf-8").replace('"my_rsi"', '"my_rsi_h5"')
    (folder / "my_rsi_h5.py").write_text(source + OBJECTIVE, encoding="utf-8")
    code, out, err = tessera(
        capsys, "optimize", "-s", "my_rsi_h5", "--strategy-path", str(folder),
        "-o", "return_over_drawdown_h5", "-n", "6", "--mc-runs", "100", "--json", *WINDOW,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    m = doc["best_metrics"]
    assert doc["objectives"] == ["return_over_drawdown_h5"]
    assert doc["space"] == {
        "period": "int 5..30",
        "oversold": "float 15..40",
        "overbought": "float 60..85",
    }
    assert doc["best"]["values"][0] == m["total_return"] / max(m["max_drawdown"], 0.01)
    # the sensitivity maps ran the custom objective on the points around the best: a map per
    # pair of the three parameters
    assert len(doc["sensitivity"]["heatmaps"]) == 3
    assert doc["sensitivity"]["neighbours"] > 0


def test_trade_returns_compound_to_the_runs_total_return() -> None:
    """SmaCross holds one position at a time and is flat between trades, so each trade's PnL
    over the equity before its entry, compounded, is the run's return: what the Monte Carlo of
    trades resamples is exactly the run's trades."""
    bars = pl.read_csv(SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz", n_rows=10_000)
    bars = bars.with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time")
    )
    series = BarSeries.from_frame("BTCUSDT", bars)
    run = BacktestEngine(BacktestConfig()).run([series], [SmaCross(["BTCUSDT"], fast=20, slow=120)])
    returns = trade_returns(run)
    assert len(returns) == len(run.trades) > 20
    assert float(np.prod(1.0 + returns) - 1.0) == pytest.approx(
        run.metrics["total_return"], abs=1e-12
    )


def test_pbo_uses_16_blocks_when_they_fit_and_fewer_on_short_series() -> None:
    assert pbo_splits(744) == 16  # a month of hourly returns: blocks of 46
    assert pbo_splits(64) == 16 and pbo_splits(63) == 14
    assert pbo_splits(48) == 12
    assert pbo_splits(8) == 2 and pbo_splits(7) is None
