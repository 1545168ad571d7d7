"""`tessera strategy new|list`, and the ``--strategy-path`` option every strategy command takes.

Every command that resolves a strategy name (``backtest``, ``sweep``, ``run``, ``strategy
list``) calls `load_user_strategies` first, so a user strategy is found the same way
everywhere: ``--strategy-path`` (this command), else the ``strategies_path`` setting (also the
global ``tessera --strategy-path``), else ``./strategies`` if it exists; plus the installed
packages' ``tessera.strategies`` entry points. A path that was asked for and does not exist, a
file that does not import, or a name clash is one paragraph and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tessera.config.errors import ConfigError
from tessera.console import make_console
from tessera.strategies.base import registered_strategies
from tessera.strategies.loader import (
    DEFAULT_STRATEGY_PATH,
    LoadedStrategy,
    StrategyLoadError,
    ensure_strategies_loaded,
    strategy_infos,
)
from tessera.strategies.template import check_strategy_name, render_template

if TYPE_CHECKING:
    from tessera.config.settings import TesseraSettings

out = make_console()

StrategyPathOption = Annotated[
    Path | None,
    typer.Option(
        "--strategy-path",
        metavar="PATH",
        help="Folder (or .py file) of your own strategies; default: the strategies_path "
        "setting, else ./strategies if it exists. Installed packages' `tessera.strategies` "
        "entry points are loaded too.",
        show_default=False,
    ),
]

app = typer.Typer(
    help="Write and list strategies: built-in, your own files, installed packages.",
    no_args_is_help=True,
)


def load_user_strategies(
    settings: TesseraSettings, option: Path | None = None
) -> list[LoadedStrategy]:
    """Register the user strategies for a command: ``option`` (``--strategy-path``), else
    ``settings.strategies_path``, else ``./strategies`` if it exists; and the entry points.
    `ConfigError` (exit 2, one paragraph) when that fails."""
    try:
        return ensure_strategies_loaded(option or settings.strategies_path)
    except StrategyLoadError as exc:
        raise ConfigError(str(exc)) from None


def _settings(ctx: typer.Context) -> TesseraSettings:
    from tessera.bootstrap import AppContext

    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("run through the `tessera` command")
    return obj.settings


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Strategy name: a Python identifier, e.g. my_rsi")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder to write <NAME>.py in (created if missing)")
    ] = DEFAULT_STRATEGY_PATH,
) -> None:
    """Write a working, commented strategy to start from: RSI entries with a stop-loss and a
    take-profit (a bracket), typed parameters and every hook. Never overwrites a file."""
    try:
        check_strategy_name(name)
    except ValueError as exc:
        raise ConfigError(f"strategy new: {exc}.") from None
    taken = registered_strategies()
    if name in taken:
        raise ConfigError(
            f"strategy new: {name!r} is already the name of a registered strategy "
            f"({taken[name].__name__}); choose another name."
        )
    target = directory / f"{name}.py"
    if target.exists():
        raise ConfigError(
            f"strategy new: {target} exists already and is left as it is; choose another name "
            "or --dir, or remove the file first."
        )
    directory.mkdir(parents=True, exist_ok=True)
    with target.open("x", encoding="utf-8") as fh:  # "x": never overwrite, even in a race
        fh.write(render_template(name))
    path_hint = "" if directory == DEFAULT_STRATEGY_PATH else f" --strategy-path {directory}"
    out.print(f"wrote [bold]{target}[/]: strategy [bold]{name}[/]")
    out.print(f"  tessera strategy list{path_hint}")
    out.print(f"  tessera backtest{path_hint} --strategy {name} -p period=7")


@app.command("list")
def list_strategies(ctx: typer.Context, strategy_path: StrategyPathOption = None) -> None:
    """Every strategy found — built-in, your files, installed packages — with its source, its
    parameters and their defaults, and one line of its docstring."""
    load_user_strategies(_settings(ctx), strategy_path)
    table = Table(title="Strategies")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("source")
    table.add_column("parameters (default)")
    table.add_column("description")
    for info in strategy_infos():
        params = "\n".join(str(p) for p in info.params) or "none"
        table.add_row(info.name, info.source, params, info.doc)
    out.print(table)
