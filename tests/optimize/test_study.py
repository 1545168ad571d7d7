"""Bayesian search on the event engine: every trial is a `tessera backtest` run, failures are
data, pruning stops hopeless runs, seeds reproduce, studies resume and are shared.

The bars are a short slice of the real BTC bars bundled in samples/ (tests/optimize/conftest.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import Field, field_validator

from tessera.backtest import BarSeries
from tessera.backtest.sweep import run_sweep
from tessera.config import BacktestConfig
from tessera.optimize import objectives as objectives_module
from tessera.optimize.objectives import objective, objective_names, register_objective
from tessera.optimize.space import Choice, FloatRange, IntRange, resolve_space
from tessera.optimize.study import (
    OptimizationResult,
    TrialRecord,
    backtest_point,
    optimize,
    period_returns,
)
from tessera.strategies import Bar, Strategy, StrategyContext, StrategyParams, base
from tessera.strategies.loader import load_strategies

SMA_SPACE = [IntRange("fast", 5, 30), IntRange("slow", 20, 120)]


def same_metrics(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Equal key by key, exactly; NaN equals NaN (a metric with no trades)."""
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


# --- a probe strategy whose parameter decides how its trial ends ----------------------------------


class Probe(Strategy):
    """``mode`` trade: holds 0.01 BTC from the 10th bar to the 2000th (a finite Sharpe);
    idle: never trades (Sharpe NaN); raise: raises in on_bar; refused: refused at validation."""

    name = "optimize_probe"

    class Params(StrategyParams):
        mode: str = "trade"
        hold: int = Field(2000, gt=10)

        @field_validator("mode")
        @classmethod
        def _not_refused(cls, value: str) -> str:
            if value == "refused":
                raise ValueError("the probe refuses mode=refused")
            return value

    params: Params

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.seen = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.seen += 1
        mode = self.params.mode
        if mode == "raise" and self.seen == 50:
            raise RuntimeError("the probe blew up")
        if mode == "trade" and self.seen == 10:
            ctx.target_position(bar.symbol, Decimal("0.01"))
        if mode == "trade" and self.seen == self.params.hold:
            ctx.target_position(bar.symbol, Decimal(0))


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(base._REGISTRY, Probe.name, Probe)
    return Probe.name


@pytest.fixture
def scratch_objectives() -> Iterator[None]:
    """Objectives registered by a test are removed after it."""
    before = dict(objectives_module._REGISTRY)
    yield
    objectives_module._REGISTRY.clear()
    objectives_module._REGISTRY.update(before)


# --- every trial is a tessera backtest ------------------------------------------------------------


def test_a_trials_figures_equal_backtest_point_and_a_sweep_row_of_the_same_point(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    result = optimize(btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=12, seed=3)
    assert result.best is not None and result.best.state == "complete"
    checked = 0
    for trial in [*result.complete()[:3], result.best]:
        run = backtest_point(btc_slice, "sma_cross", trial.params, backtest_config)
        assert same_metrics(trial.metrics, run.metrics)
        assert np.array_equal(trial.returns, period_returns(run, result.period))
        assert trial.values == (run.metrics["sharpe"],)
        checked += 1
    row = run_sweep(btc_slice, "sma_cross", [result.best.params], backtest_config, workers=1).row(
        0, named=True
    )
    assert same_metrics({k: row[k] for k in result.best.metrics}, result.best.metrics)
    assert checked == 4


def test_the_best_single_objective_trial_has_the_highest_value(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    result = optimize(
        btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=8, seed=1, prune=False
    )
    assert result.best is not None
    assert result.best.values[0] == max(t.values[0] for t in result.complete())
    assert result.pareto == [result.best]
    assert result.directions == ("maximize",) and result.sampler == "tpe"


def test_a_minimised_objective_picks_the_lowest_value(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    result = optimize(
        btc_slice,
        "sma_cross",
        SMA_SPACE,
        backtest_config,
        objectives=("max_drawdown",),
        trials=8,
        seed=1,
        prune=False,
    )
    assert result.directions == ("minimize",) and result.best is not None
    assert result.best.values[0] == min(t.values[0] for t in result.complete())
    assert result.best.values[0] == result.best.metrics["max_drawdown"]


# --- failures are data ----------------------------------------------------------------------------


def test_refused_raising_and_nan_points_are_failed_trials_with_their_error(
    btc_slice: BarSeries, backtest_config: BacktestConfig, probe: str
) -> None:
    space = [Choice("mode", ("trade", "idle", "raise", "refused")), IntRange("hold", 500, 2500)]
    result = optimize(
        btc_slice, probe, space, backtest_config, trials=14, seed=0, sampler="random", prune=False
    )
    assert len(result.trials) == 14
    by_mode: dict[str, list[TrialRecord]] = {}
    for t in result.trials:
        by_mode.setdefault(t.params["mode"], []).append(t)
    assert set(by_mode) == {"trade", "idle", "raise", "refused"}
    assert all(t.state == "complete" and not t.error for t in by_mode["trade"])
    assert all(t.state == "failed" and "NaN" in t.error for t in by_mode["idle"])
    assert all(t.state == "failed" and "probe blew up" in t.error for t in by_mode["raise"])
    assert all(
        t.state == "failed" and "refuses mode=refused" in t.error for t in by_mode["refused"]
    )
    failed = [t for t in result.trials if t.state == "failed"]
    assert all(t.values == () and t.metrics == {} and len(t.returns) == 0 for t in failed)
    assert result.best is not None and result.best.params["mode"] == "trade"
    frame = result.trials_frame()
    assert frame.height == 14 and {"mode", "hold", "value_sharpe", "error"} <= set(frame.columns)


def test_a_point_the_strategy_refuses_fails_and_the_study_goes_on(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    space = [IntRange("fast", 20, 60), IntRange("slow", 25, 45)]  # fast >= slow often
    result = optimize(
        btc_slice, "sma_cross", space, backtest_config, trials=10, seed=2, sampler="random"
    )
    refused = [t for t in result.trials if t.params["fast"] >= t.params["slow"]]
    assert refused and all(
        t.state == "failed" and "fast must be below slow" in t.error for t in refused
    )
    assert any(t.state == "complete" for t in result.trials)


# --- pruning --------------------------------------------------------------------------------------


def test_hopeless_trials_are_pruned_and_no_prune_runs_every_trial_to_the_end(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    pruned = optimize(btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=20, seed=5)
    full = optimize(
        btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=20, seed=5, prune=False
    )
    stopped = [t for t in pruned.trials if t.state == "pruned"]
    assert stopped, "the median pruner stopped no trial of 20"
    assert all(t.values == () and t.metrics == {} for t in stopped)
    assert all(t.number >= 5 for t in stopped)  # not before 5 complete trials
    assert {t.state for t in full.trials} == {"complete"}


def test_progress_is_called_about_ten_times_and_changes_nothing(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    calls: list[tuple[int, int, int]] = []
    params = {"fast": 10, "slow": 40}
    watched = backtest_point(
        btc_slice,
        "sma_cross",
        params,
        backtest_config,
        progress=lambda done, total, eq: calls.append((done, total, len(eq))),
    )
    plain = backtest_point(btc_slice, "sma_cross", params, backtest_config)
    assert same_metrics(watched.metrics, plain.metrics)
    assert np.array_equal(watched.equity, plain.equity)
    n = len(btc_slice)
    assert 9 <= len(calls) <= 11 and calls[-1] == (n, n, n)
    assert all(done == length for done, _, length in calls)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


# --- seeds ----------------------------------------------------------------------------------------


def test_two_runs_with_one_seed_try_the_same_parameters(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    def tried(seed: int) -> list[dict[str, Any]]:
        result = optimize(btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=14, seed=seed)
        return [t.params for t in result.trials]

    first = tried(7)
    assert first == tried(7)  # past TPE's 10 random start-up trials too
    assert first != tried(8)


# --- samplers and objectives ----------------------------------------------------------------------


def test_cmaes_refuses_a_categorical_dimension_and_searches_ranges(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    space = [*SMA_SPACE, Choice("allow_short", (True, False))]
    with pytest.raises(ValueError, match=r"cmaes searches int and float ranges only.*allow_short"):
        optimize(btc_slice, "sma_cross", space, backtest_config, trials=3, sampler="cmaes")
    with pytest.raises(ValueError, match="one objective"):
        optimize(
            btc_slice,
            "sma_cross",
            SMA_SPACE,
            backtest_config,
            objectives=("profit", "max_drawdown"),
            sampler="cmaes",
        )
    result = optimize(
        btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=6, sampler="cmaes", seed=1
    )
    assert result.sampler == "cmaes" and len(result.trials) == 6


def test_multi_objective_gives_the_pareto_front_of_return_against_drawdown(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    result = optimize(
        btc_slice,
        "sma_cross",
        [*SMA_SPACE, FloatRange("size", 0.2, 1.0)],
        backtest_config,
        objectives=("profit", "max_drawdown"),
        trials=12,
        seed=4,
    )
    assert result.directions == ("maximize", "minimize")
    done = result.complete()
    assert len(done) >= 8 and "pruned" not in {t.state for t in result.trials}  # no pruner

    def dominates(a: TrialRecord, b: TrialRecord) -> bool:
        (ra, da), (rb, db) = a.values, b.values
        return ra >= rb and da <= db and (ra > rb or da < db)

    front = [t for t in done if not any(dominates(o, t) for o in done)]
    assert {t.number for t in result.pareto} == {t.number for t in front}
    assert result.best is not None and result.best in result.pareto
    assert result.best.values[0] == max(t.values[0] for t in result.pareto)
    assert all(t.values == (t.metrics["total_return"], t.metrics["max_drawdown"]) for t in done)


def test_bad_arguments_are_refused_with_a_sentence(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    def run(**kw: Any) -> OptimizationResult:
        args: dict[str, Any] = {"trials": 2, **kw}
        space = args.pop("space", SMA_SPACE)
        strategy = args.pop("strategy", "sma_cross")
        return optimize(btc_slice, strategy, space, backtest_config, **args)

    with pytest.raises(ValueError, match=r"unknown objective 'sharp'.*sharpe, sortino"):
        run(objectives=("sharp",))
    with pytest.raises(ValueError, match=r"sampler 'bayes'.*tpe"):
        run(sampler="bayes")
    with pytest.raises(ValueError, match=r"no parameter 'fsat'.*fast, slow"):
        run(space=[IntRange("fsat", 1, 5)])
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        run(strategy="nope")
    with pytest.raises(ValueError, match="both searched and fixed"):
        run(fixed_params={"fast": 5})
    with pytest.raises(ValueError, match="trials must be at least 1"):
        run(trials=0)


def test_fixed_parameters_run_with_every_trial_and_are_in_its_params(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    result = optimize(
        btc_slice,
        "sma_cross",
        SMA_SPACE,
        backtest_config,
        trials=3,
        fixed_params={"size": 0.5},
        prune=False,
    )
    assert all(t.params["size"] == 0.5 for t in result.trials)
    best = result.best
    assert best is not None
    run = backtest_point(btc_slice, "sma_cross", best.params, backtest_config)
    assert same_metrics(run.metrics, best.metrics)


def test_the_objective_registry_lists_builtins_and_refuses_clashes(
    scratch_objectives: None,
) -> None:
    assert objective_names()[:7] == [
        "sharpe",
        "sortino",
        "calmar",
        "profit",
        "max_drawdown",
        "profit_factor",
        "win_rate",
    ]
    assert objective("max_drawdown").direction == "minimize"

    @register_objective("trade_count", direction="maximize")
    def trade_count(result: Any) -> float:
        return float(result.metrics["trades"])

    assert objective("trade_count").fn is trade_count
    register_objective("trade_count")(trade_count)  # the same function again: a no-op

    def other(result: Any) -> float:
        return 0.0

    with pytest.raises(ValueError, match="registered twice"):
        register_objective("trade_count")(other)
    with pytest.raises(ValueError, match="is a built-in objective"):
        register_objective("sharpe")(other)
    with pytest.raises(ValueError, match="neither 'maximize' nor 'minimize'"):
        register_objective("x", direction="max")
    with pytest.raises(ValueError, match="known: sharpe"):
        objective("nope")


# --- returns for the overfitting statistics -------------------------------------------------------


def test_period_returns_compound_to_the_total_return_one_per_hour(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    run = backtest_point(btc_slice, "sma_cross", {"fast": 10, "slow": 40}, backtest_config)
    hourly = period_returns(run, "1h")
    hours = len(np.unique(btc_slice.close_time // 3_600_000_000_000))
    assert len(hourly) == hours
    assert np.prod(1.0 + hourly) - 1.0 == pytest.approx(run.metrics["total_return"], rel=1e-9)
    assert len(period_returns(run, "1m")) == len(btc_slice)


def test_the_returns_matrix_has_one_column_per_complete_trial(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    seen: list[int] = []
    result = optimize(
        btc_slice,
        "sma_cross",
        SMA_SPACE,
        backtest_config,
        trials=6,
        prune=False,
        on_trial=lambda t: seen.append(t.number),
    )
    matrix = result.returns_matrix()
    assert matrix.shape == (len(result.complete()[0].returns), len(result.complete()))
    assert np.array_equal(matrix[:, 0], result.complete()[0].returns)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert result.periods_per_year == pytest.approx(365 * 24)


def test_a_categorical_column_of_mixed_kinds_is_text_in_the_trials_frame() -> None:
    none = np.zeros(0)
    result = OptimizationResult(
        strategy="x",
        study_name="x-1",
        storage="memory",
        objectives=("sharpe",),
        directions=("maximize",),
        space=(Choice("m", (1, "a", True)),),
        period="1h",
        periods_per_year=8760.0,
        trials=[
            TrialRecord(0, {"m": 1}, (1.5,), "complete", {"sharpe": 1.5}, none),
            TrialRecord(1, {"m": "a"}, (), "failed", {}, none, "boom"),
            TrialRecord(2, {"m": True}, (), "pruned", {}, none),
        ],
        best=None,
    )
    frame = result.trials_frame()
    assert frame["m"].to_list() == ["1", "a", "True"]
    assert frame["value_sharpe"].to_list() == [1.5, None, None]
    assert frame["error"].to_list() == ["", "boom", ""]


# --- storage: resumable, shared -------------------------------------------------------------------


def test_a_study_resumes_from_its_sqlite_file_with_every_trials_figures(
    tmp_path: Path, btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    db = tmp_path / "optimize"

    def run(trials: int, **kw: Any) -> OptimizationResult:
        args: dict[str, Any] = {"space": SMA_SPACE, "objectives": ("sharpe",), **kw}
        return optimize(
            btc_slice,
            "sma_cross",
            args.pop("space"),
            backtest_config,
            trials=trials,
            storage=db,
            **args,
        )

    db.mkdir()
    first = run(5)
    again = run(4)
    assert again.study_name == first.study_name and again.study_name.startswith("sma_cross-")
    assert again.storage == f"sqlite:///{(db / 'optuna.db').resolve()}"
    assert [t.number for t in again.trials] == list(range(9))
    for old, kept in zip(first.trials, again.trials[:5], strict=True):
        assert kept.params == old.params and kept.state == old.state
        assert same_metrics(kept.metrics, old.metrics)
        assert np.array_equal(kept.returns, old.returns)
    other = run(2, space=[IntRange("fast", 5, 10), IntRange("slow", 20, 120)])
    assert other.study_name != first.study_name and len(other.trials) == 2
    with pytest.raises(ValueError, match=r"search of something else \(space: stored"):
        run(
            1,
            space=[IntRange("fast", 5, 10), IntRange("slow", 20, 120)],
            study_name=first.study_name,
        )
    with pytest.raises(ValueError, match="objectives: stored"):
        run(1, objectives=("sortino",), study_name=first.study_name)


def test_two_local_workers_share_the_study_and_see_a_user_files_strategy_and_objective(
    tmp_path: Path, btc_slice: BarSeries, backtest_config: BacktestConfig, scratch_objectives: None
) -> None:
    folder = tmp_path / "strategies"
    folder.mkdir()
    source = (Path(__file__).parents[1] / "strategies" / "fixtures" / "my_rsi.py").read_text()
    source = source.replace('name = "my_rsi"', 'name = "opt_worker_rsi"') + (
        "\n\nfrom tessera.optimize.objectives import register_objective\n\n\n"
        '@register_objective("opt_worker_return_pct")\n'
        "def return_pct(result):\n"
        '    return 100.0 * result.metrics["total_return"]\n'
    )
    (folder / "opt_worker_rsi.py").write_text(source)
    load_strategies(folder, entry_points=False)
    heard: list[int] = []
    result = optimize(
        btc_slice,
        "opt_worker_rsi",
        resolve_space("opt_worker_rsi", []),
        backtest_config,
        objectives=("opt_worker_return_pct",),
        trials=8,
        seed=1,
        workers=2,
        storage=tmp_path / "db",
        prune=False,
        on_trial=lambda t: heard.append(t.number),
    )
    assert sorted(t.number for t in result.trials) == list(range(8))
    assert sorted(heard) == list(range(8))  # each trial heard once, as the workers finish it
    done = result.complete()
    assert done and all(t.values == (100.0 * t.metrics["total_return"],) for t in done)
    best = result.best
    assert best is not None
    run = backtest_point(btc_slice, "opt_worker_rsi", best.params, backtest_config)
    assert same_metrics(run.metrics, best.metrics)


def test_a_file_of_objectives_only_loads_like_a_strategy_file(
    tmp_path: Path, btc_slice: BarSeries, backtest_config: BacktestConfig, scratch_objectives: None
) -> None:
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "my_objectives.py").write_text(
        "from tessera.optimize.objectives import register_objective\n\n\n"
        '@register_objective("opt_file_drawdown_cost", direction="minimize")\n'
        "def drawdown_cost(result):\n"
        '    return result.metrics["max_drawdown"] + result.metrics["fees_paid"] / 1e6\n'
    )
    (folder / "notes.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match="defines no Strategy subclass"):
        load_strategies(folder, entry_points=False)
    (folder / "notes.py").unlink()
    assert load_strategies(folder, entry_points=False) == []
    assert objective("opt_file_drawdown_cost").direction == "minimize"
    result = optimize(
        btc_slice,
        "sma_cross",
        SMA_SPACE,
        backtest_config,
        objectives=("opt_file_drawdown_cost",),
        trials=4,
        prune=False,
    )
    assert result.directions == ("minimize",) and result.best is not None
    m = result.best.metrics
    assert result.best.values == (m["max_drawdown"] + m["fees_paid"] / 1e6,)


@pytest.mark.postgres
def test_a_postgresql_study_is_shared_and_resumed(
    fresh_postgres_url: str, btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    first = optimize(
        btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=3, storage=fresh_postgres_url
    )
    second = optimize(
        btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=2, storage=fresh_postgres_url
    )
    assert first.storage.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/")
    assert second.study_name == first.study_name
    assert [t.number for t in second.trials] == [0, 1, 2, 3, 4]
    assert same_metrics(second.trials[0].metrics, first.trials[0].metrics)


def test_a_storage_that_cannot_be_opened_is_refused_with_a_sentence_not_a_traceback(
    btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    with pytest.raises(ValueError, match=r"postgresql\+psycopg://postgres:\*\*\*@127\.0\.0\.1:9/x"):
        optimize(
            btc_slice,
            "sma_cross",
            SMA_SPACE,
            backtest_config,
            trials=1,
            storage="postgresql://postgres:secret@127.0.0.1:9/x",
        )
    with pytest.raises(ValueError, match="cannot be created"):
        optimize(
            btc_slice, "sma_cross", SMA_SPACE, backtest_config, trials=1, storage="/proc/no/db"
        )


@pytest.mark.slow
def test_a_study_on_a_private_ray_runs_every_trial_on_the_engine(
    tmp_path: Path, btc_slice: BarSeries, backtest_config: BacktestConfig
) -> None:
    pytest.importorskip("ray")
    result = optimize(
        btc_slice,
        "sma_cross",
        SMA_SPACE,
        backtest_config,
        trials=6,
        seed=1,
        workers=2,
        ray_address="local",
        storage=tmp_path,
        prune=False,
    )
    assert sorted(t.number for t in result.trials) == list(range(6))
    best = result.best
    assert best is not None
    run = backtest_point(btc_slice, "sma_cross", best.params, backtest_config)
    assert same_metrics(run.metrics, best.metrics)
