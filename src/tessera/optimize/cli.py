"""`tessera optimize`: Bayesian search of a strategy's parameters, and how much of it is luck.

The flow is the issue's, in order: load the bars (the same ``--symbol``/``--timeframe``/
``--timerange``/``--bars`` options and backtest settings as `tessera backtest` and `tessera
sweep`); resolve the search space (the strategy's declared one, with ``--space`` overriding or
extending it); run the study on the event engine; backtest the chosen point again
(`backtest_point`, exactly the run a trial does, so its figures equal ``tessera backtest`` of
those parameters); then the statistics: the Deflated Sharpe Ratio, the Probability of Backtest
Overfitting, Monte Carlo resampling of the trades and of the returns, parameter sensitivity
(a grid around the best, evaluated through `tessera.backtest.sweep.run_sweep` with the same
workers), and optionally a walk-forward optimisation. It prints a summary, writes the
robustness report (HTML) and, with ``--json``, prints the same content as one JSON document.

A statistic that cannot be computed (PBO with one complete trial, Monte Carlo of a run without
trades) is skipped with its reason, printed and in the report; the run still succeeds. Bad
input (a malformed ``--space``, an unknown objective, CMA-ES over a categorical parameter,
fewer than one trial) is one paragraph and exit code 2, before any bar is read.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.backtest.cli import _ctx, _parse_params
from tessera.config import BacktestConfig, ConfigError, load_yaml
from tessera.console import echo_json, make_console
from tessera.data.research_cli import (
    BarsOpt,
    SymbolsOpt,
    TimeframeOpt,
    TimerangeOpt,
    research_bars,
)
from tessera.strategies.cli import StrategyPathOption

# optuna, NumPy, the engine and plotly load when the command runs: `tessera --help` stays fast
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import polars as pl
    from rich.console import Console

    from tessera.backtest.data import BarSeries
    from tessera.backtest.results import BacktestResult
    from tessera.bootstrap import AppContext
    from tessera.config import FeatureConfig, ModelConfig, RiskConfig
    from tessera.data.universe import LoadedBars
    from tessera.optimize.montecarlo import MonteCarlo
    from tessera.optimize.overfit import DeflatedSharpe, Pbo
    from tessera.optimize.sensitivity import Sensitivity
    from tessera.optimize.space import Dimension
    from tessera.optimize.study import OptimizationResult
    from tessera.optimize.wfo import WalkForward

SAMPLERS = ("auto", "tpe", "cmaes", "random", "nsga2")
WF_MODES = ("rolling", "anchored")
PBO_MAX_SPLITS = 16  # the paper's S; fewer when the returns are too short for 16 blocks
PBO_MIN_BLOCK = 4  # periods per CSCV block, at least (a Sharpe of 2 periods is noise)
MODEL_NEEDED = (
    "model_signal trades a model's scores and these bars carry none: give --model NAME (a "
    "registered model, see `tessera models list`) or --walk-forward N (the model retrained "
    "per window on the bars before it, --model-config PATH)"
)


def optimize(
    ctx: typer.Context,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="Strategy to optimise (see the registry)")
    ],
    strategy_path: StrategyPathOption = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="A search dimension (repeatable): name=int:5..50, name=int:5..50:5, "
            "name=float:0.5..3, name=float:1e-4..0.1:log, name=cat:a,b,c. Overrides or extends "
            "the space the strategy declares",
        ),
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            "-o",
            help="What to optimise (repeat for multi-objective, e.g. -o sharpe -o "
            "max_drawdown): sharpe, sortino, calmar, profit, max_drawdown, profit_factor, "
            "win_rate, or a registered custom objective. Default: sharpe",
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            "--trials", "-n", help="Trials to run (a resumed study adds them to its earlier ones)"
        ),
    ] = 100,
    sampler: Annotated[
        str,
        typer.Option(
            help="auto (TPE, for one objective or several), tpe, cmaes (numeric parameters and "
            "one objective only), random, nsga2"
        ),
    ] = "auto",
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the sampler and the Monte Carlo draws (default: the seed setting)"
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune/--no-prune", help="Stop hopeless trials early")
    ] = True,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Study storage: a SQLite file or sqlite:/// URL (default <data_dir>/optimize/"
            "studies.db; the same command then resumes its study) or postgresql://... for a "
            "study shared by several processes or machines"
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name: the same name in the same storage resumes it"),
    ] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes")] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Run on Ray: 'local', 'auto' or ray://host:10001. Needs the ray extra",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A fixed (not searched) parameter key=value"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Backtest YAML (default: the backtest section of the effective settings)",
        ),
    ] = None,
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    bars: BarsOpt = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="Sampling period of the returns the statistics use (DSR, PBO, Monte Carlo): "
            "default 1h, or the bar interval when it is longer"
        ),
    ] = None,
    walk_forward: Annotated[
        int | None,
        typer.Option(
            "--walk-forward",
            metavar="WINDOWS",
            help="Also run a walk-forward optimisation with this many windows",
        ),
    ] = None,
    wf_mode: Annotated[
        str, typer.Option("--wf-mode", help="Walk-forward windows: rolling or anchored")
    ] = "rolling",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Attach this registered model's scores (NAME or NAME:VERSION; several "
            "symbols: a pooled model) for model_signal, as `tessera backtest --model` does",
        ),
    ] = None,
    model_config: Annotated[
        Path | None,
        typer.Option(
            "--model-config",
            help="Model YAML retrained per walk-forward window on the past only (default: the "
            "model settings, configs/model.yaml); model_signal's --walk-forward retrains it",
        ),
    ] = None,
    wf_in_sample: Annotated[
        float,
        typer.Option("--wf-in-sample", help="Share of each walk-forward window that is in-sample"),
    ] = 0.75,
    mc_runs: Annotated[int, typer.Option("--mc-runs", help="Monte Carlo resamples")] = 1000,
    tolerance: Annotated[
        float,
        typer.Option(help="Sensitivity: a neighbour within this fraction of the best counts"),
    ] = 0.10,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Robustness report (HTML) path; default <report_dir>/<run_id>/optimize.html",
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result (best parameters, every trial, every statistic, the bars "
            "used, the report's path) as one JSON document on stdout; other lines go to stderr",
        ),
    ] = False,
) -> None:
    """Bayesian search of a strategy's parameters, with the statistics that say how much is luck.

    Examples:

      tessera optimize -s sma_cross --space fast=int:5..50 --space slow=int:60..240 -n 100

      tessera optimize -s mean_reversion -o sharpe -o max_drawdown -n 200 --sampler nsga2

      tessera optimize -s sma_cross -n 50 --walk-forward 4 --wf-mode anchored

      tessera optimize -s model_signal --model NAME -n 50

      tessera optimize -s model_signal -n 30 --walk-forward 4 --model-config model.yaml
    """
    from tessera.backtest.data import BarSeries
    from tessera.optimize.objectives import objective as objective_spec
    from tessera.optimize.space import Choice, resolve_space
    from tessera.strategies import strategy_class
    from tessera.strategies.cli import load_user_strategies

    app = _ctx(ctx)
    out = make_console(stderr=json_out)  # with --json, stdout carries the document only
    cfg = load_yaml(config, BacktestConfig) if config else app.settings.backtest
    settings = app.settings.model_copy(update={"backtest": cfg})
    load_user_strategies(app.settings, strategy_path)  # custom objectives live there too
    try:
        strategy_class(strategy)
    except KeyError as exc:
        raise ConfigError(str(exc).strip("\"'")) from exc
    # Every option is checked before a bar is read: bad input costs nothing.
    if trials < 1:
        raise ConfigError(f"--trials {trials}: run at least 1 trial")
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    objectives = list(objective or ["sharpe"])
    try:
        specs = [objective_spec(name) for name in objectives]
    except ValueError as exc:
        raise ConfigError(f"--objective: {exc}") from None
    if len(set(objectives)) != len(objectives):
        raise ConfigError(f"--objective {', '.join(objectives)}: each objective once")
    fixed = _parse_params(param or [])
    try:
        dims = resolve_space(strategy, space or [])
    except ValueError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("--space") else f"--space: {text}") from None
    overlap = sorted(set(fixed) & {d.name for d in dims})
    if overlap:
        raise ConfigError(
            f"--param {', '.join(overlap)}: a parameter is searched or fixed, not both"
        )
    categorical = [d.name for d in dims if isinstance(d, Choice)]
    if sampler == "cmaes" and categorical:
        raise ConfigError(
            f"--sampler cmaes searches numbers only, but {', '.join(categorical)} "
            f"{'is' if len(categorical) == 1 else 'are'} categorical: use --sampler tpe (or "
            "auto), or fix it with --param"
        )
    if sampler == "cmaes" and len(objectives) > 1:
        raise ConfigError(
            "--sampler cmaes optimises one objective: use nsga2 (or auto) for several"
        )
    if walk_forward is not None and walk_forward < 1:
        raise ConfigError(f"--walk-forward {walk_forward}: at least 1 window")
    if wf_mode not in WF_MODES:
        raise ConfigError(f"--wf-mode {wf_mode!r}: use rolling or anchored")
    if not 0.0 < wf_in_sample < 1.0:
        raise ConfigError(f"--wf-in-sample {wf_in_sample}: a share between 0 and 1, e.g. 0.75")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: at least 1")
    if mc_runs < 1:
        raise ConfigError(f"--mc-runs {mc_runs}: at least 1")
    if not 0.0 < tolerance < 1.0:
        raise ConfigError(f"--tolerance {tolerance}: a fraction between 0 and 1, e.g. 0.10")
    # A model-driven strategy trades scores: never run it on bars that carry none.
    if model_config is not None and not walk_forward:
        raise ConfigError(
            f"--model-config {model_config}: the model is retrained per window with "
            "--walk-forward N only; to trade a registered model give --model NAME"
        )
    if strategy == "model_signal" and model is None and not walk_forward:
        raise ConfigError(MODEL_NEEDED)
    retrain = bool(walk_forward) and (
        strategy == "model_signal" or model is not None or model_config is not None
    )

    loaded = research_bars(settings, symbol, timeframe, timerange, bars, console=out)
    perp = [b.symbol for b in loaded if b.venue == "binance-usdm"]
    if perp:  # as `tessera sweep`: never optimise a perpetual as if it were spot
        raise ConfigError(
            f"{', '.join(perp)}: tessera optimize does not run perpetuals yet; "
            "use tessera backtest for a binance-usdm symbol"
        )
    series = [BarSeries.from_frame(b.symbol, b.frame, b.interval) for b in loaded]
    if walk_forward:  # windows that do not fit the bars: said before the study, not after it
        _check_windows(series, walk_forward, wf_mode, wf_in_sample)
    if retrain and len(loaded) > 1:
        raise ConfigError(
            "--walk-forward retrains the model on one symbol's bars; give one --symbol "
            "(several symbols: train one pooled model with `tessera train`, then --model NAME "
            "without --walk-forward)"
        )
    model_notes: dict[str, str] = {}
    if model is not None:  # the registered model's scores, exactly as `tessera backtest`'s
        series, model_notes = _model_scores(app, out, model, loaded, series)
    the_period = period or "1h"  # the study takes the bar interval when bars are coarser
    # The CLI's studies live in one SQLite file by default: the same command resumes its study.
    the_storage = storage or str(app.settings.data_dir / "optimize" / "studies.db")
    run_seed = app.settings.seed if seed is None else seed
    risk = app.settings.risk
    wf: WalkForward | None = None
    wf_model: tuple[ModelConfig, FeatureConfig, Path] | None = None
    if retrain:  # as `backtest --walk-forward`: one model per window, named after this run
        wf_model = _retrained_model(app, model_config)
        model_notes["walk-forward models"] = (
            f"{wf_model[0].name}:v0001.. in {wf_model[2]}, each trained on the bars before "
            "its window's out-of-sample start"
        )
    if wf_model is not None and model is None:
        # No model scores the whole period honestly (one trained on all of it would score
        # its own training bars), so the walk-forward runs first and the whole-period study
        # searches the bars its windows traded, each scored by the model trained before it.
        assert walk_forward is not None
        out.print(
            "model_signal without --model: the walk-forward runs first (the model retrained "
            "per window); the whole-period study then runs on its out-of-sample bars, scored "
            "by each window's model (give --model NAME to study the whole period on a "
            "registered model's scores)",
            highlight=False,
            soft_wrap=True,
        )
        wf = _walk_forward(
            out, series, strategy, dims, cfg, risk, windows=walk_forward, mode=wf_mode,
            in_sample=wf_in_sample, objectives=objectives, trials=trials, seed=run_seed,
            workers=workers, ray_address=ray_address, sampler=sampler, prune=prune, fixed=fixed,
            period=the_period, model=wf_model,
        )  # fmt: skip
        series = [_out_of_sample_scores(series[0], loaded[0].frame, wf, wf_model[2])]
        model_notes["whole-period scores"] = (
            "the walk-forward's out-of-sample bars, each window scored by its own model"
        )

    t0 = time.perf_counter()
    result = _run_study(
        out, series, strategy, dims, cfg, risk, objectives=objectives, trials=trials,
        seed=run_seed, sampler=sampler, prune=prune, storage=the_storage, study=study,
        workers=workers, ray_address=ray_address, fixed=fixed, period=the_period,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if result.best is None:
        failed = [t for t in result.trials if t.error]
        why = f": the first error was {failed[0].error}" if failed else ""
        raise ConfigError(f"no trial of {strategy} completed in {len(result.trials)}{why}")
    stats = _statistics(
        out, series, strategy, result, cfg, risk, fixed=fixed, seed=run_seed, workers=workers,
        ray_address=ray_address, mc_runs=mc_runs, tolerance=tolerance,
        direction=specs[0].direction,
    )  # fmt: skip
    if walk_forward and wf is None:
        wf = _walk_forward(
            out, series, strategy, dims, cfg, risk, windows=walk_forward, mode=wf_mode,
            in_sample=wf_in_sample, objectives=objectives, trials=trials, seed=run_seed,
            workers=workers, ray_address=ray_address, sampler=sampler, prune=prune, fixed=fixed,
            period=the_period, model=wf_model,
        )  # fmt: skip

    target = report or (cfg.report_dir or app.settings.data_dir / "reports") / app.run_id / (
        "optimize.html"
    )
    from tessera.optimize.report import robustness_document, write_robustness_report

    common: dict[str, Any] = {
        "result": result,
        "best_run": stats.best_run,
        "dsr": stats.dsr,
        "pbo": stats.pbo,
        "monte_carlo": stats.monte_carlo,
        "sensitivity": stats.sensitivity,
        "walk_forward": wf,
    }
    write_robustness_report(
        target,
        **common,
        notes={
            "data": "; ".join(b.describe() for b in loaded),
            "fees (bps maker/taker)": f"{cfg.fees.maker_bps}/{cfg.fees.taker_bps}",
            "slippage": f"{cfg.slippage.kind} {cfg.slippage.bps} bps",
            "fill": cfg.fill_at,
            "fixed params": str(fixed) if fixed else "none",
            "run_id": app.run_id,
            **model_notes,
        },
        skipped=stats.skipped,
    )
    _print_summary(out, result, stats, wf, elapsed)
    out.print(f"report: [bold]{target}[/]")
    if json_out:
        doc = robustness_document(**common, skipped=stats.skipped)
        doc["run_id"] = app.run_id
        doc["report"] = str(target)
        doc["elapsed_s"] = elapsed
        if model_notes:
            doc["model"] = model_notes
        doc["bars"] = [
            {
                "symbol": b.symbol,
                "venue": b.venue,
                "interval": b.interval,
                "bars": len(b.frame),
                "source": b.source,
                "notes": list(b.notes),
            }
            for b in loaded
        ]
        echo_json(doc)


def _model_scores(
    app: AppContext,
    out: Console,
    model: str,
    loaded: Sequence[LoadedBars],
    series: Sequence[BarSeries],
) -> tuple[list[BarSeries], dict[str, str]]:
    """The bars with a registered model's scores: the calls `tessera backtest --model` makes
    (`scores_from_model` for one symbol, `pooled_scores` for several, the same registry), so a
    point studied here is the very run ``tessera backtest --model NAME`` makes of it. Printed
    on ``out``, which is stderr with --json (backtest's helpers print on its stdout)."""
    import numpy as np

    from tessera.backtest.walkforward import scores_from_model
    from tessera.models.cli import registry_root
    from tessera.models.pooled import pooled_scores
    from tessera.models.registry import RegistryError

    registry = registry_root(app, app.settings.model)
    try:
        if len(loaded) == 1:
            scores = {loaded[0].symbol: scores_from_model(model, loaded[0].frame, registry)}
        else:
            scores = pooled_scores(model, {b.symbol: b.frame for b in loaded}, registry)
    except (RegistryError, ValueError) as exc:
        raise ConfigError(f"--model {model}: {exc}") from None
    for b in loaded:
        n = int(np.isfinite(scores[b.symbol]).sum())
        out.print(f"scores: [bold]{model}[/] on {n:,} bars of {b.symbol}", highlight=False)
    return [s.with_predictions(scores[s.symbol]) for s in series], {"model": model}


def _retrained_model(
    app: AppContext, model_config: Path | None
) -> tuple[ModelConfig, FeatureConfig, Path]:
    """The model the walk-forward retrains per window, its features and its registry: those
    of ``backtest --walk-forward`` (the data dir's registry, the model named
    ``NAME-wfo-<run_id>`` so one run's window models are versions of one name, apart from the
    user's own models and from other runs')."""
    from tessera.config import ModelConfig
    from tessera.models.cli import registry_root

    mcfg = load_yaml(model_config, ModelConfig) if model_config else app.settings.model
    named = mcfg.model_copy(update={"name": f"{mcfg.name}-wfo-{app.run_id}"})
    return named, app.settings.features, registry_root(app, mcfg)


def _out_of_sample_scores(
    series: BarSeries, frame: pl.DataFrame, wf: WalkForward, registry: Path
) -> BarSeries:
    """The bars from the first out-of-sample start to the last out-of-sample end, each
    window's part scored by the model trained before it (the scores its trading saw)."""
    import numpy as np

    from tessera.backtest.walkforward import scores_from_model

    scores = np.full(len(series), np.nan)
    first = last = 0
    for w in wf.windows:
        assert w.model is not None
        a = int(np.searchsorted(series.open_time, w.out_of_sample[0], side="left"))
        b = int(np.searchsorted(series.open_time, w.out_of_sample[1], side="left"))
        scores[a:b] = scores_from_model(w.model, frame.slice(0, b), registry)[a:b]
        first = a if w is wf.windows[0] else first
        last = b
    return series.with_predictions(scores).slice(first, last)


def _check_windows(series: Sequence[BarSeries], windows: int, mode: str, fraction: float) -> None:
    import numpy as np

    from tessera.optimize.wfo import split_windows

    bars = len(np.unique(np.concatenate([s.open_time for s in series]))) if series else 0
    try:
        split_windows(bars, windows, mode, fraction)
    except ValueError as exc:
        text = str(exc)
        raise ConfigError(
            text if text.startswith("walk-forward") else f"--walk-forward: {text}"
        ) from None


def _progress(out: Console, title: str) -> Progress:
    """The transient bar every long step of the command shows (study, sensitivity grid,
    walk-forward windows): one look for all three, cleared when the step ends."""
    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )


def _run_study(
    out: Console,
    series: Sequence[BarSeries],
    strategy: str,
    dims: Sequence[Dimension],
    cfg: BacktestConfig,
    risk: RiskConfig,
    *,
    objectives: Sequence[str],
    trials: int,
    seed: int,
    sampler: str,
    prune: bool,
    storage: str | None,
    study: str | None,
    workers: int,
    ray_address: str | None,
    fixed: Mapping[str, Any],
    period: str,
) -> OptimizationResult:
    from tessera.optimize.study import optimize as run_optimize

    where = f"Ray ({ray_address})" if ray_address else f"{workers} local worker(s)"
    with _progress(out, f"[bold]{strategy}[/] optimise on {where}") as progress:
        task = progress.add_task("", total=trials)
        try:
            return run_optimize(
                series,
                strategy,
                dims,
                cfg,
                risk,
                objectives=objectives,
                trials=trials,
                seed=seed,
                sampler=sampler,
                prune=prune,
                storage=storage,
                study_name=study,
                workers=workers,
                ray_address=ray_address,
                fixed_params=fixed,
                period=period,
                on_trial=lambda _t: progress.advance(task),
            )
        except (ValueError, RuntimeError) as exc:  # the study refused its input (one paragraph)
            raise ConfigError(str(exc)) from None


class _Stats:
    """The statistics of the chosen point, and why any of them was skipped."""

    def __init__(self, best_run: BacktestResult) -> None:
        self.best_run = best_run
        self.dsr: DeflatedSharpe | None = None
        self.pbo: Pbo | None = None
        self.monte_carlo: list[MonteCarlo] = []
        self.sensitivity: Sensitivity | None = None
        self.skipped: dict[str, str] = {}  # statistic -> why it was not computed


def trade_returns(result: BacktestResult) -> np.ndarray:
    """Each closed trade's PnL (net of fees) as a fraction of the account's equity when it was
    entered: the trade's effect on the account, what compounding the trades back replays.
    A trade only marked at the end of the data counts too (its PnL is in the final equity)."""
    import numpy as np

    rows = [t for t in result.trades if t.exit_time is not None]
    if not rows or not len(result.times):
        return np.empty(0, dtype=np.float64)
    entry = np.array([t.entry_time for t in rows], dtype=np.int64)
    # the equity at the bar before the entry fill (the entry bar's own close already moved it)
    idx = np.clip(np.searchsorted(result.times, entry, side="left") - 1, 0, len(result.times) - 1)
    base = result.equity[idx]
    pnl = np.array([float(t.pnl) for t in rows], dtype=np.float64)
    out: np.ndarray = np.divide(pnl, base, out=np.zeros_like(pnl), where=base > 0)
    return out


def pbo_splits(periods: int) -> int | None:
    """The largest even S <= 16 giving CSCV blocks of at least `PBO_MIN_BLOCK` periods; None
    when even S = 2 does not fit."""
    for s in range(PBO_MAX_SPLITS, 1, -2):
        if periods // s >= PBO_MIN_BLOCK:
            return s
    return None


def _statistics(
    out: Console,
    series: Sequence[BarSeries],
    strategy: str,
    result: OptimizationResult,
    cfg: BacktestConfig,
    risk: RiskConfig,
    *,
    fixed: Mapping[str, Any],
    seed: int,
    workers: int,
    ray_address: str | None,
    mc_runs: int,
    tolerance: float,
    direction: str,
) -> _Stats:
    import numpy as np

    from tessera.optimize.montecarlo import block_bootstrap, resample_trades
    from tessera.optimize.overfit import deflated_sharpe, pbo_cscv, sharpe_ratios
    from tessera.optimize.study import backtest_point, period_returns

    best = result.best
    assert best is not None
    params = {**fixed, **best.params}
    stats = _Stats(backtest_point(series, strategy, params, cfg, risk))
    returns = period_returns(stats.best_run, result.period)
    matrix = result.returns_matrix()
    # DSR: the chosen trial's returns against the Sharpes of every complete trial
    try:
        sharpes: list[float] = (
            sharpe_ratios(matrix).tolist() if matrix.ndim == 2 and matrix.shape[1] else []
        )
        # N is every trial the choice was made among: the pruned ones were tried too
        tried = sum(1 for t in result.trials if t.state in ("complete", "pruned"))
        stats.dsr = deflated_sharpe(
            returns, sharpes or [0.0], result.periods_per_year, trials=max(tried, 1)
        )
    except ValueError as exc:
        stats.skipped["dsr"] = str(exc)
    # PBO: CSCV over the complete trials' returns
    n_complete = matrix.shape[1] if matrix.ndim == 2 else 0
    splits = pbo_splits(matrix.shape[0]) if matrix.ndim == 2 else None
    if n_complete < 2:
        stats.skipped["pbo"] = (
            f"{n_complete} complete trial(s); the probability of overfitting by selection "
            "needs at least 2"
        )
    elif splits is None:
        stats.skipped["pbo"] = (
            f"{matrix.shape[0]} periods of {result.period} returns are too few for CSCV "
            f"(2 blocks of at least {PBO_MIN_BLOCK} periods)"
        )
    else:
        try:
            stats.pbo = pbo_cscv(matrix, splits=splits)
        except ValueError as exc:
            stats.skipped["pbo"] = str(exc)
    # Monte Carlo: the trades, and the returns in blocks
    by_trade = trade_returns(stats.best_run)
    try:
        stats.monte_carlo.append(resample_trades(by_trade, runs=mc_runs, seed=seed))
    except ValueError as exc:
        stats.skipped["monte_carlo_trades"] = str(exc)
    try:
        stats.monte_carlo.append(block_bootstrap(np.asarray(returns), runs=mc_runs, seed=seed))
    except ValueError as exc:
        stats.skipped["monte_carlo_returns"] = str(exc)
    # Sensitivity of the first objective around the best
    try:
        stats.sensitivity = _sensitivity(
            out, series, strategy, result, cfg, risk, fixed=fixed, workers=workers,
            ray_address=ray_address, tolerance=tolerance, direction=direction,
        )  # fmt: skip
    except ValueError as exc:
        stats.skipped["sensitivity"] = str(exc)
    return stats


def _sensitivity(
    out: Console,
    series: Sequence[BarSeries],
    strategy: str,
    result: OptimizationResult,
    cfg: BacktestConfig,
    risk: RiskConfig,
    *,
    fixed: Mapping[str, Any],
    workers: int,
    ray_address: str | None,
    tolerance: float,
    direction: str,
) -> Sensitivity | None:
    """The first objective over pairwise grids around the best, each point a backtest on the
    event engine (`run_sweep`, the same workers as the study). A built-in objective is read
    from the sweep row's metrics (the very metric it is); a custom one needs the whole
    result, so its points are run one by one with `backtest_point`."""
    from tessera.backtest.sweep import run_sweep
    from tessera.optimize.objectives import BUILTIN_METRIC
    from tessera.optimize.objectives import objective as objective_spec
    from tessera.optimize.sensitivity import sensitivity, sensitivity_points
    from tessera.optimize.study import backtest_point

    best = result.best
    assert best is not None
    name = result.objectives[0]
    searched = [d.name for d in result.space]
    best_params = {**fixed, **best.params}  # fixed ones ride along in every point
    points = sensitivity_points(result.space, best_params)
    if not points:
        return None
    rows: list[tuple[dict[str, Any], float]] = []
    metric = BUILTIN_METRIC.get(name)
    with _progress(out, "[bold]sensitivity[/]") as progress:
        task = progress.add_task("", total=len(points))
        if metric is not None:
            frame = run_sweep(
                series,
                strategy,
                points,
                cfg,
                risk,
                workers=workers,
                ray_address=ray_address,
                engine="event",
                on_result=lambda _row: progress.advance(task),
            )
            for row in frame.iter_rows(named=True):
                value = row.get(metric)
                if row.get("error") or not isinstance(value, int | float):
                    value = math.nan  # a failed point is a hole in the map
                rows.append(({k: row[k] for k in searched}, float(value)))
        else:
            spec = objective_spec(name)
            for p in points:
                try:
                    value = spec(backtest_point(series, strategy, p, cfg, risk))
                except Exception:  # a failing point is a hole in the map, as in a sweep
                    value = math.nan
                rows.append((p, value))
                progress.advance(task)
    return sensitivity(rows, result.space, best_params, best.values[0], direction, tolerance)


def _walk_forward(
    out: Console,
    series: Sequence[BarSeries],
    strategy: str,
    dims: Sequence[Dimension],
    cfg: BacktestConfig,
    risk: RiskConfig,
    *,
    windows: int,
    mode: str,
    in_sample: float,
    objectives: Sequence[str],
    trials: int,
    seed: int,
    workers: int,
    ray_address: str | None,
    sampler: str,
    prune: bool,
    fixed: Mapping[str, Any],
    period: str,
    model: tuple[ModelConfig, FeatureConfig, Path] | None = None,
) -> WalkForward:
    """The walk-forward optimisation; with ``model`` (config, features, registry) each window
    retrains it on the bars before its out-of-sample start, as ``backtest --walk-forward``."""
    from tessera.optimize.wfo import walk_forward_optimize

    with _progress(out, f"[bold]walk-forward[/] ({mode}, {windows} windows)") as progress:
        task = progress.add_task("", total=windows)
        try:
            return walk_forward_optimize(
                series,
                strategy,
                dims,
                cfg,
                risk,
                windows=windows,
                mode=mode,
                in_sample_fraction=in_sample,
                objectives=objectives,
                trials=trials,
                seed=seed,
                workers=workers,
                ray_address=ray_address,
                sampler=sampler,
                prune=prune,
                fixed_params=fixed,
                period=period,
                model=model[0] if model else None,
                features=model[1] if model else None,
                registry_dir=model[2] if model else None,
                on_window=lambda _w: progress.advance(task),
            )
        except ValueError as exc:
            raise ConfigError(f"--walk-forward: {exc}") from None


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def _print_summary(
    out: Console,
    result: OptimizationResult,
    stats: _Stats,
    wf: WalkForward | None,
    elapsed: float,
) -> None:
    best = result.best
    assert best is not None
    counts = {
        s: sum(1 for t in result.trials if t.state == s) for s in ("complete", "pruned", "failed")
    }
    out.print(
        f"[bold]{result.strategy}[/]: {len(result.trials)} trials ({counts['complete']} complete, "
        f"{counts['pruned']} pruned, {counts['failed']} failed) in {elapsed:.1f} s; sampler "
        f"{result.sampler}, study {result.study_name} in {result.storage}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("best (trial " + str(best.number) + ")")
    table.add_column("value", justify="right")
    for k, v in best.params.items():
        table.add_row(k, _fmt_value(v))
    for name, v in zip(result.objectives, best.values, strict=False):
        table.add_row(f"[bold]{name}[/]", _fmt_value(v))
    m = stats.best_run.metrics
    for label, key, fmt in (
        ("total return", "total_return", "{:+.2%}"),
        ("max drawdown", "max_drawdown", "{:.2%}"),
        ("trades", "trades", "{:,.0f}"),
    ):
        v = m.get(key, math.nan)
        table.add_row(label, "–" if v != v else fmt.format(v))
    out.print(table)
    if len(result.objectives) > 1:
        out.print(
            f"Pareto front: {len(result.pareto)} trial(s); "
            f"the best on {result.objectives[0]} is shown"
        )
    lines: list[str] = []
    if stats.dsr is not None:
        style = "green" if stats.dsr.passes() else "red"
        lines.append(f"[{style}]Deflated Sharpe[/]: {stats.dsr.verdict()}")
    else:
        lines.append(f"[yellow]Deflated Sharpe not computed[/]: {stats.skipped.get('dsr', '')}")
    if stats.pbo is not None:
        style = "green" if stats.pbo.pbo <= 0.1 else ("yellow" if stats.pbo.pbo < 0.5 else "red")
        lines.append(f"[{style}]PBO[/]: {stats.pbo.verdict()}")
    else:
        lines.append(f"[yellow]PBO not computed[/]: {stats.skipped.get('pbo', '')}")
    for mc in stats.monte_carlo:
        lines.append(f"[bold]Monte Carlo[/]: {mc.summary()}")
    for key in ("monte_carlo_trades", "monte_carlo_returns"):
        if key in stats.skipped:
            lines.append(
                f"[yellow]Monte Carlo ({key.rsplit('_', 1)[1]}) not computed[/]: "
                f"{stats.skipped[key]}"
            )
    if stats.sensitivity is not None:
        s = stats.sensitivity
        lines.append(f"[{'green' if s.is_plateau else 'red'}]Sensitivity[/]: {s.verdict()}")
    elif "sensitivity" in stats.skipped:
        lines.append(f"[yellow]Sensitivity not computed[/]: {stats.skipped['sensitivity']}")
    if wf is not None:
        from tessera.optimize.report import walk_forward_line

        lines.append(f"[bold]Walk-forward[/]: {walk_forward_line(wf)}")
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)
