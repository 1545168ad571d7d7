"""`tessera train`, `tessera predict` and `tessera models list|show`.

The lead mounts them: ``app.command("train")(train)``, ``app.command("predict")(predict)``,
``app.add_typer(models_app, name="models")``. Heavy imports (LightGBM, torch, the pipeline)
happen inside the commands so that ``tessera --help`` stays fast.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.config import ConfigError, FeatureConfig, ModelConfig, load_yaml
from tessera.console import echo_json, make_console
from tessera.data.research_cli import BarsOpt, SymbolsOpt, TimeframeOpt, TimerangeOpt, research_bars
from tessera.logging import get_logger

# polars and the model code load when a command runs (a fast --help)
if TYPE_CHECKING:
    import polars as pl

    from tessera.bootstrap import AppContext
    from tessera.models.registry import ArtifactRef, ModelRegistry

log = get_logger(__name__)
out = make_console()

models_app = typer.Typer(
    help="The local model registry: list and inspect artifacts.", no_args_is_help=True
)


class KindChoice(str, Enum):
    lightgbm = "lightgbm"
    mlp = "mlp"
    linear = "linear"


class LabelChoice(str, Enum):
    forward_return = "forward_return"
    sign = "sign"
    triple_barrier = "triple_barrier"


class SchemeChoice(str, Enum):
    walk_forward = "walk_forward"
    purged_kfold = "purged_kfold"


class WindowChoice(str, Enum):
    expanding = "expanding"
    rolling = "rolling"


def _app(ctx: typer.Context) -> AppContext:
    from tessera.bootstrap import AppContext  # here: a command's --help needs no settings

    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("run through the `tessera` command")
    return obj


def registry_root(app: AppContext, config: ModelConfig | None = None) -> Path:
    cfg = config or app.settings.model
    return cfg.registry_dir or app.settings.data_dir / "models"


def _registry(app: AppContext) -> ModelRegistry:
    from tessera.models.registry import ModelRegistry

    return ModelRegistry(registry_root(app))


def _fmt(v: Any, spec: str = "{:+.4f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return spec.format(v)


def fold_table(fold_metrics: pl.DataFrame, title: str) -> Table:
    """Model vs baseline, fold by fold, pooled out-of-sample last."""
    import polars as pl

    loss = "mse" if fold_metrics["mse"].is_not_nan().any() else "log_loss"
    model = fold_metrics.filter(pl.col("model") == "model")
    base = fold_metrics.filter(pl.col("model") == "baseline")
    kind = model["kind"][0]
    table = Table(title=title)
    table.add_column("fold")
    table.add_column("test period (UTC)")
    table.add_column("rows", justify="right")
    for header in ("IC", "rank IC", "hit", loss):
        table.add_column(f"{header}\n{kind}", justify="right")
        table.add_column(f"{header}\nbaseline", justify="right", style="dim")
    for m, b in zip(model.iter_rows(named=True), base.iter_rows(named=True), strict=True):
        period = f"{m['test_start']:%Y-%m-%d %H:%M} → {m['test_end']:%m-%d %H:%M}"
        cells = []
        for metric in ("ic", "rank_ic", "hit_rate", loss):
            spec = (
                "{:.3%}" if metric == "hit_rate" else ("{:.3e}" if metric == "mse" else "{:+.4f}")
            )
            if metric == "log_loss":
                spec = "{:.4f}"
            cells += [_fmt(m[metric], spec), _fmt(b[metric], spec)]
        style = "bold" if m["fold"] == "all" else None
        table.add_row(m["fold"], period, f"{m['test_rows']:,}", *cells, style=style)
    return table


def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Model YAML (default: the effective model settings)"),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Feature YAML (default: the effective feature settings)"),
    ] = None,
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    bars: BarsOpt = None,
    symbol_feature: Annotated[
        bool,
        typer.Option(
            "--symbol-feature/--no-symbol-feature",
            help="Several symbols (one pooled model): give the model one 0/1 column per symbol",
        ),
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Registry name")] = None,
    kind: Annotated[KindChoice | None, typer.Option("--kind", help="Model family")] = None,
    label: Annotated[LabelChoice | None, typer.Option("--label", help="Label kind")] = None,
    scheme: Annotated[
        SchemeChoice | None, typer.Option("--scheme", help="Validation scheme")
    ] = None,
    window: Annotated[
        WindowChoice, typer.Option("--window", help="Walk-forward training window")
    ] = WindowChoice.expanding,
) -> None:
    """Validate a model against the linear baseline, fit it on all bars, save an artifact."""
    from tessera.models.pipeline import train as run_training

    app = _app(ctx)
    cfg = load_yaml(config, ModelConfig) if config else app.settings.model.model_copy(deep=True)
    updates: dict[str, Any] = {}
    if name:
        updates["name"] = name
    if kind:
        updates["kind"] = kind.value
    if label:
        updates["label"] = {**cfg.label.model_dump(), "kind": label.value}
    if scheme:
        updates["validation"] = {**cfg.validation.model_dump(), "scheme": scheme.value}
    try:
        cfg = ModelConfig.model_validate({**cfg.model_dump(), **updates})
    except ValueError as exc:
        raise ConfigError(f"model config: {exc}") from exc
    spec = load_yaml(features, FeatureConfig) if features else app.settings.features
    loaded_bars = research_bars(
        app.settings,
        symbol,
        timeframe or (spec.interval if symbol and not bars else None),
        timerange,
        bars,
        console=out,
        use_backtest_defaults=False,
    )
    if symbol_feature and len(loaded_bars) < 2:
        raise ConfigError("--symbol-feature needs several symbols (one pooled model)")
    frames = {b.symbol: b.frame for b in loaded_bars}
    source = "; ".join(f"{b.title} from {b.source}" for b in loaded_bars)
    root = registry_root(app, cfg)
    pooled = len(loaded_bars) > 1
    out.print(
        f"training [bold]{cfg.name}[/] ({cfg.kind}, label {cfg.label.kind} h={cfg.label.horizon}, "
        f"{cfg.validation.scheme} x{cfg.validation.n_splits}) on "
        f"{sum(len(f) for f in frames.values()):,} bars"
        + (f", pooled over {len(frames)} symbols" if pooled else "")
    )
    with Progress(
        TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(), console=out
    ) as bar:
        task = bar.add_task("features and labels", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        try:
            if pooled:
                from tessera.models.pooled import train_pooled

                result = train_pooled(
                    frames,
                    cfg,
                    features=spec,
                    symbol_feature=symbol_feature,
                    seed=app.settings.seed,
                    registry_dir=root,
                    window=window.value,
                    source=source,
                    run_id=app.run_id,
                    progress=progress,
                )
            else:
                result = run_training(
                    loaded_bars[0].frame,
                    cfg,
                    features=spec,
                    seed=app.settings.seed,
                    registry_dir=root,
                    window=window.value,
                    source=source,
                    run_id=app.run_id,
                    progress=progress,
                )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    out.print(fold_table(result.fold_metrics, f"Out-of-sample: {cfg.kind} vs linear baseline"))
    m, b = result.overall(), result.overall("baseline")
    out.print(
        f"pooled OOS IC {_fmt(m['ic'])} (baseline {_fmt(b['ic'])}), rank IC "
        f"{_fmt(m['rank_ic'])} (baseline {_fmt(b['rank_ic'])}); "
        f"trained in {result.manifest['training_seconds']:.1f} s, seed {app.settings.seed}"
    )
    assert result.artifact is not None  # a registry was given
    out.print(f"artifact: [bold]{result.artifact.path}[/]")


def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME or NAME:VERSION")],
    symbol: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    timerange: TimerangeOpt = None,
    bars: BarsOpt = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write all predictions to this .parquet/.csv")
    ] = None,
    allow_feature_drift: Annotated[
        bool,
        typer.Option(
            "--allow-feature-drift", help="Score even if the feature code changed since training"
        ),
    ] = False,
    tail: Annotated[int, typer.Option("--tail", help="Predictions to print")] = 10,
) -> None:
    """Score bars with a registered model (features recomputed with its own feature spec)."""
    import polars as pl

    from tessera.models.artifacts import load_artifact
    from tessera.models.pipeline import FeatureDriftError
    from tessera.models.pipeline import predict as run_predict
    from tessera.models.registry import RegistryError

    app = _app(ctx)
    try:
        ref = _registry(app).resolve_ref(model)
        loaded = load_artifact(ref)
    except (RegistryError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    loaded_bars = research_bars(
        app.settings,
        symbol,
        timeframe or (app.settings.features.interval if symbol and not bars else None),
        timerange,
        bars,
        console=out,
        use_backtest_defaults=False,
    )
    from tessera.models.pooled import SYMBOL_PREFIX, model_symbols, symbol_columns

    known = model_symbols(loaded)
    unknown = sorted({b.symbol for b in loaded_bars} - set(known)) if known else []
    if unknown:
        raise ConfigError(
            f"{ref.name}:{ref.version} was trained with the symbol as a feature on "
            f"{', '.join(known)}; it cannot score {', '.join(unknown)}"
        )
    frames = []
    for b in loaded_bars:
        constants = {c: float(c == f"{SYMBOL_PREFIX}{b.symbol}") for c in symbol_columns(known)}
        try:
            preds = run_predict(
                loaded,
                b.frame,
                allow_feature_drift=allow_feature_drift,
                constants=constants or None,
            )
        except FeatureDriftError as exc:
            raise ConfigError(str(exc)) from exc
        scored = preds.filter(pl.col("score").is_not_null())
        out.print(
            f"{ref.name}:{ref.version} scored {len(scored):,} of {len(preds):,} bars of "
            f"{b.title} from {b.source}"
        )
        table = Table(title=f"{b.symbol}: last {min(tail, len(scored))} scores")
        for col in preds.columns:
            table.add_column(col, justify="right")
        for row in scored.tail(tail).iter_rows():
            table.add_row(f"{row[0]:%Y-%m-%d %H:%M}", *(_fmt(v, "{:+.6f}") for v in row[1:]))
        out.print(table)
        frames.append(preds.with_columns(pl.lit(b.symbol).alias("symbol")))
    if out_file is not None:
        everything = pl.concat(frames) if len(frames) > 1 else frames[0].drop("symbol")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        if out_file.suffix == ".csv":
            everything.write_csv(out_file)
        else:
            everything.write_parquet(out_file)
        out.print(f"predictions: [bold]{out_file}[/]")


def _summary_row(ref: ArtifactRef) -> list[str]:
    try:
        man = ref.manifest()
    except (OSError, ValueError) as exc:
        return [ref.name, ref.version, f"unreadable: {exc}", "", "", "", "", ""]
    overall = man.get("metrics", {}).get("overall", {})
    return [
        ref.name,
        ref.version,
        str(man.get("created_at", ""))[:19].replace("T", " "),
        str(man.get("kind")),
        f"{man['label']['kind']} h={man['label']['horizon']}",
        f"{man['data']['rows_used']:,}",
        _fmt(overall.get("model", {}).get("ic")),
        _fmt(overall.get("baseline", {}).get("ic")),
    ]


def _summary_json(ref: ArtifactRef) -> dict[str, Any]:
    """One `models list` row for ``--json``: the table's columns, unformatted."""
    row: dict[str, Any] = {"name": ref.name, "version": ref.version, "path": str(ref.path)}
    try:
        man = ref.manifest()
    except (OSError, ValueError) as exc:
        return row | {"error": f"unreadable: {exc}"}
    created = man.get("created_at")
    try:
        created_ms = int(datetime.fromisoformat(created).timestamp() * 1000) if created else None
    except (TypeError, ValueError):
        created_ms = None
    overall = man.get("metrics", {}).get("overall", {})
    return row | {
        "created": created,
        "created_ms": created_ms,
        "kind": man.get("kind"),
        "label": man.get("label"),
        "rows": man.get("data", {}).get("rows_used"),
        "oos_ic": overall.get("model", {}).get("ic"),
        "baseline_ic": overall.get("baseline", {}).get("ic"),
    }


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array on stdout, a row per version")
    ] = False,
) -> None:
    """Every model and version in the registry, with its pooled out-of-sample IC."""
    reg = _registry(_app(ctx))
    refs = reg.list()
    if as_json:
        echo_json([_summary_json(ref) for ref in refs])
        return
    if not refs:
        out.print(f"no models in {reg.root} (train one: `tessera train`)")
        return
    table = Table(title=f"Models in {reg.root}")
    for col in ("name", "version", "created (UTC)", "kind", "label", "rows", "OOS IC", "base IC"):
        table.add_column(
            col,
            justify="right" if col in ("rows", "OOS IC", "base IC") else "left",
            no_wrap=col in ("name", "version"),
        )
    for ref in refs:
        table.add_row(*_summary_row(ref))
    out.print(table)


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    version: Annotated[str | None, typer.Argument(help="Version (default: latest)")] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="The raw manifest, one JSON document on stdout (NaN as null)"),
    ] = False,
) -> None:
    """One artifact: manifest summary and fold metrics against the baseline."""
    import polars as pl

    from tessera.models.registry import RegistryError

    try:
        ref = _registry(_app(ctx)).resolve(name, version)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from exc
    man = ref.manifest()
    if as_json:
        echo_json(man)
        return
    info = Table(show_header=False, box=None, title=f"{ref.name}:{ref.version}")
    data, feats = man["data"], man["features"]
    rows = [
        ("path", str(ref.path)),
        ("created", man["created_at"]),
        ("kind / task", f"{man['kind']} / {man['task']}"),
        ("label", json.dumps(man["label"])),
        ("validation", json.dumps(man["validation"])),
        ("seed", str(man["seed"])),
        ("data", f"{data['source']}: {data['first_bar']} → {data['last_bar']}"),
        ("rows", f"{data['rows_used']:,} of {data['bars']:,} bars; sha256 {data['sha256'][:16]}"),
        ("features", ", ".join(feats["columns"])),
        ("feature spec hash", str(feats["spec_hash"])),
        ("feature code hash", str(feats["code_hash"])),
        ("libraries", ", ".join(f"{k} {v}" for k, v in man["libraries"].items())),
        ("training time", f"{man.get('training_seconds', float('nan')):.1f} s"),
    ]
    for key, value in rows:
        info.add_row(f"[bold]{key}[/]", value)
    out.print(info)
    folds = pl.DataFrame(man["metrics"]["folds"]).with_columns(
        pl.col("test_start", "test_end").str.to_datetime(time_zone="UTC"),
        pl.col("ic", "rank_ic", "hit_rate", "mse", "log_loss").cast(pl.Float64).fill_null(math.nan),
    )
    out.print(fold_table(folds, "Out-of-sample fold metrics"))
