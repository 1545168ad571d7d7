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


def int_field(d: dict[str, Any], key: str, kind: str) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise MalformedMessageError(kind, f"field {key!r} must be an integer, got {v!r}")
    return v


def dec_field(d: dict[str, Any], key: str, kind: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v or v.count(".") > 1 or not v.replace(".", "").isdigit():
        raise MalformedMessageError(kind, f"field {key!r} must be a decimal string, got {v!r}")
    return v


def bool_field(d: dict[str, Any], key: str, kind: str) -> bool:
    v = d.get(key)
    if type(v) is not bool:
        raise MalformedMessageError(kind, f"field {key!r} must be a boolean, got {v!r}")
    return v


def trade_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    return {
        "trade_id": int_field(d, "t", "trade"),
        "price": dec_field(d, "p", "trade"),
        "qty": dec_field(d, "q", "trade"),
        "is_buyer_maker": bool_field(d, "m", "trade"),
        "trade_time": int_field(d, "T", "trade") * MS,
        "event_time": int_field(d, "E", "trade") * MS,
        "recv_time": recv_ns,
    }


def agg_trade_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    k = "aggTrade"
    return {
        "agg_id": int_field(d, "a", k),
        "price": dec_field(d, "p", k),
        "qty": dec_field(d, "q", k),
        "first_trade_id": int_field(d, "f", k),
        "last_trade_id": int_field(d, "l", k),
        "is_buyer_maker": bool_field(d, "m", k),
        "trade_time": int_field(d, "T", k) * MS,
        "event_time": int_field(d, "E", k) * MS,
        "recv_time": recv_ns,
    }


def kline_row(d: dict[str, Any], recv_ns: int) -> tuple[bool, dict[str, Any]]:
    """(closed, row) — only closed klines are stored."""
    k = d.get("k")
    if not isinstance(k, dict):
        raise MalformedMessageError("kline", "missing 'k' object")
    closed = bool_field(k, "x", "kline")
    interval = k.get("i")
    if not isinstance(interval, str):
        raise MalformedMessageError("kline", "field 'i' must be a string")
    return closed, {
        "interval": interval,
        "open_time": int_field(k, "t", "kline") * MS,
        "close_time": int_field(k, "T", "kline") * MS,
        "open": dec_field(k, "o", "kline"),
        "high": dec_field(k, "h", "kline"),
        "low": dec_field(k, "l", "kline"),
        "close": dec_field(k, "c", "kline"),
        "volume": dec_field(k, "v", "kline"),
        "quote_volume": dec_field(k, "q", "kline"),
        "trades": int_field(k, "n", "kline"),
        "taker_buy_base": dec_field(k, "V", "kline"),
        "taker_buy_quote": dec_field(k, "Q", "kline"),
        "event_time": int_field(d, "E", "kline") * MS,
        "recv_time": recv_ns,
    }


def depth_levels(
    d: dict[str, Any],
) -> tuple[int, int, int | None, int, list[list[str]], list[list[str]]]:
    """(U, u, pu, E ms, bids, asks) of a depth diff, validated."""
    kind = "depth"
    first, last = int_field(d, "U", kind), int_field(d, "u", kind)
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
    return first, last, prev, int_field(d, "E", kind), bids, asks


def book_ticker_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    k = "bookTicker"
    e = d.get("E")
    return {
        "update_id": int_field(d, "u", k),
        "bid_price": dec_field(d, "b", k),
        "bid_qty": dec_field(d, "B", k),
        "ask_price": dec_field(d, "a", k),
        "ask_qty": dec_field(d, "A", k),
        "event_time": e * MS if type(e) is int else None,
        "recv_time": recv_ns,
    }


def depth_follows(last_final_id: int, first_id: int, prev_final_id: int | None) -> bool:
    """Whether a diff continues the one whose final update id was ``last_final_id``.

    USDⓈ-M diffs name their predecessor (``pu``): it must equal the last diff's ``u``. Spot
    diffs carry no ``pu``; there the first id ``U`` must be the last ``u`` + 1.
    """
    if prev_final_id is not None:
        return prev_final_id == last_final_id
    return first_id == last_final_id + 1
