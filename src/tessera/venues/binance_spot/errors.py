"""Binance spot's error codes -> `ErrorAction`: the common table plus spot's own.

Spot's own are order-list (OCO) placement refusals (-1158, -1165 ... -1199), -1014 (an order
type combination spot does not support) and -2026 (the order was archived). All refuse the
request: the order list never existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tessera.venues.binance.errors import COMMON_CODES, ErrorAction, error_for_code

SPOT_CODES: Mapping[int, ErrorAction] = MappingProxyType(
    {
        **COMMON_CODES,
        -1014: ErrorAction.REJECT,  # unsupported order combination
        -2026: ErrorAction.REJECT,  # order archived
        -1158: ErrorAction.REJECT,  # order list: bad order type combination
        -1165: ErrorAction.REJECT,  # order list: a limit leg has the wrong price side
        -1166: ErrorAction.REJECT,  # order list: a stop leg has the wrong price side
        -1168: ErrorAction.REJECT,  # order list: at most one limit maker leg
        -1196: ErrorAction.REJECT,  # OCO: the above leg's type
        -1197: ErrorAction.REJECT,  # OCO: the below leg's type
        -1198: ErrorAction.REJECT,  # OCO: the above leg's price
        -1199: ErrorAction.REJECT,  # OCO: the below leg's price
    }
)


def classify(code: int) -> ErrorAction | None:
    """What to do about a spot error code; None for a code with no known meaning."""
    return SPOT_CODES.get(code)


def error_for(code: int, msg: str) -> Exception | None:
    """The `Exchange` interface's exception for a spot ``(code, msg)`` answer."""
    return error_for_code(SPOT_CODES, code, msg)
