"""Binance spot order status names -> `OrderStatus`: the common ones and ``PENDING_CANCEL``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tessera.execution.orders import OrderStatus
from tessera.venues.binance.status import COMMON_STATUS

# PENDING_NEW (order lists before they start) never reaches a spot client placing single
# orders and OCOs, and is not mapped.
SPOT_STATUS: Mapping[str, OrderStatus] = MappingProxyType(
    {**COMMON_STATUS, "PENDING_CANCEL": OrderStatus.PENDING_CANCEL}
)
