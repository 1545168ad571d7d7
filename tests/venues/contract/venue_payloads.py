"""Each registered venue's bundled real payloads, per contract case, and its documented codes.

Every case of every venue names a real payload under ``samples/`` (a JSON file, or the first
frame of a kind in a recording), or says why none is bundled yet (`Missing`): that case then
shows as skipped with the reason, never faked. A new venue adds its tables here; the registry
test fails until it does.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tessera.venues.binance.errors import ErrorAction
from tessera.venues.binance.streams import stream_kind

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


@cache
def recording_frames(source: str) -> tuple[str, ...]:
    """The combined-stream frames of a recording (hftbacktest ``<ns> <json>`` lines or
    cryptofeed ``<ts>: <json>`` lines), as raw text; other lines (URL, snapshot) skipped."""
    path = SAMPLES / source
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt") as fh:
        for line in fh:
            start = line.find('{"stream"')
            if start >= 0:
                out.append(line[start:].rstrip("\n"))
    return tuple(out)


@dataclass(frozen=True)
class Payload:
    """A real payload: a JSON file, or the first frame of stream kind ``kind`` in a recording
    whose data passes ``match``."""

    source: str
    kind: str | None = None
    match: Callable[[dict[str, Any]], bool] | None = None

    def raw(self) -> str:
        if self.kind is None:
            return (SAMPLES / self.source).read_text()
        for frame in recording_frames(self.source):
            doc = json.loads(frame)
            if stream_kind(doc["stream"]) == self.kind and (
                self.match is None or self.match(doc["data"])
            ):
                return frame
        raise LookupError(f"no {self.kind} frame matching in {self.source}")

    def data(self) -> dict[str, Any]:
        doc = json.loads(self.raw())
        return doc["data"] if self.kind is not None else doc

    def __str__(self) -> str:
        return self.source if self.kind is None else f"{self.source}[{self.kind}]"


@dataclass(frozen=True)
class Missing:
    reason: str

    def __str__(self) -> str:
        return "missing"


Case = Payload | Missing

SPOT_WS = "binance-raw-ws/spot/btcusdt_20240808.gz"
SPOT_CF = "cryptofeed/BINANCE.ws.1.0"
USDM_WS = "binance-raw-ws/usdm/btcusdt_20240808.gz"
USDM_CF = "cryptofeed/BINANCE_FUTURES.ws.1.0.gz"


def _closed(d: dict[str, Any]) -> bool:
    return bool(d["k"]["x"])


def _open(d: dict[str, Any]) -> bool:
    return not d["k"]["x"]


# kind -> payload; the kinds every venue has
MARKET: dict[str, dict[str, Case]] = {
    "binance-spot": {
        "trade": Payload(SPOT_WS, "trade"),
        "aggTrade": Payload(SPOT_CF, "aggTrade"),
        "kline_closed": Missing(
            "no recorded spot closed-kline frame is bundled (cryptofeed's 30 s spot recording "
            "holds two open ones)"
        ),
        "kline_open": Payload(SPOT_CF, "kline", _open),
        "depth": Payload(SPOT_WS, "depth"),
        "bookTicker": Payload(SPOT_WS, "bookTicker"),
    },
    "binance-usdm": {
        "trade": Payload(USDM_WS, "trade"),
        "aggTrade": Payload(USDM_CF, "aggTrade"),
        "kline_closed": Payload(USDM_CF, "kline", _closed),
        "kline_open": Payload(USDM_CF, "kline", _open),
        "depth": Payload(USDM_WS, "depth"),
        "bookTicker": Payload(USDM_CF, "bookTicker"),
    },
}
# recordings whose diffs of one symbol are consecutive: the venue's continuity rule holds
DEPTH_RECORDINGS: dict[str, tuple[str, str]] = {
    "binance-spot": (SPOT_WS, "btcusdt@depth@100ms"),
    "binance-usdm": (USDM_WS, "btcusdt@depth@0ms"),
}

SPOT_USER = "binance-api/spot-user-data/"
USDM_USER = "binance-api/futures-user-data/"
USER: dict[str, dict[str, Case]] = {
    "binance-spot": {
        "new": Payload(SPOT_USER + "execution_report_new.json"),
        "partial_fill": Missing("no spot executionReport of a partial fill is bundled"),
        "fill": Payload(SPOT_USER + "execution_report_trade.json"),
        "cancel": Payload(SPOT_USER + "execution_report_canceled.json"),
        "account_update": Payload(SPOT_USER + "account_position.json"),
    },
    "binance-usdm": {
        "new": Payload(USDM_USER + "order_update_new.json"),
        "partial_fill": Payload(USDM_USER + "order_update_trade_partial.json"),
        "fill": Payload(USDM_USER + "order_update_settlement.json"),
        "cancel": Missing(
            "no USDⓈ-M ORDER_TRADE_UPDATE of a cancel is bundled (none in nautilus_trader's "
            "fixtures; Binance's docs show only a NEW one)"
        ),
        "account_update": Payload(USDM_USER + "account_update.json"),
    },
}

# every file holding order states the venue sent: user-data events and REST order answers
ORDER_STATE_FILES: dict[str, tuple[str, ...]] = {
    "binance-spot": (
        "binance-api/spot-user-data",
        "binance-api/spot-http/new_order_full_response.json",
        "binance-api/spot-http/order_response.json",
        "binance-api/spot-http/open_orders_response.json",
        "binance-api/spot-http/all_orders_response.json",
        "binance-api/spot-http/cancel_order_response.json",
        "binance-api/spot-http/cancel_open_orders_response.json",
        "binance-api/spot-http/new_order_list_oco_response.json",
    ),
    "binance-usdm": (
        "binance-api/futures-user-data",
        "binance-api/futures-http/order_response.json",
    ),
}
# the order status names each venue documents
DOCUMENTED_STATUSES: dict[str, tuple[str, ...]] = {
    "binance-spot": (
        "NEW",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELED",
        "PENDING_CANCEL",
        "REJECTED",
        "EXPIRED",
        "EXPIRED_IN_MATCH",
    ),
    "binance-usdm": (
        "NEW",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELED",
        "REJECTED",
        "EXPIRED",
        "EXPIRED_IN_MATCH",
        "NEW_INSURANCE",
        "NEW_ADL",
    ),
}

# Codes from each venue's error-code documentation and what they must mean.
_COMMON = {
    -1021: ErrorAction.CLOCK_SKEW,
    -2011: ErrorAction.UNKNOWN_ORDER,
    -2013: ErrorAction.UNKNOWN_ORDER,
    -1003: ErrorAction.RATE_LIMIT,
    -1015: ErrorAction.RATE_LIMIT,
    -1022: ErrorAction.AUTH,
    -2015: ErrorAction.AUTH,
    -1001: ErrorAction.RETRY_LATER,
    -2010: ErrorAction.REJECT,
    -1111: ErrorAction.REJECT,
}
ERRORS: dict[str, dict[int, ErrorAction]] = {
    "binance-spot": {**_COMMON, -1013: ErrorAction.REJECT, -1165: ErrorAction.REJECT},
    "binance-usdm": {
        **_COMMON,
        -2019: ErrorAction.REJECT,  # margin insufficient
        -2022: ErrorAction.REJECT,  # ReduceOnly rejected
        -4164: ErrorAction.REJECT,  # notional too small
        # each exchange filter's own code (the simulator answers them too)
        -4002: ErrorAction.REJECT,  # price above max
        -4004: ErrorAction.REJECT,  # quantity below min
        -4005: ErrorAction.REJECT,  # quantity above max
        -4013: ErrorAction.REJECT,  # price below min
        -4016: ErrorAction.REJECT,  # limit price above the mark's band
        -4024: ErrorAction.REJECT,  # limit price below the mark's band
        -4028: ErrorAction.REJECT,  # leverage invalid
        -4046: ErrorAction.NO_CHANGE,  # no need to change margin type
        -1007: ErrorAction.RETRY_LATER,  # backend timeout: status unknown
        -1008: ErrorAction.RATE_LIMIT,  # system throttle
    },
}


def cases(table: dict[str, dict[str, Case]], *names: str) -> list[Any]:
    """pytest params ``(venue name, payload)`` of every registered venue for the named cases;
    a `Missing` case is skipped with its reason."""
    import pytest

    from tessera.venues.contract import venue_names

    out = []
    for venue in venue_names():
        for name in names:
            case = table[venue][name]
            marks = [pytest.mark.skip(reason=case.reason)] if isinstance(case, Missing) else []
            out.append(pytest.param(venue, case, id=f"{venue}-{name}", marks=marks))
    return out
