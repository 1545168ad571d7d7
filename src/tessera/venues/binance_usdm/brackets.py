"""Parse Binance USDⓈ-M ``GET /fapi/v1/leverageBracket`` into `LeverageBrackets`.

The payload is a list of ``{"symbol": ..., "brackets": [{"bracket", "initialLeverage",
"notionalCap", "notionalFloor", "maintMarginRatio", "cum"}, ...]}`` (a single object of that
shape is accepted too, as some API versions answer one symbol that way). Binance sends the
numbers as JSON numbers; copies such as freqtrade's bundled file hold them as strings: both
are read, through ``str`` so that a float parsed by ``json`` becomes the Decimal it was written
as (``0.0065`` -> ``Decimal("0.0065")``), not its binary neighbour.

``notionalCoef`` (a per-account multiplier on the caps, present only when Binance has adjusted
an account's brackets) is refused rather than ignored: applying it is not modelled yet, and
silently using unadjusted caps would give wrong leverage limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tessera.execution.perp.margin import LeverageBrackets, MarginTier
from tessera.venues import VenuePayloadError, payload_decimal

ENDPOINT = "/fapi/v1/leverageBracket"


def _decimal(raw: Mapping[str, Any], key: str, where: str) -> Decimal:
    return payload_decimal(raw, key, where, endpoint=ENDPOINT)


def _integer(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = _decimal(raw, key, where)
    if value != value.to_integral_value():
        raise VenuePayloadError(f"{ENDPOINT}: {where} field {key!r} is not an integer: {value}")
    return int(value)


def parse_symbol_brackets(entry: Mapping[str, Any]) -> LeverageBrackets:
    """One ``{"symbol", "brackets"}`` object -> `LeverageBrackets` (tiers sorted by ``bracket``;
    the domain then refuses overlaps, gaps and inconsistent ``cum``)."""
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise VenuePayloadError(f"{ENDPOINT}: an entry has no symbol: {dict(entry)!r:.200}")
    if "notionalCoef" in entry:
        raise VenuePayloadError(
            f"{ENDPOINT}: {symbol} has notionalCoef {entry['notionalCoef']!r} (account-adjusted "
            "brackets), which is not modelled"
        )
    raw_brackets = entry.get("brackets")
    if not isinstance(raw_brackets, Sequence) or isinstance(raw_brackets, str):
        raise VenuePayloadError(f"{ENDPOINT}: {symbol} has no list of brackets")
    numbered: list[tuple[int, MarginTier]] = []
    for raw in raw_brackets:
        if not isinstance(raw, Mapping):
            raise VenuePayloadError(f"{ENDPOINT}: {symbol} has a bracket that is not an object")
        where = f"{symbol} bracket {raw.get('bracket', '?')}"
        try:
            tier = MarginTier(
                notional_floor=_decimal(raw, "notionalFloor", where),
                notional_cap=_decimal(raw, "notionalCap", where),
                maintenance_margin_rate=_decimal(raw, "maintMarginRatio", where),
                cum=_decimal(raw, "cum", where),
                max_leverage=_integer(raw, "initialLeverage", where),
            )
        except ValueError as exc:
            if isinstance(exc, VenuePayloadError):
                raise
            raise VenuePayloadError(f"{ENDPOINT}: {where}: {exc}") from exc
        numbered.append((_integer(raw, "bracket", where), tier))
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        raise VenuePayloadError(f"{ENDPOINT}: {symbol} repeats a bracket number: {numbers}")
    numbered.sort(key=lambda pair: pair[0])
    try:
        return LeverageBrackets(symbol=symbol, tiers=tuple(tier for _, tier in numbered))
    except ValueError as exc:
        raise VenuePayloadError(f"{ENDPOINT}: {exc}") from exc


def parse_leverage_brackets(payload: Any) -> dict[str, LeverageBrackets]:
    """The whole answer (a list, or one object) -> brackets by symbol. A symbol listed twice
    is refused: which of the two would apply is not knowable."""
    entries = [payload] if isinstance(payload, Mapping) else payload
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise VenuePayloadError(f"{ENDPOINT}: expected a list of symbols, got {type(payload)}")
    result: dict[str, LeverageBrackets] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise VenuePayloadError(f"{ENDPOINT}: an entry is not an object: {entry!r:.200}")
        brackets = parse_symbol_brackets(entry)
        if brackets.symbol in result:
            raise VenuePayloadError(f"{ENDPOINT}: {brackets.symbol} is listed twice")
        result[brackets.symbol] = brackets
    return result
