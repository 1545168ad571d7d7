"""`tessera sweep`: grid or random search over a strategy's parameters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.backtest.cli import _ctx, out
from tessera.config import ConfigError
from tessera.console import echo_json
from tessera.data.research_cli import (
    BarsOpt,
    SymbolsOpt,
    TimeframeOpt,
    TimerangeOpt,
    research_bars,
)
from tessera.strategies.cli import StrategyPathOption

# polars, the engines and the strategies load when the command runs (a fast --help)
if TYPE_CHECKING:
    import polars as pl


def sweep(
    ctx: typer.Context,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="Strategy to sweep (see the registry)")
    ] = "sma_cross",
    strategy_path: StrategyPathOption = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="Parameter values: name=start:stop:step or name=a,b,c (repeatable). "
            "Default for sma_cross: fast=5:50:5 slow=20:200:20",
        ),
    ] = None,
    random_n: Annotated[
        int | None,
        typer.Option("--random", metavar="N", help="Random search: N points of the grid"),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="auto: the vectorized path for sma_cross where it provably equals the event "
            "engine, the event engine elsewhere; vectorized: the same, refused where it cannot "
            "run at all; event: every point on the event engine"
        ),
    ] = "auto",
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    bars: BarsOpt = None,
    workers: Annotated[int, typer.Option(help="Local worker processes")] = 2,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Run on Ray: 'local' (a private Ray here), 'auto' (the running cluster) or "
            "ray://host:10001. Needs the ray extra",
        ),
    ] = None,
    sort_by: Annotated[
        str, typer.Option(help="Metric (a key of result.json's metrics) or parameter to rank by")
    ] = "sharpe",
    top: Annotated[int, typer.Option(help="Rows to show")] = 10,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write all rows, every metric and the engine of each (.csv/.parquet)"
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print every row (parameters, engine, every metric, halted, fallback, error) "
            "and the bars used as one JSON document on stdout; other lines go to stderr",
        ),
    ] = False,
) -> None:
    """Grid or random search over a strategy's parameters, in parallel (local or Ray).

    Examples:

      tessera sweep                                          # SmaCross grid

      tessera sweep -s mean_reversion -g window=20:120:20 -g entry_z=1.5,2,2.5

      tessera sweep -s sma_cross -g fast=5:60:5 -g slow=30:300:30 --random 40 --engine event

      tessera sweep -s mean_reversion -g window=20:200:10 --ray-address local
    """
    from tessera.backtest.data import BarSeries
    from tessera.backtest.sweep import (
        ENGINES,
        METRIC_KEYS,
        grid_points,
        parse_values,
        random_points,
        run_sweep,
        vectorized_refusal,
    )
    from tessera.strategies import StrategyParamError, strategy_class, validate_strategy_params
    from tessera.strategies.cli import load_user_strategies

    app = _ctx(ctx)
    out.for_json(json_out)  # with --json stdout carries one JSON document, the rest stderr
    cfg = app.settings.backtest
    load_user_strategies(app.settings, strategy_path)
    try:
        strategy_class(strategy)
    except KeyError as exc:
        raise ConfigError(str(exc).strip("\"'")) from exc
    loaded = research_bars(app.settings, symbol, timeframe, timerange, bars, console=out)
    perp = [
        b.symbol
        for k, b in enumerate(loaded)
        if b.venue == "binance-usdm"
        or (
            k < len(symbol or cfg.symbols)
            and str((symbol or cfg.symbols)[k]).startswith("binance-usdm:")
        )
    ]
    if perp:  # never sweep a perpetual as if it were spot
        raise ConfigError(
            f"{', '.join(perp)}: tessera sweep does not run perpetuals yet; "
            "use tessera backtest for a binance-usdm symbol"
        )
    series = [BarSeries.from_frame(b.symbol, b.frame, b.interval) for b in loaded]
    specs = grid or (["fast=5:50:5", "slow=20:200:20"] if strategy == "sma_cross" else [])
    if not specs:
        raise ConfigError(f"--grid: give the parameters of {strategy!r} to sweep")
    space: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key:
            raise ConfigError(f"--grid {spec!r}: expected name=start:stop:step or name=a,b,c")
        try:
            space[key] = parse_values(values)
        except ValueError as exc:
            raise ConfigError(f"--grid {spec!r}: {exc}") from exc
    points = random_points(space, random_n, app.settings.seed) if random_n else grid_points(space)
    skipped = 0
    if strategy == "sma_cross":
        kept = [p for p in points if p.get("fast", 0) < p.get("slow", 1)]
        skipped, points = len(points) - len(kept), kept
    if not points:
        raise ConfigError("the sweep has no points (is every fast < slow?)")
    if engine not in ("auto", *ENGINES):
        raise ConfigError(f"--engine {engine!r}: use auto, vectorized or event")
    why_not = vectorized_refusal(strategy, cfg)
    if engine == "vectorized" and why_not is not None:
        raise ConfigError(f"--engine vectorized: {why_not}; use --engine event")
    if engine == "auto":
        engine = "vectorized" if why_not is None else "event"
    if sort_by not in (*METRIC_KEYS, *space):
        raise ConfigError(
            f"--sort-by {sort_by!r}: use a metric ({', '.join(METRIC_KEYS)}) or a swept "
            f"parameter ({', '.join(space)})"
        )
    # Every point is checked here, once, before any worker starts: a bad name or value (a
    # negative qty, a zero step, nan) refuses the sweep instead of filling it with errors.
    bad = 0
    first = ""
    for point in points:
        try:
            validate_strategy_params(strategy, point)
        except StrategyParamError as exc:
            bad += 1
            first = first or str(exc)
    if bad:
        raise ConfigError(f"--grid: {first} ({bad} of {len(points)} grid points are invalid)")
    if skipped:
        out.print(f"skipped {skipped} grid point(s) with fast >= slow")
    t0 = time.perf_counter()
    where = f"Ray ({ray_address})" if ray_address else f"{workers} local workers"
    with Progress(
        TextColumn(f"[bold]{strategy}[/] on {where}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(points))
        try:
            frame = run_sweep(
                series,
                strategy,
                points,
                cfg,
                app.settings.risk,
                workers=workers,
                ray_address=ray_address,
                sort_by=sort_by,
                engine=engine,
                on_result=lambda _row: progress.advance(task),
            )
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from exc
    elapsed = time.perf_counter() - t0
    n_bars = sum(len(x) for x in series)
    out.print(sweep_table(frame, strategy, list(space), n_bars, elapsed, top))
    for line in sweep_notes(frame):
        out.print(line)
    if out_file:
        if out_file.suffix == ".parquet":
            frame.write_parquet(out_file)
        else:
            frame.write_csv(out_file)
        out.print(f"all rows: {out_file}")
    if json_out:
        echo_json(
            {
                "strategy": strategy,
                "bars": [
                    {
                        "symbol": b.symbol,
                        "venue": b.venue,
                        "interval": b.interval,
                        "bars": len(b.frame),
                        "source": b.source,
                        "notes": list(b.notes),
                    }
                    for b in loaded
                ],
                "rows": frame.to_dicts(),
            }
        )


# The metrics the table shows (what fits 80 columns), labelled and formatted as `tessera
# backtest`'s summary shows them (a test renders both and compares); --out has every metric.
TABLE_METRICS = (
    ("total return", "total_return", "{:+.2%}"),
    ("sharpe", "sharpe", "{:.2f}"),
    ("max drawdown", "max_drawdown", "{:.2%}"),
    ("trades", "trades", "{:,.0f}"),
    ("win rate", "win_rate", "{:.1%}"),
)


def format_metric(fmt: str, value: float | None) -> str:
    """A metric's cell: NaN (and a failed point's missing value) is a dash, as in the summary."""
    return "–" if value is None or value != value else fmt.format(value)


def _engines(frame: pl.DataFrame) -> str:
    counts = frame["engine"].value_counts().sort(["count", "engine"], descending=[True, False])
    return ", ".join(f"{e} {n}" for e, n in counts.iter_rows())


def sweep_table(
    frame: pl.DataFrame, strategy: str, params: list[str], bars: int, elapsed: float, top: int
) -> Table:
    """The best ``top`` rows: parameters, the engine that ran each, the summary metrics."""
    title = (
        f"{strategy} sweep: {len(frame)} points x {bars:,} bars in {elapsed:.2f} s; "
        f"engine: {_engines(frame)}"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for name in params:
        table.add_column(name, justify="right")
    table.add_column("engine", no_wrap=True, min_width=len("vectorized"))
    for label, _, _ in TABLE_METRICS:
        table.add_column(label, justify="right")
    halted = "halted" in frame.columns and bool(frame["halted"].any())
    if halted:
        table.add_column("halted")
    for row in frame.head(top).iter_rows(named=True):
        cells = [_param(row[name]) for name in params]
        cells.append(str(row["engine"]))
        cells += [format_metric(fmt, row.get(key)) for _, key, fmt in TABLE_METRICS]
        if halted:
            cells.append("yes" if row.get("halted") else "")
        table.add_row(*cells)
    return table


def sweep_notes(frame: pl.DataFrame) -> list[str]:
    """What the table leaves out: points moved to the event engine and why, halts, failures."""
    import polars as pl

    notes = []
    fell_back = frame.filter(pl.col("fallback") != "")
    if len(fell_back):
        reasons = fell_back["fallback"].value_counts()
        reasons = reasons.sort(["count", "fallback"], descending=[True, False])
        why = ", ".join(f"{r} {n}" for r, n in reasons.iter_rows())
        notes.append(
            f"{len(fell_back)} of {len(frame)} point(s) ran on the event engine, where the "
            f"vectorized path would not equal it ({why})"
        )
    if "halted" in frame.columns:
        halted = int(frame["halted"].sum())
        if halted:
            notes.append(
                f"[yellow]{halted} point(s) halted by the drawdown kill-switch[/] "
                "(risk limits: configs/risk.yaml)"
            )
    failed = frame.filter(pl.col("error") != "")
    if len(failed):
        notes.append(f"[yellow]{len(failed)} point(s) failed[/]: {failed['error'][0]}")
    return notes


def _param(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
