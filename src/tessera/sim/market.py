"""The simulated exchange's market state, advanced frame by frame by the replay.

It keeps what the REST endpoints must answer consistently with what the websocket already sent:
the order book (recorded snapshot + every replayed diff with ``u > lastUpdateId``), the trades
replayed so far (for ``/trades``, ``/historicalTrades``, ``/aggTrades``) and 1-minute klines
built from them. Derived streams (``@aggTrade``, ``@kline_1m``) are generated at load time with
Binance's field names and string-encoded decimals, so replay is a plain walk over frames.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from tessera.sim.recording import Frame, Recording, Snapshot

MINUTE_MS = 60_000
ZERO = Decimal(0)


def fmt8(value: Decimal) -> str:
    """Binance spot's decimal format: 8 places, as a string."""
    return f"{value:.8f}"


@dataclass
class Trade:
    id: int
    price: str
    qty: str
    time: int  # ms
    is_buyer_maker: bool

    def rest(self) -> dict[str, object]:
        quote = fmt8(Decimal(self.price) * Decimal(self.qty))
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "quoteQty": quote,
            "time": self.time,
            "isBuyerMaker": self.is_buyer_maker,
            "isBestMatch": True,
        }

    def agg(self) -> dict[str, object]:
        # One trade per aggregate: a valid aggregation (ids and quantities sum exactly).
        return {
            "a": self.id,
            "p": self.price,
            "q": self.qty,
            "f": self.id,
            "l": self.id,
            "T": self.time,
            "m": self.is_buyer_maker,
            "M": True,
        }


@dataclass
class Kline:
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    trades: int = 0
    taker_base: Decimal = ZERO
    taker_quote: Decimal = ZERO
    first_id: int = -1
    last_id: int = -1

    @property
    def close_time(self) -> int:
        return self.open_time + MINUTE_MS - 1

    def add(self, t: Trade) -> None:
        p, q = Decimal(t.price), Decimal(t.qty)
        self.high, self.low, self.close = max(self.high, p), min(self.low, p), p
        self.volume += q
        self.quote_volume += p * q
        self.trades += 1
        if not t.is_buyer_maker:  # the buyer was the taker
            self.taker_base += q
            self.taker_quote += p * q
        if self.first_id < 0:
            self.first_id = t.id
        self.last_id = t.id

    def rest(self) -> list[object]:
        return [
            self.open_time,
            fmt8(self.open),
            fmt8(self.high),
            fmt8(self.low),
            fmt8(self.close),
            fmt8(self.volume),
            self.close_time,
            fmt8(self.quote_volume),
            self.trades,
            fmt8(self.taker_base),
            fmt8(self.taker_quote),
            "0",
        ]

    def ws(self, symbol: str, event_time: int, closed: bool) -> dict[str, object]:
        return {
            "e": "kline",
            "E": event_time,
            "s": symbol,
            "k": {
                "t": self.open_time,
                "T": self.close_time,
                "s": symbol,
                "i": "1m",
                "f": self.first_id,
                "L": self.last_id,
                "o": fmt8(self.open),
                "c": fmt8(self.close),
                "h": fmt8(self.high),
                "l": fmt8(self.low),
                "v": fmt8(self.volume),
                "n": self.trades,
                "x": closed,
                "q": fmt8(self.quote_volume),
                "V": fmt8(self.taker_base),
                "Q": fmt8(self.taker_quote),
                "B": "0",
            },
        }


def derive_streams(rec: Recording) -> None:
    """Add ``@aggTrade`` and ``@kline_1m`` frames derived from the recorded ``@trade`` frames."""
    out: list[Frame] = []
    candles: dict[str, Kline] = {}
    last_kline_emit: dict[str, int] = {}
    for f in rec.frames:
        out.append(f)
        if f.kind != "trade":
            continue
        d = orjson.loads(f.data)
        f.parsed = d
        sym = f.symbol
        t = Trade(int(d["t"]), d["p"], d["q"], int(d["T"]), bool(d["m"]))
        agg = {"e": "aggTrade", "E": d["E"], "s": sym, **t.agg()}
        out.append(
            Frame(
                f.recv_ns,
                f"{sym.lower()}@aggTrade",
                "aggTrade",
                sym,
                orjson.dumps(agg).decode(),
                agg,
            )
        )
        minute = t.time - t.time % MINUTE_MS
        k = candles.get(sym)
        if k is not None and minute > k.open_time:
            closed = k.ws(sym, int(d["E"]), closed=True)
            out.append(
                Frame(
                    f.recv_ns,
                    f"{sym.lower()}@kline_1m",
                    "kline",
                    sym,
                    orjson.dumps(closed).decode(),
                    closed,
                )
            )
            k = None
        if k is None:
            p = Decimal(t.price)
            k = candles[sym] = Kline(minute, p, p, p, p)
        k.add(t)
        # Binance pushes kline updates about every 2 seconds.
        if int(d["E"]) - last_kline_emit.get(sym, 0) >= 2000:
            last_kline_emit[sym] = int(d["E"])
            upd = k.ws(sym, int(d["E"]), closed=False)
            out.append(
                Frame(
                    f.recv_ns,
                    f"{sym.lower()}@kline_1m",
                    "kline",
                    sym,
                    orjson.dumps(upd).decode(),
                    upd,
                )
            )
    rec.frames = out


@dataclass
class Book:
    last_update_id: int
    bids: dict[Decimal, str] = field(default_factory=dict)
    asks: dict[Decimal, str] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> Book:
        return cls(
            snap.last_update_id,
            {Decimal(p): q for p, q in snap.bids},
            {Decimal(p): q for p, q in snap.asks},
        )

    def apply(self, diff: dict[str, object]) -> bool:
        """Apply a depth diff if it is newer than the book; returns whether it was applied."""
        u = int(diff["u"])  # type: ignore[call-overload]
        if u <= self.last_update_id:
            return False
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for p, q in levels:  # type: ignore[attr-defined]
                price = Decimal(p)
                if Decimal(q) == 0:
                    side.pop(price, None)
                else:
                    side[price] = q
        self.last_update_id = u
        return True

    def rest(self, limit: int) -> dict[str, object]:
        bids = sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[fmt8(p), q] for p, q in bids],
            "asks": [[fmt8(p), q] for p, q in asks],
        }


class MarketState:
    """What the replay has revealed so far, per symbol."""

    def __init__(self, rec: Recording) -> None:
        self.frames = rec.frames
        self.books = {s: Book.from_snapshot(snap) for s, snap in rec.snapshots.items()}
        self.trades: dict[str, list[Trade]] = {s: [] for s in rec.symbols}
        self.klines: dict[str, list[Kline]] = {s: [] for s in rec.symbols}
        self.last_event_ms = 0
        self._done = 0  # frames[:_done] are reflected in this state

    def catch_up(self, position: int) -> None:
        """Reflect every frame up to and including ``position``.

        Lazy on purpose: the replay only moves a cursor; the book and trade history are brought
        up to date when a REST request needs them, keeping the replay loop cheap.
        """
        while self._done <= position and self._done < len(self.frames):
            self.on_frame(self.frames[self._done])
            self._done += 1

    def on_frame(self, f: Frame) -> None:
        if f.kind == "depth":
            book = self.books.get(f.symbol)
            if book is not None:
                if f.parsed is None:
                    f.parsed = orjson.loads(f.data)
                book.apply(f.parsed)
        elif f.kind == "trade":
            d: dict[str, Any] = f.parsed if f.parsed is not None else orjson.loads(f.data)
            t = Trade(int(d["t"]), d["p"], d["q"], int(d["T"]), bool(d["m"]))
            self.trades[f.symbol].append(t)
            self._kline(f.symbol, t)
            self.last_event_ms = int(d["E"])

    def _kline(self, symbol: str, t: Trade) -> None:
        minute = t.time - t.time % MINUTE_MS
        ks = self.klines[symbol]
        if not ks or ks[-1].open_time < minute:
            p = Decimal(t.price)
            ks.append(Kline(minute, p, p, p, p))
        ks[-1].add(t)

    def recent_trades(self, symbol: str, limit: int) -> list[Trade]:
        return self.trades[symbol][-limit:]

    def trades_from(self, symbol: str, from_id: int, limit: int) -> list[Trade]:
        ts = self.trades[symbol]
        i = bisect_left([t.id for t in ts], from_id) if ts else 0
        return ts[i : i + limit]

    def klines_between(
        self, symbol: str, start: int | None, end: int | None, limit: int
    ) -> list[Kline]:
        ks = [
            k
            for k in self.klines[symbol]
            if (start is None or k.open_time >= start) and (end is None or k.open_time <= end)
        ]
        return ks[:limit] if start is not None else ks[-limit:]
