"""Venues: each exchange's wire format in one folder.

``binance`` (what Binance spot and USDⓈ-M share), ``binance_spot`` and ``binance_usdm``. A venue
folder turns its exchange's payloads into the pure domain's types (`tessera.execution...`);
nothing outside it should parse that exchange's JSON. The domain imports no venue (a test checks
it). What a venue provides, and the registry that finds one by name, is `contract`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any


class VenuePayloadError(ValueError):
    """A venue payload that cannot be read: the message names the endpoint, symbol and field."""


def payload_decimal(
    raw: Mapping[str, Any], key: str, where: str, *, endpoint: str, non_negative: bool = False
) -> Decimal:
    """``raw[key]`` as an exact, finite `Decimal` (from a JSON string or number; not a bool),
    or `VenuePayloadError` naming the endpoint, the place and the field."""
    if key not in raw:
        raise VenuePayloadError(f"{endpoint}: {where} has no field {key!r}")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise VenuePayloadError(f"{endpoint}: {where} field {key!r} is not a number: {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise VenuePayloadError(
            f"{endpoint}: {where} field {key!r} is not a number: {value!r}"
        ) from exc
    if non_negative and (not result.is_finite() or result < 0):
        raise VenuePayloadError(f"{endpoint}: {where} field {key!r} is not >= 0: {value!r}")
    if not result.is_finite():
        raise VenuePayloadError(f"{endpoint}: {where} field {key!r} is not finite: {value!r}")
    return result
