"""Every venue's error codes mapped to what to do, and to the `Exchange` interface's exceptions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from venue_payloads import ERRORS

from tessera.execution.exchange import (
    AuthError,
    ClockSkewError,
    ExchangeError,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    UnknownOrderError,
)
from tessera.venues.binance.errors import ErrorAction
from tessera.venues.contract import venue, venue_names

EXCEPTION = {
    ErrorAction.REJECT: OrderRejectedError,
    ErrorAction.RETRY_LATER: OutcomeUnknownError,
    ErrorAction.UNKNOWN_ORDER: UnknownOrderError,
    ErrorAction.CLOCK_SKEW: ClockSkewError,
    ErrorAction.AUTH: AuthError,
    ErrorAction.RATE_LIMIT: RateLimitedError,
}
REQUIRED = set(EXCEPTION)


@pytest.mark.parametrize(
    ("name", "code", "action"),
    [(n, code, action) for n in venue_names() for code, action in ERRORS[n].items()],
)
def test_a_documented_code_means_what_the_venue_documents(
    name: str, code: int, action: ErrorAction
) -> None:
    v = venue(name)
    assert v.classify_error(code) is action
    err = v.error_for(code, "the exchange's message")
    if action is ErrorAction.NO_CHANGE:
        assert err is None  # already as asked: not a failure
    else:
        assert type(err) is EXCEPTION[action]
        if isinstance(err, ExchangeError):
            assert err.code == code and "the exchange's message" in str(err)
        else:
            assert str(code) in str(err)


@pytest.mark.parametrize("name", venue_names())
def test_every_venue_checks_a_code_of_every_action(name: str) -> None:
    assert set(ERRORS[name].values()) >= REQUIRED


@pytest.mark.parametrize("name", venue_names())
@given(code=st.integers(min_value=-10_000, max_value=10_000))
def test_a_code_no_table_knows_is_a_plain_exchange_error_keeping_the_code(
    name: str, code: int
) -> None:
    v = venue(name)
    if v.classify_error(code) is not None:
        return
    err = v.error_for(code, "msg")
    assert type(err) is ExchangeError and err.code == code
