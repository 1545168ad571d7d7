"""Every venue's order status map covers every status it documents and every status found in
its bundled payloads, and reaches every exchange-side `OrderStatus`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from venue_payloads import DOCUMENTED_STATUSES, ORDER_STATE_FILES, SAMPLES

from tessera.execution.orders import OrderStatus
from tessera.venues.contract import venue, venue_names

EXCHANGE_SIDE = {
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.CANCELED,
    OrderStatus.REJECTED,
    OrderStatus.EXPIRED,
}


def statuses_in(doc: Any) -> set[str]:
    """Order status names in a payload: ``X`` of a user-data order event (nested in ``o`` on
    USDⓈ-M) and ``status`` of a REST order object (one with a ``clientOrderId``)."""
    found: set[str] = set()
    if isinstance(doc, dict):
        if doc.get("e") in ("executionReport", "ORDER_TRADE_UPDATE"):
            found.add(str(doc.get("X") or doc["o"]["X"]))
        if "clientOrderId" in doc and "status" in doc:
            found.add(str(doc["status"]))
        for value in doc.values():
            found |= statuses_in(value)
    elif isinstance(doc, list):
        for value in doc:
            found |= statuses_in(value)
    return found


def bundled_statuses(name: str) -> set[str]:
    found: set[str] = set()
    for source in ORDER_STATE_FILES[name]:
        path = SAMPLES / source
        for file in sorted(path.glob("*.json")) if path.is_dir() else [path]:
            found |= statuses_in(json.loads(file.read_text()))
    return found


@pytest.mark.parametrize("name", venue_names())
def test_every_documented_status_is_mapped(name: str) -> None:
    assert set(DOCUMENTED_STATUSES[name]) <= set(venue(name).order_status)


@pytest.mark.parametrize("name", venue_names())
def test_every_status_in_the_bundled_payloads_is_mapped(name: str) -> None:
    found = bundled_statuses(name)
    assert len(found) >= 3, found
    assert found <= set(venue(name).order_status), found - set(venue(name).order_status)


@pytest.mark.parametrize("name", venue_names())
def test_the_map_reaches_every_exchange_side_status_and_no_local_one(name: str) -> None:
    image = set(venue(name).order_status.values())
    assert image >= EXCHANGE_SIDE
    assert not image & {OrderStatus.INITIALIZED, OrderStatus.SUBMITTED}
