"""User data through every venue's parser, on its bundled real events: a new order, a partial
fill, a fill and a cancel give `ExecutionReport`s in the domain's terms; an account update
gives the venue's account event."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from venue_payloads import USER, Payload, cases

from tessera.execution.orders import OrderStatus
from tessera.execution.reports import ExecutionReport
from tessera.venues.contract import venue, venue_names


def report(name: str, payload: Payload) -> ExecutionReport:
    event = venue(name).parse_user_event(payload.raw())
    assert isinstance(event, ExecutionReport), event
    assert event.symbol and event.client_order_id and event.exchange_order_id
    assert event.event_ms > 10**12
    return event


@pytest.mark.parametrize(("name", "payload"), cases(USER, "new"))
def test_a_new_order_is_accepted_with_nothing_filled(name: str, payload: Payload) -> None:
    r = report(name, payload)
    assert r.status is OrderStatus.ACCEPTED and r.exec_type == "NEW"
    assert r.fill is None and r.cum_qty == 0 and r.working


@pytest.mark.parametrize(("name", "payload"), cases(USER, "partial_fill"))
def test_a_partial_fill_carries_its_fill_and_leaves_the_order_working(
    name: str, payload: Payload
) -> None:
    r = report(name, payload)
    assert r.status is OrderStatus.PARTIALLY_FILLED and r.working
    assert r.fill is not None and 0 < r.fill.qty <= r.cum_qty
    assert r.fill.client_order_id == r.client_order_id and r.fill.symbol == r.symbol


@pytest.mark.parametrize(("name", "payload"), cases(USER, "fill"))
def test_a_fill_carries_its_exact_trade_and_ends_the_order(name: str, payload: Payload) -> None:
    r = report(name, payload)
    assert r.status is OrderStatus.FILLED and r.status.is_terminal
    f = r.fill
    assert f is not None and f.trade_id and f.price > 0 and 0 < f.qty <= r.cum_qty
    assert f.side is r.side and f.ts_event > 10**18
    assert isinstance(f.fee, Decimal) and f.fee >= 0


@pytest.mark.parametrize(("name", "payload"), cases(USER, "cancel"))
def test_a_cancel_names_the_canceled_order_and_carries_no_fill(name: str, payload: Payload) -> None:
    r = report(name, payload)
    assert r.status is OrderStatus.CANCELED and r.fill is None


@pytest.mark.parametrize(("name", "payload"), cases(USER, "account_update"))
def test_an_account_update_gives_the_venues_account_event_with_exact_balances(
    name: str, payload: Payload
) -> None:
    v = venue(name)
    event = v.parse_user_event(payload.raw())
    assert isinstance(event, v.account_events)
    assert event.event_ms > 10**12  # type: ignore[attr-defined]
    balances = event.balances  # type: ignore[attr-defined]
    assert balances and all(isinstance(asset, str) and asset for asset in balances)


@pytest.mark.parametrize(("name", "payload"), cases(USER, "new", "account_update"))
def test_an_event_without_its_fields_is_refused_with_the_venues_error(
    name: str, payload: Payload
) -> None:
    v = venue(name)
    kind = json.loads(payload.raw())["e"]
    with pytest.raises(v.user_event_error):
        v.parse_user_event(json.dumps({"e": kind}))
    with pytest.raises(v.user_event_error):
        v.parse_user_event("{not json")


@pytest.mark.parametrize("name", venue_names())
def test_an_event_type_the_venue_does_not_use_gives_none(name: str) -> None:
    assert venue(name).parse_user_event('{"e":"somethingNew","E":1700000000000}') is None
