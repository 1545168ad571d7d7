"""`map_error`: a ccxt exception from a Binance venue -> the `tessera.execution.exchange`
exception the `Exchange` interface promises; both Binance ccxt adapters (spot's
`tessera.venues.binance_spot.exchange.CcxtExchange`, USDⓈ-M's
`tessera.venues.binance_usdm.exchange.UsdmCcxtExchange`) call it with their venue's table.

ccxt picks exception classes from Binance's error codes by URL prefix, so pointed at the
simulator or a proxy it only has its generic mappings. We read Binance's ``{"code": ..., "msg":
...}`` body out of the exception ourselves (or from the last response body when ccxt matched
by message text and kept no body; `tessera.venues.binance.errors.binance_error`) and map the
code through the venue's table (spot's by default); only without a body does ccxt's own class
decide. Anything without an exchange answer — a timeout, a dropped connection, a 5xx — is
`OutcomeUnknownError`, never a rejection.

Why here: the body and the codes are Binance's, the same on spot and USDⓈ-M (the venue's
table is a parameter), so the one reading serves both venue folders. It is a module of its own,
not part of `errors`, because it imports ccxt, and `errors` is read by processes that never
load ccxt (the contract, the user-data parsers). The default table is spot's, as it was when
the spot adapter held this function (callers without a venue, such as the error-mapping tests,
read spot's codes): the one import from a venue folder here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ccxt.async_support as ccxt_async

from tessera.execution.exchange import (
    AuthError,
    ExchangeError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    UnknownOrderError,
)
from tessera.venues.binance.errors import ErrorAction, binance_error, exception_for
from tessera.venues.binance_spot.errors import classify as classify_spot


def map_error(
    exc: Exception,
    last_json: Any = None,
    classify: Callable[[int], ErrorAction | None] = classify_spot,
) -> Exception:
    """A ccxt exception -> ours (see the module docstring); ``classify`` is the venue's code
    table (spot's by default). A code the venue calls `ErrorAction.NO_CHANGE` ("already so")
    comes back as a plain `ExchangeError` with its code, for the caller that asked for the
    change to read as success."""
    body = binance_error(exc, last_json)
    if body is not None:
        code, msg = body
        action = classify(code)
        mapped = exception_for(action, code, msg) if action is not None else None
        if mapped is not None:
            return mapped
        if action is ErrorAction.NO_CHANGE:
            return ExchangeError(msg, code)
    # ccxt matched the message text instead (its "broad" table) and kept no body
    if isinstance(exc, ccxt_async.InsufficientFunds):
        return OrderRejectedError(str(exc)[:300], -2010)
    if isinstance(exc, ccxt_async.OrderNotFound):
        return UnknownOrderError(str(exc)[:300], -2013)
    if isinstance(exc, ccxt_async.InvalidOrder):
        return OrderRejectedError(str(exc)[:300])
    if isinstance(exc, ccxt_async.RateLimitExceeded | ccxt_async.DDoSProtection):
        return RateLimitedError(str(exc)[:300])
    if isinstance(exc, ccxt_async.AuthenticationError | ccxt_async.PermissionDenied):
        return AuthError(str(exc)[:300])
    if isinstance(exc, ccxt_async.NetworkError):  # timeouts, disconnects, 5xx
        return OutcomeUnknownError(str(exc)[:300])
    if body is not None:
        return ExchangeError(body[1], body[0])
    return ExchangeError(str(exc)[:300])
