"""A sweep row is `tessera backtest` of its point (issue 16): same engine or a vectorized path
that provably gives the same result, the same metric names and units, on the real bundled bars.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from tessera.backtest import BacktestEngine, BacktestResult, BarSeries, sweep_cli
from tessera.backtest.cli import _summary
from tessera.backtest.sweep import METRIC_KEYS, run_sweep
from tessera.backtest.sweep_cli import TABLE_METRICS, format_metric, sweep_table
from tessera.backtest.vectorized import (
    NotProvablyEqualError,
    backtest_sma_cross,
    drawdown_breach,
    sma_cross,
    sweep_sma_cross,
)
from tessera.bootstrap import bootstrap
from tessera.config import BacktestConfig, ConfigError, RiskConfig, load_settings
from tessera.risk.engine import RiskEngine, TradingState
from tessera.strategies import strategy_class

# backtest.yaml's costs (10 bps fees, 1 bp slippage, next open, 10,000 cash); risk.yaml's limits
CFG = BacktestConfig.model_validate({"symbols": ["BTCUSDT"]})
RISK = RiskConfig()
# 0.2 BTC (about 9,300 USDT) per entry from 10,000: once the losses pass ~7% buys are refused
SHORT_OF_CASH: dict[str, Any] = {"slippage": {"kind": "none"}}


@pytest.fixture(scope="module")
def series(btc_series: BarSeries) -> BarSeries:
    """The first 10,000 real 1m bars: a falling week where the kill-switch fires for fast
    crossings and not for slow ones."""
    return btc_series.slice(0, 10_000)


def _direct(
    series: BarSeries, strategy: str, params: dict[str, Any], risk: RiskConfig | None = RISK
) -> BacktestResult:
    """What `tessera backtest -s STRATEGY -p ...` runs: `BacktestEngine(cfg, settings.risk)`."""
    strat = strategy_class(strategy)([series.symbol], **params)
    return BacktestEngine(CFG, risk).run([series], [strat])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _assert_row_is_the_backtest(row: dict[str, Any], result: BacktestResult) -> None:
    assert list(result.metrics) == list(METRIC_KEYS)
    differ = {
        k: (row[k], result.metrics[k]) for k in METRIC_KEYS if not _same(row[k], result.metrics[k])
    }
    assert not differ, f"{row['engine']} row differs from the backtest: {differ}"
    assert row["halted"] == (result.halted_at is not None)


def test_every_sweep_row_equals_the_backtest_of_its_point(series: BarSeries) -> None:
    sma = [{"fast": 10, "slow": 30}, {"fast": 50, "slow": 1000}, {"fast": 20, "slow": 1000}]
    rows = run_sweep(series, "sma_cross", sma, CFG, RISK, workers=1, engine="vectorized")
    by_point = {(r["fast"], r["slow"]): r for r in rows.iter_rows(named=True)}
    # 10/30 is the point: the kill-switch halts it, so it runs on the event engine
    assert by_point[(10, 30)]["engine"] == "event"
    assert by_point[(10, 30)]["fallback"] == "kill_switch" and by_point[(10, 30)]["halted"]
    assert by_point[(50, 1000)]["engine"] == by_point[(20, 1000)]["engine"] == "vectorized"
    for point in sma:
        row = by_point[(point["fast"], point["slow"])]
        _assert_row_is_the_backtest(row, _direct(series, "sma_cross", point))

    mr = [{"window": 60, "entry_z": 2.0}, {"window": 30, "entry_z": 1.5}]
    rows = run_sweep(series, "mean_reversion", mr, CFG, RISK, workers=1)
    for row in rows.iter_rows(named=True):
        assert row["engine"] == "event" and row["fallback"] == ""
        point = {"window": row["window"], "entry_z": row["entry_z"]}
        _assert_row_is_the_backtest(row, _direct(series, "mean_reversion", point))


@pytest.mark.parametrize(
    ("config", "params"),
    [
        ({}, {"fast": 20, "slow": 120}),
        ({"fill_at": "close"}, {"fast": 20, "slow": 120}),
        (SHORT_OF_CASH, {"fast": 10, "slow": 30, "qty": "0.2"}),
        ({}, {"fast": 10, "slow": 120, "size": 0.5, "qty_step": "0.001"}),
    ],
    ids=["next-open", "at-close", "fixed-qty-short-of-cash", "half-size"],
)
@pytest.mark.parametrize("caps", ["fixed", "fraction"])
def test_the_vectorized_path_gives_the_event_engines_result_where_it_runs(
    series: BarSeries, config: dict[str, Any], params: dict[str, Any], caps: str
) -> None:
    cfg = BacktestConfig.model_validate({"symbols": ["BTCUSDT"], **config})
    # a fraction of the equity at each order: "100%" just above the 99% an entry sizes to (a
    # fixed 0.2 BTC outgrows it once the losses mount: the engine denies, so that point would
    # fall back; 1000% there)
    cap: int | str = 10**9 if caps == "fixed" else ("1000%" if "qty" in params else "100%")
    loose = RiskConfig(max_drawdown_pct=90, max_order_notional=cap, max_position_notional=cap)
    vec = backtest_sma_cross(series, params, cfg, loose)
    event = BacktestEngine(cfg, loose).run(
        [series], [strategy_class("sma_cross")([series.symbol], **params)]
    )
    assert len(event.fills) > 10 and event.halted_at is None
    assert [
        (r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price, r.fill.fee) for r in vec.fills
    ] == [(r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price, r.fill.fee) for r in event.fills]
    assert vec.final_cash == event.final_cash and vec.final_equity == event.final_equity
    assert np.array_equal(vec.equity, event.equity) and np.array_equal(vec.exposure, event.exposure)
    assert vec.metrics.keys() == event.metrics.keys()
    assert all(_same(vec.metrics[k], event.metrics[k]) for k in vec.metrics)
    assert vec.denials == event.denials  # the buys the cash could not pay, if any
    assert vec.risk == event.risk  # the limits applied, none acted


def test_the_fixed_qty_point_is_short_of_cash_somewhere(series: BarSeries) -> None:
    """The 'fixed-qty-short-of-cash' case above does exercise the cash check."""
    cfg = BacktestConfig.model_validate({"symbols": ["BTCUSDT"], **SHORT_OF_CASH})
    res = sma_cross(series, 10, 30, cfg, qty=Decimal("0.2"))
    assert len(res.fills) > 10 and len(res.denials) > 10
    assert all(d[2] == "insufficient_balance" for d in res.denials)


@pytest.mark.parametrize(
    ("risk", "reason"),
    [
        (RiskConfig(), "kill_switch"),
        (RiskConfig(max_drawdown_pct=20, reduce_only_drawdown_pct=5), "reduce_only_drawdown"),
        (RiskConfig(max_drawdown_pct=90, max_order_notional=5000), "max_order_notional"),
        (
            RiskConfig(max_drawdown_pct=90, max_position_notional=9000, max_order_notional=10**6),
            "max_position",
        ),
        (RiskConfig(max_drawdown_pct=90, max_order_notional="50%"), "max_order_notional"),
    ],
    ids=["kill-switch", "reduce-only", "order-notional", "position-notional", "fraction-cap"],
)
def test_the_vectorized_path_refuses_where_a_risk_limit_acts_and_the_sweep_falls_back(
    series: BarSeries, risk: RiskConfig, reason: str
) -> None:
    point = {"fast": 10, "slow": 30}
    with pytest.raises(NotProvablyEqualError, match=reason):
        backtest_sma_cross(series, point, CFG, risk)
    event = _direct(series, "sma_cross", point, risk)
    acted = event.halted_at is not None or any(d[2] == reason for d in event.denials)
    assert acted or event.risk.denials, "the limit acts in the event engine too"
    row = run_sweep(series, "sma_cross", [point], CFG, risk, workers=1, engine="vectorized").row(
        0, named=True
    )
    assert row["engine"] == "event" and row["fallback"] == reason
    _assert_row_is_the_backtest(row, event)


def test_configurations_the_vectorized_path_cannot_follow_are_refused(series: BarSeries) -> None:
    late = CFG.model_copy(update={"latency_ms": 100})
    with pytest.raises(ValueError, match="latency_ms"):
        run_sweep(series, "sma_cross", [{"fast": 10, "slow": 30}], late, engine="vectorized")
    with pytest.raises(ValueError, match="sma_cross only"):
        run_sweep(series, "mean_reversion", [{"window": 30}], CFG, engine="vectorized")
    with pytest.raises(NotProvablyEqualError, match="allow_short"):
        backtest_sma_cross(series, {"fast": 10, "slow": 30, "allow_short": True}, CFG)


@settings(max_examples=300, deadline=None)
@given(
    equity=st.lists(st.floats(-50.0, 20_000.0, allow_nan=False), min_size=1, max_size=40),
    max_dd=st.one_of(st.none(), st.floats(0.5, 100.0)),
    reduce_frac=st.one_of(st.none(), st.floats(0.05, 0.95)),
)
def test_drawdown_breach_is_the_risk_engines_own_rule(
    equity: list[float], max_dd: float | None, reduce_frac: float | None
) -> None:
    reduce_at = None if reduce_frac is None or max_dd is None else max_dd * reduce_frac
    risk = RiskConfig(max_drawdown_pct=max_dd, reduce_only_drawdown_pct=reduce_at)
    engine = RiskEngine(risk)
    first = None
    for k, eq in enumerate(equity):
        engine.update_equity(eq, k)
        if engine.state is not TradingState.ACTIVE:
            first = k
            break
    assert drawdown_breach(np.array(equity), risk) == first


def test_drawdown_breach_on_real_equity_curves(series: BarSeries) -> None:
    risk = RiskConfig(max_drawdown_pct=90)
    for fast, slow in ((10, 30), (20, 120), (50, 1000)):
        curve = sma_cross(series, fast, slow, CFG).equity
        for limit in (2.0, 5.0, 10.0, 20.0):
            limited = RiskConfig(max_drawdown_pct=limit)
            engine = RiskEngine(limited)
            first = next(
                (k for k, eq in enumerate(curve.tolist()) if engine.update_equity(eq, k)), None
            )
            assert drawdown_breach(curve, limited) == first
        assert drawdown_breach(curve, risk) is None


def test_the_sweep_columns_are_the_result_metrics_in_its_units(series: BarSeries) -> None:
    frame = run_sweep(series, "sma_cross", [{"fast": 50, "slow": 1000}], CFG, RISK, workers=1)
    assert frame.columns == ["fast", "slow", "engine", *METRIC_KEYS, "halted", "fallback", "error"]
    row = frame.row(0, named=True)
    # fractions, not percent: a 6% loss is -0.06, as in result.json
    assert -1 < row["total_return"] < 0 and 0 < row["max_drawdown"] < 1


def test_the_sweep_table_formats_metrics_as_the_backtest_summary_does(series: BarSeries) -> None:
    result = _direct(series, "sma_cross", {"fast": 20, "slow": 1000})
    frame = run_sweep(
        series, "sma_cross", [{"fast": 20, "slow": 1000}], CFG, RISK, workers=1, engine="vectorized"
    )
    wide = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    wide.print(_summary({"sma_cross": result}, 1.0, len(series)))
    summary = wide.export_text()
    wide.print(sweep_table(frame, "sma_cross", ["fast", "slow"], len(series), 1.0, 10))
    table = wide.export_text()
    assert "engine: vectorized 1" in table
    for label, key, fmt in TABLE_METRICS:
        cell = format_metric(fmt, result.metrics[key])
        line = next(x for x in summary.splitlines() if re.search(rf"\b{label}\s+│", x))
        assert cell in line, f"{label}: {cell!r} is not the summary's {line!r}"
        assert label in table and cell in table


def test_sorting_puts_the_best_first_and_nan_last(series: BarSeries) -> None:
    points = [{"fast": 10, "slow": 30}, {"fast": 50, "slow": 1000}, {"fast": 9000, "slow": 9001}]
    frame = run_sweep(series, "sma_cross", points, CFG, RISK, workers=1, sort_by="max_drawdown")
    dd = frame["max_drawdown"].to_list()
    assert dd == sorted(dd)  # less drawdown is better
    frame = run_sweep(series, "sma_cross", points, CFG, RISK, workers=1, sort_by="sharpe")
    assert frame.row(-1, named=True)["fast"] == 9000  # never trades: sharpe NaN, last
    assert math.isnan(frame["sharpe"][-1])


@pytest.mark.slow  # three CLI processes
def test_cli_sweep_rows_equal_cli_backtest_results(tmp_path: Path, btc_bars: pl.DataFrame) -> None:
    """`tessera sweep` and `tessera backtest` on the same real bars and limits (the kill-switch
    at 20%): one point vectorized, one on the event engine; every metric equal."""
    bars = tmp_path / "BTCUSDT_1m.csv"
    btc_bars.drop("open_time").head(10_000).write_csv(bars)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env |= {"TESSERA_DATA_DIR": str(tmp_path), "TESSERA_RISK__MAX_DRAWDOWN_PCT": "20"}

    def tessera(*args: str) -> str:
        cmd = [sys.executable, "-m", "tessera.cli", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    rows_file = tmp_path / "sweep.csv"
    shown = tessera(
        "sweep", "-g", "fast=10,100", "-g", "slow=400", "--bars", str(bars), "--out", str(rows_file)
    )
    assert "engine: event 1, vectorized 1" in shown
    note = "1 of 2 point(s) ran on the event engine, where the vectorized path would not equal it"
    assert f"{note} (kill_switch 1)" in " ".join(shown.split())
    rows = pl.read_csv(rows_file)
    assert rows["engine"].to_list().count("vectorized") == 1
    for row in rows.iter_rows(named=True):
        out = tmp_path / f"bt-{row['fast']}"
        tessera(
            "backtest",
            "-s",
            "sma_cross",
            "-p",
            f"fast={row['fast']}",
            "-p",
            "slow=400",
            "--bars",
            str(bars),
            "--symbol",
            "BTCUSDT",
            "--no-baselines",
            "--out",
            str(out),
        )
        metrics = json.loads((out / "result.json").read_text())["metrics"]
        for key in METRIC_KEYS:
            want = math.nan if metrics[key] is None else metrics[key]
            assert _same(row[key], want), (row["engine"], key, row[key], want)


def test_cli_refuses_an_engine_or_a_sort_key_it_cannot_honour(tmp_path: Path) -> None:
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        settings = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path / "data")
        ctx.obj = bootstrap(settings)

    root.command("sweep")(sweep_cli.sweep)

    def refusal(*args: str) -> str:
        res = CliRunner().invoke(root, ["sweep", *args])
        assert isinstance(res.exception, ConfigError), res.output
        return str(res.exception)

    assert "sma_cross only" in refusal(
        "-s", "mean_reversion", "-g", "window=30", "--engine", "vectorized"
    )
    assert "--sort-by 'sharp'" in refusal("-g", "fast=5", "-g", "slow=30", "--sort-by", "sharp")
    assert "--engine 'fast'" in refusal("-g", "fast=5", "-g", "slow=30", "--engine", "fast")


def test_sweep_sma_cross_without_limits_is_the_event_sweep_without_limits(
    series: BarSeries,
) -> None:
    """The demo's sweep (no risk engine): every point vectorized, every row the event one."""
    fast = sweep_sma_cross(series, [(10, 30), (20, 120), (120, 20)], CFG, workers=1)
    assert fast["engine"].to_list() == ["vectorized", "vectorized"]  # 120/20 is not a crossing
    points = [{"fast": 10, "slow": 30}, {"fast": 20, "slow": 120}]
    event = run_sweep(series, "sma_cross", points, CFG, None, workers=1, sort_by="total_return")
    assert fast.drop("engine").equals(event.drop("engine"))
