"""Binance klines -> `Bar`: the stream's kline object and the REST array, spot and USDⓈ-M alike.

``GET /api/v3/klines`` (spot) and ``GET /fapi/v1/klines`` (USDⓈ-M) answer the same 12-item
array per bar, and both ``<symbol>@kline_<interval>`` streams send the same ``k`` object, so
one reader serves both. A bar's ``close_time`` is its last nanosecond (Binance's close ms plus
999,999 ns), as in the backtest. Prices become floats here because `Bar` is what features and
strategies compute with; the exact decimal strings go to the store through
`tessera.venues.binance.market_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.strategies.base import Bar

MS = 1_000_000

# GET /api/v3/klines and GET /fapi/v1/klines: the index of each field in a row
KLINE_ARRAY = {
    "open_time": 0,
    "open": 1,
    "high": 2,
    "low": 3,
    "close": 4,
    "volume": 5,
    "close_time": 6,
    "quote_volume": 7,
    "trades": 8,
    "taker_buy_base": 9,
    "taker_buy_quote": 10,
}


def parse_kline(d: dict[str, Any]) -> Bar | None:
    """A closed kline event -> `Bar`; None while the bar is still open."""
    k = d["k"]
    if not k["x"]:
        return None
    return Bar(
        symbol=str(k["s"]),
        open_time=int(k["t"]) * MS,
        close_time=int(k["T"]) * MS + MS - 1,  # the bar's last ns, as in the backtest
        open=float(k["o"]),
        high=float(k["h"]),
        low=float(k["l"]),
        close=float(k["c"]),
        volume=float(k["v"]),
        quote_volume=float(k["q"]),
        taker_buy_volume=float(k["V"]),
    )


def bar_from_rest(symbol: str, row: Sequence[Any]) -> Bar:
    """One row of ``GET /api/v3/klines`` (or ``/fapi/v1/klines``) -> `Bar`."""
    i = KLINE_ARRAY
    return Bar(
        symbol=symbol,
        open_time=int(row[i["open_time"]]) * MS,
        close_time=int(row[i["close_time"]]) * MS + MS - 1,
        open=float(row[i["open"]]),
        high=float(row[i["high"]]),
        low=float(row[i["low"]]),
        close=float(row[i["close"]]),
        volume=float(row[i["volume"]]),
        quote_volume=float(row[i["quote_volume"]]),
        taker_buy_volume=float(row[i["taker_buy_base"]]),
    )
