"""One trading process per account; migrations safe to race.

Two bots on one account doubled positions and corrupted the ledger, and two starts at once on a
new PostgreSQL database crashed the second in the migration (UniqueViolation on
``alembic_version``). Real processes here: the holder of a lock is a subprocess, killed with
SIGKILL; the migrations race in four subprocesses released at the same moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tessera.execution.lock import (
    LockHolder,
    TradingLockHeldError,
    acquire_trading_lock,
)
from tessera.execution.persistence import MIGRATIONS, make_engine

HOLDER = textwrap.dedent(
    """
    import sys
    from tessera.execution.lock import LockHolder, acquire_trading_lock

    lock = acquire_trading_lock(sys.argv[1], "main", LockHolder("run-holder", "live"))
    print("locked", flush=True)
    sys.stdin.read()  # held until the test kills this process
    """
)

MIGRATOR = textwrap.dedent(
    """
    import sys
    from tessera.execution.persistence import migrate

    sys.stdin.readline()  # all four start together
    migrate(sys.argv[1])
    print("migrated", flush=True)
    """
)


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def holder_process(database_url: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # log lines, then ours once the lock is held
            if line.strip() == "locked":
                break
        else:
            pytest.fail("the holder process exited without taking the lock")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_second_trading_process_is_refused_naming_the_holder(database_url: str) -> None:
    first = acquire_trading_lock(database_url, "main", LockHolder("run-first", "paper"))
    try:
        with pytest.raises(TradingLockHeldError) as err:
            acquire_trading_lock(database_url, "main", LockHolder("run-second", "paper"))
        holder = err.value.holder
        assert holder is not None
        assert (holder.run_id, holder.mode, holder.pid) == ("run-first", "paper", os.getpid())
        message = str(err.value)
        assert "account 'main' is already traded by another process: run run-first" in message
        assert f"pid {os.getpid()} on host {holder.host}" in message
        assert "stop that process first" in message
        # another account on the same database is not held
        with acquire_trading_lock(database_url, "other", LockHolder("run-second", "paper")):
            pass
    finally:
        first.release()
    with acquire_trading_lock(database_url, "main", LockHolder("run-second", "paper")) as again:
        assert again.held
        again.verify()


def test_the_refusal_names_the_holder_of_this_database_not_of_another_on_the_server(
    fresh_postgres_url: str,
) -> None:
    """Advisory locks belong to a database, but pg_locks lists the whole server's: two Tessera
    databases on one server each have their own account "main" and their own holder."""
    import secrets

    import psycopg

    PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"  # noqa: N806

    other_name = f"tessera_t_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{other_name}"')
    other_url = fresh_postgres_url.rsplit("/", 1)[0] + f"/{other_name}"
    try:
        # both orders of taking them: pg_locks lists them in no promised order
        for first, second in ((other_url, fresh_postgres_url), (fresh_postgres_url, other_url)):
            a = acquire_trading_lock(first, "main", LockHolder(f"run-{first[-8:]}", "live"))
            b = acquire_trading_lock(second, "main", LockHolder(f"run-{second[-8:]}", "live"))
            try:
                for url in (first, second):
                    with pytest.raises(TradingLockHeldError) as err:
                        acquire_trading_lock(url, "main", LockHolder("run-third", "live"))
                    assert err.value.holder is not None, str(err.value)
                    assert err.value.holder.run_id == f"run-{url[-8:]}", str(err.value)
            finally:
                b.release()
                a.release()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{other_name}" WITH (FORCE)')


def test_the_lock_is_free_again_once_its_holder_is_killed(
    database_url: str, holder_process: subprocess.Popen[str]
) -> None:
    with pytest.raises(TradingLockHeldError) as err:
        acquire_trading_lock(database_url, "main", LockHolder("run-second", "live"))
    assert err.value.holder is not None and err.value.holder.pid == holder_process.pid

    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait(timeout=30)
    # PostgreSQL ends the dead client's session (and its lock) when it notices the socket close
    with acquire_trading_lock(
        database_url, "main", LockHolder("run-second", "live"), wait_s=20
    ) as lock:
        assert lock.held


def test_a_lost_postgresql_session_is_noticed_and_the_lock_taken_again(
    fresh_postgres_url: str,
) -> None:
    lock = acquire_trading_lock(fresh_postgres_url, "main", LockHolder("run-1", "live"))
    try:
        engine = make_engine(fresh_postgres_url)
        with engine.begin() as conn:  # the server ends the lock's session (a restart would)
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "application_name = 'tessera-trading-lock' AND datname = current_database()"
                )
            )
        engine.dispose()
        lock.verify()  # free: taken again
        with pytest.raises(TradingLockHeldError):
            acquire_trading_lock(fresh_postgres_url, "main", LockHolder("run-2", "live"))
    finally:
        lock.release()


def race_migrations(url: str, n: int = 4) -> list[tuple[int, str, str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    # released together once all are started (each blocks on its first stdin line)
    results = []
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=180)
        results.append((p.returncode, out.strip(), err.strip()[-400:]))
    return results


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_started_at_once_on_a_new_database_all_succeed(
    backend: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/new.db"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    results = race_migrations(url)
    outcomes = [(code, out.splitlines()[-1:]) for code, out, _ in results]
    assert outcomes == [(0, ["migrated"])] * 4, results
    engine = make_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert versions == [head_revision()]
