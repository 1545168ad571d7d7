"""USDⓈ-M ``<symbol>@markPrice`` and ``<symbol>@markPrice@1s`` streams of the simulator.

Why: a bot on Binance USDⓈ-M marks its positions at the venue's mark price (Binance liquidates
on the mark), which it hears on the ``@markPrice@1s`` stream. A recording that holds those
frames replays them as it holds them; one that does not (the bundled BTCUSDT slice), and a bar
market, have a mark all the same (`MarkPrices`: the recorded book mid, or the mark kline of each
candle), which ``premiumIndex`` serves over REST. This module serves that same mark as
``markPriceUpdate`` frames, so the websocket and REST say the same mark at the same replay
position: ``@markPrice@1s`` at most one frame per second of the replay clock (the first mark
of each second, as Binance pushes the mark once a second), ``@markPrice`` every three seconds.
Index and estimated settle price are the mark (no index is recorded); the funding rate is the
sample's, "0.00000000" when the market has no funding data (as ``premiumIndex`` says).
"""

from __future__ import annotations

import orjson

from tessera.sim.market import SimMarket, StreamData
from tessera.sim.usdm.market import MarkPrices, next_funding_time

# stream suffix -> the time between two frames (ms)
MARK_STREAMS = {"markPrice@1s": 1_000, "markPrice": 3_000}


def mark_stream(marks: MarkPrices, symbol: str, suffix: str) -> StreamData | None:
    """``<symbol>@<suffix>`` built from ``marks`` (None when the symbol has no mark)."""
    every = MARK_STREAMS[suffix]
    anchors, samples = marks.series(symbol)
    if not samples:
        return None
    name = f"{symbol.lower()}@{suffix}"
    out = StreamData(name, "markPrice", [], [])
    last_slot: int | None = None
    for i, s in zip(anchors, samples, strict=True):
        slot = s.time // every
        if slot == last_slot:
            continue
        last_slot = slot
        rate = s.funding_rate if s.funding_rate is not None else None
        price = f"{s.price:.8f}"
        payload = {
            "e": "markPriceUpdate",
            "E": s.time,
            "s": symbol,
            "p": price,
            "i": price,
            "P": price,
            "r": f"{rate:.8f}" if rate is not None else "0.00000000",
            "T": s.next_funding_time or next_funding_time(s.time),
        }
        out.anchors.append(i)
        out.payloads.append(orjson.dumps(payload).decode())
    return out


def serve_mark_streams(market: SimMarket, marks: MarkPrices) -> None:
    """Make ``market`` serve the mark streams of each of its symbols it does not record."""
    for symbol in market.symbols:
        for suffix in MARK_STREAMS:
            name = f"{symbol.lower()}@{suffix}"
            if name in market.base_streams():
                continue
            market._derived[name] = mark_stream(marks, symbol, suffix)
