"""Shared fixtures. Tests read only the repo (samples/), never ../shared.

The suite runs in parallel (`make test`: ``pytest -n N --dist loadgroup``), and other people's
test runs may share this machine's PostgreSQL and Redis. So nothing a test creates may have a
fixed name: a database per test (`fresh_postgres_url`), Redis keys and streams under the
test's own `redis_prefix`, ports from the kernel (port 0 / ``free_port``), files under
``tmp_path``. How tests are spread over the workers is decided here too (below).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import polars as pl

    from tessera.backtest import BarSeries

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"

# --- spreading the tests over xdist workers ------------------------------------------------------
#
# `make test` runs ``pytest -n N --dist loadgroup``: a group's tests all run on one worker, one
# after another. Every test gets a group: the one its ``xdist_group`` mark names, else
# LIVE_PROCESSES for the slow tests of LIVE_PROCESS_FILES — the heaviest, which start many bot
# processes or several at once and time them against windows of seconds: two of them at once
# on a two-core machine would each see the other's load as latency — else its file (as
# ``--dist loadfile``: module fixtures built once, a file's tests never concurrent with each
# other). The live-process group (~7 min) is scheduled first; the other workers take the rest
# meanwhile, and all share what is left. The rest of the suite mostly waits (bars replayed at
# 10x, timeouts), so the other bot tests may run beside one of these; a serial group of every
# bot test (~13 min) would be the whole run's critical path.
#
# xdist 3.8's own loadgroup tags node ids (``nodeid@group``), which pytest >= 9.2 no longer lets
# a plugin change (pytest-dev/pytest-xdist#1386): grouping is silently lost. So the workers
# write each test's group to a file of the run, and the controller schedules by it.
LIVE_PROCESSES = "live-processes"
LIVE_PROCESS_FILES = (
    "tests/live/test_chaos.py",  # 21 bot processes started and killed one after another
    "tests/live/test_strategy_matrix.py",  # every strategy past signal 1000, on both databases
    "tests/live/test_shared_limits.py",  # two bots sharing one order budget, to the order
    "tests/live/test_kill_switch.py",  # bots restarted; a halt must land within two seconds
    "tests/live/test_parity.py",  # a bot and a replay at 0.2 s a bar, fills ahead of each bar
)
_GROUPS_DIR = pytest.StashKey[Path]()
TERMINAL_ENV = ("COLUMNS", "LINES")


def worker_id() -> str:
    """The xdist worker running this process ("gw0", "gw1", ...), or "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _group(item: pytest.Item) -> str:
    named = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})  # fmt: skip
    if named:
        return "_".join(named)  # as xdist joins several
    path = item.nodeid.split("::", 1)[0]
    if item.get_closest_marker("slow") and path in LIVE_PROCESS_FILES:
        return LIVE_PROCESSES
    return path


def _groups_dir(config: pytest.Config) -> Path:
    if _GROUPS_DIR not in config.stash:
        config.stash[_GROUPS_DIR] = Path(tempfile.mkdtemp(prefix="tessera-xdist-groups-"))
    return config.stash[_GROUPS_DIR]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``pytest -n N`` without ``--dist``: loadgroup (the groups above), not xdist's default
    of test by test. An explicit ``--dist`` is left alone."""
    if getattr(config.option, "numprocesses", None) and config.getoption("dist", "no") == "no":
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller, per worker: where the worker writes the groups of the tests it collected,
    and the terminal size variables of the controller's environment."""
    node.workerinput["tessera_groups_dir"] = str(_groups_dir(node.config))
    node.workerinput["tessera_terminal_env"] = {k: os.environ.get(k) for k in TERMINAL_ENV}


def pytest_configure(config: pytest.Config) -> None:
    """Worker: the controller's COLUMNS and LINES. An xdist worker starts with COLUMNS=80 and
    LINES=24 in its environment, which every CLI subprocess a test starts inherits: rich then
    wraps and truncates at 80 columns what a run without xdist prints at the caller's width,
    and tests that look for a long tmp path in the output fail only in parallel."""
    workerinput = getattr(config, "workerinput", None)
    for key, value in (workerinput or {}).get("tessera_terminal_env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Worker: live-process tests to the front (units go out in collection order, so the
    longest starts first, not last), then every test's group to the run's groups file.
    Without xdist nothing changes."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or "tessera_groups_dir" not in workerinput:
        return
    groups = {item.nodeid: _group(item) for item in items}
    items.sort(key=lambda item: groups[item.nodeid] != LIVE_PROCESSES)  # stable
    out = Path(workerinput["tessera_groups_dir"]) / f"{workerinput['workerid']}.json"
    out.write_text(json.dumps({item.nodeid: groups[item.nodeid] for item in items}))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Controller: ``--dist loadgroup`` by the groups the workers wrote. Every worker has
    collected (and written) before xdist asks for a test's scope. Units go out in collection
    order (not xdist's default, largest unit first: the live-process group is the longest by
    time, not by count)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    config.option.loadscopereorder = False
    from xdist.scheduler import LoadScopeScheduling

    groups_dir = _groups_dir(config)

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if "@" in nodeid and nodeid.rfind("@") > nodeid.rfind("]"):
                return nodeid.rsplit("@", 1)[1]  # an xdist that tags node ids again
            if self.groups is None:
                files = sorted(groups_dir.glob("*.json"))
                self.groups = json.loads(files[0].read_text()) if files else {}
            return self.groups.get(nodeid) or nodeid.split("::", 1)[0]

    return GroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _GROUPS_DIR in config.stash and not hasattr(config, "workerinput"):
        shutil.rmtree(config.stash[_GROUPS_DIR], ignore_errors=True)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The strategy and objective registries, the loader's records, sys.path and the imported
    user modules as before the test: a test that loads a user file in-process (a strategy
    named ``my_rsi``, say) must not leave it registered for the next test of this worker,
    where loading another ``my_rsi`` would be refused as a name taken."""
    from tessera.optimize import objectives
    from tessera.strategies import base, loader

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(objectives, "_REGISTRY", dict(objectives._REGISTRY))
    monkeypatch.setattr(loader, "_SOURCES", {})
    monkeypatch.setattr(loader, "_FILES", {})
    monkeypatch.setattr(loader, "_PATHS", [])
    monkeypatch.setattr(loader, "_ENTRY_POINTS", {})
    monkeypatch.setattr(loader, "_entry_points_path", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    yield
    for name in set(sys.modules) - modules:
        if name.startswith((loader.USER_PACKAGE, "tessera_example_pkg")):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _no_pending_torch_seed() -> Iterator[None]:
    """A command run in-process (CliRunner, bootstrap) seeds torch lazily: with torch not yet
    imported, the seed waits in a module global for the next torch import — in a test process,
    whichever later test imports torch through the models, in whatever order this worker runs
    them (test_models_cli before test_mlp: the MLP test's "fitting leaves the global torch RNG
    as it was" failed, seeded 42 by a pending seed). One test's pending seed ends with it."""
    yield
    seeding = sys.modules.get("tessera.config.seeding")
    if seeding is not None:
        seeding._pending_torch_seed = None


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def btc_bars() -> pl.DataFrame:
    """The real 1-minute BTC-PERP bars bundled in samples/ (45,031 rows), for the backtest and
    optimisation tests alike (polars is imported here, not at the top: this file is loaded by
    every test)."""
    import polars as pl

    df = pl.read_csv(SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz")
    return df.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time"))


@pytest.fixture(scope="session")
def btc_series(btc_bars: pl.DataFrame) -> BarSeries:
    from tessera.backtest import BarSeries

    return BarSeries.from_frame("BTCUSDT", btc_bars)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TESSERA_* variables from the developer's shell, and a cwd without a .env file."""
    for key in list(os.environ):
        if key.upper().startswith("TESSERA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_available() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database on the local server, dropped afterwards."""
    import secrets

    import psycopg

    if not postgres_available():
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432 (make services starts it)")
    name = f"tessera_t_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against the embedded default (SQLite) and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tessera.db'}"
    else:
        yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def redis_prefix() -> str:
    """A Redis key/stream prefix of this test's own: ``tessera:test:<worker>:<token>``. One
    Redis serves every worker (and anyone else testing on this machine): a fixed key or
    stream name (``tessera:signals``, a rate limiter's keys) would be shared between tests
    running at the same time. Name everything ``f"{redis_prefix}:..."``; `redis_client`
    deletes those keys afterwards."""
    return f"tessera:test:{worker_id()}:{secrets.token_hex(4)}"


@pytest.fixture
async def redis_client(redis_prefix: str) -> Any:
    """A client of the real Redis on 127.0.0.1:6379; the keys under `redis_prefix` are
    removed after the test (keys named otherwise are the test's own to clean up)."""
    import socket

    from redis.asyncio import Redis

    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", 6379)) != 0:
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (make services starts it)")
    client = Redis(host="127.0.0.1", port=6379, decode_responses=False)
    yield client
    async for key in client.scan_iter(match=f"{redis_prefix}:*"):
        await client.delete(key)
    await client.aclose()
