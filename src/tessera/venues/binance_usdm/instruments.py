"""Parse Binance USDⓈ-M ``GET /fapi/v1/exchangeInfo`` into `PerpetualInstrument`s.

The futures layout differs from spot's in small ways a shared parser would get wrong:
MIN_NOTIONAL carries ``notional`` (spot: ``minNotional``), MAX_NUM_ORDERS carries ``limit``
(spot: ``maxNumOrders``), and each symbol has ``contractType``, ``marginAsset``,
``triggerProtect`` and ``liquidationFee``.

Nothing is dropped silently: symbols that are not perpetuals (quarterly ``CURRENT_QUARTER`` /
``NEXT_QUARTER`` contracts, or a symbol not yet listed, whose ``contractType`` is empty) are
returned in `UsdmExchangeInfo.skipped` with their contract type and logged; filter types this
parser does not read are listed in `UsdmExchangeInfo.unread_filters` (MAX_NUM_ALGO_ORDERS, which
the domain does not enforce yet, is one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tessera.execution.perp.instrument import PERPETUAL, PerpetualInstrument
from tessera.venues import VenuePayloadError, payload_decimal

log = logging.getLogger(__name__)

ENDPOINT = "/fapi/v1/exchangeInfo"

# filterType -> {field in the payload: PerpetualInstrument attribute}
_FILTER_FIELDS: dict[str, dict[str, str]] = {
    "PRICE_FILTER": {"tickSize": "tick_size", "minPrice": "min_price", "maxPrice": "max_price"},
    "LOT_SIZE": {"stepSize": "step_size", "minQty": "min_qty", "maxQty": "max_qty"},
    "MARKET_LOT_SIZE": {
        "stepSize": "market_step_size",
        "minQty": "market_min_qty",
        "maxQty": "market_max_qty",
    },
    "MIN_NOTIONAL": {"notional": "min_notional"},
    "PERCENT_PRICE": {"multiplierUp": "percent_up", "multiplierDown": "percent_down"},
}


@dataclass(frozen=True, slots=True)
class UsdmExchangeInfo:
    """What the parser made of one exchangeInfo answer."""

    instruments: dict[str, PerpetualInstrument]
    # symbol -> its contractType ("" for a symbol Binance has not typed yet)
    skipped: dict[str, str] = field(default_factory=dict)
    # filterType -> symbols carrying it, for filter types not read into the instrument
    unread_filters: dict[str, list[str]] = field(default_factory=dict)
    server_time_ms: int | None = None


def _decimal(raw: Mapping[str, Any], key: str, where: str) -> Decimal:
    return payload_decimal(raw, key, where, endpoint=ENDPOINT, non_negative=True)


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise VenuePayloadError(f"{ENDPOINT}: {where} has no text field {key!r}")
    return value


def _strings(raw: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise VenuePayloadError(f"{ENDPOINT}: {where} field {key!r} is not a list")
    return frozenset(str(v) for v in value)


def parse_symbol(
    entry: Mapping[str, Any], unread: dict[str, list[str]] | None = None
) -> PerpetualInstrument:
    """One element of ``symbols`` (a perpetual) -> `PerpetualInstrument`. Filter types not read
    are added to ``unread`` (filterType -> symbols) when given."""
    symbol = _text(entry, "symbol", "a symbol")
    where = symbol
    kw: dict[str, Any] = {
        "symbol": symbol,
        "base_asset": _text(entry, "baseAsset", where),
        "quote_asset": _text(entry, "quoteAsset", where),
        "margin_asset": _text(entry, "marginAsset", where),
        "contract_type": _text(entry, "contractType", where),
        "status": _text(entry, "status", where),
        "order_types": _strings(entry, "orderTypes", where),
        "time_in_force": _strings(entry, "timeInForce", where),
        "trigger_protect": _decimal(entry, "triggerProtect", where),
        "liquidation_fee": _decimal(entry, "liquidationFee", where),
    }
    filters = entry.get("filters", [])
    if not isinstance(filters, Sequence) or isinstance(filters, str):
        raise VenuePayloadError(f"{ENDPOINT}: {where} field 'filters' is not a list")
    for f in filters:
        if not isinstance(f, Mapping):
            raise VenuePayloadError(f"{ENDPOINT}: {where} has a filter that is not an object")
        kind = f.get("filterType")
        fields = _FILTER_FIELDS.get(str(kind))
        if fields is not None:
            for key, attr in fields.items():
                kw[attr] = _decimal(f, key, f"{where} {kind}")
        elif kind == "MAX_NUM_ORDERS":
            kw["max_num_orders"] = int(_decimal(f, "limit", f"{where} {kind}"))
        elif unread is not None:
            unread.setdefault(str(kind), []).append(symbol)
    try:
        return PerpetualInstrument(**kw)
    except ValueError as exc:
        raise VenuePayloadError(f"{ENDPOINT}: {exc}") from exc


def parse_exchange_info(payload: Mapping[str, Any]) -> UsdmExchangeInfo:
    """The whole answer -> perpetuals by symbol, plus what was skipped and not read."""
    symbols = payload.get("symbols")
    if not isinstance(symbols, Sequence) or isinstance(symbols, str):
        raise VenuePayloadError(f"{ENDPOINT}: the answer has no list 'symbols'")
    instruments: dict[str, PerpetualInstrument] = {}
    skipped: dict[str, str] = {}
    unread: dict[str, list[str]] = {}
    for entry in symbols:
        if not isinstance(entry, Mapping):
            raise VenuePayloadError(f"{ENDPOINT}: a symbol entry is not an object")
        symbol = _text(entry, "symbol", "a symbol")
        contract_type = entry.get("contractType", "")
        if contract_type != PERPETUAL:
            skipped[symbol] = str(contract_type)
            continue
        if symbol in instruments:
            raise VenuePayloadError(f"{ENDPOINT}: {symbol} is listed twice")
        instruments[symbol] = parse_symbol(entry, unread)
    if skipped:
        log.info(
            "exchangeInfo: %d non-perpetual symbols skipped: %s",
            len(skipped),
            ", ".join(f"{s} ({t or 'no contractType'})" for s, t in sorted(skipped.items())),
        )
    server_time = payload.get("serverTime")
    return UsdmExchangeInfo(
        instruments=instruments,
        skipped=skipped,
        unread_filters=unread,
        server_time_ms=server_time if isinstance(server_time, int) else None,
    )
