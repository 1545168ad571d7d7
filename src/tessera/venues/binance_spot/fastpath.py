"""The wire description of Binance's high-rate streams, for decoding in batches.

`tessera.data.ingest.fastpath` decodes a stream's frames in one call (msgspec or Arrow's JSON
reader) instead of one dict per frame; what it needs to know of Binance is here: the typed
payloads (`TradeMsg`, `AggTradeMsg`, `BookTickerMsg`, by Binance's one-letter keys), the same
as Arrow schemas (`ARROW_SCHEMAS`), which key becomes which store column (`COLUMNS`), the id
each stream is sequenced by (`ID_KEY`), and how to read a frame's stream name from its first
bytes without parsing (`frame_stream`). USDⓈ-M futures send the same keys for these three
streams (its ``bookTicker`` adds the event time spot lacks), so the same description decodes
both.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
import pyarrow as pa

_STR = pa.string()
_I64 = pa.int64()
STREAM_PREFIX = '{"stream":"'


def frame_stream(raw: str) -> str | None:
    """The stream name of a combined-stream frame, read from its prefix without parsing.

    Binance (and the simulator) put ``stream`` first; any other layout returns None and takes
    the generic path.
    """
    if raw.startswith(STREAM_PREFIX):
        end = raw.find('"', 11)
        if end > 11:
            return raw[11:end]
    return None


# Field names are Binance's one-letter keys; unknown keys are ignored (Binance adds fields).
# gc=False: these hold no reference cycles; skipping GC tracking keeps collections short.


class TradeMsg(msgspec.Struct, gc=False):
    event_ms: int = msgspec.field(name="E")
    trade_id: int = msgspec.field(name="t")
    price: str = msgspec.field(name="p")
    qty: str = msgspec.field(name="q")
    trade_ms: int = msgspec.field(name="T")
    is_buyer_maker: bool = msgspec.field(name="m")


class AggTradeMsg(msgspec.Struct, gc=False):
    event_ms: int = msgspec.field(name="E")
    agg_id: int = msgspec.field(name="a")
    price: str = msgspec.field(name="p")
    qty: str = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_ms: int = msgspec.field(name="T")
    is_buyer_maker: bool = msgspec.field(name="m")


class BookTickerMsg(msgspec.Struct, gc=False):
    update_id: int = msgspec.field(name="u")
    bid_price: str = msgspec.field(name="b")
    bid_qty: str = msgspec.field(name="B")
    ask_price: str = msgspec.field(name="a")
    ask_qty: str = msgspec.field(name="A")
    event_ms: int | None = msgspec.field(name="E", default=None)  # spot sends none


M = TypeVar("M", TradeMsg, AggTradeMsg, BookTickerMsg)


class Frame(msgspec.Struct, Generic[M], gc=False):
    data: M


MSG_TYPES: dict[str, type[Any]] = {
    "trade": TradeMsg,
    "aggTrade": AggTradeMsg,
    "bookTicker": BookTickerMsg,
}


def _data(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    """The schema of a combined-stream frame whose ``data`` has these fields."""
    return pa.schema([("data", pa.struct(list(fields)))])


ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "trade": _data(
        ("E", _I64), ("t", _I64), ("p", _STR), ("q", _STR), ("T", _I64), ("m", pa.bool_())
    ),
    "aggTrade": _data(
        ("E", _I64),
        ("a", _I64),
        ("p", _STR),
        ("q", _STR),
        ("f", _I64),
        ("l", _I64),
        ("T", _I64),
        ("m", pa.bool_()),
    ),
    "bookTicker": _data(
        ("u", _I64), ("b", _STR), ("B", _STR), ("a", _STR), ("A", _STR), ("E", _I64)
    ),
}
# Binance key -> store column, per kind; ``E``/``T`` are ms and become ns timestamps.
COLUMNS: dict[str, dict[str, str]] = {
    "trade": {
        "t": "trade_id",
        "p": "price",
        "q": "qty",
        "m": "is_buyer_maker",
        "T": "trade_time",
        "E": "event_time",
    },
    "aggTrade": {
        "a": "agg_id",
        "p": "price",
        "q": "qty",
        "f": "first_trade_id",
        "l": "last_trade_id",
        "m": "is_buyer_maker",
        "T": "trade_time",
        "E": "event_time",
    },
    "bookTicker": {
        "u": "update_id",
        "b": "bid_price",
        "B": "bid_qty",
        "a": "ask_price",
        "A": "ask_qty",
        "E": "event_time",
    },
}
ID_KEY = {"trade": "t", "aggTrade": "a"}
OPTIONAL = {"bookTicker": {"E"}}  # spot's bookTicker carries no event time
