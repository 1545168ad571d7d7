"""Binance spot payloads: the records the simulator serves and how Binance spells them.

Pure code, no I/O. Prices and quantities stay exact: recorded strings are passed through as
received; computed values (sums, quote quantities, OHLC of derived bars) are ``Decimal`` and
rendered with Binance spot's 8 decimal places (``"61837.63000000"``).
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

ZERO = Decimal(0)
EIGHT_PLACES = Decimal("0.00000001")
SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
# 1970-01-01 was a Thursday; Binance's weekly bars open on Mondays (00:00 UTC).
_FIRST_MONDAY_MS = 4 * DAY_MS

# Every kline interval Binance spot accepts, with its fixed length (None: calendar month).
INTERVAL_MS: dict[str, int | None] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
    "1M": None,
}


def finer(a: str, b: str) -> bool:
    """Interval ``a`` is shorter than ``b`` (a month, of varying length, is the longest)."""
    return (INTERVAL_MS[a] or 1 << 62) < (INTERVAL_MS[b] or 1 << 62)


def fmt8(value: Decimal) -> str:
    """Binance spot's decimal format: a string with exactly 8 places."""
    return f"{value:.8f}"


def fmt_plain(value: Decimal) -> str:
    """Binance's ``quoteQty`` format: at most 8 places, trailing zeros dropped (``"48.000012"``)."""
    text = f"{value.quantize(EIGHT_PLACES, rounding=ROUND_DOWN):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def bucket_open(t_ms: int, interval: str) -> int:
    """Open time (ms) of the ``interval`` bar that contains ``t_ms``."""
    width = INTERVAL_MS[interval]
    if width is None:
        d = datetime.fromtimestamp(t_ms / 1000, UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)
    if interval == "1w":
        return (t_ms - _FIRST_MONDAY_MS) // width * width + _FIRST_MONDAY_MS
    return t_ms - t_ms % width


def bucket_close(open_ms: int, interval: str) -> int:
    """Close time of the bar opening at ``open_ms``: the next bar's open minus 1 ms."""
    width = INTERVAL_MS[interval]
    if width is None:
        d = datetime.fromtimestamp(open_ms / 1000, UTC)
        days = monthrange(d.year, d.month)[1]
        return open_ms + days * DAY_MS - 1
    return open_ms + width - 1


@dataclass(slots=True)
class Trade:
    """One trade as ``/api/v3/trades`` and ``<sym>@trade`` carry it."""

    id: int
    price: str
    qty: str
    time: int  # ms, exchange trade time T
    is_buyer_maker: bool

    def rest(self) -> dict[str, object]:
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "quoteQty": fmt_plain(Decimal(self.price) * Decimal(self.qty)),
            "time": self.time,
            "isBuyerMaker": self.is_buyer_maker,
            "isBestMatch": True,
        }

    def ws(self, symbol: str, event_time: int) -> dict[str, object]:
        # Key order as Binance sends it (2024 recordings: no "b"/"a" order ids any more).
        return {
            "e": "trade",
            "E": event_time,
            "s": symbol,
            "t": self.id,
            "p": self.price,
            "q": self.qty,
            "T": self.time,
            "m": self.is_buyer_maker,
            "M": True,
        }

    @classmethod
    def from_ws(cls, d: dict[str, Any]) -> Trade:
        return cls(int(d["t"]), d["p"], d["q"], int(d["T"]), bool(d["m"]))


@dataclass(slots=True)
class AggTrade:
    """An aggregate trade: consecutive trades of one taker order at one price."""

    id: int
    price: str
    qty: str
    first_id: int
    last_id: int
    time: int
    is_buyer_maker: bool

    def rest(self) -> dict[str, object]:
        return {
            "a": self.id,
            "p": self.price,
            "q": self.qty,
            "f": self.first_id,
            "l": self.last_id,
            "T": self.time,
            "m": self.is_buyer_maker,
            "M": True,
        }

    def ws(self, symbol: str, event_time: int) -> dict[str, object]:
        return {"e": "aggTrade", "E": event_time, "s": symbol, **self.rest()}

    @classmethod
    def from_ws(cls, d: dict[str, Any]) -> AggTrade:
        return cls(int(d["a"]), d["p"], d["q"], int(d["f"]), int(d["l"]), int(d["T"]), bool(d["m"]))


def aggregate_trades(trades: Sequence[Trade], first_agg_id: int) -> Iterator[tuple[int, AggTrade]]:
    """Group consecutive trades with the same time, price and taker side into aggregates.

    Binance aggregates "trades that fill at the time, from the same taker order, with the same
    price"; a raw trade feed does not name the taker order, so the same time and side stand in
    for it. Yields ``(index of the group's last trade, aggregate)``, ids counting up from
    ``first_agg_id`` without gaps.
    """
    agg_id = first_agg_id
    start = 0
    n = len(trades)
    while start < n:
        head = trades[start]
        end = start + 1
        qty = Decimal(head.qty)
        while end < n:
            t = trades[end]
            if (t.time, t.price, t.is_buyer_maker) != (head.time, head.price, head.is_buyer_maker):
                break
            qty += Decimal(t.qty)
            end += 1
        last = trades[end - 1]
        yield (
            end - 1,
            AggTrade(
                agg_id, head.price, fmt8(qty), head.id, last.id, head.time, head.is_buyer_maker
            ),
        )
        agg_id += 1
        start = end


@dataclass(slots=True)
class Kline:
    """One bar with Binance's kline fields; ``first_id``/``last_id`` are -1 without trades."""

    open_time: int
    close_time: int
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

    @classmethod
    def empty(cls, open_time: int, interval: str, price: Decimal) -> Kline:
        """A bar without trades: Binance repeats the previous close as its OHLC."""
        return cls(open_time, bucket_close(open_time, interval), price, price, price, price)

    @classmethod
    def first(cls, open_time: int, interval: str, t: Trade) -> Kline:
        p = Decimal(t.price)
        k = cls(open_time, bucket_close(open_time, interval), p, p, p, p)
        k.add(t)
        return k

    def add(self, t: Trade) -> None:
        p, q = Decimal(t.price), Decimal(t.qty)
        if self.trades == 0:
            self.open = self.high = self.low = p
        else:
            self.high, self.low = max(self.high, p), min(self.low, p)
        self.close = p
        self.volume += q
        self.quote_volume += p * q
        self.trades += 1
        if not t.is_buyer_maker:  # the buyer was the taker
            self.taker_base += q
            self.taker_quote += p * q
        if self.first_id < 0:
            self.first_id = t.id
        self.last_id = t.id

    def merge(self, k: Kline) -> None:
        """Fold a later, shorter bar into this one (e.g. 1m bars into an hour)."""
        if k.trades == 0 and k.volume == 0:
            if self.trades == 0:
                self.open = self.high = self.low = self.close = k.close
            return
        if self.trades == 0 and self.volume == 0:
            self.open, self.high, self.low = k.open, k.high, k.low
        else:
            self.high, self.low = max(self.high, k.high), min(self.low, k.low)
        self.close = k.close
        self.volume += k.volume
        self.quote_volume += k.quote_volume
        self.trades += k.trades
        self.taker_base += k.taker_base
        self.taker_quote += k.taker_quote
        if self.first_id < 0:
            self.first_id = k.first_id
        if k.last_id >= 0:
            self.last_id = k.last_id

    def copy(self) -> Kline:
        return Kline(
            self.open_time,
            self.close_time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trades,
            self.taker_base,
            self.taker_quote,
            self.first_id,
            self.last_id,
        )

    def rest(self) -> list[object]:
        """The 12-element array of ``/api/v3/klines`` (the last element is an unused "0")."""
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

    def ws(self, symbol: str, interval: str, event_time: int, closed: bool) -> dict[str, object]:
        """The ``<sym>@kline_<interval>`` event; ``x`` says whether the bar is final."""
        return {
            "e": "kline",
            "E": event_time,
            "s": symbol,
            "k": {
                "t": self.open_time,
                "T": self.close_time,
                "s": symbol,
                "i": interval,
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

    @classmethod
    def from_ws(cls, k: dict[str, Any]) -> Kline:
        return cls(
            int(k["t"]),
            int(k["T"]),
            Decimal(k["o"]),
            Decimal(k["h"]),
            Decimal(k["l"]),
            Decimal(k["c"]),
            Decimal(k["v"]),
            Decimal(k["q"]),
            int(k["n"]),
            Decimal(k["V"]),
            Decimal(k["Q"]),
            int(k["f"]),
            int(k["L"]),
        )


def combine(open_time: int, interval: str, parts: Sequence[Kline]) -> Kline:
    """One ``interval`` bar opening at ``open_time`` from its shorter bars, in time order."""
    bar = Kline.empty(open_time, interval, parts[0].open)
    for part in parts:
        bar.merge(part)
    return bar


def resample(bars: Iterable[Kline], interval: str) -> list[Kline]:
    """Aggregate consecutive shorter bars (1m) into ``interval`` bars."""
    out: list[Kline] = []
    for b in bars:
        start = bucket_open(b.open_time, interval)
        if not out or out[-1].open_time != start:
            out.append(Kline.empty(start, interval, b.open))
        out[-1].merge(b)
    return out


def depth_levels(levels: Iterable[tuple[Decimal, str]]) -> list[list[str]]:
    return [[fmt8(p), q] for p, q in levels]


def error(code: int, msg: str) -> dict[str, object]:
    """Binance's REST error body."""
    return {"code": code, "msg": msg}


def missing_param(name: str) -> dict[str, object]:
    return error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal_chars(name: str, legal: str) -> dict[str, object]:
    return error(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


INVALID_SYMBOL = error(-1121, "Invalid symbol.")
INVALID_INTERVAL = error(-1120, "Invalid interval.")
START_AFTER_END = error(-1023, "Start time is greater than end time.")
AGG_WINDOW_TOO_WIDE = error(-1127, "More than 1 hours between startTime and endTime.")
INTERNAL_ERROR = error(-1001, "Internal error; unable to process your request. Please try again.")


def too_much_weight(limit: int) -> dict[str, object]:
    return error(
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    )
