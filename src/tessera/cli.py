"""The `tessera` command line.

The root callback is the bootstrap of the architecture brief, run once per process in order:
settings (defaults < YAML < .env < environment < options), logging, seed, and — for commands
that run a process — the metrics server. It creates a ``run_id`` and binds it to every log line.

Start-up time: ``tessera --help`` imports none of the command modules. The root group is a
`LazyTyperGroup` that knows each command by name, summary and ``module:attribute``
(`LAZY_COMMANDS`) and imports a command's module only when that command runs or shows its own
help; this module itself imports only typer and rich at the top (the settings, logging and
error types are imported where they are used). A command's own ``--help`` skips the bootstrap
(`_shows_help`): help needs no settings. ``bench/bench_startup.py`` measures it.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

import tessera
from tessera.console import make_console

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter
    from typer._click.shell_completion import CompletionItem

    from tessera.bootstrap import AppContext

out = make_console()
err = make_console(stderr=True)


# --- lazy commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LazyCommand:
    """A command of `tessera` whose module is imported only when the command is used.

    ``target`` is ``"module:attribute"``: a command function (mounted like
    ``app.command(name)(function)``) or, with ``group=True``, a `typer.Typer` (mounted like
    ``app.add_typer(sub, name=name)``). ``summary`` is the first paragraph of its help exactly as
    ``tessera --help`` lists it; ``tests/foundation/test_cli_lazy.py`` checks it against the
    command's own help, so an edited docstring that is not copied here fails a test.
    """

    name: str
    target: str
    summary: str
    group: bool = False

    def load(self) -> Any:
        """Import the module and return the attribute (the one import this entry defers)."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


LAZY_COMMANDS: tuple[LazyCommand, ...] = (
    LazyCommand(
        "backtest",
        "tessera.backtest.cli:backtest",
        "Run an event-driven backtest: same strategy, risk and execution code as live.",
    ),
    LazyCommand(
        "sweep",
        "tessera.backtest.sweep_cli:sweep",
        "Grid or random search over a strategy's parameters, in parallel (local or Ray).",
    ),
    LazyCommand(
        "optimize",
        "tessera.optimize.cli:optimize",
        "Bayesian search of a strategy's parameters, with the statistics that say how much is "
        "luck.",
    ),
    LazyCommand(
        "positions",
        "tessera.execution.cli:positions",
        "Positions per symbol and strategy, with average price and realized PnL.",
    ),
    LazyCommand(
        "ingest",
        "tessera.data.cli:ingest",
        "Stream market data into the store: reconnects, gap backfill, book sync, crash-safe "
        "writes.",
    ),
    LazyCommand(
        "train",
        "tessera.models.cli:train",
        "Validate a model against the linear baseline, fit it on all bars, save an artifact.",
    ),
    LazyCommand(
        "predict",
        "tessera.models.cli:predict",
        "Score bars with a registered model (features recomputed with its own feature spec).",
    ),
    LazyCommand(
        "run",
        "tessera.live.cli:run",
        "Run the trading bot: market data -> features -> model -> strategies -> signals -> risk\n"
        "-> orders, until Ctrl-C / SIGTERM (graceful: queued signals are executed, in-flight\n"
        "orders resolved, data flushed) or --duration.",
    ),
    LazyCommand(
        "orders",
        "tessera.execution.cli:orders_app",
        "Orders recorded in the execution database.",
        group=True,
    ),
    LazyCommand(
        "fills",
        "tessera.execution.cli:fills_app",
        "Fills recorded in the execution database.",
        group=True,
    ),
    LazyCommand(
        "risk", "tessera.execution.cli:risk_app", "Trading state and the kill-switch.", group=True
    ),
    LazyCommand("db", "tessera.execution.cli:db_app", "The execution database schema.", group=True),
    LazyCommand(
        "data",
        "tessera.data.cli:data_app",
        "The market-data store: coverage, SQL, import, download.",
        group=True,
    ),
    LazyCommand(
        "sim",
        "tessera.sim.cli:app",
        "A local Binance spot exchange (REST + websockets) replaying recorded real market data.",
        group=True,
    ),
    LazyCommand(
        "features",
        "tessera.features.cli:app",
        "Feature library: list the registered features, build feature sets, check them.",
        group=True,
    ),
    LazyCommand(
        "models",
        "tessera.models.cli:models_app",
        "The local model registry: list and inspect artifacts.",
        group=True,
    ),
    LazyCommand(
        "strategy",
        "tessera.strategies.cli:app",
        "Write and list strategies: built-in, your own files, installed packages.",
        group=True,
    ),
    LazyCommand(
        "control",
        "tessera.control.cli:app",
        "The control API and console: make API tokens and password hashes.",
        group=True,
    ),
    LazyCommand(
        "notify",
        "tessera.notify.cli:app",
        "Notifications to people: test the Apprise URLs, relay Alertmanager's alerts to them.",
        group=True,
    ),
)


class _CommandTable(MutableMapping[str, "Command"]):
    """The sub-commands of a `LazyTyperGroup`: every name is known, a lazy one is built on access.

    Iterating (names, ``in``, ``len``, typer's "did you mean" suggestions) imports nothing;
    reading a command (``table[name]``, ``.get``, ``.items()``) builds it once. Code that walks
    ``group.commands`` (the docs reference hook, tests) therefore sees the full tree, as before.

    The order is the eager one: commands before sub-groups, the root's own before the lazy ones.
    """

    def __init__(
        self,
        loaded: Mapping[str, Command],
        lazy: Mapping[str, LazyCommand],
        build: Callable[[LazyCommand], Command],
    ) -> None:
        self._loaded = dict(loaded)
        self._lazy = {n: e for n, e in lazy.items() if n not in self._loaded}
        self._build = build
        own_commands = [n for n, c in self._loaded.items() if not isinstance(c, TyperGroup)]
        own_groups = [n for n, c in self._loaded.items() if isinstance(c, TyperGroup)]
        self._order = [
            *own_commands,
            *(n for n, e in self._lazy.items() if not e.group),
            *own_groups,
            *(n for n, e in self._lazy.items() if e.group),
        ]

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            self._loaded[name] = self._build(self._lazy[name])  # KeyError if unknown
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._lazy.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._lazy.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def listing(self, name: str) -> Command | None:
        """The command if it is built, else a stand-in with its name and summary (no import)."""
        if name in self._loaded:
            return self._loaded[name]
        entry = self._lazy.get(name)
        if entry is None:
            return None
        return TyperCommand(name, help=entry.summary)


class LazyTyperGroup(TyperGroup):
    """A typer group whose sub-commands in `lazy_commands` are imported on first use.

    A command is built exactly as ``app.command(name)(function)`` or ``app.add_typer(sub,
    name=name)`` on the root would build it (same markup mode, same settings), so its own help
    and behaviour do not change; only the root's help lists stand-ins, built from the summary.
    """

    lazy_commands: ClassVar[tuple[LazyCommand, ...]] = ()
    #: the Typer whose settings (markup mode, pretty exceptions, suggestions) commands inherit
    settings_from: ClassVar[typer.Typer | None] = None

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _CommandTable(
            self.commands, {e.name: e for e in self.lazy_commands}, self._build
        )
        self._listing = False

    def _build(self, entry: LazyCommand) -> Command:
        like = self.settings_from
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            suggest_commands=self.suggest_commands,
            pretty_exceptions_short=like.pretty_exceptions_short if like else True,
        )
        target = entry.load()
        if entry.group:
            if not isinstance(target, typer.Typer):
                raise TypeError(f"{entry.target} is not a typer.Typer (command {entry.name!r})")
            holder.add_typer(target, name=entry.name)
        else:
            holder.command(entry.name)(target)
        return typer.main.get_group(holder).commands[entry.name]

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        table = self.commands
        if self._listing and isinstance(table, _CommandTable):
            return table.listing(cmd_name)
        return table.get(cmd_name)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The group's help lists its commands from their summaries: nothing is imported."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        """Completing a command name imports nothing either (its summary is the hint)."""
        self._listing = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing = False


class ModeChoice(str, Enum):
    dev = "dev"
    paper = "paper"
    live = "live"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


# ``ctx.meta`` key: True when the invoked command will only print its help (see `_shows_help`)
_HELP_ONLY = "tessera.help_only"


def _shows_help(parent: Context, name: str | None, command: Command, args: list[str]) -> bool:
    """Whether click answers ``args`` with the help of ``command`` (or of one of its
    sub-commands) and runs nothing: ``--help``/``-h`` parsed as that command's help option, or
    a ``no_args_is_help`` group given no arguments.

    The arguments go through each command's own option parser (the one click runs next), so a
    ``--help`` that is an option's value (``--sql --help``) is not taken for the help option.
    Parsing runs no parameter callbacks; anything unexpected answers False (bootstrap as usual).
    """
    try:
        while True:
            settings = {**command.context_settings, "resilient_parsing": True}  # as make_context
            ctx = command.context_class(command, info_name=name, parent=parent, **settings)
            if not args and getattr(command, "no_args_is_help", False):
                return True
            opts, rest, _ = command.make_parser(ctx).parse_args(args=list(args))
            help_option = command.get_help_option(ctx)
            if help_option is not None and help_option.name and opts.get(help_option.name):
                return True
            if not isinstance(command, TyperGroup) or not rest:
                return False
            sub = command.get_command(ctx, rest[0])
            if sub is None:
                return False
            parent, name, command, args = ctx, rest[0], sub, rest[1:]
    except Exception:  # a usage error: click reports it when it parses for real
        return False


class _TesseraGroup(LazyTyperGroup):
    lazy_commands = LAZY_COMMANDS

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        """Resolve as click does, and note whether the command will only show its help: the root
        callback then skips the bootstrap (settings, logging, seed), which help does not use."""
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not ctx.resilient_parsing:
            ctx.meta[_HELP_ONLY] = _shows_help(ctx, name, command, rest)
        return name, command, rest


app = typer.Typer(
    name="tessera",
    cls=_TesseraGroup,
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
_TesseraGroup.settings_from = app
config_app = typer.Typer(
    help="Inspect and validate the effective configuration.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tessera {tessera.__version__}")
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
    if ctx.meta.get(_HELP_ONLY):  # `tessera CMD --help`: no settings, logs or seed to set up
        return
    from tessera.bootstrap import bootstrap, mode_source
    from tessera.config import load_settings
    from tessera.logging import get_logger

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
    get_logger("tessera.cli").info(
        "tessera started",
        command=ctx.invoked_subcommand,
        mode=settings.mode,
        mode_source=mode_source(settings),
        version=tessera.__version__,
    )


def _app_ctx(ctx: typer.Context) -> AppContext:
    from tessera.bootstrap import AppContext

    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):  # only when a sub-app is invoked without the root
        raise RuntimeError("tessera commands must run under the `tessera` root command")
    return obj


# --- tessera version -------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print the Tessera version and the versions of the libraries that matter for results."""
    import importlib.metadata

    from rich.table import Table

    rows = [("tessera", tessera.__version__), ("python", platform.python_version())]
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
    import yaml
    from rich.table import Table

    from tessera.config import ConfigError

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
    from rich.text import Text

    from tessera.config import SECTION_MODELS, ConfigError, load_yaml

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


# The errors `main` prints as one paragraph: (module, class, label, exit code; None = the
# exception's own ``exit_code``). The classes are looked up in ``sys.modules`` rather than
# imported: an exception can only have been raised once its module was imported, and so
# ``tessera --help`` does not import settings, metrics and strategies to be ready to catch them.
_ONE_PARAGRAPH_ERRORS: tuple[tuple[str, str, str, int | None], ...] = (
    ("tessera.config.errors", "ConfigError", "error: ", None),
    ("tessera.metrics", "MetricsServerError", "metrics error: ", 2),
    # user code raised: the run stops naming the strategy, the hook, the bar and the line
    ("tessera.strategies.guard", "StrategyError", "strategy error: ", 1),
)


def _one_paragraph_error(exc: Exception) -> tuple[str, int] | None:
    """(label, exit code) if ``exc`` is one of `_ONE_PARAGRAPH_ERRORS`, else None."""
    for module, name, label, code in _ONE_PARAGRAPH_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return label, int(getattr(exc, "exit_code", 2)) if code is None else code
    return None


def main() -> None:
    """Entry point: run the app; configuration problems print one paragraph and exit 2."""
    try:
        app()
    except Exception as exc:
        known = _one_paragraph_error(exc)
        if known is None:
            raise
        from rich.text import Text

        label, code = known
        err.print(Text.assemble((label, "bold red"), str(exc)))
        sys.exit(code)


if __name__ == "__main__":
    main()
