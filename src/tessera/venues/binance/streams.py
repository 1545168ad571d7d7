"""Binance stream names: ``<symbol>@<kind>[_<interval>][@<speed>]``, spot and USDⓈ-M alike.

A combined-stream connection (``/stream?streams=a/b/c``) wraps each payload as
``{"stream": name, "data": payload}``; the name says which parser reads the payload.
"""

from __future__ import annotations

from collections.abc import Sequence


def feed_streams(symbols: Sequence[str], interval: str, book: bool = True) -> list[str]:
    """The streams a bot's market feed subscribes: klines and trades, and book tops if asked."""
    out = []
    for s in symbols:
        low = s.lower()
        out += [f"{low}@kline_{interval}", f"{low}@trade"]
        if book:
            out.append(f"{low}@bookTicker")
    return out


def stream_kind(stream: str) -> str:
    """The payload kind of a stream name: ``btcusdt@depth@100ms`` -> ``depth``,
    ``btcusdt@kline_1m`` -> ``kline``, ``btcusdt@trade`` -> ``trade``, USDⓈ-M's
    ``btcusdt@markPrice@1s`` -> ``markPrice`` (the kinds `tessera.metrics.STREAM_TYPES` counts)."""
    tail = stream.split("@", 1)[1] if "@" in stream else ""
    for kind in ("depth", "kline", "markPrice"):
        if tail.startswith(kind):
            return kind
    return tail
