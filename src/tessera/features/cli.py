"""`tessera features list|build|check`."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.config import ConfigError, FeatureConfig, load_yaml
from tessera.console import make_console
from tessera.data.research_cli import BarsOpt, SymbolsOpt, TimeframeOpt, TimerangeOpt

if TYPE_CHECKING:
    import polars as pl

    from tessera.bootstrap import AppContext
    from tessera.features.store import FeatureSetStore

out = make_console()
app = typer.Typer(
    help="Feature library: list the registered features, build feature sets, check them.",
    no_args_is_help=True,
)

FeaturesOpt = Annotated[
    Path | None,
    typer.Option("--features", "-f", help="Feature YAML (default: the effective feature config)"),
]
PluginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        help="Python module to import first, registering your own features (repeatable)",
    ),
]


def _app(ctx: typer.Context) -> AppContext:
    from tessera.bootstrap import AppContext  # here: a command's --help needs no settings

    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("run through the `tessera` command")
    return obj


def _spec(app: AppContext, path: Path | None) -> FeatureConfig:
    return load_yaml(path, FeatureConfig) if path else app.settings.features


def _import_plugins(plugins: list[str] | None) -> None:
    for mod in plugins or []:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"--plugin {mod}: cannot import it ({exc})") from exc


def load_bars_for(
    app: AppContext,
    bars: list[Path] | None,
    symbols: list[str] | None,
    timeframe: str | None,
    timerange: str | None,
    interval: str,
) -> list[tuple[pl.DataFrame, str]]:
    """Bars from files, from the store's klines, or the bundled sample; one entry per symbol.

    The store is read at ``--timeframe`` or else the feature config's interval; a file is read
    at ``--timeframe`` or else as it is.
    """
    from tessera.data.research_cli import research_bars

    want = timeframe or (interval if symbols and not bars else None)
    loaded = research_bars(
        app.settings, symbols, want, timerange, bars, console=out, use_backtest_defaults=False
    )
    return [(b.frame, f"{b.source} as {b.interval}") for b in loaded]


@app.command("list")
def list_features(plugin: PluginOpt = None) -> None:
    """Every registered feature with its parameters, defaults and output columns."""
    from tessera.features import registered

    _import_plugins(plugin)
    table = Table(title="Registered features")
    for col in ("name", "parameters (defaults)", "columns", "needs", "definition"):
        table.add_column(col)
    for name, cls in registered().items():
        feat = cls()
        params = ", ".join(f"{k}={v}" for k, v in cls.defaults.items()) or "–"
        table.add_row(name, params, ", ".join(feat.columns), ", ".join(cls.requires), cls.doc)
    out.print(table)


@app.command("build")
def build(
    ctx: typer.Context,
    features: FeaturesOpt = None,
    bars: BarsOpt = None,
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Compute a feature set (batch execution) and store it as Parquet, keyed by content hash.

    The key covers the feature spec, the bars' values and the feature code, so a set is reused
    exactly while none of them changed.
    """
    from tessera.features import FeatureError, make_features
    from tessera.features.store import FeatureSetStore

    app = _app(ctx)
    _import_plugins(plugin)
    spec = _spec(app, features)
    try:
        feats = make_features(spec.features)
    except FeatureError as exc:
        raise ConfigError(str(exc)) from exc
    store = FeatureSetStore(spec.output_dir or app.settings.data_dir / "features")
    for frame, source in load_bars_for(app, bars, symbol, timeframe, timerange, spec.interval):
        _build_one(store, frame, source, spec, feats, force)


def _build_one(
    store: FeatureSetStore,
    frame: pl.DataFrame,
    source: str,
    spec: FeatureConfig,
    feats: list[Any],
    force: bool,
) -> None:
    from tessera.features import FeatureError

    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]features"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("hashing inputs", total=len(feats))

        def step(feat: object) -> None:
            progress.update(task, advance=1, description=str(getattr(feat, "base_name", "")))

        try:
            fs = store.get_or_build(frame, spec, source=source, force=force, on_feature=step)
        except FeatureError as exc:
            raise ConfigError(str(exc)) from exc
    elapsed = time.perf_counter() - started
    verb = "reused" if fs.reused else "built"
    cols = len(fs.frame.columns) - 1
    out.print(
        f"[green]{verb}[/] feature set [bold]{fs.key}[/]: {len(fs.frame):,} bars x {cols} "
        f"features from {source} in {elapsed:.2f} s\n  {fs.path}"
    )


@app.command("check")
def check(
    ctx: typer.Context,
    features: FeaturesOpt = None,
    bars: BarsOpt = None,
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    all_registered: Annotated[
        bool, typer.Option("--all", help="Check every registered feature (default parameters)")
    ] = False,
    cuts: Annotated[int, typer.Option(help="Cut points of the look-ahead test")] = 12,
    plugin: PluginOpt = None,
) -> None:
    """Prove each feature causal and its live execution equal to its batch one.

    Look-ahead: data after each cut point is replaced; no value at or before the cut may
    change. Parity: the incremental (live) execution must match the batch one to 1e-9.
    Exits 1 if any feature fails.
    """
    from tessera.config.models import FeatureSpec
    from tessera.features import FeatureError, make_features, registered

    app = _app(ctx)
    _import_plugins(plugin)
    spec = _spec(app, features)
    specs = (
        [FeatureSpec(name=n) for n, cls in registered().items()]
        if all_registered
        else spec.features
    )
    try:
        feats = make_features(specs)
    except FeatureError as exc:
        raise ConfigError(str(exc)) from exc
    failed = sum(
        _check_one(frame, source, feats, cuts)
        for frame, source in load_bars_for(app, bars, symbol, timeframe, timerange, spec.interval)
    )
    if failed:
        out.print(f"[red]{failed} feature(s) failed[/]")
        raise typer.Exit(1)


def _check_one(frame: pl.DataFrame, source: str, feats: list[Any], cuts: int) -> int:
    from tessera.features.checks import check_feature

    table = Table(title=f"Feature checks on {len(frame):,} bars from {source}")
    for col in ("feature", "look-ahead", "parity (max rel. error)", "detail"):
        table.add_column(col)
    failed = 0
    with Progress(
        TextColumn("[bold]checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(feats))
        for feat in feats:
            progress.update(task, description=feat.base_name)
            missing = [c for c in feat.requires if c not in frame.columns]
            if missing:
                table.add_row(feat.base_name, "skipped", "skipped", f"bars lack {missing}")
                progress.advance(task)
                continue
            res = check_feature(feat, frame, cuts=cuts)
            failed += not res.ok
            table.add_row(
                feat.base_name,
                f"[green]ok[/] ({res.cuts_checked} cuts)" if res.lookahead_ok else "[red]LEAKS[/]",
                ("[green]ok[/] " if res.parity_ok else "[red]DIFFERS[/] ")
                + f"{res.parity_max_error:.1e}",
                res.lookahead_detail or res.parity_detail,
            )
            progress.advance(task)
    out.print(table)
    return failed
