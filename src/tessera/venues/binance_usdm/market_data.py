"""Binance USDⓈ-M market-data streams -> rows, with validation.

The streams spot also has (``trade``, ``aggTrade``, ``kline``, ``depthUpdate``, ``bookTicker``)
are read by the shared parsers of `tessera.venues.binance.market_data` and give the same row
shapes as spot; futures' diffs keep ``pu`` (the previous diff's final update id), which
`depth_follows` checks. Here are futures' own streams:

* ``<symbol>@markPrice`` (``markPriceUpdate``): the mark price, the index price, the estimated
  settle price, the funding rate now in force and the next funding time (`mark_price_row`);
* ``<symbol>@forceOrder`` (``forceOrder``): a liquidation order the exchange placed, one per
  symbol per second at most (`force_order_row`).

Decimals stay strings (the store casts them exactly), times become integer ns, and anything
that is not the documented payload raises `MalformedMessageError` naming the stream and field.
A funding rate may be negative, so it is checked as a signed decimal; prices may not.
"""

from __future__ import annotations

import re
from typing import Any

from tessera.venues.binance.market_data import (
    MS,
    MalformedMessageError,
    dec_field,
    int_field,
)

_SIGNED = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _signed(d: dict[str, Any], key: str, kind: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or _SIGNED.match(v) is None:
        raise MalformedMessageError(kind, f"field {key!r} must be a signed decimal, got {v!r}")
    return v


def _str(d: dict[str, Any], key: str, kind: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise MalformedMessageError(kind, f"field {key!r} must be a non-empty string, got {v!r}")
    return v


def mark_price_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    """A ``markPriceUpdate`` -> mark, index and estimated settle price, funding rate (signed)
    and next funding time."""
    k = "markPriceUpdate"
    return {
        "mark_price": dec_field(d, "p", k),
        "index_price": dec_field(d, "i", k),
        "estimated_settle_price": dec_field(d, "P", k),
        "funding_rate": _signed(d, "r", k),
        "next_funding_time": int_field(d, "T", k) * MS,
        "event_time": int_field(d, "E", k) * MS,
        "recv_time": recv_ns,
    }


def force_order_row(d: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    """A ``forceOrder`` -> the liquidation order: symbol, side, type, time in force, quantity,
    price, average price, status, last and cumulative filled quantity, trade time. The symbol
    is in the row because ``!forceOrder@arr`` carries every symbol's liquidations."""
    k = "forceOrder"
    o = d.get("o")
    if not isinstance(o, dict):
        raise MalformedMessageError(k, "missing 'o' object")
    side = _str(o, "S", k)
    if side not in ("BUY", "SELL"):
        raise MalformedMessageError(k, f"field 'S' must be BUY or SELL, got {side!r}")
    return {
        "symbol": _str(o, "s", k),
        "side": side,
        "order_type": _str(o, "o", k),
        "time_in_force": _str(o, "f", k),
        "qty": dec_field(o, "q", k),
        "price": dec_field(o, "p", k),
        "avg_price": dec_field(o, "ap", k),
        "status": _str(o, "X", k),
        "last_filled_qty": dec_field(o, "l", k),
        "filled_qty": dec_field(o, "z", k),
        "trade_time": int_field(o, "T", k) * MS,
        "event_time": int_field(d, "E", k) * MS,
        "recv_time": recv_ns,
    }
