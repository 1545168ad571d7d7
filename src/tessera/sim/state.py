"""What the replay has revealed so far: the order book, trades and bars REST answers from.

`MarketState` moves forward with the replay's release position: the book applies every depth diff
released so far (recorded snapshot first, diffs with ``u <= lastUpdateId`` ignored as Binance's
own book procedure does), trades and aggregate trades are the released prefix of the market's
lists, and 1m bars are built from released trades (or taken from released kline frames). Other
intervals are resampled from 1m bars; ``1s`` bars are built from trades.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from tessera.sim.market import SimMarket
from tessera.sim.payloads import (
    AggTrade,
    Kline,
    Trade,
    bucket_close,
    bucket_open,
    finer,
    fmt8,
    resample,
)
from tessera.sim.recording import Snapshot


@dataclass
class Book:
    """A price-level book; quantities keep Binance's strings, prices are exact ``Decimal``."""

    last_update_id: int
    bids: dict[Decimal, str] = field(default_factory=dict)
    asks: dict[Decimal, str] = field(default_factory=dict)
    partial: bool = False  # built from diffs alone (no snapshot recorded)

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> Book:
        return cls(
            snap.last_update_id,
            {Decimal(p): q for p, q in snap.bids},
            {Decimal(p): q for p, q in snap.asks},
        )

    def apply(self, diff: dict[str, Any]) -> bool:
        """Apply a depth diff if it is newer than the book; returns whether it was applied."""
        u = int(diff["u"])
        if u <= self.last_update_id:
            return False
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for p, q in levels:
                price = Decimal(p)
                if Decimal(q) == 0:
                    side.pop(price, None)
                else:
                    side[price] = q
        self.last_update_id = u
        return True

    def top(self, limit: int) -> tuple[list[tuple[Decimal, str]], list[tuple[Decimal, str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])[:limit]
        return bids, asks

    def rest(self, limit: int) -> dict[str, object]:
        bids, asks = self.top(limit)
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[fmt8(p), q] for p, q in bids],
            "asks": [[fmt8(p), q] for p, q in asks],
        }


class MarketState:
    """The REST view of a market at the replay's release position (frames ``[0, position)``)."""

    def __init__(self, market: SimMarket) -> None:
        self.market = market
        self.position = 0
        self.books: dict[str, Book] = {}
        self._depth: dict[str, tuple[list[int], list[str]]] = {}
        self._depth_next: dict[str, int] = {}
        for sym in market.symbols:
            # spot diffs every 100 ms; USDⓈ-M recordings may hold the 0 ms (raw) diffs
            base = market.stream(f"{sym.lower()}@depth@100ms") or market.stream(
                f"{sym.lower()}@depth@0ms"
            )
            snap = market.snapshots.get(sym)
            if snap is not None:
                self.books[sym] = Book.from_snapshot(snap)
            elif base is not None:
                # No snapshot recorded: a book of the levels the diffs touch, nothing more.
                self.books[sym] = Book(-1, partial=True)
            if base is not None and sym in self.books:
                self._depth[sym] = (base.anchors, base.payloads)
                self._depth_next[sym] = 0
        self._bars: dict[str, list[Kline]] = {s: [] for s in market.symbols}
        self._bars_next: dict[str, int] = dict.fromkeys(market.symbols, 0)

    @property
    def last_event_ms(self) -> int:
        clock = self.market.clock_ms
        return clock[self.position - 1] if self.position > 0 else (clock[0] if clock else 0)

    def catch_up(self, position: int) -> None:
        """Reflect every frame up to and including ``position``."""
        self.advance_to(position + 1)

    def advance_to(self, n: int) -> None:
        """Reflect frames ``[0, n)``; lazy on purpose, REST calls it when it needs the state."""
        n = min(n, len(self.market.frames))
        if n <= self.position:
            return
        self.position = n
        for sym, (anchors, payloads) in self._depth.items():
            i = self._depth_next[sym]
            book = self.books[sym]
            while i < len(anchors) and anchors[i] < n:
                d = orjson.loads(payloads[i])
                if book.last_update_id < 0:
                    book.last_update_id = int(d["U"]) - 1
                book.apply(d)
                i += 1
            self._depth_next[sym] = i

    # --- trades ---------------------------------------------------------------------------------

    def _visible(self, anchors: list[int]) -> int:
        return bisect_left(anchors, self.position)

    def trades(self, symbol: str) -> list[Trade]:
        st = self.market.trades(symbol)
        return st.trades[: self._visible(st.anchors)]

    def recent_trades(self, symbol: str, limit: int) -> list[Trade]:
        st = self.market.trades(symbol)
        n = self._visible(st.anchors)
        return st.trades[max(0, n - limit) : n]

    def trades_from(self, symbol: str, from_id: int, limit: int) -> list[Trade]:
        st = self.market.trades(symbol)
        n = self._visible(st.anchors)
        ids = [t.id for t in st.trades[:n]]
        i = bisect_left(ids, from_id)
        return st.trades[i : min(n, i + limit)]

    def aggregates(
        self,
        symbol: str,
        limit: int,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[AggTrade]:
        """``/aggTrades`` semantics: from an id, within a time window, or the most recent."""
        anchors, aggs = self.market.aggregates(symbol)
        visible = aggs[: self._visible(anchors)]
        if from_id is not None:
            i = bisect_left([a.id for a in visible], from_id)
            visible = visible[i:]
        if start is not None or end is not None:
            lo = start if start is not None else -(1 << 62)
            hi = end if end is not None else 1 << 62
            visible = [a for a in visible if lo <= a.time <= hi]
        if from_id is not None or start is not None:
            return visible[:limit]
        return visible[-limit:]

    # --- klines ---------------------------------------------------------------------------------

    def bars_1m(self, symbol: str) -> list[Kline]:
        """Released 1m bars; the last one is the bar in progress. Minutes without trades get
        Binance's empty bar (previous close as OHLC, zero volume). A market of given bars of a
        longer interval (a 1h bar file) returns those bars: the finest this market has."""
        given = self.market.given_bars(symbol)
        if given is not None:
            n = self._visible(given.anchors)
            by_open: dict[int, Kline] = {}
            for b in given.bars[:n]:
                by_open[b.open_time] = b  # a later update of the same bar replaces it
            return [by_open[k] for k in sorted(by_open)]
        bars = self._bars[symbol]
        st = self.market.trades(symbol)
        n = self._visible(st.anchors)
        i = self._bars_next[symbol]
        for t in st.trades[i:n]:
            start = bucket_open(t.time, "1m")
            if bars and start > bars[-1].open_time:
                for gap in range(bars[-1].open_time + 60_000, start, 60_000):
                    bars.append(Kline.empty(gap, "1m", bars[-1].close))
            if not bars or start > bars[-1].open_time:
                bars.append(Kline.first(start, "1m", t))
            else:
                bars[-1].add(t)
        self._bars_next[symbol] = n
        return bars

    def klines(
        self,
        symbol: str,
        interval: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """``/klines``: from ``start`` ascending, else the last ``limit`` bars up to ``end``."""
        given = self.market.given_bars(symbol)
        if given is not None and given.interval != "1m":  # a bar file of longer bars
            if finer(interval, given.interval):
                return []  # finer than the data (the REST layer refuses it first)
            bars = self.bars_1m(symbol)
            if interval != given.interval:
                bars = resample(bars, interval)
        elif interval == "1s":
            bars = self._bars_1s(symbol, start, end, limit)
        elif interval == "1m":
            bars = self.bars_1m(symbol)
        else:
            bars = resample(self.bars_1m(symbol), interval)
        opens = [b.open_time for b in bars]
        lo = bisect_left(opens, bucket_open(start, interval)) if start is not None else 0
        hi = bisect_right(opens, end) if end is not None else len(bars)
        return bars[lo:hi][:limit] if start is not None else bars[lo:hi][-limit:]

    def _bars_1s(self, symbol: str, start: int | None, end: int | None, limit: int) -> list[Kline]:
        trades = self.trades(symbol)
        if not trades:
            return []
        times = [t.time for t in trades]
        if start is not None:
            lo_t = bucket_open(start, "1s")
            hi_t = lo_t + limit * 1000 - 1
            if end is not None:
                hi_t = min(hi_t, end + 999)
        else:
            hi_t = bucket_close(bucket_open(end if end is not None else times[-1], "1s"), "1s")
            lo_t = hi_t - limit * 1000 + 1
        bars: list[Kline] = []
        for t in trades[bisect_left(times, lo_t) : bisect_right(times, hi_t)]:
            s = bucket_open(t.time, "1s")
            if bars and s > bars[-1].open_time:
                for gap in range(bars[-1].open_time + 1000, s, 1000):
                    bars.append(Kline.empty(gap, "1s", bars[-1].close))
            if not bars or s > bars[-1].open_time:
                bars.append(Kline.first(s, "1s", t))
            else:
                bars[-1].add(t)
        return bars
