"""`tessera --help` imports no command module; the lazy command table loses no command.

The eager registration below is the one `tessera.cli` did before the commands became lazy (every
sub-CLI module imported at start): the lazy app must expose the same commands, with the same
help, as an app built that way from the same modules.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

import tessera
from tessera import cli

REPO = Path(__file__).resolve().parents[2]

# Libraries a command may need but `tessera --help` must not import (each costs 0.1-2 s).
HEAVY = ("sqlalchemy", "alembic", "aiohttp", "polars", "numpy", "torch", "lightgbm", "plotly")

# (name, module, attribute, mounted as a sub-group): what `_mount_commands` registered eagerly.
EAGER_COMMANDS: list[tuple[str, str, str, bool]] = [
    ("backtest", "tessera.backtest.cli", "backtest", False),
    ("sweep", "tessera.backtest.sweep_cli", "sweep", False),
    ("optimize", "tessera.optimize.cli", "optimize", False),
    ("orders", "tessera.execution.cli", "orders_app", True),
    ("fills", "tessera.execution.cli", "fills_app", True),
    ("positions", "tessera.execution.cli", "positions", False),
    ("risk", "tessera.execution.cli", "risk_app", True),
    ("db", "tessera.execution.cli", "db_app", True),
    ("data", "tessera.data.cli", "data_app", True),
    ("sim", "tessera.sim.cli", "app", True),
    ("ingest", "tessera.data.cli", "ingest", False),
    ("features", "tessera.features.cli", "app", True),
    ("train", "tessera.models.cli", "train", False),
    ("predict", "tessera.models.cli", "predict", False),
    ("models", "tessera.models.cli", "models_app", True),
    ("run", "tessera.live.cli", "run", False),
    ("strategy", "tessera.strategies.cli", "app", True),
    ("control", "tessera.control.cli", "app", True),
    ("notify", "tessera.notify.cli", "app", True),
]


def eager_app() -> typer.Typer:
    """`cli.app`'s settings, callback and own commands, with every command mounted eagerly."""
    eager = copy.copy(cli.app)
    eager.info = copy.copy(cli.app.info)
    eager.info.cls = TyperGroup
    eager.registered_commands = list(cli.app.registered_commands)
    eager.registered_groups = list(cli.app.registered_groups)
    for name, module, attribute, group in EAGER_COMMANDS:
        target = getattr(importlib.import_module(module), attribute)
        if group:
            eager.add_typer(target, name=name)
        else:
            eager.command(name)(target)
    return eager


def invoke(app: typer.Typer, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return CliRunner().invoke(app, ["--env-file", "none.env", *args], env=env)


def test_root_help_imports_no_command_module_and_no_heavy_library() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        sys.argv = ["tessera", "--help"]
        import tessera.cli
        try:
            tessera.cli.main()
        except SystemExit as exc:
            code = exc.code
        print("\\nIMPORTED", json.dumps({"code": code, "modules": sorted(sys.modules)}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        timeout=60,
    )
    help_text, _, tail = res.stdout.rpartition("\nIMPORTED ")
    report = json.loads(tail)
    assert report["code"] == 0, res.stderr
    modules = set(report["modules"])
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`tessera --help` imported {heavy}"
    command_modules = {e.target.partition(":")[0] for e in cli.LAZY_COMMANDS}
    assert not command_modules & modules, command_modules & modules
    for entry in cli.LAZY_COMMANDS:
        assert f" {entry.name} " in help_text, f"{entry.name} is not listed by --help"


def test_lazy_table_has_every_eagerly_registered_command_and_no_other() -> None:
    lazy = {e.name: e for e in cli.LAZY_COMMANDS}
    assert sorted(lazy) == sorted(name for name, *_ in EAGER_COMMANDS)
    for name, module, attribute, group in EAGER_COMMANDS:
        assert lazy[name].load() is getattr(importlib.import_module(module), attribute), name
        assert lazy[name].group is group, name


def test_every_typer_app_of_a_command_module_is_mounted() -> None:
    """A sub-app added to a module (e.g. a new `fills_app`) and not to the table fails here."""
    mounted = {id(e.load()) for e in cli.LAZY_COMMANDS if e.group}
    for e in cli.LAZY_COMMANDS:  # and the sub-apps mounted inside those
        if e.group:
            mounted |= {id(g.typer_instance) for g in e.load().registered_groups}
    command_modules = {e.target.partition(":")[0] for e in cli.LAZY_COMMANDS}
    command_modules |= {
        m.name
        for m in pkgutil.walk_packages(tessera.__path__, "tessera.")
        if m.name.endswith(("_cli", ".cli")) and m.name != "tessera.cli"
    }
    unmounted = [
        f"{module}:{attr}"
        for module in sorted(command_modules)
        for attr, value in vars(importlib.import_module(module)).items()
        if isinstance(value, typer.Typer) and id(value) not in mounted
    ]
    assert not unmounted, f"typer apps no `tessera` command reaches: {unmounted}"


def test_root_help_lists_the_same_commands_and_summaries_as_the_eager_app() -> None:
    lazy, eager = invoke(cli.app, "--help"), invoke(eager_app(), "--help")
    assert lazy.exit_code == eager.exit_code == 0, lazy.output
    assert lazy.stdout == eager.stdout


@pytest.mark.parametrize(
    "args",
    [[name] for name, *_ in EAGER_COMMANDS] + [["data", "info"], ["orders", "list"]],
    ids=" ".join,
)
def test_command_help_is_the_same_as_with_eager_registration(args: list[str]) -> None:
    lazy, eager = invoke(cli.app, *args, "--help"), invoke(eager_app(), *args, "--help")
    assert lazy.exit_code == eager.exit_code == 0, lazy.output
    assert "Usage" in lazy.stdout
    assert lazy.stdout == eager.stdout


def test_a_mistyped_command_is_told_the_lazy_command_it_resembles() -> None:
    res = invoke(cli.app, "backtets")
    assert res.exit_code == 2
    assert "Did you mean 'backtest'?" in res.output


def test_the_click_tree_walked_by_the_docs_reaches_every_lazy_sub_command() -> None:
    root: Any = typer.main.get_command(cli.app)
    assert sorted(root.commands) == sorted(
        [*(e.name for e in cli.LAZY_COMMANDS), "version", "doctor", "config"]
    )
    assert "info" in root.commands["data"].commands  # built on access, like an eager one
    assert "list" in root.commands["orders"].commands
