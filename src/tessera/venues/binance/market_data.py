"""Binance market-data stream payloads -> store rows, with validation (spot and USDⓈ-M alike).

Spot and USDⓈ-M futures send the same keys for the streams read here (``trade``, ``aggTrade``,
``kline``, ``depthUpdate``, ``bookTicker``); futures add a few (``T`` transaction time, ``pu``
the previous diff's final update id, ``X`` the trade's type) and spot's ``bookTicker`` has no
event time. The row shapes are the same for both, so one parser serves both venues and the
store does not know which one spoke. Futures-only streams (mark price, liquidations) are in
`tessera.venues.binance_usdm.market_data`.

Decimals stay strings here (the store casts them to decimal128 in one vectorized step at flush
time, never through floats); times become integer ns. Anything that does not look like the
documented payload raises `MalformedMessageError` — the caller counts it and moves on.
"""

from __future__ import annotations

from typing import Any

import orjson

MS = 1_000_000


class MalformedMessageError(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind


def decode(raw: str | bytes) -> tuple[str | None, dict[str, Any]]:
    """A frame -> (stream name or None, payload). Combined frames carry ``stream``/``data``."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError("control", f"invalid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise MalformedMessageError("control", "not a JSON object")
    if "stream" in doc:
        data = doc.get("data")
        if not isinstance(doc["stream"], str) or not isinstance(data, dict):
            raise MalformedMessageError("control", "bad combined-stream envelope")
        return doc["stream"], data
    return None, doc


def _int(d: dict[str, Any], key: str, kind: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise MalformedMessageError(kind, f"field {key!r} must be an integer, got {v!r}")
    return v


def _dec(d: dict[str, Any], key: str, kind: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v or v.count(".") > 1 or not v.replace(".", "").isdigit():
        raise MalformedMessageError(kind, f"field {key!r} must be a decimal string, got {v!r}")
    return v


def _bool(d: dict[str, Any], key: str, kind: str) -> bool:
    v = d.get(key)
    if type(v) is not bool:
        raise MalformedMessageError(kind, f"field {key!r} must be a boolean, got {v!r}")
    return v


def trade_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    return {
        "trade_id": _int(d, "t", "trade"),
        "price": _dec(d, "p", "trade"),
        "qty": _dec(d, "q", "trade"),
        "is_buyer_maker": _bool(d, "m", "trade"),
        "trade_time": _int(d, "T", "trade") * MS,
        "event_time": _int(d, "E", "trade") * MS,
        "recv_time": recv_ns,
    }


def agg_trade_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    k = "aggTrade"
    return {
        "agg_id": _int(d, "a", k),
        "price": _dec(d, "p", k),
        "qty": _dec(d, "q", k),
        "first_trade_id": _int(d, "f", k),
        "last_trade_id": _int(d, "l", k),
        "is_buyer_maker": _bool(d, "m", k),
        "trade_time": _int(d, "T", k) * MS,
        "event_time": _int(d, "E", k) * MS,
        "recv_time": recv_ns,
    }


def kline_row(d: dict[str, Any], recv_ns: int) -> tuple[bool, dict[str, Any]]:
    """(closed, row) — only closed klines are stored."""
    k = d.get("k")
    if not isinstance(k, dict):
        raise MalformedMessageError("kline", "missing 'k' object")
    closed = _bool(k, "x", "kline")
    interval = k.get("i")
    if not isinstance(interval, str):
        raise MalformedMessageError("kline", "field 'i' must be a string")
    return closed, {
        "interval": interval,
        "open_time": _int(k, "t", "kline") * MS,
        "close_time": _int(k, "T", "kline") * MS,
        "open": _dec(k, "o", "kline"),
        "high": _dec(k, "h", "kline"),
        "low": _dec(k, "l", "kline"),
        "close": _dec(k, "c", "kline"),
        "volume": _dec(k, "v", "kline"),
        "quote_volume": _dec(k, "q", "kline"),
        "trades": _int(k, "n", "kline"),
        "taker_buy_base": _dec(k, "V", "kline"),
        "taker_buy_quote": _dec(k, "Q", "kline"),
        "event_time": _int(d, "E", "kline") * MS,
        "recv_time": recv_ns,
    }


def depth_levels(
    d: dict[str, Any],
) -> tuple[int, int, int | None, int, list[list[str]], list[list[str]]]:
    """(U, u, pu, E ms, bids, asks) of a depth diff, validated."""
    kind = "depth"
    first, last = _int(d, "U", kind), _int(d, "u", kind)
    prev = d.get("pu")
    if prev is not None and type(prev) is not int:
        raise MalformedMessageError(kind, "field 'pu' must be an integer")
    bids, asks = d.get("b"), d.get("a")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise MalformedMessageError(kind, "fields 'b' and 'a' must be lists")
    for level in (*bids, *asks):
        if not (
            isinstance(level, list) and len(level) == 2 and all(isinstance(x, str) for x in level)
        ):
            raise MalformedMessageError(kind, f"bad price level {level!r}")
    if first > last:
        raise MalformedMessageError(kind, f"U {first} > u {last}")
    return first, last, prev, _int(d, "E", kind), bids, asks


def book_ticker_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    k = "bookTicker"
    e = d.get("E")
    return {
        "update_id": _int(d, "u", k),
        "bid_price": _dec(d, "b", k),
        "bid_qty": _dec(d, "B", k),
        "ask_price": _dec(d, "a", k),
        "ask_qty": _dec(d, "A", k),
        "event_time": e * MS if type(e) is int else None,
        "recv_time": recv_ns,
    }
