"""What an exchange reports about our orders and balances, in the domain's terms.

These are the events a venue's user-data parser produces (`tessera.venues.*.user_data`) and the
order manager consumes: every venue says "order X is now in state S, with this fill" the same
way, so the manager, the paper exchange and reconciliation do not know which venue spoke. They
live in the domain (no I/O, no venue import) so that the domain can name them and every venue
can build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tessera.execution.orders import Fill, OrderSide, OrderStatus, OrderType


@dataclass(frozen=True)
class ExecutionReport:
    """One order update: its state after the event, and the fill the event carried, if any."""

    symbol: str
    client_order_id: str  # for a cancel: the canceled order's id (Binance spot's "C")
    side: OrderSide
    exec_type: str  # the venue's execution type: NEW, TRADE, CANCELED, EXPIRED, REJECTED, ...
    status: OrderStatus
    exchange_order_id: str
    cum_qty: Decimal
    cum_quote: Decimal
    event_ms: int
    fill: Fill | None  # a trade only
    reject_reason: str = "NONE"
    order_type: OrderType | None = None  # when it is one of the domain's types
    stop_price: Decimal | None = None  # when the type has one
    order_list_id: int = -1  # the order list (OCO) it belongs to, -1 when none
    working: bool = True  # on the book (False for a stop not triggered yet, or when done)


@dataclass(frozen=True)
class ListStatus:
    """The state of an order list (OCO) as a whole."""

    symbol: str
    order_list_id: int
    list_client_order_id: str
    contingency_type: str  # OCO
    list_status_type: str  # RESPONSE, EXEC_STARTED, UPDATED, ALL_DONE
    list_order_status: str  # EXECUTING, ALL_DONE, REJECT
    reject_reason: str
    event_ms: int
    orders: tuple[tuple[int, str], ...]  # (exchange order id, client order id) of each leg

    @property
    def done(self) -> bool:
        return self.list_order_status in ("ALL_DONE", "REJECT")


@dataclass(frozen=True)
class AccountPosition:
    """Spot balances after a change: asset -> (free, locked)."""

    event_ms: int
    balances: dict[str, tuple[Decimal, Decimal]]
