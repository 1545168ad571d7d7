"""Binance error codes -> our exceptions, whatever ccxt made of them (no network needed)."""

from __future__ import annotations

import ccxt.async_support as ccxt_async
import pytest
from ccxt.async_support import ExchangeError as CcxtError

from tessera.execution.exchange import (
    AuthError,
    ClockSkewError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    UnknownOrderError,
)
from tessera.venues.binance.ccxt_errors import map_error


def body(code: int, msg: str) -> str:
    return f'binance {{"code":{code},"msg":"{msg}"}}'


@pytest.mark.parametrize(
    ("exc", "want", "code"),
    [
        (CcxtError(body(-1013, "Filter failure")), OrderRejectedError, -1013),
        (ccxt_async.InvalidOrder(body(-2010, "Duplicate order sent.")), OrderRejectedError, -2010),
        (CcxtError(body(-2011, "Unknown order sent.")), UnknownOrderError, -2011),
        (ccxt_async.OrderNotFound(body(-2013, "Order does not exist.")), UnknownOrderError, -2013),
        (CcxtError(body(-1021, "Timestamp ...")), ClockSkewError, -1021),
        (ccxt_async.AuthenticationError(body(-1022, "Signature ...")), AuthError, -1022),
        (CcxtError(body(-2015, "Invalid API-key ...")), AuthError, -2015),
        (ccxt_async.RateLimitExceeded(body(-1003, "Too much weight")), RateLimitedError, -1003),
        (CcxtError(body(-1015, "Too many new orders")), RateLimitedError, -1015),
        (ccxt_async.DDoSProtection("binance 418 I'm a teapot"), RateLimitedError, 0),
        (CcxtError(body(-1001, "Internal error")), OutcomeUnknownError, None),
        (ccxt_async.RequestTimeout("binance GET timed out"), OutcomeUnknownError, None),
        (ccxt_async.NetworkError("Server disconnected"), OutcomeUnknownError, None),
        (ccxt_async.ExchangeNotAvailable("binance 503"), OutcomeUnknownError, None),
        (ccxt_async.InsufficientFunds("binance insufficient balance"), OrderRejectedError, -2010),
    ],
)
def test_codes_map_to_what_the_caller_must_do(
    exc: Exception, want: type[Exception], code: int | None
) -> None:
    got = map_error(exc)
    assert type(got) is want
    if code is not None:
        assert getattr(got, "code", None) == code


def test_the_last_body_is_used_when_ccxt_matched_the_message() -> None:
    exc = ccxt_async.InvalidOrder("binance Order would immediately match and take.")
    last = {"code": -2010, "msg": "Order would immediately match and take."}
    got = map_error(exc, last)
    assert isinstance(got, OrderRejectedError) and got.code == -2010
    # a body from another request (different message) is not borrowed
    other = map_error(exc, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    assert isinstance(other, OrderRejectedError) and other.code == 0
