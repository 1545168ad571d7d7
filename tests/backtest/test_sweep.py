"""Sweeps: parameter grammar, and parallel runs (local processes, Ray) equal to single runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.sweep import grid_points, parse_values, random_points, run_sweep
from tessera.config import BacktestConfig
from tessera.strategies import strategy_class


def test_parameter_grammar() -> None:
    assert parse_values("5:20:5") == [5, 10, 15]
    assert parse_values("1.5:2.6:0.5") == [1.5, 2.0, 2.5]
    assert parse_values("1,2.5,x,true") == [1, 2.5, "x", True]
    with pytest.raises(ValueError, match="positive step"):
        parse_values("1:5:0")
    space = {"window": [20, 40], "entry_z": [1.5, 2.0, 2.5]}
    grid = grid_points(space)
    assert len(grid) == 6 and grid[0] == {"entry_z": 1.5, "window": 20}
    sample = random_points(space, 4, seed=1)
    assert len(sample) == 4 and sample == random_points(space, 4, seed=1)
    assert len({tuple(sorted(p.items())) for p in sample}) == 4
    assert random_points(space, 100, seed=1) == grid


@pytest.fixture(scope="module")
def series(btc_series: BarSeries) -> BarSeries:
    return btc_series.slice(0, 15_000)


POINTS = [{"window": w, "entry_z": z} for w in (30, 90) for z in (1.5, 2.5)]


def test_parallel_sweep_equals_single_runs(series: BarSeries) -> None:
    cfg = BacktestConfig()
    parallel = run_sweep(series, "mean_reversion", POINTS, cfg, workers=2)
    serial = run_sweep(series, "mean_reversion", POINTS, cfg, workers=1)
    assert_frame_equal(parallel, serial)
    best = parallel.row(0, named=True)
    params = {"window": best["window"], "entry_z": best["entry_z"]}
    single = BacktestEngine(cfg).run(
        [series], [strategy_class("mean_reversion")([series.symbol], **params)]
    )
    assert best["final_equity"] == float(single.equity[-1])
    assert best["sharpe"] == single.metrics["sharpe"]
    assert parallel["sharpe"].is_sorted(descending=True, nulls_last=True)


def test_a_bad_point_is_reported_not_fatal(series: BarSeries) -> None:
    frame = run_sweep(
        series.slice(0, 2_000), "mean_reversion", [{"window": 30}, {"windw": 30}], BacktestConfig()
    )
    errors = frame["error"].to_list()
    assert errors.count("") == 1 and any("unknown parameter(s) windw" in e for e in errors)


@pytest.mark.slow
def test_ray_sweep_equals_the_local_one(series: BarSeries) -> None:
    pytest.importorskip("ray")
    cfg = BacktestConfig()
    local = run_sweep(series, "mean_reversion", POINTS, cfg, workers=2)
    on_ray = run_sweep(series, "mean_reversion", POINTS, cfg, ray_address="local")
    assert_frame_equal(on_ray, local)


def test_cli_rejects_unknown_strategies_and_parameters(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tessera.cli", "sweep", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    bad = run("-s", "mean_reversion", "-g", "windw=10,20")
    assert bad.returncode == 2 and "unknown parameter(s) windw" in bad.stderr
    nope = run("-s", "nope", "-g", "a=1")
    assert nope.returncode == 2 and "unknown strategy 'nope'" in nope.stderr
    ok = run("-s", "mean_reversion", "-g", "window=30,60", "-g", "entry_z=2", "--workers", "1")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "mean_reversion sweep: 2 points" in ok.stdout and "engine: event 2" in ok.stdout
