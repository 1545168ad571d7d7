"""`StoreWriter`: the order path's database writes on one dedicated thread, awaited.

Why a thread: every commit on the order path waits for the disk (``database_sync=full``: an
fsync before the commit returns). Called from an ``async`` method, that wait froze the bot's
event loop: market frames, user-data reports and the next signal queued behind a commit. The
drivers (`sqlite3`, psycopg through SQLAlchemy) block, so the writes run on a thread of their
own and the order path *awaits* them (`run`): the intent is still committed before the request
goes out — the awaiting coroutine goes on only once the commit has returned — but the loop
keeps reading frames meanwhile.

Why one thread: writes keep the order they were handed in (FIFO). Two writes of one order (its
intent, then its answer) can never be reordered, and on SQLite two connections of one process
never contend for the write lock (a contended SQLite write waits in its busy handler, which
sleeps in steps of milliseconds).

Why no pool pre-ping here: a pre-ping is one more round trip to PostgreSQL before *every*
transaction, to catch a connection that died while idle. The writer's connections skip it
(`ExecutionStore.path_engine`) and instead retry a write once when the driver reports the
connection gone (SQLAlchemy marks such an error ``connection_invalidated`` and discards the
pool's stale connections). A connection found dead at the write's first statement has
committed nothing, so the retry is safe; a write whose commit's answer was lost is replayed,
and the order path's writes recognise a replay (an intent already stored with the same content
is "recorded", a fill already stored is "not new").

Cancelling the awaiting task does not stop a write the thread has started: the write lands,
and the order it records is left in the state recovery resolves (an intent that was never sent
is closed as such by `OrderManager.recover`).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from tessera.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the database connection is gone (and was discarded)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class StoreWriter:
    """One thread running the writes handed to it, in order; `run` awaits one.

    ``on_thread_start`` runs once on the writer thread before its first write (the store
    uses it to point that thread at its pre-ping-free engine).
    """

    def __init__(
        self, name: str = "tessera-store-writer", on_thread_start: Callable[[], None] | None = None
    ) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=on_thread_start
        )
        self._thread_ids: set[int] = set()
        self._closed = False
        self.reconnects = 0  # writes retried after a lost connection

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` on the writer thread, after every write handed in before it; the
        loop goes on while it runs. Its result or exception is returned or raised here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self._call, fn, args))

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """`run` for a caller that is not on an event loop (or is the writer itself): the
        same thread, the same order, waited for synchronously."""
        if threading.get_ident() in self._thread_ids:
            return self._call(fn, args)  # already on the writer: a nested call runs in place
        return self._pool.submit(self._call, fn, args).result()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self._thread_ids.add(threading.get_ident())
        try:
            return fn(*args)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            self.reconnects += 1
            log.warning("database connection lost: reconnecting once", error=str(exc)[:200])
            return fn(*args)

    def close(self) -> None:
        """Finish the writes handed in, then stop the thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
