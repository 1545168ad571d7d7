"""The `tessera` command line.

The root callback is the bootstrap of the architecture brief, run once per process in order:
settings (defaults < YAML < .env < environment < options), logging, seed, and — for commands
that run a process — the metrics server. It creates a ``run_id`` and binds it to every log line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from tessera import __version__
from tessera.bootstrap import AppContext, bootstrap, mode_source
from tessera.config import SECTION_MODELS, ConfigError, load_settings, load_yaml
from tessera.console import make_console
from tessera.logging import get_logger
from tessera.metrics import MetricsServerError
from tessera.strategies.guard import StrategyError

log = get_logger("tessera.cli")
out = make_console()
err = make_console(stderr=True)


class ModeChoice(str, Enum):
    dev = "dev"
    paper = "paper"
    live = "live"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


app = typer.Typer(
    name="tessera",
    help=(
        "Tessera: ML-driven crypto trading, from research to live in one system.\n\n"
        "Settings come from, lowest to highest precedence: built-in defaults, YAML files in "
        "--config-dir, the .env file, TESSERA_* environment variables (nested with __, e.g. "
        "TESSERA_RISK__MAX_DRAWDOWN_PCT=5), and the options below. "
        "See `tessera config show` for the effective values and where each came from."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    help="Inspect and validate the effective configuration.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tessera {__version__}")
        raise typer.Exit()


@app.callback()
def _bootstrap(
    ctx: typer.Context,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the Tessera version and exit (`tessera version` lists the libraries)",
        ),
    ] = False,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config-dir",
            help="Folder of the YAML configs [env TESSERA_CONFIG_DIR; default: configs]",
        ),
    ] = None,
    env_file: Annotated[
        Path, typer.Option("--env-file", help="dotenv file with TESSERA_* values, if it exists")
    ] = Path(".env"),
    mode: Annotated[
        ModeChoice | None,
        typer.Option("--mode", help="dev (simulator), paper (real data, simulated fills) or live"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for random, NumPy, torch")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    ] = None,
    json_logs: Annotated[
        bool | None,
        typer.Option(
            "--json/--no-json", help="JSON log lines (default: off in dev, on in paper/live)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Port of /metrics for long-running commands (0 = any free)"
        ),
    ] = None,
    strategy_path: Annotated[
        Path | None,
        typer.Option(
            "--strategy-path",
            metavar="PATH",
            help="Folder (or .py file) of your own strategies, for every command [setting "
            "strategies_path; default: ./strategies if it exists]",
        ),
    ] = None,
) -> None:
    settings = load_settings(
        config_dir=config_dir,
        env_file=env_file,
        mode=mode.value if mode else None,
        seed=seed,
        log_level=log_level,
        log_json=json_logs,
        metrics_port=metrics_port,
        strategies_path=strategy_path,
    )
    app_ctx = bootstrap(settings)
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)
    log.info(
        "tessera started",
        command=ctx.invoked_subcommand,
        mode=settings.mode,
        mode_source=mode_source(settings),
        version=__version__,
    )


def _app_ctx(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):  # only when a sub-app is invoked without the root
        raise RuntimeError("tessera commands must run under the `tessera` root command")
    return obj


# --- tessera version -------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print the Tessera version and the versions of the libraries that matter for results."""
    rows = [("tessera", __version__), ("python", platform.python_version())]
    for name in ("numpy", "polars", "pyarrow", "duckdb", "ccxt", "lightgbm", "torch"):
        try:  # the installed distribution's metadata: importing torch alone takes seconds
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    table = Table(show_header=False, box=None)
    for name, ver in rows:
        table.add_row(name, ver)
    out.print(table)


# --- tessera config ... ------------------------------------------------------------------------


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    section: Annotated[
        str | None,
        typer.Option(
            "--section",
            "-s",
            help="Only this section: data, features, model, backtest, live, risk, exchange",
        ),
    ] = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table (with sources), json or yaml")
    ] = OutputFormat.table,
) -> None:
    """Show the effective settings, secrets redacted, and where each value came from."""
    settings = _app_ctx(ctx).settings
    values = settings.model_dump(mode="json")
    sources = settings.sources()
    if section:
        if section not in values or not isinstance(values[section], dict):
            raise ConfigError(f"--section: unknown section {section!r}")
        values = {section: values[section]}
    if fmt is OutputFormat.json:
        out.print_json(json.dumps(values))
        return
    if fmt is OutputFormat.yaml:
        out.print(yaml.safe_dump(values, sort_keys=False), end="", markup=False)
        return
    table = Table(title=f"Effective settings (mode={settings.mode})")
    table.add_column("setting", style="cyan", no_wrap=True)
    table.add_column("value")
    table.add_column("source", style="dim")
    for path, source in sources.items():
        if section and not path.startswith(section + "."):
            continue
        value = _dig(values, path)
        text = json.dumps(value) if not isinstance(value, str) else value
        table.add_row(path, text, source)
    out.print(table)


def _dig(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


@config_app.command("validate")
def config_validate(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="YAML files to check (model chosen by file name, e.g. risk.yaml); "
            "default: all of --config-dir"
        ),
    ] = None,
) -> None:
    """Validate config files; exit code 2 with one clear paragraph per problem otherwise."""
    settings = _app_ctx(ctx).settings
    targets = files or sorted(
        p for p in (settings.config_dir / f"{s}.yaml" for s in SECTION_MODELS) if p.is_file()
    )
    problems = 0
    for path in targets:
        model = SECTION_MODELS.get(path.stem)
        if model is None:
            err.print(
                f"[red]✗[/] {path}: no config model is named {path.stem!r}; "
                f"expected one of {', '.join(SECTION_MODELS)}"
            )
            problems += 1
            continue
        try:
            load_yaml(path, model)
            out.print(f"[green]✓[/] {path} ({model.__name__})")
        except ConfigError as exc:
            err.print(Text.assemble(("✗ ", "red"), str(exc)))
            problems += 1
    if problems:
        raise typer.Exit(2)
    out.print(f"[green]all {len(targets)} config file(s) valid[/]; effective settings resolved")


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check Python, packages, optional services, ports, data and credentials; say what to fix."""
    from tessera.doctor import print_report, run_checks

    code = print_report(run_checks(_app_ctx(ctx).settings), out)
    raise typer.Exit(code)


def _mount_commands() -> None:
    from tessera.backtest import cli as backtest_cli
    from tessera.backtest import sweep_cli
    from tessera.execution import cli as execution_cli

    app.command("backtest")(backtest_cli.backtest)
    app.command("sweep")(sweep_cli.sweep)
    app.add_typer(execution_cli.orders_app, name="orders")
    app.add_typer(execution_cli.fills_app, name="fills")
    app.command("positions")(execution_cli.positions)
    app.add_typer(execution_cli.risk_app, name="risk")
    app.add_typer(execution_cli.db_app, name="db")
    from tessera.data import cli as data_cli

    app.add_typer(data_cli.data_app, name="data")
    from tessera.sim import cli as sim_cli

    app.add_typer(sim_cli.app, name="sim")
    app.command("ingest")(data_cli.ingest)
    from tessera.features import cli as features_cli
    from tessera.models import cli as models_cli

    app.add_typer(features_cli.app, name="features")
    app.command("train")(models_cli.train)
    app.command("predict")(models_cli.predict)
    app.add_typer(models_cli.models_app, name="models")
    from tessera.live import cli as live_cli

    app.command("run")(live_cli.run)
    from tessera.strategies import cli as strategies_cli

    app.add_typer(strategies_cli.app, name="strategy")


_mount_commands()


def _mount_optional(module: str, name: str, help_text: str) -> None:
    """Mount a sub-app that lives in its own module (kept separate so `--help` stays fast)."""
    try:
        sub = importlib.import_module(module)
    except ImportError as exc:  # a half-installed environment must still answer --help
        log.debug("sub-command unavailable", module=module, error=str(exc))
        return
    app.add_typer(sub.app, name=name, help=help_text)


def main() -> None:
    """Entry point: run the app; configuration problems print one paragraph and exit 2."""
    try:
        app()
    except ConfigError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        sys.exit(exc.exit_code)
    except MetricsServerError as exc:
        err.print(Text.assemble(("metrics error: ", "bold red"), str(exc)))
        sys.exit(2)
    except StrategyError as exc:
        # user code raised: the run stops naming the strategy, the hook, the bar and the line
        err.print(Text.assemble(("strategy error: ", "bold red"), str(exc)))
        sys.exit(1)


if __name__ == "__main__":
    main()
