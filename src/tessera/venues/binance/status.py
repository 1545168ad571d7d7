"""Binance order status names -> the domain's `OrderStatus`.

Spot and USDⓈ-M send the same names for the states both have; each venue adds its own
(`tessera.venues.binance_usdm.status`). ``PENDING_NEW`` (spot order lists before they start)
never reaches a client that places single orders and OCOs, so it is not mapped: an unknown
name is a malformed event, not a guess.
"""

from __future__ import annotations

from types import MappingProxyType

from tessera.execution.orders import OrderStatus

COMMON_STATUS = MappingProxyType(
    {
        "NEW": OrderStatus.ACCEPTED,
        "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
        "FILLED": OrderStatus.FILLED,
        "CANCELED": OrderStatus.CANCELED,
        "REJECTED": OrderStatus.REJECTED,
        "EXPIRED": OrderStatus.EXPIRED,
        "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,  # self-trade prevention expired it
    }
)
