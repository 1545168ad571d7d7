"""Binance error answers -> what to do about them, for spot and USDⓈ-M.

Both APIs answer a refused request with ``{"code": <negative int>, "msg": "..."}``. What
matters to the caller is not the code but what it means for the order: was it refused (it
never existed), is the outcome unknown, must we wait, is our clock off, are the keys wrong,
does the exchange not know the order, or was the change already in place. `ErrorAction` names
those; each venue's table (`COMMON_CODES` plus its own) maps codes to them, and
`exception_for` turns an action into the exception the `tessera.execution.exchange.Exchange`
interface promises. A code in no table is a plain `ExchangeError` (the caller sees the code
and message); nothing is silently mapped to "rejected".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import orjson

from tessera.execution.exchange import (
    AuthError,
    ClockSkewError,
    ExchangeError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    UnknownOrderError,
)


class ErrorAction(StrEnum):
    REJECT = "reject"  # refused: the order (or change) does not exist on the exchange
    RETRY_LATER = "retry_later"  # could not be processed: outcome unknown; query, then retry
    UNKNOWN_ORDER = "unknown_order"  # the exchange does not know this order
    CLOCK_SKEW = "clock_skew"  # our timestamp is outside recvWindow: resync the clock
    AUTH = "auth"  # signature, key or permissions: stop
    RATE_LIMIT = "rate_limit"  # too many requests or orders: wait
    NO_CHANGE = "no_change"  # the account is already as asked (margin type, position mode)


# Codes both APIs send with the same meaning.
COMMON_CODES: Mapping[int, ErrorAction] = MappingProxyType(
    {
        -1001: ErrorAction.RETRY_LATER,  # internal error / disconnected: may have happened
        -1003: ErrorAction.RATE_LIMIT,  # too many requests (request weight)
        -1015: ErrorAction.RATE_LIMIT,  # too many new orders
        -1021: ErrorAction.CLOCK_SKEW,  # timestamp outside recvWindow
        -1022: ErrorAction.AUTH,  # invalid signature
        -2014: ErrorAction.AUTH,  # API key format invalid
        -2015: ErrorAction.AUTH,  # invalid API key, IP or permissions
        -2011: ErrorAction.UNKNOWN_ORDER,  # cancel: unknown order
        -2013: ErrorAction.UNKNOWN_ORDER,  # query: order does not exist
        -1013: ErrorAction.REJECT,  # filter failure / invalid quantity
        -1100: ErrorAction.REJECT,  # illegal characters in a parameter
        -1102: ErrorAction.REJECT,  # mandatory parameter missing or malformed
        -1106: ErrorAction.REJECT,  # parameter sent when not required
        -1111: ErrorAction.REJECT,  # precision over the maximum for this asset
        -1115: ErrorAction.REJECT,  # invalid timeInForce
        -1116: ErrorAction.REJECT,  # invalid order type
        -1121: ErrorAction.REJECT,  # invalid symbol
        -1130: ErrorAction.REJECT,  # invalid data sent for a parameter
        -2010: ErrorAction.REJECT,  # new order rejected (balance, filters, ...)
    }
)


def exception_for(action: ErrorAction, code: int, msg: str) -> Exception | None:
    """The `Exchange` interface's exception for an action; None for `NO_CHANGE` (the account
    already is as asked: not a failure)."""
    if action is ErrorAction.REJECT:
        return OrderRejectedError(msg, code)
    if action is ErrorAction.UNKNOWN_ORDER:
        return UnknownOrderError(msg, code)
    if action is ErrorAction.CLOCK_SKEW:
        return ClockSkewError(msg, code)
    if action is ErrorAction.AUTH:
        return AuthError(msg, code)
    if action is ErrorAction.RATE_LIMIT:
        return RateLimitedError(msg, code)
    if action is ErrorAction.RETRY_LATER:
        return OutcomeUnknownError(f"{code} {msg}")
    return None


def error_for_code(table: Mapping[int, ErrorAction], code: int, msg: str) -> Exception | None:
    """``(code, msg)`` through a venue's table: its exception, None for `NO_CHANGE`, and a plain
    `ExchangeError` for a code the table does not know."""
    action = table.get(code)
    if action is None:
        return ExchangeError(msg, code)
    return exception_for(action, code, msg)


_BODY = re.compile(r"\{.*\}", re.DOTALL)


def binance_error(exc: Exception, last_json: Any = None) -> tuple[int, str] | None:
    """Binance's (code, msg): from the exception's message, or from the last response body
    when a client library matched the message text and dropped the body (only if the messages
    agree)."""
    if (
        isinstance(last_json, dict)
        and isinstance(last_json.get("code"), int)
        and str(last_json.get("msg", "")) in str(exc)
    ):
        return int(last_json["code"]), str(last_json.get("msg", ""))
    m = _BODY.search(str(exc))
    if m is None:
        return None
    try:
        doc = orjson.loads(m.group(0))
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("code"), int):
        return int(doc["code"]), str(doc.get("msg", ""))
    return None
