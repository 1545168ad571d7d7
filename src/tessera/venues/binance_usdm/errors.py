"""Binance USDⓈ-M's error codes -> `ErrorAction`: the common table plus futures' own.

Futures refuse an order for reasons spot has no word for: margin (-2019), reduce-only (-2022),
position side (-4061), leverage (-4028, -2027, -2028), notional (-4164); and each exchange
filter has its own code where spot says -1013 for all (price -4002/-4013/-4014, quantity
-4004/-4005/-4023, the mark's price band -4016/-4024). -1006 and -1007 say
the backend did not answer in time and the execution status is unknown: the order may exist,
so the outcome is checked by client order id before anything is resent (`RETRY_LATER`). -1008
is the system-level throttle refusing the request: wait (`RATE_LIMIT`). -4046 and -4059 say
the account already has the margin type or position mode asked for: not a failure
(`NO_CHANGE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tessera.venues.binance.errors import COMMON_CODES, ErrorAction, error_for_code

USDM_CODES: Mapping[int, ErrorAction] = MappingProxyType(
    {
        **COMMON_CODES,
        -1000: ErrorAction.RETRY_LATER,  # unknown error while processing the request
        -1006: ErrorAction.RETRY_LATER,  # unexpected response from the message bus
        -1007: ErrorAction.RETRY_LATER,  # timeout waiting for the backend: status unknown
        -1008: ErrorAction.RATE_LIMIT,  # throttled by system-level protection
        -1117: ErrorAction.REJECT,  # invalid side
        -2018: ErrorAction.REJECT,  # balance not sufficient
        -2019: ErrorAction.REJECT,  # margin not sufficient
        -2020: ErrorAction.REJECT,  # unable to fill
        -2021: ErrorAction.REJECT,  # order would immediately trigger
        -2022: ErrorAction.REJECT,  # ReduceOnly order rejected
        -2024: ErrorAction.REJECT,  # position not sufficient
        -2025: ErrorAction.REJECT,  # maximum open orders reached
        -2027: ErrorAction.REJECT,  # position over the maximum for the current leverage
        -2028: ErrorAction.REJECT,  # leverage too small for the balance
        -4002: ErrorAction.REJECT,  # price greater than the max price (PRICE_FILTER)
        -4003: ErrorAction.REJECT,  # quantity less than or equal to zero
        -4004: ErrorAction.REJECT,  # quantity less than the min quantity (LOT_SIZE)
        -4005: ErrorAction.REJECT,  # quantity greater than the max quantity (LOT_SIZE)
        -4013: ErrorAction.REJECT,  # price less than the min price (PRICE_FILTER)
        -4014: ErrorAction.REJECT,  # price not a multiple of the tick size
        -4016: ErrorAction.REJECT,  # limit price above the PERCENT_PRICE band of the mark
        -4023: ErrorAction.REJECT,  # quantity not a multiple of the step size
        -4024: ErrorAction.REJECT,  # limit price below the PERCENT_PRICE band of the mark
        -4028: ErrorAction.REJECT,  # leverage not valid
        -4046: ErrorAction.NO_CHANGE,  # no need to change the margin type
        -4047: ErrorAction.REJECT,  # margin type cannot change with open orders
        -4048: ErrorAction.REJECT,  # margin type cannot change with a position
        -4059: ErrorAction.NO_CHANGE,  # no need to change the position side (mode)
        -4061: ErrorAction.REJECT,  # position side does not match the position mode
        -4131: ErrorAction.REJECT,  # best counterparty price outside PERCENT_PRICE
        -4164: ErrorAction.REJECT,  # notional below the minimum
        -5021: ErrorAction.REJECT,  # FOK order could not be filled at once
        -5022: ErrorAction.REJECT,  # post-only (GTX) order would take
    }
)


def classify(code: int) -> ErrorAction | None:
    """What to do about a USDⓈ-M error code; None for a code with no known meaning."""
    return USDM_CODES.get(code)


def error_for(code: int, msg: str) -> Exception | None:
    """The `Exchange` interface's exception for a USDⓈ-M ``(code, msg)`` answer; None for
    `ErrorAction.NO_CHANGE`."""
    return error_for_code(USDM_CODES, code, msg)
