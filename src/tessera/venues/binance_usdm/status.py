"""Binance USDⓈ-M order status names -> `OrderStatus`.

The common names (`tessera.venues.binance.status`) and two of futures' own: ``NEW_INSURANCE``
(a liquidation order filled against the insurance fund) and ``NEW_ADL`` (a position closed by
auto-deleveraging against a counterparty). Both are the exchange's orders, not ours, and are
reported once executed (the bundled payloads carry the whole quantity as filled), so they map
to FILLED. Futures have no ``PENDING_CANCEL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tessera.execution.orders import OrderStatus
from tessera.venues.binance.status import COMMON_STATUS

USDM_STATUS: Mapping[str, OrderStatus] = MappingProxyType(
    {
        **COMMON_STATUS,
        "NEW_INSURANCE": OrderStatus.FILLED,
        "NEW_ADL": OrderStatus.FILLED,
    }
)
