"""`MarketFeed`: the bot's own market-data connection (closed klines, trades, book tops).

Binance's combined stream (``/stream?streams=a/b/c``) on one websocket. Closed klines
(``"x": true``) become `Bar` objects for features, model and strategies; trades and book tops
feed marks and the paper exchange. Every callback gets the local receive time next to the
exchange event time: the latency histograms measure from the receive time.

A malformed message is counted, logged once per kind and skipped. A lost connection is retried
with jittered exponential back-off; after every reconnect ``on_reconnect`` runs (the bot
reconciles orders and re-fetches missed bars) before messages flow to the handlers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from tessera import metrics
from tessera.logging import get_logger
from tessera.strategies.base import Bar, BookTop, TradeTick

log = get_logger(__name__)
MS = 1_000_000


class MarketHandler(Protocol):
    def on_bar(self, bar: Bar, event_ns: int, recv_ns: int) -> None: ...

    def on_trade(self, tick: TradeTick, recv_ns: int) -> None: ...

    def on_book(self, book: BookTop, recv_ns: int) -> None: ...


def feed_streams(symbols: Sequence[str], interval: str, book: bool = True) -> list[str]:
    out = []
    for s in symbols:
        low = s.lower()
        out += [f"{low}@kline_{interval}", f"{low}@trade"]
        if book:
            out.append(f"{low}@bookTicker")
    return out


def parse_kline(d: dict[str, Any]) -> Bar | None:
    """A closed kline event -> `Bar`; None while the bar is still open."""
    k = d["k"]
    if not k["x"]:
        return None
    return Bar(
        symbol=str(k["s"]),
        open_time=int(k["t"]) * MS,
        close_time=(int(k["T"]) + 1) * MS,
        open=float(k["o"]),
        high=float(k["h"]),
        low=float(k["l"]),
        close=float(k["c"]),
        volume=float(k["v"]),
        quote_volume=float(k["q"]),
        taker_buy_volume=float(k["V"]),
    )


def bar_from_rest(symbol: str, row: Sequence[Any]) -> Bar:
    """One row of ``GET /api/v3/klines`` -> `Bar`."""
    return Bar(
        symbol=symbol,
        open_time=int(row[0]) * MS,
        close_time=(int(row[6]) + 1) * MS,
        open=float(row[1]),
        high=float(row[2]),
        low=float(row[3]),
        close=float(row[4]),
        volume=float(row[5]),
        quote_volume=float(row[7]),
        taker_buy_volume=float(row[9]),
    )


@dataclass
class FeedStats:
    messages: int = 0
    bars: int = 0
    malformed: int = 0
    reconnects: int = 0


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
        count_metrics: bool = True,
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self.symbols = [s.upper() for s in symbols]
        self.streams = feed_streams(self.symbols, interval, book)
        self.handler = handler
        self.on_reconnect = on_reconnect
        self.max_backoff_s = max_backoff_s
        self.count_metrics = count_metrics
        self.stats = FeedStats()
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._logged: set[str] = set()

    def stop(self) -> None:
        self._stop.set()

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
                        self.connected.set()
                        metrics.WS_CONNECTED.set(1)
                        backoff = 0.25
                        if not first and self.on_reconnect is not None:
                            await self.on_reconnect()
                        first = False
                        await self._read(ws)
                except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                    reason = "error"
                    log.warning("market feed connection failed", error=str(exc)[:200])
                self.connected.clear()
                metrics.WS_CONNECTED.set(0)
                if self._stop.is_set():
                    return
                self.stats.reconnects += 1
                metrics.WS_RECONNECTS.labels(reason=reason).inc()
                delay = min(backoff, self.max_backoff_s) * (0.5 + random.random())
                log.info("market feed reconnecting", reason=reason, in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                backoff = min(backoff * 2, self.max_backoff_s)

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
                    self.on_frame(msg.data, time.time_ns())
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
        finally:
            stopper.cancel()

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        """Decode one combined-stream frame and hand it to the handler."""
        self.stats.messages += 1
        kind = "control"
        try:
            doc = orjson.loads(raw)
            if "result" in doc and "id" in doc:  # a SUBSCRIBE answer
                return
            stream, d = doc["stream"], doc["data"]
            kind = stream.split("@", 1)[1].split("_", 1)[0]
            if self.count_metrics:
                metrics.WS_MESSAGES.labels(
                    stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
                ).inc()
            if kind == "kline":
                bar = parse_kline(d)
                if bar is not None:
                    self.stats.bars += 1
                    event_ns = int(d["E"]) * MS
                    metrics.market_data_seen(bar.symbol, event_ns, recv_ns)
                    self.handler.on_bar(bar, event_ns, recv_ns)
            elif kind == "trade":
                tick = TradeTick(
                    symbol=str(d["s"]),
                    ts=int(d["T"]) * MS,
                    price=float(d["p"]),
                    qty=float(d["q"]),
                    is_buyer_maker=bool(d["m"]),
                )
                if self.count_metrics:
                    metrics.market_data_seen(tick.symbol, int(d["E"]) * MS, recv_ns)
                self.handler.on_trade(tick, recv_ns)
            elif kind == "bookTicker":
                book = BookTop(
                    symbol=str(d["s"]),
                    ts=recv_ns,  # spot bookTicker carries no event time
                    bid=float(d["b"]),
                    bid_qty=float(d["B"]),
                    ask=float(d["a"]),
                    ask_qty=float(d["A"]),
                )
                self.handler.on_book(book, recv_ns)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.stats.malformed += 1
            metrics.WS_MALFORMED.labels(
                stream_type=metrics.bounded(kind, metrics.STREAM_TYPES)
            ).inc()
            if kind not in self._logged:  # once per kind: a broken stream must not flood logs
                self._logged.add(kind)
                log.warning("malformed market message skipped", kind=kind, error=str(exc)[:200])
