"""`MarketFeed`: the bot's own market-data connection (closed klines, trades, book tops).

Binance's combined stream (``/stream?streams=a/b/c``) on one websocket; the payloads are read
by `tessera.venues.binance` (klines, trades, book tops, stream names). Closed klines
(``"x": true``) become `Bar` objects for features, model and strategies; trades and book tops
feed marks and the paper exchange. Every callback gets the local receive time next to the
exchange event time: the latency histograms measure from the receive time.

A malformed message is counted, logged once per kind and skipped. A lost connection is retried
with jittered exponential back-off; after every reconnect ``on_reconnect`` runs (the bot
reconciles orders and re-fetches missed bars) before messages flow to the handlers again.

A connection can also stay open and go silent (a stalled exchange gateway, a half-dead proxy, a
replay that ended): the socket's heartbeat still answers, so only the data's own cadence shows
it. Binance pushes a symbol's kline stream every 1-2 s while it trades, and its trade and book
streams more often, so a symbol with no frame on any of its streams for ``stall_after_s``
(default: 30 s, or 1.5 bars for longer bars) means the feed is stalled: the feed says so (log,
``tessera_ws_reconnects{reason="stale"}``, `stalled`, which the bot's readiness reads) and
reconnects; it stays stalled until every symbol has spoken again.

The bot's embedded ingest rides on this connection (`attach`): its streams join the
subscription, every frame reaches it before the feed's own parsing, with the same receive time,
and so does every connect and disconnect — one connection per bot, whose state
``tessera_ws_connected{source="feed"}`` shows. The connection's numbers (messages, bytes,
malformed frames, reconnects) are counted here, once per frame, whoever else reads it.

On Binance USDⓈ-M the bot's perpetual risk marks positions at the venue's mark price (Binance
liquidates on the mark): given ``on_mark``, the feed also subscribes each symbol's mark price
stream (the venue's name for it, ``<symbol>@markPrice@1s``), reads its ``markPriceUpdate``
frames with the venue's parser (`tessera.venues.binance_usdm.market_data.mark_price_row`; a
malformed one is a `ValueError`, counted and skipped like any other) and hands each one to
``on_mark(symbol, mark, event_ms)``.

`lag_ns` measures how late a frame arrives compared with the feed's usual lag (the smallest
``receive time - event time`` of the last minutes: network latency plus any clock offset,
including the offset of a replayed recording). A bar delivered after a stall arrives late by
this measure, and the bot does not act on it (``max_bar_age_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import aiohttp
import orjson

from tessera import metrics
from tessera.data.intervals import interval_ns
from tessera.live.clock import MarketClock
from tessera.logging import get_logger
from tessera.strategies.base import Bar, BookTop, TradeTick
from tessera.venues.binance.klines import parse_kline
from tessera.venues.binance.streams import feed_streams
from tessera.venues.binance.ticks import book_top, trade_tick
from tessera.venues.binance_usdm.market_data import mark_price_row
from tessera.venues.binance_usdm.venue import stream_names as usdm_stream_names

log = get_logger(__name__)
MS = 1_000_000


class FrameSink(Protocol):
    """Takes the raw frames of the feed's connection: the embedded `IngestService` (shared)."""

    @property
    def streams(self) -> Sequence[str]: ...

    def push(self, raw: str | bytes, recv_ns: int) -> None: ...

    def on_reconnect(self) -> None: ...

    def on_disconnect(self) -> None: ...


class MarketHandler(Protocol):
    def on_bar(self, bar: Bar, event_ns: int, recv_ns: int) -> None: ...

    def on_trade(self, tick: TradeTick, recv_ns: int) -> None: ...

    def on_book(self, book: BookTop, recv_ns: int) -> None: ...


def _log_subscribe_failure(sent: asyncio.Future[None]) -> None:
    """The connection went down while subscribing: the next one subscribes in its URL."""
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("could not subscribe the ingest's streams", error=repr(sent.exception()))


@dataclass
class FeedStats:
    messages: int = 0
    bars: int = 0
    malformed: int = 0
    reconnects: int = 0
    stalls: int = 0


class LagBaseline:
    """The smallest ``receive - event`` time of the recent past, in buckets of ``bucket_ns``:
    the feed's normal lag. A frame's lag above it is delay (a stall, a backlog), whatever the
    clocks' offset."""

    def __init__(self, window_ns: int = 300_000_000_000, buckets: int = 10) -> None:
        self.bucket_ns = max(window_ns // buckets, 1)
        self.buckets = buckets
        self._mins: dict[int, int] = {}

    def observe(self, event_ns: int, recv_ns: int) -> None:
        key = recv_ns // self.bucket_ns
        lag = recv_ns - event_ns
        if lag < self._mins.get(key, lag + 1):
            self._mins[key] = lag
        if len(self._mins) > self.buckets:
            for old in sorted(self._mins)[: len(self._mins) - self.buckets]:
                del self._mins[old]

    def baseline(self) -> int | None:
        return min(self._mins.values()) if self._mins else None

    def delay_ns(self, event_ns: int, recv_ns: int) -> int:
        """How much later than usual an event stamped ``event_ns`` arrived at ``recv_ns``."""
        base = self.baseline()
        if base is None:
            return 0
        return max(recv_ns - event_ns - base, 0)


class MarketFeed:
    def __init__(
        self,
        ws_url: str,
        symbols: Sequence[str],
        interval: str,
        handler: MarketHandler,
        *,
        book: bool = True,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        max_backoff_s: float = 30.0,
        stall_after_s: float | None = None,
        market_clock: MarketClock | None = None,
        on_mark: Callable[[str, Decimal, int], None] | None = None,
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self.symbols = [s.upper() for s in symbols]
        self.streams = feed_streams(self.symbols, interval, book)
        self.on_mark = on_mark  # USDⓈ-M: (symbol, mark price, event ms) of each mark frame
        if on_mark is not None:
            self.streams += [usdm_stream_names(s, interval)["markPrice"] for s in self.symbols]
        self._own = frozenset(self.streams)  # what the handler hears; `streams` may grow
        self.sink: FrameSink | None = None
        self._subscribing: asyncio.Future[None] | None = None
        self.handler = handler
        self.market_clock = market_clock  # told every frame's exchange event time
        self.on_reconnect = on_reconnect
        self.max_backoff_s = max_backoff_s
        self.stats = FeedStats()
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._logged: set[str] = set()
        if stall_after_s is None:
            stall_after_s = max(30.0, 1.5 * interval_ns(interval) / 1e9)
        self.stall_after_ns = int(stall_after_s * 1e9)
        # symbol -> receive ns of its newest kline frame (open or closed bar)
        self.last_seen_ns: dict[str, int] = {}
        self.stalled = False
        self._spoke: set[str] = set()  # symbols whose kline stream spoke since the stall
        self.lag = LagBaseline()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def healthy(self) -> bool:
        """Connected and every kline stream speaking at its cadence."""
        return self.connected.is_set() and not self.stalled

    def stop(self) -> None:
        self._stop.set()

    def attach(self, sink: FrameSink) -> None:
        """Share this connection with ``sink``: subscribe its streams too (on the open
        connection with Binance's ``SUBSCRIBE``, and in every later connection's URL), give it
        every frame and tell it of every connect and disconnect from now on. Synchronous: no
        frame is received between this call and the caller's next await."""
        if self.sink is not None:
            raise RuntimeError("the feed already shares its connection with an ingest")
        extra = [s for s in sink.streams if s not in self.streams]
        self.streams += extra
        self.sink = sink
        ws = self._ws
        if ws is None or ws.closed or not self.connected.is_set():
            return  # the next connection subscribes everything and tells the sink
        if extra:
            request = orjson.dumps({"method": "SUBSCRIBE", "params": extra, "id": 1}).decode()
            self._subscribing = asyncio.ensure_future(ws.send_str(request))
            self._subscribing.add_done_callback(_log_subscribe_failure)
        sink.on_reconnect()

    @property
    def url(self) -> str:
        return f"{self.ws_url}/stream?streams={'/'.join(self.streams)}"

    async def run(self) -> None:
        backoff = 0.25
        first = True
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                reason = "closed"
                try:
                    async with session.ws_connect(self.url, heartbeat=30, max_msg_size=0) as ws:
                        self._ws = ws
                        connected_at = time.time_ns()
                        self.last_seen_ns = dict.fromkeys(self.symbols, connected_at)
                        self._spoke = set()
                        self.connected.set()
                        metrics.WS_CONNECTED.labels(source="feed").set(1)
                        if self.sink is not None:
                            self.sink.on_reconnect()
                        if not first and self.on_reconnect is not None:
                            await self.on_reconnect()
                        first = False
                        watchdog = asyncio.ensure_future(self._watch_stall(ws))
                        try:
                            await self._read(ws)
                        finally:
                            watchdog.cancel()
                        if watchdog.done() and not watchdog.cancelled() and watchdog.result():
                            reason = "stale"
                        elif not self.stalled:
                            backoff = 0.25  # a connection that delivered data resets back-off
                except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                    reason = "error"
                    log.warning("market feed connection failed", error=str(exc)[:200])
                self._ws = None
                if self.sink is not None and self.connected.is_set():
                    self.sink.on_disconnect()
                self.connected.clear()
                metrics.WS_CONNECTED.labels(source="feed").set(0)
                if self._stop.is_set():
                    return
                self.stats.reconnects += 1
                metrics.WS_RECONNECTS.labels(reason=reason).inc()
                delay = min(backoff, self.max_backoff_s) * (0.5 + random.random())
                log.info("market feed reconnecting", reason=reason, in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                backoff = min(backoff * 2, self.max_backoff_s)

    def silent_symbols(self, now_ns: int) -> list[str]:
        """Symbols whose streams have all been silent for longer than ``stall_after_s``."""
        return [s for s, t in self.last_seen_ns.items() if now_ns - t > self.stall_after_ns]

    async def _watch_stall(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Close ``ws`` when a symbol goes silent (returns True then): the socket stays
        open through a stall, and only a new connection can bring the data back."""
        period = min(max(self.stall_after_ns / 4e9, 0.05), 1.0)
        while True:
            await asyncio.sleep(period)
            silent = self.silent_symbols(time.time_ns())
            if silent:
                self.stalled = True
                self.stats.stalls += 1
                log.error(
                    "market data stalled: reconnecting",
                    symbols=silent,
                    silent_s=round(self.stall_after_ns / 1e9, 1),
                )
                await ws.close()
                return True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                receive = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait(
                    {receive, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done:
                    receive.cancel()
                    return
                msg = receive.result()
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    recv_ns = time.time_ns()
                    if self.sink is not None:
                        self.sink.push(msg.data, recv_ns)
                    self.on_frame(msg.data, recv_ns)
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
        finally:
            stopper.cancel()

    def _alive(self, symbol: str, recv_ns: int) -> None:
        self.last_seen_ns[symbol] = recv_ns
        if self.stalled:
            self._spoke.add(symbol)
            if self._spoke.issuperset(self.symbols):
                self.stalled = False
                log.info("market data flowing again")

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        """Decode one combined-stream frame and hand it to the handler (only the feed's own
        streams: one the ingest added is counted here and parsed there)."""
        self.stats.messages += 1
        metrics.WS_BYTES.inc(len(raw))
        kind = "control"
        try:
            doc = orjson.loads(raw)
            if "result" in doc and "id" in doc:  # a SUBSCRIBE answer
                return
            stream, d = doc["stream"], doc["data"]
            kind = stream.split("@", 1)[1].split("_", 1)[0].split("@", 1)[0]
            metrics.WS_MESSAGES.labels(
                stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
            ).inc()
            if stream not in self._own:
                return
            self._alive(str(d["s"]), recv_ns)
            if kind == "kline":
                event_ns = int(d["E"]) * MS
                self.lag.observe(event_ns, recv_ns)
                if self.market_clock is not None:
                    self.market_clock.observe(str(d["s"]), int(d["E"]))
                bar = parse_kline(d)
                if bar is not None:
                    self.stats.bars += 1
                    metrics.market_data_seen(bar.symbol, event_ns, recv_ns)
                    self.handler.on_bar(bar, event_ns, recv_ns)
            elif kind == "trade":
                tick = trade_tick(d)
                if self.market_clock is not None:
                    self.market_clock.observe(tick.symbol, int(d["E"]))
                metrics.market_data_seen(tick.symbol, int(d["E"]) * MS, recv_ns)
                self.handler.on_trade(tick, recv_ns)
            elif kind == "bookTicker":
                self.handler.on_book(book_top(d, recv_ns), recv_ns)
            elif kind == "markPrice" and self.on_mark is not None:
                row = mark_price_row(d, recv_ns)
                event_ms = row["event_time"] // MS
                if self.market_clock is not None:
                    self.market_clock.observe(str(d["s"]), event_ms)
                self.on_mark(str(d["s"]), Decimal(row["mark_price"]), event_ms)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.stats.malformed += 1
            metrics.WS_MALFORMED.labels(
                stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
            ).inc()
            if kind not in self._logged:  # once per kind: a broken stream must not flood logs
                self._logged.add(kind)
                log.warning("malformed market message skipped", kind=kind, error=str(exc)[:200])
