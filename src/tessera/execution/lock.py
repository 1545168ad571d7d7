"""One trading process per account: a lock held for the bot's whole life.

Two bots on one account double every position (each trades its own strategy instance) and
corrupt the ledger (each one's user-data stream records the other's fills first). So a bot
takes the account's trading lock before it trades, and a second one is refused with a message
naming the holder.

* PostgreSQL: a session-level ``pg_try_advisory_lock`` on a dedicated connection, keyed by the
  account name. The holder (run id, pid, host, mode, since) is written to ``trading_locks`` so
  that the refusal can name it; the lock itself is the advisory lock, which PostgreSQL ends with
  the session — when the process dies, however it dies.
* SQLite: ``flock(LOCK_EX | LOCK_NB)`` on ``<database>.<account>.trading.lock`` next to the
  database file, with the holder written into the file. The kernel releases it when the process
  dies. (An in-memory database cannot be shared by two processes: no lock is needed.)

A PostgreSQL session can end while the process lives (the server restarted): the lock is then
gone. `TradingLock.verify` checks, and takes the lock again if it is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tessera.execution.persistence import advisory_key, migrate, sqlite_path
from tessera.logging import get_logger

if TYPE_CHECKING:  # imported where used: a bot on SQLite never loads psycopg
    import psycopg

log = get_logger(__name__)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or asks for) an account's trading lock."""

    run_id: str
    mode: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    since_ns: int = field(default_factory=time.time_ns)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since_ns / 1e9))
        return (
            f"run {self.run_id} ({self.mode} mode), pid {self.pid} on host {self.host}, "
            f"since {since}"
        )


class TradingLockHeldError(Exception):
    """Another process trades this account. ``holder`` is None if it could not be named."""

    def __init__(self, account: str, where: str, holder: LockHolder | None, detail: str = ""):
        self.account = account
        self.holder = holder
        if holder is not None:
            who = holder.describe()
            todo = f"stop that process first (pid {holder.pid} on {holder.host})"
        else:
            who, todo = f"a process that could not be named ({detail})", "stop it first"
        super().__init__(
            f"account {account!r} is already traded by another process: {who}. An account has "
            f"one trading process ({where}): two would double every position and corrupt the "
            f"ledger. To run this one, {todo}, or use another database."
        )


class TradingLock:
    """A held trading lock; `release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, account: str, holder: LockHolder, backend: _Backend) -> None:
        self.account = account
        self.holder = holder
        self._backend: _Backend | None = backend

    @property
    def held(self) -> bool:
        return self._backend is not None

    def verify(self) -> None:
        """Raise `TradingLockHeldError` if the lock was lost to another process; re-take it if
        it was lost (a PostgreSQL restart ends the session) and is free."""
        if self._backend is None:
            raise RuntimeError("the trading lock was released")
        self._backend.verify(self.account, self.holder)

    def release(self) -> None:
        if self._backend is not None:
            self._backend.release(self.account)
            self._backend = None
            log.info("trading lock released", account=self.account)

    def __enter__(self) -> TradingLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire_trading_lock(
    database_url: str, account: str, holder: LockHolder, wait_s: float = 0.0
) -> TradingLock:
    """Take ``account``'s trading lock on the database at ``database_url`` for ``holder``.

    Raises `TradingLockHeldError`, naming the holder, if another process has it (after trying
    for ``wait_s`` seconds: a holder that was just killed may take a moment to be noticed by
    PostgreSQL). Runs the migrations first (they are safe to race).
    """
    migrate(database_url)
    deadline = time.monotonic() + wait_s
    while True:
        backend: _Backend = (
            _FileLock(database_url)
            if database_url.startswith("sqlite")
            else _AdvisoryLock(database_url)
        )
        try:
            backend.acquire(account, holder)
        except TradingLockHeldError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)  # polling the lock: nothing to wait on across processes
            continue
        log.info("trading lock acquired", account=account, holder=holder.describe())
        return TradingLock(account, holder, backend)


class _Backend:
    def acquire(self, account: str, holder: LockHolder) -> None:
        raise NotImplementedError

    def verify(self, account: str, holder: LockHolder) -> None:
        raise NotImplementedError

    def release(self, account: str) -> None:
        raise NotImplementedError


# Reading who holds a lock right after it was taken can find the holder not yet written: the
# refusal re-reads for this long before it calls the holder unnamed.
NAME_HOLDER_S = 2.0


class _FileLock(_Backend):
    def __init__(self, url: str) -> None:
        self.db = sqlite_path(url)
        self.fd: int | None = None

    def path(self, account: str) -> Path:
        assert self.db is not None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", account)
        return self.db.with_name(f"{self.db.name}.{safe}.trading.lock")

    def acquire(self, account: str, holder: LockHolder) -> None:
        if self.db is None:
            return  # in memory: no other process can reach this database
        path = self.path(account)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TradingLockHeldError(
                account, f"lock file {path}", *self._read_holder(path)
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        os.fsync(fd)
        self.fd = fd

    @staticmethod
    def _read_holder(path: Path) -> tuple[LockHolder | None, str]:
        deadline = time.monotonic() + NAME_HOLDER_S
        while True:
            with contextlib.suppress(OSError, ValueError, TypeError):
                return LockHolder(**json.loads(path.read_text())), ""
            if time.monotonic() >= deadline:
                return None, f"{path} names no holder"
            time.sleep(0.05)  # the holder writes its name right after taking the lock

    def verify(self, account: str, holder: LockHolder) -> None:
        return  # a flock lasts as long as the process

    def release(self, account: str) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


class _AdvisoryLock(_Backend):
    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        # keepalives: a dead server or network is noticed, and `verify` can say so
        return psycopg.connect(
            self.url,
            autocommit=True,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            application_name="tessera-trading-lock",
        )

    def acquire(self, account: str, holder: LockHolder) -> None:
        conn = self._connect()
        key = advisory_key(f"tessera:trading:{account}")
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (got and got[0]):
            try:
                named, detail = self._read_holder(conn, account, key)
            finally:
                conn.close()
            raise TradingLockHeldError(account, "PostgreSQL advisory lock", named, detail)
        conn.execute(
            "INSERT INTO trading_locks (account, run_id, mode, pid, host, since, backend_pid) "
            "VALUES (%s, %s, %s, %s, %s, %s, pg_backend_pid()) ON CONFLICT (account) DO UPDATE "
            "SET run_id = EXCLUDED.run_id, mode = EXCLUDED.mode, pid = EXCLUDED.pid, "
            "host = EXCLUDED.host, since = EXCLUDED.since, backend_pid = EXCLUDED.backend_pid",
            (account, holder.run_id, holder.mode, holder.pid, holder.host[:255], holder.since_ns),
        )
        self.conn = conn

    @staticmethod
    def _read_holder(
        conn: psycopg.Connection[Any], account: str, key: int
    ) -> tuple[LockHolder | None, str]:
        """The holder row, if it is the current holder's (its session holds the lock now)."""
        classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        deadline = time.monotonic() + NAME_HOLDER_S
        while True:
            found = conn.execute(
                "SELECT l.pid, t.run_id, t.mode, t.pid, t.host, t.since, t.backend_pid "
                "FROM pg_locks l LEFT JOIN trading_locks t ON t.account = %s "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid "
                "AND l.objid = %s::bigint::oid AND l.objsubid = 1 "
                # advisory locks belong to a database; pg_locks lists the whole server's
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (account, classid, objid),
            ).fetchone()
            if found is None:
                return None, "the lock was released while we asked"
            backend, run_id, mode, pid, host, since, row_backend = found
            if row_backend == backend:
                return LockHolder(run_id, mode, pid, host, since), ""
            if time.monotonic() >= deadline:
                return None, f"PostgreSQL session {backend} holds it and has not named itself"
            time.sleep(0.05)  # the holder writes its row right after taking the lock

    def verify(self, account: str, holder: LockHolder) -> None:
        import psycopg

        key = advisory_key(f"tessera:trading:{account}")
        if self.conn is not None:
            try:
                held = self.conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND classid = %s::bigint::oid "
                    "AND objid = %s::bigint::oid AND objsubid = 1",
                    ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
                ).fetchone()
                if held and held[0]:
                    return
            except psycopg.OperationalError:
                pass
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        log.warning("trading lock session lost: taking the lock again", account=account)
        self.acquire(account, holder)

    def release(self, account: str) -> None:
        import psycopg

        if self.conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(
                "DELETE FROM trading_locks WHERE account = %s AND backend_pid = pg_backend_pid()",
                (account,),
            )
        with contextlib.suppress(Exception):
            self.conn.close()  # ends the session: the advisory lock goes with it
        self.conn = None
