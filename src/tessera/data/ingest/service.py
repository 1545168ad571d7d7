"""`IngestService`: Binance spot websocket streams -> the Parquet store, gap-free and deduplicated.

One asyncio task per connection reads frames; handlers turn them into rows, detect sequence gaps
and keep the order books in sync; a batcher flushes rows to `ParquetStore` (in a worker thread)
every ``flush_rows`` rows or ``flush_interval_s`` seconds. After a disconnect it reconnects with
exponential backoff and jitter, and backfills over REST what the stream missed (trades by id,
klines by time), so a disconnect leaves no hole. Shortly before Binance's 24 h connection limit
it opens a second connection, switches over when that one delivers, and closes the first — the
overlap is deduplicated by id.

Malformed frames are counted (`tessera_ws_malformed_total`), logged once per kind with the raw
payload truncated, and skipped. `stop()` (SIGINT/SIGTERM) flushes everything buffered.

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

from tessera import metrics
from tessera.data.ingest.book import BookState, Diff, OrderBook
from tessera.data.ingest.fastpath import (
    DATASETS,
    MSG_TYPES,
    Converted,
    convert_batch,
    frame_stream,
    warm_up,
)
from tessera.data.ingest.messages import (
    MS,
    MalformedMessageError,
    agg_trade_row,
    book_ticker_row,
    decode,
    depth_levels,
    kline_row,
    stream_kind,
    trade_row,
)
from tessera.data.store import ParquetStore, rows_to_table
from tessera.logging import get_logger

log = get_logger(__name__)


def stream_names(
    symbols: Sequence[str], kinds: Sequence[str], intervals: Sequence[str]
) -> list[str]:
    names = []
    for s in symbols:
        low = s.lower()
        for k in kinds:
            if k == "kline":
                names += [f"{low}@kline_{i}" for i in intervals]
            elif k == "depth":
                names.append(f"{low}@depth@100ms")
            else:
                names.append(f"{low}@{k}")
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
    rows_written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_stream: dict[str, int] = field(default_factory=lambda: defaultdict(int))


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
    ) -> None:
        self.store = store
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url
        self.symbols = [s.upper() for s in symbols]
        self.streams = stream_names(self.symbols, kinds, intervals)
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

    # --- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration_s: float | None = None) -> IngestStats:
        """Ingest until `stop()` (or ``duration_s``); always flushes before returning."""
        self._restore_positions()
        warm_up()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self._session = session
            self.rest = RestClient(self.rest_url, session, api_key=self.api_key)
            ticker = asyncio.create_task(self._periodic_flush())
            conn = asyncio.create_task(self._connection_loop())
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait(
                    [conn, stopper], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for t in (conn, stopper, ticker, *self._snapshot_tasks.values()):
                    t.cancel()
                for t in (conn, stopper, ticker, *self._snapshot_tasks.values()):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                if self._backfills:
                    await asyncio.gather(*self._backfills, return_exceptions=True)
                if self._flush_task is not None:
                    with contextlib.suppress(Exception):
                        await self._flush_task
                await self.flush()
                metrics.WS_CONNECTED.set(0)
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
                    metrics.WS_CONNECTED.set(1)
                    self.connected.set()
                    backoff = 0.5
                    await self.flush()  # so that the catch-up starts after the last trade held
                    for sym in self.symbols:  # a fresh connection starts a fresh book sync
                        if "depth" in self._kinds():
                            self._resync_book(sym, reset=True)
                        if "trade" in self._kinds() and sym in self._last_trade:
                            self._spawn(self._catch_up_trades(sym))
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
            metrics.WS_CONNECTED.set(0)
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
        metrics.WS_BYTES.inc(len(raw))
        try:
            stream, data = decode(raw)
            if stream is None:
                if "result" in data or "id" in data:
                    return  # subscription acks
                raise MalformedMessageError("control", "frame without a stream name")
            kind = stream_kind(stream)
            symbol = stream.split("@", 1)[0].upper()
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
        metrics.WS_MALFORMED.labels(stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)).inc()
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
                outcome = book.on_diff(Diff(first, last, bids, asks))
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

    def _apply(self, buf: _RawBuffer, frames: list[str], conv: Converted) -> None:
        """Book-keeping of a converted batch, on the event loop: ids, gaps, metrics, logs."""
        kind, symbol = buf.kind, buf.symbol
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
            latest = await self.rest.get("/api/v3/trades", {"symbol": symbol, "limit": 1})
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
                        "/api/v3/historicalTrades",
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
                    "/api/v3/klines",
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
            self._snapshot_tasks[symbol] = asyncio.get_running_loop().create_task(
                self._fetch_snapshot(symbol)
            )

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self.rest is not None
        book = self.books[symbol]
        for attempt in range(10):
            # Let a few diffs buffer first, as Binance's procedure asks.
            await asyncio.sleep(0.05 * (attempt + 1))
            snap = await self.rest.get(
                "/api/v3/depth", {"symbol": symbol, "limit": self.depth_limit}
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
        while True:
            await asyncio.sleep(min(self.flush_interval_s, 1.0))
            if self._buffered and self.clock() - self._last_flush >= self.flush_interval_s:
                await self.flush()

    async def flush(self) -> int:
        """Write everything buffered; returns rows written (after dedup).

        Shielded: cancelling the caller (shutdown) must not abandon rows already taken out of
        the buffers; the write completes and a later `flush()` waits for it on the lock.
        """
        return await asyncio.shield(self._flush())

    def _convert_and_write(
        self, kind: str, symbol: str, frames: list[str], recv: list[int], last: int | None
    ) -> tuple[Converted, int]:
        conv = convert_batch(kind, frames, recv, last if kind != "bookTicker" else None)
        return conv, self.store.write(DATASETS[kind], symbol, conv.table)

    async def _flush(self) -> int:
        async with self._flush_lock:
            jobs: list[tuple[_RawBuffer, list[str], list[int]]] = []
            for buf in self._fast.values():
                if buf.frames:
                    jobs.append((buf, buf.frames, buf.recv_ns))
                    buf.frames, buf.recv_ns = [], []
            buffers, self._buffers = self._buffers, defaultdict(list)
            self._buffered = 0
            self._last_flush = self.clock()
            total = 0
            for buf, frames, recv in jobs:
                dataset = DATASETS[buf.kind]
                last = (self._last_trade if buf.kind == "trade" else self._last_agg).get(buf.symbol)
                # parse, check and write in a worker thread: Arrow and Parquet release the GIL,
                # so the event loop keeps receiving meanwhile
                conv, written = await asyncio.to_thread(
                    self._convert_and_write, buf.kind, buf.symbol, frames, recv, last
                )
                self._apply(buf, frames, conv)
                self.stats.rows_written[dataset] += written
                total += written
            for (dataset, symbol), rows in buffers.items():
                if not rows:
                    continue
                table = rows_to_table(dataset, rows)
                written = await asyncio.to_thread(self.store.write, dataset, symbol, table)
                self.stats.rows_written[dataset] += written
                total += written
            return total
