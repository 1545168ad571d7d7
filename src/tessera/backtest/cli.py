"""`tessera backtest` (the sweep is in `backtest/sweep_cli.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tessera.config import BacktestConfig, ConfigError, load_yaml
from tessera.console import make_console
from tessera.data.research_cli import (
    BarsOpt,
    SymbolsOpt,
    TimeframeOpt,
    TimerangeOpt,
    research_bars,
    store_root,
)
from tessera.logging import get_logger
from tessera.strategies.cli import StrategyPathOption

# The engine, NumPy, polars, plotly (the report) and the strategies load when the command runs,
# not when the CLI starts: `tessera backtest --help` stays fast.
if TYPE_CHECKING:
    import polars as pl

    from tessera.backtest.data import BarSeries
    from tessera.backtest.perp_inputs import PerpInputs
    from tessera.backtest.results import BacktestResult
    from tessera.bootstrap import AppContext
    from tessera.data.universe import LoadedBars

log = get_logger(__name__)
out = make_console()


def _ctx(ctx: typer.Context) -> AppContext:
    from tessera.bootstrap import AppContext  # here: a command's --help needs no settings

    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("run through the `tessera` command")
    return obj


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected key=value")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        params[key] = value
    return params


def _with_scores(
    app: AppContext,
    series: BarSeries,
    frame: pl.DataFrame,
    model: str | None,
    windows: int | None,
    model_config: Path | None,
    min_train_bars: int,
) -> tuple[BarSeries, dict[str, str]]:
    """Attach model scores to the bars: one registered model, or walk-forward retraining."""
    import numpy as np

    from tessera.backtest.walkforward import scores_from_model, walk_forward_scores
    from tessera.config import ModelConfig
    from tessera.models.cli import registry_root
    from tessera.models.registry import RegistryError

    mcfg = load_yaml(model_config, ModelConfig) if model_config else app.settings.model
    registry = registry_root(app, mcfg)
    if model:
        try:
            scores = scores_from_model(model, frame, registry)
        except (RegistryError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc
        out.print(f"scores: [bold]{model}[/] on {int(np.isfinite(scores).sum()):,} bars")
        return series.with_predictions(scores), {"model": model}
    assert windows is not None
    mcfg = mcfg.model_copy(update={"name": f"{mcfg.name}-wf-{app.run_id}"})
    table = Table(title=f"walk-forward: {windows} windows, retrained on the past only")
    for col in ("window", "model", "trained through", "scores from", "bars", "train CV IC"):
        table.add_column(col)
    try:
        scores, wins = walk_forward_scores(
            frame,
            mcfg,
            app.settings.features,
            registry,
            windows=windows,
            min_train_bars=min_train_bars,
            seed=app.settings.seed,
            on_window=lambda w: out.print(
                f"  window {w.index}: {w.model} trained through {w.trained_through[:16]}"
            ),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    for w in wins:
        table.add_row(
            str(w.index),
            w.model,
            w.trained_through[:16],
            w.test_from[:16],
            f"{w.test_end - w.test_start:,}",
            f"{w.oos_ic:+.4f}",
        )
    out.print(table)
    notes = {"walk-forward": f"{windows} windows from bar {min_train_bars}, models {mcfg.name}"}
    # the backtest (and its buy & hold baseline) covers the scored windows only
    scored = series.with_predictions(scores)
    return scored.slice(min_train_bars, len(scored)), notes


def _pooled_scores(
    app: AppContext, model: str, loaded: list[LoadedBars], series: list[BarSeries]
) -> tuple[list[BarSeries], dict[str, str]]:
    import numpy as np

    from tessera.models.cli import registry_root
    from tessera.models.pooled import pooled_scores
    from tessera.models.registry import RegistryError

    try:
        scores = pooled_scores(
            model, {b.symbol: b.frame for b in loaded}, registry_root(app, app.settings.model)
        )
    except (RegistryError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    for b in loaded:
        n = int(np.isfinite(scores[b.symbol]).sum())
        out.print(f"scores: [bold]{model}[/] on {n:,} bars of {b.symbol}")
    return [s.with_predictions(scores[s.symbol]) for s in series], {"model": model}


def _attribution_table(result: BacktestResult, series: list[BarSeries]) -> Table:
    from tessera.backtest.attribution import symbol_attribution

    frame = symbol_attribution(result, series)
    table = Table(title="Per symbol (one account; the total is the account's)")
    cols = (
        ("symbol", "{}"),
        ("pnl", "{:+,.2f}"),
        ("realized_pnl", "{:+,.2f}"),
        ("unrealized_pnl", "{:+,.2f}"),
        ("fees", "{:,.2f}"),
        ("trades", "{:,}"),
        ("win_rate", "{:.1%}"),
        ("contribution", "{:+.2%}"),
    )
    for name, _ in cols:
        table.add_column(name.replace("_", " "), justify="right")
    for row in frame.iter_rows(named=True):
        table.add_row(
            *("–" if row[c] is None or row[c] != row[c] else fmt.format(row[c]) for c, fmt in cols)
        )
    return table


def _per_symbol(result: BacktestResult, series: list[BarSeries]) -> list[dict[str, Any]]:
    from tessera.backtest.attribution import attribution_rows

    return [
        {
            "symbol": r.symbol,
            "pnl": str(r.pnl),
            "realized_pnl": str(r.realized_pnl),
            "unrealized_pnl": str(r.unrealized_pnl),
            "fees": str(r.fees),
            "trades": r.trades,
            "win_rate": r.win_rate,
            "contribution": str(r.contribution),
        }
        for r in attribution_rows(result, series)
    ]


PERP_VENUE = "binance-usdm"


def _perp_inputs(
    cfg: BacktestConfig,
    refs: list[str] | None,
    loaded: list[LoadedBars],
    series: list[BarSeries],
    *,
    mark: Path | None,
    funding: Path | None,
    no_funding: bool,
    store: Path | None = None,
) -> PerpInputs | None:
    """The perpetual inputs when the symbols are USDⓈ-M perpetuals (``binance-usdm:SYMBOL``
    on the command line or in backtest.symbols, or bars the store holds under that venue);
    None for spot. Spot and perpetual symbols in one run are refused. Bars read from the
    ``store`` take their mark and funding from it where no file is given."""
    from tessera.backtest.perp_inputs import (
        PerpInputError,
        StoreSeries,
        bundled_inputs_for,
        load_perp_inputs,
    )
    from tessera.data.store import ParquetStore

    names = list(refs or cfg.symbols)
    flagged = {
        b.symbol
        for k, b in enumerate(loaded)
        if b.venue == PERP_VENUE
        or (k < len(names) and str(names[k]).lower().startswith(PERP_VENUE + ":"))
    }
    pcfg = cfg.perp
    if not flagged:
        if mark is not None or funding is not None or no_funding:
            raise ConfigError(
                "--mark, --funding and --no-funding are for perpetuals: name the symbol "
                f"{PERP_VENUE}:SYMBOL"
            )
        return None
    spot = [b.symbol for b in loaded if b.symbol not in flagged]
    if spot:
        raise ConfigError(
            f"{', '.join(spot)} spot and {', '.join(sorted(flagged))} perpetual in one backtest: "
            "run them separately (one account kind per run)"
        )
    if len(loaded) > 1 and (mark is not None or funding is not None):
        raise ConfigError("--mark and --funding take one symbol's file: give one --symbol")
    marks: dict[str, Path | None] = {}
    rates: dict[str, Path | None] = {}
    stores: dict[str, StoreSeries] = {}
    for b in loaded:
        sample_mark, sample_funding = bundled_inputs_for(b.source)
        marks[b.symbol] = mark or pcfg.mark_file or sample_mark
        rates[b.symbol] = funding or pcfg.funding_file or sample_funding
        if store is not None and b.source.startswith("store:") and b.venue == PERP_VENUE:
            stores[b.symbol] = StoreSeries(ParquetStore(store), b.venue, b.interval)
    try:
        return load_perp_inputs(
            series,
            mark_files=marks,
            funding_files=rates,
            funding=pcfg.funding and not no_funding,
            stores=stores,
        )
    except PerpInputError as exc:
        raise ConfigError(str(exc)) from None


def _summary(results: dict[str, BacktestResult], elapsed: float, bars: int) -> Table:
    table = Table(
        title=f"Backtest: {bars:,} bars in {elapsed:.2f} s ({bars / elapsed:,.0f} bars/s)"
    )
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    rows = [
        ("total return", "total_return", "{:+.2%}"),
        ("annualized", "annualized_return", "{:+.2%}"),
        ("sharpe", "sharpe", "{:.2f}"),
        ("sortino", "sortino", "{:.2f}"),
        ("max drawdown", "max_drawdown", "{:.2%}"),
        ("trades", "trades", "{:,.0f}"),
        ("win rate", "win_rate", "{:.1%}"),
        ("profit factor", "profit_factor", "{:.2f}"),
        ("exposure", "exposure", "{:.1%}"),
        ("fees paid", "fees_paid", "{:,.2f}"),
        ("final equity", "final_equity", "{:,.2f}"),
    ]
    for label, key, fmt in rows:
        cells = []
        for res in results.values():
            v = res.metrics.get(key, float("nan"))
            cells.append("–" if v != v else fmt.format(v))
        table.add_row(label, *cells)
    return table


def backtest(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Backtest YAML (default: the backtest section of "
            "the effective settings, i.e. configs/backtest.yaml + env overrides)",
        ),
    ] = None,
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    bars: BarsOpt = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            "-s",
            metavar="NAME[:k=v,...]",
            help="Override the strategy (see `tessera strategy list`); parameters may follow "
            "the name, -p values win",
        ),
    ] = None,
    strategy_path: StrategyPathOption = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy parameter key=value")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write result.json and Parquet files here (default: <data_dir>/reports/<run_id>)",
        ),
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also run buy & hold for comparison")
    ] = True,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Trade the scores of this registered model (NAME or NAME:VERSION; see "
            "`tessera models list`) with the model_signal strategy",
        ),
    ] = None,
    walk_forward: Annotated[
        int | None,
        typer.Option(
            "--walk-forward",
            metavar="WINDOWS",
            help="Retrain per window: WINDOWS consecutive test windows, each scored by a model "
            "trained (and registered) on the bars before it only",
        ),
    ] = None,
    model_config: Annotated[
        Path | None,
        typer.Option(
            "--model-config", help="Model YAML for --walk-forward (default: configs/model.yaml)"
        ),
    ] = None,
    min_train_bars: Annotated[
        int, typer.Option("--min-train-bars", help="Bars before the first walk-forward window")
    ] = 10_000,
    mark: Annotated[
        Path | None,
        typer.Option(
            "--mark",
            help="Perpetuals: mark-price klines (freqtrade file); default backtest.perp.mark_file, "
            "or the bundled XRP sample's; none: the trade price, said in the output",
        ),
    ] = None,
    funding: Annotated[
        Path | None,
        typer.Option(
            "--funding",
            help="Perpetuals: funding-rate history (freqtrade file); default "
            "backtest.perp.funding_file, or the bundled XRP sample's",
        ),
    ] = None,
    no_funding: Annotated[
        bool,
        typer.Option("--no-funding", help="Perpetuals: run without funding (said in the output)"),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result (result.json's document: metrics, risk, the run and the "
            "bars used) as JSON on stdout; the human-readable lines go to stderr",
        ),
    ] = False,
) -> None:
    """Run an event-driven backtest: same strategy, risk and execution code as live.

    With --model or --walk-forward the strategy is model_signal (long when the score is above
    long_threshold, default 0; set it with -p long_threshold=0.0005).

    A symbol named binance-usdm:SYMBOL is a USDⓈ-M perpetual: shorts, leverage and margin mode
    (backtest.perp), funding (--funding, or --no-funding), the mark price (--mark), liquidation.
    """
    from tessera.backtest.data import BarSeries
    from tessera.backtest.engine import BacktestEngine
    from tessera.backtest.results import perp_summary_lines, risk_summary_lines
    from tessera.strategies import StrategyParamError, strategy_class
    from tessera.strategies.cli import load_user_strategies

    app = _ctx(ctx)
    out.for_json(json_out)  # with --json stdout carries one JSON document, the rest stderr
    cfg = load_yaml(config, BacktestConfig) if config else app.settings.backtest
    if model and walk_forward:
        raise ConfigError("--model and --walk-forward exclude each other")
    settings = app.settings.model_copy(update={"backtest": cfg})
    loaded = research_bars(settings, symbol, timeframe, timerange, bars, console=out)
    if walk_forward and len(loaded) > 1:
        raise ConfigError(
            "--walk-forward retrains on one symbol's bars; give one --symbol (several symbols: "
            "train one pooled model with `tessera train`, then --model NAME)"
        )
    symbols = [b.symbol for b in loaded]
    all_series = [BarSeries.from_frame(b.symbol, b.frame, b.interval) for b in loaded]
    uses_model = bool(model or walk_forward)
    load_user_strategies(app.settings, strategy_path)
    if strategy and ":" in strategy:  # NAME:k=v,... as `tessera run --strategy` takes it
        strategy, _, inline = strategy.partition(":")
        param = [*filter(None, inline.split(",")), *(param or [])]
    name = strategy or ("model_signal" if uses_model else cfg.strategy.name)
    base_params = cfg.strategy.params if not strategy and not uses_model else {}
    params = {**base_params, **_parse_params(param or [])}
    # The strategy and its parameters first: a bad value stops here, before any model is
    # trained or scored.
    try:
        strat = strategy_class(name)(symbols, **params)
    except StrategyParamError as exc:
        raise ConfigError(str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"strategy {name!r}: {exc}") from exc
    notes_extra: dict[str, str] = {}
    if model and len(loaded) > 1:  # one (pooled) model scores every symbol
        all_series, notes_extra = _pooled_scores(app, model, loaded, all_series)
    elif uses_model:
        all_series[0], notes_extra = _with_scores(
            app, all_series[0], loaded[0].frame, model, walk_forward, model_config, min_train_bars
        )
    perp_inputs = _perp_inputs(
        cfg,
        symbol,
        loaded,
        all_series,
        mark=mark,
        funding=funding,
        no_funding=no_funding,
        store=store_root(settings),
    )
    n_bars = sum(len(x) for x in all_series)
    log.info(
        "backtest started",
        strategy=name,
        symbols=symbols,
        bars=n_bars,
        sources=[b.source for b in loaded],
    )
    t0 = time.perf_counter()
    try:
        result = BacktestEngine(cfg, app.settings.risk, perp=perp_inputs).run(all_series, [strat])
    except ValueError as exc:
        if perp_inputs is None or "leverage" not in str(exc):
            raise
        raise ConfigError(str(exc)) from None  # a leverage above the bracket's maximum
    elapsed = time.perf_counter() - t0
    results = {name: result}
    if baselines:
        hold = strategy_class("buy_and_hold")(symbols)
        results["buy & hold"] = BacktestEngine(cfg, app.settings.risk, perp=perp_inputs).run(
            all_series, [hold]
        )
    out.print(_summary(results, elapsed, n_bars))
    if len(all_series) > 1:
        out.print(_attribution_table(result, all_series))
    perp_lines = perp_summary_lines(result)
    for line in perp_lines:
        style = "bold red" if line.startswith("LIQUIDATED") else "bold"
        out.print(f"[{style}]{line}[/]", highlight=False, soft_wrap=True)
    risk_lines = risk_summary_lines(result)
    for line in risk_lines:
        out.print(f"[bold yellow]{line}[/]", highlight=False, soft_wrap=True)
    run_doc: dict[str, Any] = {
        "run_id": app.run_id,
        "strategy": name,
        "params": params,
        "bars": [
            {
                "symbol": b.symbol,
                "venue": b.venue,
                "interval": b.interval,
                "bars": len(b.frame),
                "first_open": b.frame["open_time"][0].isoformat() if len(b.frame) else None,
                "last_open": b.frame["open_time"][-1].isoformat() if len(b.frame) else None,
                "source": b.source,
                "notes": list(b.notes),
            }
            for b in loaded
        ],
        "baselines": {k: v.metrics for k, v in results.items() if k != name},
        "per_symbol": _per_symbol(result, all_series),
        **({"model": notes_extra} if notes_extra else {}),
    }
    target = out_dir or (cfg.report_dir or app.settings.data_dir / "reports") / app.run_id
    files = result.save(target, run=run_doc)
    out.print(f"results: [bold]{files['metrics']}[/] (+ equity/fills/trades .parquet)")
    if report is not None:
        from tessera.backtest.report import write_report  # plotly: only for --report

        write_report(
            result,
            all_series[0] if len(all_series) == 1 else all_series,
            report,
            title=f"{name} on {', '.join(b.symbol for b in loaded)}",
            venue=", ".join(sorted({b.venue for b in loaded})),
            warnings=risk_lines,
            baselines={k: v for k, v in results.items() if k != name},
            notes={
                "data": "; ".join(b.describe() for b in loaded),
                "strategy params": str(params) or "defaults",
                "fees (bps maker/taker)": f"{cfg.fees.maker_bps}/{cfg.fees.taker_bps}",
                "slippage": f"{cfg.slippage.kind} {cfg.slippage.bps} bps",
                "fill": cfg.fill_at,
                "run_id": app.run_id,
                **(
                    {"market": "USDⓈ-M perpetual (one-way mode)"} if perp_inputs is not None else {}
                ),
                **notes_extra,
            },
        )
        out.print(f"report: [bold]{report}[/]")
    if json_out:
        typer.echo(files["metrics"].read_text())
