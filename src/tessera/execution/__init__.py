"""Execution: the order domain (pure) and, at the edges, exchange adapters and persistence."""

from tessera.execution.ids import ClientOrderIdGenerator, is_valid_client_order_id
from tessera.execution.orders import (
    Fill,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.position import Position
from tessera.execution.state import (
    FillOutcome,
    InvalidTransitionError,
    OrderEvent,
    OrderEventKind,
    OrderStateMachine,
)

__all__ = [
    "ClientOrderIdGenerator",
    "Fill",
    "FillOutcome",
    "InvalidTransitionError",
    "Liquidity",
    "Order",
    "OrderEvent",
    "OrderEventKind",
    "OrderSide",
    "OrderStateMachine",
    "OrderStatus",
    "OrderType",
    "Position",
    "TimeInForce",
    "is_valid_client_order_id",
]
