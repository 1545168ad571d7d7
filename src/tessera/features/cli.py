"""`tessera features list|build|check`."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.bootstrap import AppContext
from tessera.config import ConfigError, FeatureConfig, load_yaml

out = Console()
app = typer.Typer(
    help="Feature library: list the registered features, build feature sets, check them.",
    no_args_is_help=True,
)

FeaturesOpt = Annotated[
    Path | None,
    typer.Option("--features", "-f", help="Feature YAML (default: the effective feature config)"),
]
BarsOpt = Annotated[
    Path | None,
    typer.Option(
        "--bars", help="Bar file (.csv, .csv.gz, .parquet); default: the bundled real 1m BTC bars"
    ),
]
SymbolOpt = Annotated[
    str | None,
    typer.Option("--symbol", help="Read klines of this symbol from the Parquet store instead"),
]
PluginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        help="Python module to import first, registering your own features (repeatable)",
    ),
]


def _app(ctx: typer.Context) -> AppContext:
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
    app: AppContext, bars: Path | None, symbol: str | None, interval: str
) -> tuple[pl.DataFrame, str]:
    """Bars from a file, from the store's klines of ``symbol``, or the bundled sample."""
    from tessera.features.bars import SAMPLE_BARS, load_bars

    if symbol:
        from tessera.data.store import ParquetStore

        store = ParquetStore(app.settings.data_dir / "store")
        frame = (
            store.scan("klines", symbol.upper()).filter(pl.col("interval") == interval).collect()
        )
        if frame.is_empty():
            raise ConfigError(
                f"no {interval} klines of {symbol.upper()} in {store.root}; "
                "import or ingest some first (tessera data import / tessera ingest)"
            )
        return frame, f"store:{symbol.upper()}:{interval}"
    path = bars or SAMPLE_BARS
    try:
        return load_bars(path), str(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


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
    symbol: SymbolOpt = None,
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
    frame, source = load_bars_for(app, bars, symbol, spec.interval)
    store = FeatureSetStore(spec.output_dir or app.settings.data_dir / "features")
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
    symbol: SymbolOpt = None,
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
    from tessera.features.checks import check_feature

    app = _app(ctx)
    _import_plugins(plugin)
    spec = _spec(app, features)
    specs = (
        [FeatureSpec(name=n) for n, cls in registered().items()]
        if all_registered
        else spec.features
    )
    frame, source = load_bars_for(app, bars, symbol, spec.interval)
    try:
        feats = make_features(specs)
    except FeatureError as exc:
        raise ConfigError(str(exc)) from exc
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
    if failed:
        out.print(f"[red]{failed} feature(s) failed[/]")
        raise typer.Exit(1)
