"""Strategies of one's own: files and installed packages join the registry, the same way for
every command, and every way of getting it wrong is one clear paragraph (issue 15).

The CLI tests run `tessera` as a process in a folder of their own (no configs, no ./strategies
of the repo), on the bundled real BTC bars. The entry-point test installs a real package with
pip. Every test leaves the registry as it found it: tests/live/test_strategy_matrix.py checks
that every registered strategy is in its matrix.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from tessera.backtest import BacktestEngine, BacktestResult, BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.config import BacktestConfig, RiskConfig
from tessera.execution.orders import OrderSide, OrderStatus, OrderType
from tessera.strategies import base, loader
from tessera.strategies.loader import (
    USER_PACKAGE,
    StrategyLoadError,
    ensure_strategies_loaded,
    load_strategies,
    loader_state,
    restore_loader_state,
    strategy_infos,
    strategy_sources,
)
from tessera.strategies.template import render_template

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOC = REPO / "docs" / "strategies.md"


# the registry, the loader's records, sys.path and user modules as before (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("clean_registry")


def strategy_dir(tmp_path: Path, *files: str) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    for name in files:
        shutil.copy(FIXTURES / name, folder / name)
    return folder


def tessera(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update({"TESSERA_DATA_DIR": str(cwd / "data"), "COLUMNS": "250"}, **(extra_env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def bundled_series() -> BarSeries:
    return BarSeries.from_frame("BTCUSDT", read_bar_file(SAMPLE_BARS))


# --- a user file, through the CLI ------------------------------------------------------------


def test_a_user_strategy_file_backtests_through_the_cli_with_its_typed_parameters(
    tmp_path: Path,
) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    res = tessera(
        "backtest",
        "--strategy-path",
        str(folder),
        "--strategy",
        "my_rsi:period=7",
        "-p",
        "qty=0.02",
        "--no-baselines",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    # the same strategy with the same typed parameters, run here: the CLI ran exactly that
    (loaded,) = load_strategies(folder, entry_points=False)
    strat = loaded.cls(["BTCUSDT"], period=7, qty=Decimal("0.02"))
    assert strat.params.period == 7  # type: ignore[attr-defined]
    mine = BacktestEngine(BacktestConfig(), RiskConfig()).run([bundled_series()], [strat])
    assert doc["metrics"]["trades"] == mine.metrics["trades"] > 10
    assert doc["metrics"]["final_equity"] == pytest.approx(float(mine.final_equity), abs=1e-6)
    default = loaded.cls(["BTCUSDT"], qty=Decimal("0.02"))
    other = BacktestEngine(BacktestConfig(), RiskConfig()).run([bundled_series()], [default])
    assert other.metrics["trades"] != mine.metrics["trades"]  # period=7 did reach the strategy


def test_a_bad_parameter_of_a_user_strategy_names_the_strategy_the_parameter_and_its_type(
    tmp_path: Path,
) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    res = tessera(
        "backtest", "--strategy-path", str(folder), "-s", "my_rsi:period=seven", cwd=tmp_path
    )
    assert res.returncode == 2
    text = " ".join(res.stderr.split())
    assert "strategy my_rsi" in text and "period=seven is not accepted" in text
    assert "period accepts integer > 1" in text
    assert "Traceback" not in res.stderr


def test_the_strategies_path_setting_and_the_default_folder_are_looked_at(tmp_path: Path) -> None:
    strategy_dir(tmp_path, "my_rsi.py")
    by_setting = tessera(
        "strategy", "list", cwd=tmp_path, extra_env={"TESSERA_STRATEGIES_PATH": "mine"}
    )
    assert by_setting.returncode == 0, by_setting.stderr
    assert "file mine/my_rsi.py" in by_setting.stdout
    global_option = tessera("--strategy-path", "mine", "strategy", "list", cwd=tmp_path)
    assert "file mine/my_rsi.py" in global_option.stdout
    (tmp_path / "mine").rename(tmp_path / "strategies")  # the default, when it exists
    by_default = tessera("strategy", "list", cwd=tmp_path)
    assert "file strategies/my_rsi.py" in by_default.stdout
    shutil.rmtree(tmp_path / "strategies")  # and skipped when it does not
    absent = tessera("strategy", "list", cwd=tmp_path)
    assert absent.returncode == 0 and "my_rsi" not in absent.stdout
    assert "sma_cross" in absent.stdout and "built-in" in absent.stdout


def test_a_strategy_path_that_was_asked_for_and_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    for args in (
        ["backtest", "--strategy-path", "nowhere", "-s", "sma_cross"],
        ["sweep", "--strategy-path", "nowhere", "-s", "sma_cross"],
        ["run", "--strategy-path", "nowhere", "--duration", "1"],
    ):
        res = tessera(*args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert "strategy path nowhere does not exist" in " ".join(res.stderr.split())
        assert "Traceback" not in res.stderr
    with pytest.raises(StrategyLoadError, match="does not exist"):
        ensure_strategies_loaded(tmp_path / "nowhere")


def test_tessera_run_loads_the_user_strategies_before_it_checks_them(tmp_path: Path) -> None:
    """`run` resolves names in its own process (the bot builds the strategies there): a user
    strategy with a bad value is refused at start, naming it, before anything connects."""
    folder = strategy_dir(tmp_path, "my_rsi.py")
    res = tessera("run", "--strategy-path", str(folder), "-s", "my_rsi:oversold=150", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    text = " ".join(res.stderr.split())
    assert "strategy my_rsi: oversold=150 is not accepted" in text
    unknown = tessera("run", "-s", "my_rsi", cwd=tmp_path)  # not on any path: unknown
    assert unknown.returncode == 2 and "unknown strategy 'my_rsi'" in unknown.stderr


def test_a_sweep_runs_a_user_strategy_in_its_worker_processes(tmp_path: Path) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    res = tessera(
        "sweep",
        "--strategy-path",
        str(folder),
        "-s",
        "my_rsi",
        "-g",
        "period=7,14",
        "--workers",
        "2",
        "--out",
        str(tmp_path / "rows.csv"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    rows = pl.read_csv(tmp_path / "rows.csv")
    assert sorted(rows["period"].to_list()) == [7, 14]
    assert rows["error"].fill_null("").to_list() == ["", ""], rows
    assert rows["trades"].min() > 0


def _registered_after_restore(state: loader.LoaderState) -> list[str]:
    restore_loader_state(state)
    return sorted(base.registered_strategies())


def test_a_fresh_process_loads_what_the_loader_state_names(tmp_path: Path) -> None:
    """A sweep worker started by spawn (or a Ray task) has only the built-ins until it loads
    the paths of the parent's `loader_state`."""
    folder = strategy_dir(tmp_path, "my_rsi.py")
    load_strategies(folder, entry_points=False)
    state = loader_state()
    assert state.paths == (folder.resolve(),) and not state.entry_points
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        names = pool.apply(_registered_after_restore, (state,))
    assert "my_rsi" in names and "sma_cross" in names


# --- an installed package, through its entry point -----------------------------------------


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tessera_example_pkg really installed (pip, its dist-info and entry points) in a folder
    that is on no path until a test puts it there. Built from a copy: the build leaves files."""
    work = tmp_path_factory.mktemp("example-pkg")
    shutil.copytree(FIXTURES / "tessera_example_pkg", work / "src")
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(work / "src"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(target.glob("tessera_example_pkg-0.1.0.dist-info/entry_points.txt"))
    return target


def test_an_installed_package_registers_its_strategy_through_the_entry_point(
    installed_package: Path, tmp_path: Path
) -> None:
    assert "example_breakout" not in base.registered_strategies()
    sys.path.insert(0, str(installed_package))
    loaded = load_strategies(None)
    assert [(s.name, s.source) for s in loaded] == [
        ("example_breakout", "package tessera-example-pkg 0.1.0")
    ]
    assert strategy_sources()["example_breakout"] == "package tessera-example-pkg 0.1.0"
    assert load_strategies(None) == loaded  # again: nothing new, nothing refused
    # a file of the same name is refused, naming both
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "breakout.py").write_text(
        "from tessera.strategies import Strategy\n\n\n"
        "class Mine(Strategy):\n    name = 'example_breakout'\n"
    )
    with pytest.raises(StrategyLoadError) as info:
        load_strategies(clash)
    text = str(info.value)
    assert "package tessera-example-pkg 0.1.0" in text and "file " in text
    assert "breakout.py" in text


def test_the_package_strategy_lists_and_backtests_through_the_cli(
    installed_package: Path, tmp_path: Path
) -> None:
    env = {"PYTHONPATH": str(installed_package)}
    listed = tessera("strategy", "list", cwd=tmp_path, extra_env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "example_breakout" in line)
    assert (
        "package tessera-example-pkg 0.1.0" in row and "lookback (integer > 1; default 20)" in row
    )
    res = tessera(
        "backtest",
        "-s",
        "example_breakout:lookback=60",
        "--no-baselines",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
        extra_env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "result.json").read_text())["metrics"]["trades"] > 0


# --- tessera strategy new ----------------------------------------------------------------------


def test_strategy_new_writes_a_strategy_that_compiles_and_lists_with_its_parameters(
    tmp_path: Path,
) -> None:
    res = tessera("strategy", "new", "my_rsi", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    path = tmp_path / "strategies" / "my_rsi.py"
    source = path.read_text()
    compile(source, str(path), "exec")
    for hook in ("on_start", "on_bar", "on_fill", "on_order", "on_stop", "submit_bracket"):
        assert f"{hook}(" in source
    listed = tessera("strategy", "list", cwd=tmp_path)
    row = next(line for line in listed.stdout.splitlines() if "my_rsi" in line)
    assert "file strategies/my_rsi.py" in row and "period (integer > 1; default 14)" in row
    again = tessera("strategy", "new", "my_rsi", cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert path.read_text() == source  # refused: untouched
    for bad in ("1st", "my-rsi", "class", "_hidden"):
        refused = tessera("strategy", "new", bad, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, bad
        assert not (tmp_path / "strategies" / f"{bad}.py").exists()
    builtin = tessera("strategy", "new", "sma_cross", "--dir", "other", cwd=tmp_path)
    assert builtin.returncode == 2 and "already the name" in builtin.stderr


def test_the_new_strategy_backtests_and_exits_by_signal_stop_loss_and_take_profit(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "my_rsi.py").write_text(render_template("my_rsi"))
    spec = "my_rsi:period=7,take_profit_pct=0.5"
    res = tessera("backtest", "-s", spec, "--no-baselines", "--out", "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (loaded,) = load_strategies(folder, entry_points=False)
    strat = loaded.cls(["BTCUSDT"], period=7, take_profit_pct="0.5")
    result = BacktestEngine(BacktestConfig(), RiskConfig()).run([bundled_series()], [strat])
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["metrics"]["trades"] == result.metrics["trades"] > 10
    # every entry is a bracket; each exit came one of three ways, as on_order counted them
    filled = [o for o in result.orders if o.status is OrderStatus.FILLED]
    buys = [o for o in filled if o.side is OrderSide.BUY]
    assert len(buys) == strat.entries  # type: ignore[attr-defined]
    exits = strat.exits  # type: ignore[attr-defined]
    assert set(exits) == {"signal", "stop_loss", "take_profit"}, exits
    sells = {(o.type, o.reason.value) for o in filled if o.side is OrderSide.SELL}
    assert (OrderType.STOP_LOSS, "stop_loss") in sells
    assert (OrderType.LIMIT_MAKER, "take_profit") in sells
    assert (OrderType.MARKET, "signal") in sells
    assert sum(exits.values()) == len(filled) - len(buys)


# --- conflicts and errors ----------------------------------------------------------------------


def test_a_user_strategy_named_like_a_builtin_is_refused_naming_both_sources(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "cross.py").write_text(
        "from tessera.strategies import Strategy\n\n\n"
        "class MyCross(Strategy):\n    name = 'sma_cross'\n"
    )
    with pytest.raises(StrategyLoadError) as info:
        load_strategies(folder, entry_points=False)
    text = str(info.value)
    assert "'sma_cross'" in text and "MyCross" in text and "SmaCross (built-in)" in text
    assert "cross.py" in text
    assert base.strategy_class("sma_cross").__name__ == "SmaCross"  # never shadowed
    res = tessera("backtest", "--strategy-path", "mine", cwd=tmp_path)
    assert res.returncode == 2 and "SmaCross (built-in)" in " ".join(res.stderr.split())


def test_two_user_files_with_one_strategy_name_are_refused_naming_both(tmp_path: Path) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    (folder / "zz_copy.py").write_text((folder / "my_rsi.py").read_text())
    with pytest.raises(StrategyLoadError) as info:
        load_strategies(folder, entry_points=False)
    text = str(info.value)
    assert "my_rsi.py" in text and "zz_copy.py" in text


def test_an_import_error_names_the_file_and_the_line_without_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "broken.py").write_text(
        "from tessera.strategies import Strategy\n\nlookback = undefined_name + 1\n"
    )
    with pytest.raises(StrategyLoadError) as info:
        load_strategies(folder, entry_points=False)
    text = str(info.value)
    assert "broken.py, line 3" in text and "NameError" in text and "undefined_name" in text
    # the half-imported module is gone (other tests' user modules may stay loaded in this worker)
    assert not [m for m in sys.modules if m.startswith(f"{USER_PACKAGE}.broken")]
    res = tessera("backtest", "--strategy-path", "mine", "-s", "sma_cross", cwd=tmp_path)
    assert res.returncode == 2
    assert "broken.py, line 3" in " ".join(res.stderr.split()) and "Traceback" not in res.stderr
    (folder / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(StrategyLoadError, match=r"broken\.py, line 1.*SyntaxError"):
        load_strategies(folder, entry_points=False)


def test_a_class_that_keeps_the_default_name_is_asked_for_one(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "nameless.py").write_text(
        "from tessera.strategies import Strategy\n\n\nclass BreakoutTwo(Strategy):\n    pass\n"
    )
    with pytest.raises(StrategyLoadError, match=r'BreakoutTwo.*name = "breakout_two"'):
        load_strategies(folder, entry_points=False)


def test_helpers_starting_with_underscore_are_not_executed_but_can_be_imported(
    tmp_path: Path,
) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    (folder / "_never.py").write_text("raise SystemExit('a helper must not run on its own')\n")
    (folder / "_levels.py").write_text("OVERSOLD = 25.0\n")
    (folder / "uses_helper.py").write_text(
        "from _levels import OVERSOLD\n\nfrom tessera.strategies import Strategy\n\n\n"
        "class Helped(Strategy):\n    '''Uses a helper module.'''\n\n"
        "    name = 'helped'\n    level = OVERSOLD\n"
    )
    names = sorted(s.name for s in load_strategies(folder, entry_points=False))
    assert names == ["helped", "my_rsi"]
    assert base.strategy_class("helped").level == 25.0  # type: ignore[attr-defined]
    sys.modules.pop("_levels", None)


def test_loading_a_folder_twice_is_a_no_op_and_a_changed_file_is_loaded_again(
    tmp_path: Path,
) -> None:
    folder = strategy_dir(tmp_path, "my_rsi.py")
    first = load_strategies(folder, entry_points=False)
    assert load_strategies(folder, entry_points=False) == first
    assert base.strategy_class("my_rsi") is first[0].cls
    path = folder / "my_rsi.py"
    path.write_text(path.read_text().replace("Field(14, gt=1", "Field(21, gt=1"))
    (second,) = load_strategies(folder, entry_points=False)
    assert second.cls is not first[0].cls and base.strategy_class("my_rsi") is second.cls
    assert second.cls(["BTCUSDT"]).params.period == 21  # type: ignore[attr-defined]


def test_the_listing_has_every_strategy_with_its_source_parameters_and_doc(
    tmp_path: Path,
) -> None:
    load_strategies(strategy_dir(tmp_path, "my_rsi.py"), entry_points=False)
    infos = {i.name: i for i in strategy_infos()}
    assert {"sma_cross", "mean_reversion", "model_signal", "buy_and_hold", "my_rsi"} <= set(infos)
    assert infos["sma_cross"].source == "built-in"
    mine = infos["my_rsi"]
    assert mine.source == "file " + str((tmp_path / "mine" / "my_rsi.py").resolve())
    assert [(p.name, p.default) for p in mine.params][:2] == [("period", 14), ("oversold", 30.0)]
    assert mine.doc == "RSI long/flat: buy below `oversold`, sell above `overbought`."
    assert [i.source == "built-in" for i in strategy_infos()][-1] is False  # built-ins first


# --- the guide's notebook example runs as written ----------------------------------------------


def test_the_notebook_example_of_the_guide_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DOC.read_text()
    blocks = text.split("```python\n")[1:]
    (snippet,) = [b.split("```", 1)[0] for b in blocks if "BacktestEngine(" in b]
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "my_rsi.py").write_text(render_template("my_rsi"))
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(snippet, str(DOC), "exec"), scope)
    result = scope["result"]
    assert isinstance(result, BacktestResult) and result.metrics["trades"] > 0


# --- the bot runs a user strategy in its own process -------------------------------------------


@pytest.mark.slow
def test_tessera_run_trades_a_user_strategy_on_the_dev_simulator(tmp_path: Path) -> None:
    """`tessera run` registers the files of --strategy-path in its process; the bot builds the
    strategy from them, calls its hooks and sends its orders (dev mode: an in-process exchange
    simulator replays real recorded data)."""
    folder = strategy_dir(tmp_path, "my_rsi.py")
    res = tessera(
        "--metrics-port",
        "0",
        "run",
        "--mode",
        "dev",
        "--strategy-path",
        str(folder),
        "-s",
        "my_rsi:period=3,oversold=45,overbought=55,qty=0.01",
        "--interval",
        "1s",
        "--duration",
        "30",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    sent = int(last.split(" signals, ")[1].split(" orders sent")[0])
    assert last.startswith("stopped") and sent > 0, last
    assert "strategies=['my_rsi']" in " ".join(res.stderr.split())
