"""Binance trade and book-top payloads -> the strategies' `TradeTick` and `BookTop`.

The live feed hands strategies floats (they compute with them); the store gets the exact
strings through `tessera.venues.binance.market_data`. Spot's ``bookTicker`` carries no event
time, so a book top is stamped with its receive time on both venues (USDⓈ-M's ``E`` is read
by the store rows, not here), which keeps the two venues' book tops alike.
"""

from __future__ import annotations

from typing import Any

from tessera.strategies.base import BookTop, TradeTick

MS = 1_000_000


def trade_tick(d: dict[str, Any]) -> TradeTick:
    """A ``trade`` payload -> `TradeTick` stamped with the trade time."""
    return TradeTick(
        symbol=str(d["s"]),
        ts=int(d["T"]) * MS,
        price=float(d["p"]),
        qty=float(d["q"]),
        is_buyer_maker=bool(d["m"]),
    )


def book_top(d: dict[str, Any], recv_ns: int) -> BookTop:
    """A ``bookTicker`` payload -> `BookTop` stamped with the receive time."""
    return BookTop(
        symbol=str(d["s"]),
        ts=recv_ns,
        bid=float(d["b"]),
        bid_qty=float(d["B"]),
        ask=float(d["a"]),
        ask_qty=float(d["A"]),
    )
