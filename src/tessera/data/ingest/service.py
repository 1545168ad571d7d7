"""`IngestService`: Binance websocket streams -> the Parquet store, gap-free and deduplicated.

The wire is the venue's (`tessera.venues.contract`): Binance spot (``binance-spot``, the
default) or USDⓈ-M perpetuals (``binance-usdm``). The venue names the streams of each kind
(USDⓈ-M adds ``markPrice`` — mark, index, funding rate, next funding time, every second — and
``forceOrder``, the liquidation orders) and the REST paths the book sync and the backfills read
(``/api/v3/...`` or ``/fapi/v1/...``); rows go to the store's partition of that venue
(``exchange=binance`` or ``exchange=binance-usdm``, where `tessera data import`/`download`
put USDⓈ-M rows), so a run on one venue never mixes its rows with the other's. A kind the
venue does not stream is refused (`UnknownStreamKindError`), never subscribed in vain.

One asyncio task per connection reads frames; handlers turn them into rows, detect sequence gaps
and keep the order books in sync; a batcher flushes rows to `ParquetStore` (in a worker thread)
every ``flush_rows`` rows or ``flush_interval_s`` seconds. After a disconnect it reconnects with
exponential backoff and jitter, and backfills over REST what the stream missed (trades by id,
klines by time), so a disconnect leaves no hole. Shortly before Binance's 24 h connection limit
it opens a second connection, switches over when that one delivers, and closes the first — the
overlap is deduplicated by id.

Malformed frames are counted (`tessera_ws_malformed_total`), logged once per kind with the raw
payload truncated, and skipped. `stop()` (SIGINT/SIGTERM) flushes everything buffered.

A write that fails (full disk, unwritable folder) never loses a row by itself: the converted
batch stays held and is retried with exponential backoff; each distinct failure is logged once
with the path and the OS error and every attempt is counted (`tessera_ingest_flush_failures_total`).
Only when more than ``max_buffered_rows`` are held are the oldest dropped — counted
(`tessera_ingest_rows_dropped_total`) and logged with their time and id range — and rows still
unwritable when the service stops are reported the same way. `health()` says all of it as data
(for a readiness probe and an exit code), and an error that ends `run()` is raised to its caller.

With ``shared=True`` the service opens no connection of its own: the bot's `MarketFeed`
subscribes the service's streams on its connection, hands it every frame (`push`, with the
feed's receive time) and tells it of each connect and disconnect (`on_reconnect`,
`on_disconnect`), so one process keeps one websocket — whose drop the feed's
``tessera_ws_connected{source="feed"}`` shows, instead of a second connection masking it. The
rest is the same: batching, gap checks and the REST catch-up after every (re)connect, book
resyncs, health, the final flush. The connection's own numbers (messages, bytes, malformed
frames, reconnects, connected) are the owner's to count; a standalone service counts them
itself, as ``source="ingest"``.

Trades, aggregate trades and best bid/ask (the high-rate streams) take the batch path of
`fastpath.py`: the receive loop keeps their raw frames and everything else — typed decoding,
dedup and gap checks by id, metrics, Arrow conversion — happens once per flush. Depth diffs
and klines are handled per message (the order book must follow every diff as it arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from tessera import metrics
from tessera.data.ingest.book import BookState, Diff, OrderBook
from tessera.data.ingest.fastpath import (
    DATASETS,
    Converted,
    convert_batch,
    warm_up,
)
from tessera.data.schemas import PARTITION_TIME, SPOT_VENUE, USDM_VENUE
from tessera.data.store import ParquetStore, StoreSchemaError, StoreWriteError, rows_to_table
from tessera.logging import get_logger
from tessera.venues.binance.market_data import (
    MS,
    MalformedMessageError,
    agg_trade_row,
    book_ticker_row,
    decode,
    depth_levels,
    kline_row,
    trade_row,
)
from tessera.venues.binance.streams import stream_kind
from tessera.venues.binance_spot.fastpath import MSG_TYPES, frame_stream
from tessera.venues.binance_usdm.market_data import force_order_row, mark_price_row
from tessera.venues.contract import Venue, venue_names
from tessera.venues.contract import venue as registered_venue

log = get_logger(__name__)

# venue (`tessera.venues.contract`) -> the store's partition its rows go to (``exchange=``)
STORE_VENUES: dict[str, str] = {"binance-spot": SPOT_VENUE, "binance-usdm": USDM_VENUE}
DEFAULT_VENUE = "binance-spot"


class UnknownStreamKindError(ValueError):
    """A stream kind the venue does not have (``markPrice`` on spot, a typo): the message names
    the kind, the venue and the kinds it has."""


def stream_names(
    symbols: Sequence[str],
    kinds: Sequence[str],
    intervals: Sequence[str],
    venue: str = DEFAULT_VENUE,
) -> list[str]:
    """The stream names of ``kinds`` for each symbol, as ``venue`` names them (a kline stream
    per interval). A kind is a key of the venue's `Venue.stream_names` (spot: trade,
    aggTrade, kline, depth, bookTicker; USDⓈ-M adds markPrice and forceOrder), or the tail of
    one of the venue's names (``markPrice@1s``); anything else is `UnknownStreamKindError`."""
    v = registered_venue(venue)
    names = []
    for s in symbols:
        low = s.lower()
        for k in kinds:
            if k == "kline":
                names += [v.stream_names(s, i)["kline"] for i in intervals]
                continue
            named = v.stream_names(s, intervals[0] if intervals else "1m")
            if k in named:
                names.append(named[k])
            elif f"{low}@{k}" in named.values():
                names.append(f"{low}@{k}")
            else:
                raise UnknownStreamKindError(
                    f"stream kind {k!r}: {v.name} has no such stream; its kinds are "
                    f"{', '.join(named)}"
                )
    return names


class RestClient:
    """Small Binance REST client: honours 429/418 ``Retry-After`` and retries 5xx."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        max_retries: int = 8,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.max_retries = max_retries
        self.headers = {"X-MBX-APIKEY": api_key} if api_key else {}
        self.waited_s = 0.0

    async def get(self, path: str, params: dict[str, Any]) -> Any:
        delay = 0.2
        for attempt in range(self.max_retries + 1):
            try:
                async with self.session.get(
                    self.base_url + path, params=params, headers=self.headers
                ) as resp:
                    if resp.status in (429, 418):
                        wait = float(resp.headers.get("Retry-After", "1"))
                        metrics.EXCHANGE_HTTP_ERRORS.labels(status=str(resp.status)).inc()
                        log.warning(
                            "rate limited by the exchange; waiting",
                            status=resp.status,
                            retry_after_s=wait,
                            path=path,
                        )
                        self.waited_s += wait
                        await asyncio.sleep(wait)
                        continue
                    if resp.status >= 500:
                        metrics.EXCHANGE_HTTP_ERRORS.labels(status=str(resp.status)).inc()
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                    resp.raise_for_status()
                    return await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = getattr(exc, "status", 0)
                if 400 <= status < 500 or attempt == self.max_retries:
                    raise
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 5.0)
        raise RuntimeError(f"GET {path}: retries exhausted")


# Lag observations per stream and flush on the batch path: the histogram's shape needs a sample,
# not every message (an observe costs about as much as receiving the frame).
LAG_SAMPLES = 64


TEXT, BINARY = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
_T = aiohttp.WSMsgType
CLOSED_TYPES = frozenset({_T.CLOSE, _T.CLOSING, _T.CLOSED, _T.ERROR})


class ConnectionClosedError(ConnectionError):
    """The websocket closed (or failed) while we were reading it."""


async def _recv_text(ws: aiohttp.ClientWebSocketResponse) -> str | bytes:
    """The next data frame; `ConnectionClosedError` when the connection ends instead."""
    while True:
        msg = await ws.receive()
        if msg.type in (TEXT, BINARY):
            data: str | bytes = msg.data
            return data
        if msg.type in CLOSED_TYPES:
            raise ConnectionClosedError(f"websocket closed ({msg.type.name})")


@dataclass
class _RawBuffer:
    """Raw frames of one high-rate stream awaiting the next flush."""

    kind: str
    symbol: str
    frames: list[str] = field(default_factory=list)
    recv_ns: list[int] = field(default_factory=list)


@dataclass
class IngestStats:
    messages: int = 0
    malformed: int = 0
    reconnects: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    flush_failures: int = 0
    refused: int = 0  # frames pushed (shared mode) while `run()` was not running: not stored
    rows_written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_stream: dict[str, int] = field(default_factory=lambda: defaultdict(int))


DEFAULT_MAX_BUFFERED_ROWS = 2_000_000  # ~0.5 GB of trades: hours of a busy symbol
LOSSES_KEPT = 20  # loss descriptions kept for health(); the count is always exact


@dataclass(frozen=True)
class IngestHealth:
    """The ingest's state as data, for `/readyz` and the exit code.

    ``ok``: writes to the store succeed (no failed flush outstanding) and `run()` has not
    ended with an error — the readiness answer. ``data_lost`` (``rows_dropped > 0``): some
    rows will never reach the store — the process should exit non-zero. ``last_error`` is the
    most recent failure (kept after a recovery, for the record).
    """

    ok: bool
    last_error: str | None
    buffered_rows: int
    rows_dropped: int
    failures: int
    quarantined: int
    losses: tuple[str, ...] = ()

    @property
    def data_lost(self) -> bool:
        return self.rows_dropped > 0

    def summary(self) -> str:
        """One line: what was lost, or that nothing was."""
        if not self.rows_dropped:
            return "no rows lost" + (
                f" ({self.failures} failed flushes recovered)" if self.failures else ""
            )
        text = f"{self.rows_dropped:,} rows LOST: " + "; ".join(self.losses)
        if self.last_error:
            text += f" (last error: {self.last_error})"
        return text


@dataclass
class _Held:
    """A converted batch waiting to be written (again)."""

    dataset: str
    symbol: str
    table: pa.Table


class IngestService:
    def __init__(
        self,
        store: ParquetStore,
        ws_url: str,
        rest_url: str,
        symbols: Sequence[str],
        kinds: Sequence[str] = ("trade", "depth", "bookTicker"),
        intervals: Sequence[str] = ("1m",),
        flush_rows: int = 5000,
        flush_interval_s: float = 2.0,
        max_backoff_s: float = 30.0,
        planned_reconnect_s: float = 23.5 * 3600,
        backfill: bool = True,
        depth_limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        api_key: str | None = None,
        max_buffered_rows: int = DEFAULT_MAX_BUFFERED_ROWS,
        flush_retry_max_s: float = 30.0,
        stop_flush_timeout_s: float = 5.0,
        shared: bool = False,
        venue: str | None = None,
    ) -> None:
        """``shared``: no connection of its own; frames come through `push` from the owner of
        a connection that subscribed `streams` (``ws_url`` is then unused).

        ``venue``: the registered venue whose streams and REST paths are read (``binance-spot``,
        ``binance-usdm``); rows are written to that venue's partition of ``store``
        (`STORE_VENUES`). None: the venue of ``store``'s partition (``exchange=binance`` is
        spot). ``ws_url``/``rest_url`` are used as given: the caller picks the venue's hosts.
        """
        if venue is None:
            by_store = {v: k for k, v in STORE_VENUES.items()}
            if store.exchange not in by_store:
                raise ValueError(
                    f"store venue {store.exchange!r}: no market-data venue writes it; pass "
                    f"venue= one of {', '.join(STORE_VENUES)}"
                )
            venue = by_store[store.exchange]
        if venue not in STORE_VENUES:
            known = [n for n in venue_names() if n in STORE_VENUES]
            raise ValueError(f"venue {venue!r}: the ingest reads {', '.join(known)}")
        self.venue: Venue = registered_venue(venue)
        self.store = store.venue(STORE_VENUES[venue])
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url
        self.symbols = [s.upper() for s in symbols]
        self.streams = stream_names(self.symbols, kinds, intervals, venue)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.planned_reconnect_s = planned_reconnect_s
        self.backfill_enabled = backfill
        self.depth_limit = depth_limit
        self.clock = clock
        self.api_key = api_key
        self.stats = IngestStats()
        self.books = {s: OrderBook(s) for s in self.symbols}
        self._buffers: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._buffered = 0
        # stream name -> raw frames of the batch path; decoded tables wait in _tables
        self._fast: dict[str, _RawBuffer] = {
            name: _RawBuffer(stream_kind(name), name.split("@", 1)[0].upper())
            for name in self.streams
            if stream_kind(name) in MSG_TYPES
        }
        self._flush_task: asyncio.Task[int] | None = None
        self._last_flush = clock()
        # converted batches not yet in the store, oldest first; retried until written
        self._held: list[_Held] = []
        self._held_rows = 0
        self.max_buffered_rows = max_buffered_rows
        self.flush_retry_max_s = flush_retry_max_s
        self.stop_flush_timeout_s = stop_flush_timeout_s
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._failures_logged: set[tuple[str, int | None, str]] = set()
        self._losses: list[str] = []
        self._error: BaseException | None = None
        self._flushed = asyncio.Condition()  # notified after every flush attempt
        self._last_trade: dict[str, int] = {}
        self._last_agg: dict[str, int] = {}
        self._last_kline: dict[tuple[str, str], int] = {}
        self._malformed_logged: set[str] = set()
        self._stop = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._backfills: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.rest: RestClient | None = None
        self.connected = asyncio.Event()
        self.shared = shared
        self._wanted = frozenset(self.streams)  # shared: the owner's other streams are skipped
        self._wire_metrics = not shared  # the connection's numbers belong to its owner
        self._accepting = False  # shared: frames are taken while `run()` runs
        self._push_error: BaseException | None = None
        self._had_connection = False
        self._connect_pending = False  # shared: a connect told before `run()` took frames

    # --- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> IngestHealth:
        """Readiness and losses as data (see `IngestHealth`); cheap, call it from a probe."""
        return IngestHealth(
            ok=self._failing_since is None and self._error is None,
            last_error=self._last_error,
            buffered_rows=self._buffered + self._held_rows,
            rows_dropped=sum(self.stats.rows_dropped.values()),
            failures=self.stats.flush_failures,
            quarantined=len(self.store.quarantined),
            losses=tuple(self._losses),
        )

    async def wait_for_flush(self, predicate: Callable[[IngestHealth], bool]) -> IngestHealth:
        """Wait until the health after a flush attempt satisfies ``predicate`` (checked now and
        after every attempt): an event to await instead of polling `health()`."""
        async with self._flushed:
            await self._flushed.wait_for(lambda: predicate(self.health()))
            return self.health()

    async def run(
        self,
        duration_s: float | None = None,
        attach: Callable[[IngestService], None] | None = None,
    ) -> IngestStats:
        """Ingest until `stop()` (or ``duration_s``); always flushes before returning.

        Rows still unwritable after ``stop_flush_timeout_s`` of retries at the end are dropped,
        counted and logged (`health().data_lost`). An error that ends the connection loop or
        the flusher is re-raised here after the final flush, never swallowed.

        Shared (``shared=True``): frames are taken from `push` while this runs, and ``attach``
        (the connection owner's, e.g. `MarketFeed.attach`) is called with the service as soon
        as it takes them, so that none arrives before; an error handling one ends the run as
        above.
        """
        if attach is not None and not self.shared:
            raise ValueError("attach is for a shared service (shared=True): this one connects")
        self._restore_positions()
        warm_up()
        errors: list[BaseException] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self._session = session
            self.rest = RestClient(self.rest_url, session, api_key=self.api_key)
            ticker = asyncio.create_task(self._periodic_flush())
            conn: asyncio.Task[Any]
            if self.shared:
                conn = asyncio.create_task(self._stop.wait())
            else:
                conn = asyncio.create_task(self._connection_loop())
            stopper = asyncio.create_task(self._stop.wait())
            try:
                if self.shared:
                    self._accepting = True
                    if attach is not None:
                        attach(self)
                    if self._connect_pending:  # the owner connected before we ran
                        self._connect_pending = False
                        self._spawn(self._on_connected())
                await asyncio.wait(
                    [conn, stopper, ticker],
                    timeout=duration_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                self._accepting = False  # from here on, pushed frames would never be flushed
                for t in (conn, stopper, ticker, *self._snapshot_tasks.values()):
                    t.cancel()
                for t in (conn, ticker):
                    try:
                        await t
                    except asyncio.CancelledError:
                        pass
                    except Exception as exc:  # the loop died: surfaced, after the final flush
                        errors.append(exc)
                for t in (stopper, *self._snapshot_tasks.values()):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t  # snapshot failures were logged when they happened
                # (a catch-up may start a backfill meanwhile)
                while running := [t for t in self._backfills if not t.done()]:
                    await asyncio.gather(*running, return_exceptions=True)
                if self._push_error is not None:
                    errors.append(self._push_error)
                if self._flush_task is not None:
                    try:
                        await self._flush_task
                    except Exception as exc:
                        errors.append(exc)
                await self._final_flush()
                if not self.shared:
                    metrics.WS_CONNECTED.labels(source="ingest").set(0)
        if errors:
            self._error = errors[0]
            log.error(
                "ingest stopped by an error",
                error=repr(errors[0])[:300],
                exc_info=errors[0],
            )
            raise errors[0]
        return self.stats

    def _restore_positions(self) -> None:
        """After a restart, continue from what the store holds (so gaps since then are filled)."""
        for s in self.symbols:
            last = self.store.max_value("trades", s, "trade_id")
            if last is not None:
                self._last_trade[s] = int(last)

    # --- connections ----------------------------------------------------------------------------

    def _url(self) -> str:
        return f"{self.ws_url}/stream?streams={'/'.join(self.streams)}"

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        # aiohttp's websocket client (its frame reader is compiled) receives several times
        # faster than the `websockets` package on this workload; see docs/benchmarks.md.
        assert self._session is not None
        return await self._session.ws_connect(
            self._url(),
            max_msg_size=1 << 24,
            heartbeat=20.0,  # ping every 20 s; no pong in time closes the connection
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            autoping=True,
        )

    async def _connection_loop(self) -> None:
        backoff = 0.5
        ws: Any = None
        while not self._stop.is_set():
            reason = "closed"
            try:
                if ws is None:
                    ws = await self._connect()
                    metrics.WS_CONNECTED.labels(source="ingest").set(1)
                    self.connected.set()
                    backoff = 0.5
                    await self._on_connected()
                reason = await self._read(ws)
                if reason == "planned":
                    ws = await self._switch_over(ws)
                    self.stats.reconnects += 1
                    metrics.WS_RECONNECTS.labels(reason="planned").inc()
                    continue
            except (TimeoutError, OSError, aiohttp.ClientError, ConnectionClosedError) as exc:
                reason = "error"
                log.warning("websocket connection failed", error=str(exc)[:200])
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
                ws = None
            metrics.WS_CONNECTED.labels(source="ingest").set(0)
            self.connected.clear()
            if self._stop.is_set():
                return
            self.stats.reconnects += 1
            metrics.WS_RECONNECTS.labels(
                reason=metrics.bounded(reason, metrics.RECONNECT_REASONS)
            ).inc()
            delay = min(backoff, self.max_backoff_s) * (0.5 + random.random())  # jitter
            log.info("reconnecting", reason=reason, in_s=round(delay, 2))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _on_connected(self) -> None:
        """A fresh connection: what it did not deliver since the last one is fetched over REST
        (trades from the newest held to the exchange's newest) and the books sync anew."""
        await self.flush()  # so that the catch-up starts after the last trade held
        for sym in self.symbols:  # a fresh connection starts a fresh book sync
            if "depth" in self._kinds():
                self._resync_book(sym, reset=True)
            if "trade" in self._kinds() and sym in self._last_trade:
                self._spawn(self._catch_up_trades(sym))

    # --- a connection owned by someone else (shared=True) ------------------------------------

    def push(self, raw: str | bytes, recv_ns: int) -> None:
        """One frame of the shared connection, with the owner's receive time.

        Frames of the owner's other streams are skipped; for ours, `on_frame` and what the
        own receive loop does around it: a flush in the background
        once ``flush_rows`` rows are buffered. No backpressure: the owner (the bot's feed) must
        never wait for the disk; ``max_buffered_rows`` bounds the memory instead. A frame
        pushed while `run()` is not running is not taken (``stats.refused``). An error handling
        a frame stops the service and is raised by `run()`: the owner's connection goes on.
        """
        if type(raw) is str:
            name = frame_stream(raw)
            if name is not None and name not in self._wanted:
                return  # the owner's stream, not ours
        if not self._accepting:
            self.stats.refused += 1
            return
        try:
            self.on_frame(raw, recv_ns)
        except Exception as exc:
            self._accepting = False
            self._push_error = exc
            self._stop.set()
            return
        if self._buffered >= self.flush_rows:
            running = self._flush_task
            if running is None or running.done():
                self._flush_task = asyncio.get_running_loop().create_task(self.flush())

    def on_reconnect(self) -> None:
        """The shared connection is up — after every connect, the first included: what it
        missed since the newest trade held (a restart, a drop) is caught up over REST."""
        if self._had_connection:
            self.stats.reconnects += 1
        self._had_connection = True
        self.connected.set()
        if self._accepting:
            self._spawn(self._on_connected())
        else:  # `run()` does it when it starts
            self._connect_pending = True

    def on_disconnect(self) -> None:
        """The shared connection is gone; the next `on_reconnect` fills what it misses."""
        self.connected.clear()
        self._connect_pending = False

    async def _switch_over(self, old: Any) -> Any:
        """Binance's 24 h limit: open the next connection *before* closing the current one.

        The old connection is read until it delivers the very frame the new one delivered
        first (same text), so its backlog is not lost; frames seen on both are deduplicated by id
        (trades, klines, book update ids). Then the old one is closed.
        """
        new = await self._connect()
        try:
            first_new = await asyncio.wait_for(_recv_text(new), 30)
        except TimeoutError:  # a quiet market: nothing in flight to lose
            with contextlib.suppress(Exception):
                await old.close()
            return new
        deadline = time.monotonic() + 5.0
        try:
            while time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(
                        _recv_text(old), max(deadline - time.monotonic(), 0.01)
                    )
                except (TimeoutError, ConnectionClosedError):
                    break
                if raw == first_new:
                    break
                self.on_frame(raw, time.time_ns())
        finally:
            with contextlib.suppress(Exception):
                await old.close()
        self.on_frame(first_new, time.time_ns())
        log.info("planned reconnect done (overlapping connections)")
        return new

    def _kinds(self) -> set[str]:
        return {stream_kind(s) for s in self.streams}

    async def _read(self, ws: Any) -> str:
        opened = self.clock()
        while True:
            msg = await ws.receive()
            recv_ns = time.time_ns()
            if msg.type is TEXT or msg.type is BINARY:
                raw = msg.data
            elif msg.type in CLOSED_TYPES:
                if msg.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionClosedError(f"websocket error: {ws.exception()!r}")
                return "closed"
            else:
                continue  # ping/pong are answered by aiohttp
            self.on_frame(raw, recv_ns)
            if self._buffered >= self.flush_rows:
                running = self._flush_task
                if running is None or running.done():
                    # in the background: this loop keeps receiving while the batch is written
                    self._flush_task = asyncio.get_running_loop().create_task(self.flush())
                elif self._buffered >= 4 * self.flush_rows:
                    await running  # backpressure: never more than a few batches behind
            if self.clock() - opened >= self.planned_reconnect_s:
                # Binance cuts connections at 24 h: reconnect on our terms, the id-based
                # dedup makes the overlap harmless.
                return "planned"
            if self._stop.is_set():
                return "closed"

    # --- frames ---------------------------------------------------------------------------------

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        self.stats.messages += 1
        if type(raw) is str:
            name = frame_stream(raw)
            buf = self._fast.get(name) if name is not None else None
            if buf is not None:  # a high-rate stream: decoded in batch at flush
                buf.frames.append(raw)
                buf.recv_ns.append(recv_ns)
                self._buffered += 1
                return
        if self._wire_metrics:
            metrics.WS_BYTES.inc(len(raw))
        try:
            stream, data = decode(raw)
            if stream is None:
                if "result" in data or "id" in data:
                    return  # subscription acks
                raise MalformedMessageError("control", "frame without a stream name")
            if self.shared and stream not in self._wanted:
                return  # the owner's stream, not ours
            kind = stream_kind(stream)
            symbol = stream.split("@", 1)[0].upper()
            if self._wire_metrics:
                metrics.WS_MESSAGES.labels(
                    stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
                ).inc()
            self.stats.by_stream[kind] += 1
            self._dispatch(kind, symbol, data, recv_ns)
        except MalformedMessageError as exc:
            self._malformed(exc.kind, raw, str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._malformed("unknown", raw, repr(exc))

    def _malformed(self, kind: str, raw: str | bytes, reason: str) -> None:
        self.stats.malformed += 1
        if self._wire_metrics:  # shared: the owner parsed the same frame and counted it
            metrics.WS_MALFORMED.labels(
                stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
            ).inc()
        if kind not in self._malformed_logged:  # once per kind: a bad feed must not flood logs
            self._malformed_logged.add(kind)
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            log.warning("malformed message skipped", kind=kind, reason=reason, raw=text[:200])

    def _dispatch(self, kind: str, symbol: str, d: dict[str, Any], recv_ns: int) -> None:
        if kind == "trade":
            row = trade_row(d, recv_ns)
            self._lag("trade", symbol, recv_ns, row["event_time"])
            tid = row["trade_id"]
            last = self._last_trade.get(symbol)
            if last is not None and tid <= last:
                return  # overlap after a reconnect: already have it
            if last is not None and tid > last + 1:
                self._gap("trades", symbol, last + 1, tid - 1)
            self._last_trade[symbol] = tid
            self._add("trades", symbol, row)
        elif kind == "aggTrade":
            row = agg_trade_row(d, recv_ns)
            self._lag("aggTrade", symbol, recv_ns, row["event_time"])
            aid, last = row["agg_id"], self._last_agg.get(symbol)
            if last is not None and aid <= last:
                return
            if last is not None and aid > last + 1:
                self.stats.gaps_found += 1
                metrics.WS_GAPS.labels(dataset="agg_trades", action="found").inc()
            self._last_agg[symbol] = aid
            self._add("agg_trades", symbol, row)
        elif kind == "kline":
            closed, row = kline_row(d, recv_ns)
            self._lag("kline", symbol, recv_ns, row["event_time"])
            if not closed:
                return
            key = (symbol, row["interval"])
            last_open = self._last_kline.get(key)
            step = row["close_time"] - row["open_time"] + MS  # interval in ns
            if last_open is not None and row["open_time"] > last_open + step:
                self._gap(
                    "klines",
                    symbol,
                    last_open + step,
                    row["open_time"] - step,
                    interval=row["interval"],
                )
            self._last_kline[key] = max(row["open_time"], last_open or 0)
            self._add("klines", symbol, row)
        elif kind == "depth":
            first, last, prev, event_ms, bids, asks = depth_levels(d)
            self._lag("depth", symbol, recv_ns, event_ms * MS)
            for side, levels in (("bid", bids), ("ask", asks)):
                for p, q in levels:
                    self._add(
                        "book_updates",
                        symbol,
                        {
                            "first_update_id": first,
                            "last_update_id": last,
                            "prev_update_id": prev,
                            "side": side,
                            "price": p,
                            "qty": q,
                            "event_time": event_ms * MS,
                            "recv_time": recv_ns,
                        },
                    )
            book = self.books.get(symbol)
            if book is not None:
                outcome = book.on_diff(Diff(first, last, bids, asks, prev))
                if outcome == "gap":
                    self.stats.gaps_found += 1
                    metrics.WS_GAPS.labels(dataset="book_updates", action="found").inc()
                    log.warning(
                        "depth gap: resyncing the order book",
                        symbol=symbol,
                        expected=book.last_update_id + 1,
                        got=first,
                    )
                    self._resync_book(symbol)
        elif kind == "bookTicker":
            self._add("book_ticker", symbol, book_ticker_row(d, recv_ns))
        elif kind.startswith("markPrice"):  # USDⓈ-M <symbol>@markPrice[@1s]: store of that venue
            row = mark_price_row(d, recv_ns)
            self._lag("markPrice", symbol, recv_ns, row["event_time"])
            self._add("mark_prices", symbol, row)
        elif kind == "forceOrder":  # USDⓈ-M <symbol>@forceOrder: the order names its symbol
            row = force_order_row(d, recv_ns)
            self._add("liquidations", row.pop("symbol"), row)

    def _apply(self, buf: _RawBuffer, frames: list[str], conv: Converted) -> None:
        """Book-keeping of a converted batch, on the event loop: ids, gaps, metrics, logs."""
        kind, symbol = buf.kind, buf.symbol
        if self._wire_metrics:
            metrics.WS_BYTES.inc(sum(map(len, frames)))
            metrics.WS_MESSAGES.labels(stream_type=kind).inc(conv.decoded)
        self.stats.by_stream[kind] += conv.decoded
        for i, reason in conv.malformed:
            self._malformed(kind, frames[i], reason)
        if conv.last_id is not None:
            last = self._last_trade if kind == "trade" else self._last_agg
            last[symbol] = max(conv.last_id, last.get(symbol, conv.last_id))
        for first, end in conv.gaps:
            if kind == "trade":
                self._gap("trades", symbol, first, end)
            else:  # aggregate ids are not backfilled: trades carry the same information
                self.stats.gaps_found += 1
                metrics.WS_GAPS.labels(dataset="agg_trades", action="found").inc()
        for recv_ns, event_ns in conv.lag_samples:
            self._lag(kind, symbol, recv_ns, event_ns)
        if conv.last_event_ms is not None:
            recv_ns = conv.lag_samples[-1][0] if conv.lag_samples else time.time_ns()
            metrics.market_data_seen(symbol, conv.last_event_ms * 1_000_000, recv_ns)

    def _lag(self, kind: str, symbol: str, recv_ns: int, event_ns: int) -> None:
        metrics.WS_LAG.labels(stream_type=kind).observe(max((recv_ns - event_ns) / 1e9, 0.0))
        metrics.market_data_seen(symbol, event_ns, recv_ns)

    def _add(self, dataset: str, symbol: str, row: dict[str, Any]) -> None:
        self._buffers[(dataset, symbol)].append(row)
        self._buffered += 1

    # --- gaps and backfill ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _catch_up_trades(self, symbol: str) -> None:
        """After a (re)connect: fill from our last trade to the exchange's newest, even if the
        market is quiet and no new trade would reveal the gap."""
        assert self.rest is not None
        try:
            latest = await self.rest.get(
                self.venue.rest_paths.trades, {"symbol": symbol, "limit": 1}
            )
        except Exception as exc:
            log.warning("could not read the newest trade", symbol=symbol, error=repr(exc)[:200])
            return
        last = self._last_trade.get(symbol)
        if latest and last is not None and latest[-1]["id"] > last:
            newest = int(latest[-1]["id"])
            self._last_trade[symbol] = newest
            self._gap("trades", symbol, last + 1, newest)

    def _gap(self, dataset: str, symbol: str, first: int, last: int, **kw: Any) -> None:
        self.stats.gaps_found += 1
        metrics.WS_GAPS.labels(dataset=dataset, action="found").inc()
        log.warning("gap in stream", dataset=dataset, symbol=symbol, first=first, last=last)
        if not self.backfill_enabled:
            return
        task = asyncio.get_running_loop().create_task(
            self._backfill(dataset, symbol, first, last, **kw)
        )
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill(
        self, dataset: str, symbol: str, first: int, last: int, interval: str = "1m"
    ) -> None:
        assert self.rest is not None
        try:
            rows: list[dict[str, Any]] = []
            if dataset == "trades":
                next_id = first
                while next_id <= last:
                    # historicalTrades needs an API key header on the real exchange.
                    batch = await self.rest.get(
                        self.venue.rest_paths.historical_trades,
                        {"symbol": symbol, "fromId": next_id, "limit": 1000},
                    )
                    if not batch:
                        break
                    for t in batch:
                        if t["id"] > last:
                            break
                        rows.append(
                            {
                                "trade_id": t["id"],
                                "price": t["price"],
                                "qty": t["qty"],
                                "is_buyer_maker": t["isBuyerMaker"],
                                "trade_time": t["time"] * MS,
                                "event_time": t["time"] * MS,
                                "recv_time": None,
                            }
                        )
                    next_id = batch[-1]["id"] + 1
            elif dataset == "klines":
                got = await self.rest.get(
                    self.venue.rest_paths.klines,
                    {
                        "symbol": symbol,
                        "interval": interval,
                        "startTime": first // MS,
                        "endTime": last // MS,
                        "limit": 1000,
                    },
                )
                for k in got:
                    rows.append(
                        {
                            "interval": interval,
                            "open_time": k[0] * MS,
                            "close_time": k[6] * MS,
                            "open": k[1],
                            "high": k[2],
                            "low": k[3],
                            "close": k[4],
                            "volume": k[5],
                            "quote_volume": k[7],
                            "trades": k[8],
                            "taker_buy_base": k[9],
                            "taker_buy_quote": k[10],
                            "event_time": k[6] * MS,
                            "recv_time": None,
                        }
                    )
            if rows:
                for r in rows:
                    self._add(dataset, symbol, r)
                self.stats.gaps_filled += 1
                metrics.WS_GAPS.labels(dataset=dataset, action="filled").inc()
                log.info("gap filled over REST", dataset=dataset, symbol=symbol, rows=len(rows))
            else:
                metrics.WS_GAPS.labels(dataset=dataset, action="unfillable").inc()
        except Exception as exc:
            metrics.WS_GAPS.labels(dataset=dataset, action="unfillable").inc()
            log.error("backfill failed", dataset=dataset, symbol=symbol, error=repr(exc)[:300])

    # --- order books ----------------------------------------------------------------------------

    def _resync_book(self, symbol: str, reset: bool = False) -> None:
        book = self.books[symbol]
        if reset:
            book.state, book.buffer = BookState.SYNCING, []
        running = self._snapshot_tasks.get(symbol)
        if running is None or running.done():
            task = asyncio.get_running_loop().create_task(self._fetch_snapshot(symbol))
            task.add_done_callback(_log_snapshot_failure)
            self._snapshot_tasks[symbol] = task

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self.rest is not None
        book = self.books[symbol]
        for attempt in range(10):
            # Let a few diffs buffer first, as Binance's procedure asks.
            await asyncio.sleep(0.05 * (attempt + 1))
            snap = await self.rest.get(
                self.venue.rest_paths.depth, {"symbol": symbol, "limit": self.depth_limit}
            )
            recv = time.time_ns()
            if book.on_snapshot(int(snap["lastUpdateId"]), snap["bids"], snap["asks"]):
                metrics.BOOK_RESYNCS.labels(symbol=symbol).inc()
                for side, levels in (("bid", snap["bids"]), ("ask", snap["asks"])):
                    for i, (p, q) in enumerate(levels):
                        self._add(
                            "book_snapshots",
                            symbol,
                            {
                                "last_update_id": int(snap["lastUpdateId"]),
                                "side": side,
                                "level": i,
                                "price": p,
                                "qty": q,
                                "recv_time": recv,
                            },
                        )
                if book.state is BookState.LIVE:
                    return
        log.error("order book could not be synchronised", symbol=symbol)

    # --- flushing -------------------------------------------------------------------------------

    async def _periodic_flush(self) -> None:
        """Flush on time, and retry held rows when their backoff is over. Write failures are
        handled inside `flush`; anything else escaping it is a bug and ends `run()` loudly."""
        while True:
            await asyncio.sleep(min(self.flush_interval_s, 1.0))
            now = self.clock()
            due = self._buffered and now - self._last_flush >= self.flush_interval_s
            retry = self._held and now >= self._retry_at
            if due or retry:
                await self.flush()

    async def flush(self, force: bool = False) -> int:
        """Write everything buffered; returns rows written (after dedup).

        A batch the store cannot write stays held and is retried after a backoff (``force``
        retries now). Shielded: cancelling the caller (shutdown) must not abandon rows already
        taken out of the buffers; the write completes and a later `flush()` waits for it.
        """
        return await asyncio.shield(self._flush(force))

    async def _final_flush(self) -> None:
        """At stop: retry held rows for up to ``stop_flush_timeout_s``, then report the rest
        as lost — the process is about to exit and memory goes with it."""
        deadline = time.monotonic() + self.stop_flush_timeout_s
        delay = 0.1
        try:
            await self.flush(force=True)
            while self._held and time.monotonic() + delay < deadline:
                await asyncio.sleep(delay)  # a retry backoff: nothing to wait for but time
                delay = min(delay * 2, 1.0)
                await self.flush(force=True)
        finally:  # also when the caller gives up on us (cancelled): what is left is lost
            if self._held or self._buffered:
                log.error(
                    "market data still unwritable at stop",
                    rows=self._held_rows + self._buffered,
                    error=self._last_error,
                    waited_s=self.stop_flush_timeout_s,
                )
            held, self._held, self._held_rows = self._held, [], 0
            for h in held:
                self._drop(h, "unwritable_at_stop")
            self._drop_unconverted()
            metrics.INGEST_BUFFERED_ROWS.set(0)

    def _drop_unconverted(self) -> None:
        """Rows still in the receive buffers at the very end (the stop interrupted a flush)."""
        lost: dict[tuple[str, str], int] = defaultdict(int)
        for buf in self._fast.values():
            lost[(DATASETS[buf.kind], buf.symbol)] += len(buf.frames)
            buf.frames, buf.recv_ns = [], []
        for (dataset, symbol), rows in self._buffers.items():
            lost[(dataset, symbol)] += len(rows)
        self._buffers = defaultdict(list)
        self._buffered = 0
        for (dataset, symbol), n in lost.items():
            if n:
                self.stats.rows_dropped[dataset] += n
                metrics.INGEST_ROWS_DROPPED.labels(
                    dataset=metrics.bounded(dataset, metrics.DATASETS),
                    reason="unwritable_at_stop",
                ).inc(n)
                if len(self._losses) < LOSSES_KEPT:
                    self._losses.append(f"{dataset} {symbol} {n:,} rows (unwritable_at_stop)")
                log.error(
                    "market data rows dropped",
                    dataset=dataset,
                    symbol=symbol,
                    rows=n,
                    reason="unwritable_at_stop",
                )

    async def _flush(self, force: bool = False) -> int:
        async with self._flush_lock:
            await self._convert_buffered()
            total = 0
            if self._held and (force or self.clock() >= self._retry_at):
                total = await self._write_held()
            self._enforce_cap()
            metrics.INGEST_BUFFERED_ROWS.set(self._buffered + self._held_rows)
        async with self._flushed:
            self._flushed.notify_all()
        return total

    async def _convert_buffered(self) -> None:
        """Take everything out of the receive buffers and hold it as store tables."""
        jobs: list[tuple[_RawBuffer, list[str], list[int]]] = []
        for buf in self._fast.values():
            if buf.frames:
                jobs.append((buf, buf.frames, buf.recv_ns))
                buf.frames, buf.recv_ns = [], []
        buffers, self._buffers = self._buffers, defaultdict(list)
        self._buffered = 0
        self._last_flush = self.clock()
        for buf, frames, recv in jobs:
            last = (self._last_trade if buf.kind == "trade" else self._last_agg).get(buf.symbol)
            # parse and check in a worker thread: Arrow releases the GIL, so the event loop
            # keeps receiving meanwhile
            try:
                conv = await asyncio.to_thread(
                    convert_batch,
                    buf.kind,
                    frames,
                    recv,
                    last if buf.kind != "bookTicker" else None,
                )
            except Exception as exc:  # a bug in conversion: said and counted, not fatal
                self._drop_invalid(DATASETS[buf.kind], buf.symbol, len(frames), exc)
                continue
            self._apply(buf, frames, conv)
            self._hold(DATASETS[buf.kind], buf.symbol, conv.table)
        for (dataset, symbol), rows in buffers.items():
            if rows:
                self._hold(dataset, symbol, self._rows_table(dataset, symbol, rows))

    def _rows_table(self, dataset: str, symbol: str, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows to a store table; rows that cannot be stored exactly are dropped, counted."""
        try:
            return rows_to_table(dataset, rows)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            good = []
            for r in rows:
                try:
                    rows_to_table(dataset, [r])
                except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                    self._drop_invalid(dataset, symbol, 1, exc)
                    continue
                good.append(r)
            return rows_to_table(dataset, good)

    def _hold(self, dataset: str, symbol: str, table: pa.Table) -> None:
        if table.num_rows:
            self._held.append(_Held(dataset, symbol, table))
            self._held_rows += table.num_rows

    async def _write_held(self) -> int:
        """Write held batches, one table per (dataset, symbol); keep what fails."""
        groups: dict[tuple[str, str], list[_Held]] = defaultdict(list)
        for h in self._held:
            groups[(h.dataset, h.symbol)].append(h)
        total = 0
        failed: BaseException | None = None
        for (dataset, symbol), batch in groups.items():
            tables = [h.table for h in batch]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            try:
                # Parquet encoding and fsync release the GIL: the event loop keeps receiving
                written = await asyncio.to_thread(self.store.write, dataset, symbol, table)
            except StoreSchemaError as exc:  # the data, not the disk: retrying cannot help
                self._drop_invalid(dataset, symbol, table.num_rows, exc)
            except Exception as exc:  # kept; retried after the backoff
                failed = exc
                self._write_failed(dataset, exc)
                continue
            else:
                self.stats.rows_written[dataset] += written
                total += written
            done = {id(h) for h in batch}
            self._held = [h for h in self._held if id(h) not in done]
            # (never below 0: a stop that gave up on this write has already reported it lost)
            self._held_rows = max(self._held_rows - table.num_rows, 0)
        if failed is None:
            self._write_recovered(total)
        else:
            self._retry_delay = min(
                max(self._retry_delay * 2, 0.5, self.flush_interval_s / 2), self.flush_retry_max_s
            )
            self._retry_at = self.clock() + self._retry_delay
        return total

    def _write_failed(self, dataset: str, exc: BaseException) -> None:
        self.stats.flush_failures += 1
        metrics.INGEST_FLUSH_FAILURES.labels(
            dataset=metrics.bounded(dataset, metrics.DATASETS)
        ).inc()
        metrics.INGEST_WRITE_OK.set(0)
        if self._failing_since is None:
            self._failing_since = self.clock()
        path = exc.path if isinstance(exc, StoreWriteError) else None
        self._last_error = str(exc)[:300] or type(exc).__name__
        # once per distinct failure: the same full disk must not write a line per attempt
        key = (
            type(exc).__name__,
            getattr(exc, "errno", None),
            str(path.parent if path is not None else dataset),
        )
        if key not in self._failures_logged:
            self._failures_logged.add(key)
            log.error(
                "ingest flush failed: rows kept in memory and retried",
                dataset=dataset,
                path=str(path) if path is not None else None,
                error=self._last_error,
                errno=getattr(exc, "errno", None),
                held_rows=self._held_rows,
                max_buffered_rows=self.max_buffered_rows,
            )

    def _write_recovered(self, written: int) -> None:
        if self._failing_since is not None:
            log.warning(
                "ingest flush recovered: held rows written",
                rows=written,
                failing_for_s=round(self.clock() - self._failing_since, 3),
                failures=self.stats.flush_failures,
            )
        self._failing_since = None
        self._retry_delay = 0.0
        self._retry_at = 0.0
        self._failures_logged.clear()
        metrics.INGEST_WRITE_OK.set(1)

    def _enforce_cap(self) -> None:
        """Over ``max_buffered_rows`` held: drop the oldest rows, each loss said and counted."""
        excess = self._buffered + self._held_rows - self.max_buffered_rows
        while excess > 0 and self._held:
            oldest = self._held[0]
            n = min(excess, oldest.table.num_rows)
            lost = _Held(oldest.dataset, oldest.symbol, oldest.table.slice(0, n))
            if n == oldest.table.num_rows:
                self._held.pop(0)
            else:
                oldest.table = oldest.table.slice(n)
            self._held_rows -= n
            excess -= n
            self._drop(lost, "buffer_full")

    def _drop(self, lost: _Held, reason: str) -> None:
        """Rows lost for good: counted, logged with what they covered, kept in `health()`."""
        n = lost.table.num_rows
        self.stats.rows_dropped[lost.dataset] += n
        metrics.INGEST_ROWS_DROPPED.labels(
            dataset=metrics.bounded(lost.dataset, metrics.DATASETS),
            reason=metrics.bounded(reason, metrics.INGEST_DROP_REASONS),
        ).inc(n)
        span = _describe(lost.dataset, lost.table)
        text = f"{lost.dataset} {lost.symbol} {n:,} rows {span} ({reason})"
        if len(self._losses) < LOSSES_KEPT:
            self._losses.append(text)
        log.error(
            "market data rows dropped",
            dataset=lost.dataset,
            symbol=lost.symbol,
            rows=n,
            covering=span,
            reason=reason,
            last_error=self._last_error,
        )

    def _drop_invalid(self, dataset: str, symbol: str, rows: int, exc: BaseException) -> None:
        self.stats.rows_dropped[dataset] += rows
        metrics.INGEST_ROWS_DROPPED.labels(
            dataset=metrics.bounded(dataset, metrics.DATASETS), reason="invalid"
        ).inc(rows)
        if len(self._losses) < LOSSES_KEPT:
            self._losses.append(f"{dataset} {symbol} {rows:,} rows (invalid: {str(exc)[:120]})")
        log.error(
            "market data rows dropped: they cannot be stored",
            dataset=dataset,
            symbol=symbol,
            rows=rows,
            error=repr(exc)[:300],
        )


def _log_snapshot_failure(task: asyncio.Task[None]) -> None:
    """A snapshot fetch that gave up (REST down) leaves the book unsynced: say so at once."""
    if not task.cancelled() and task.exception() is not None:
        log.error("order book snapshot failed", error=repr(task.exception())[:300])


def _describe(dataset: str, table: pa.Table) -> str:
    """The time (and id) range of ``table``, for a person deciding what to backfill."""
    parts = []
    tcol = PARTITION_TIME[dataset]
    if tcol in table.column_names and table.num_rows:
        lo, hi = pc.min(table[tcol]).as_py(), pc.max(table[tcol]).as_py()
        if lo is not None and hi is not None:
            parts.append(f"{tcol} {lo:%Y-%m-%dT%H:%M:%S.%f}Z..{hi:%Y-%m-%dT%H:%M:%S.%f}Z")
    for key in ("trade_id", "agg_id", "update_id"):
        if key in table.column_names and table.num_rows:
            parts.append(f"{key} {pc.min(table[key]).as_py()}..{pc.max(table[key]).as_py()}")
            break
    return ", ".join(parts)
