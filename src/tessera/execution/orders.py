"""Order domain: plain typed values with no I/O, shared by backtest, paper and live.

Prices, quantities and fees are ``Decimal``; times are integer nanoseconds since the epoch
(UTC). Enum values use Binance's spelling so that they map to the wire without tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"

    @property
    def has_price(self) -> bool:
        return self in (OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.STOP_LOSS_LIMIT)

    @property
    def has_stop(self) -> bool:
        return self in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till canceled
    IOC = "IOC"  # immediate or cancel: fill what you can, expire the rest
    FOK = "FOK"  # fill or kill: all at once or nothing


class OrderStatus(StrEnum):
    INITIALIZED = "INITIALIZED"  # created locally, intent persisted, not sent
    SUBMITTED = "SUBMITTED"  # on the wire: outcome unknown until ack, query or stream
    ACCEPTED = "ACCEPTED"  # resting on the exchange (Binance NEW)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"  # cancel sent, outcome unknown
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"  # definitive rejection only (never a timeout)
    EXPIRED = "EXPIRED"  # IOC/FOK remainder, or expired by the exchange

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        """Working or possibly working on the exchange: must be reconciled, may still fill."""
        return self in _OPEN


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
_OPEN = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    }
)


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order. ``trade_id`` is the exchange's and is unique."""

    trade_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    ts_event: int  # exchange trade time, ns
    strategy: str = ""

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"fill {self.trade_id}: qty must be > 0, got {self.qty}")
        if self.price <= 0:
            raise ValueError(f"fill {self.trade_id}: price must be > 0, got {self.price}")
        if self.fee < 0:
            raise ValueError(f"fill {self.trade_id}: fee must be >= 0, got {self.fee}")

    @property
    def notional(self) -> Decimal:
        return self.price * self.qty


@dataclass(slots=True)
class Order:
    """An order and everything known about it. Mutated only by `OrderStateMachine`."""

    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    strategy: str = ""
    signal_id: str = ""
    ts_created: int = 0
    status: OrderStatus = OrderStatus.INITIALIZED
    exchange_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    # Sum of price*qty over fills: avg_price = filled_notional / filled_qty, exactly.
    filled_notional: Decimal = Decimal(0)
    fees: dict[str, Decimal] = field(default_factory=dict)
    trade_ids: set[str] = field(default_factory=set)
    reject_reason: str | None = None
    overfilled: bool = False
    late_fill: bool = False  # a fill arrived after the order was already terminal
    ts_last: int = 0

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"order {self.client_order_id}: qty must be > 0, got {self.qty}")
        if self.type.has_price and (self.price is None or self.price <= 0):
            raise ValueError(f"order {self.client_order_id}: {self.type} needs a price > 0")
        if self.type.has_stop and (self.stop_price is None or self.stop_price <= 0):
            raise ValueError(f"order {self.client_order_id}: {self.type} needs a stop_price > 0")
        if self.type is OrderType.MARKET and self.price is not None:
            raise ValueError(f"order {self.client_order_id}: a MARKET order takes no price")

    @property
    def remaining_qty(self) -> Decimal:
        return max(self.qty - self.filled_qty, Decimal(0))

    @property
    def avg_price(self) -> Decimal | None:
        return self.filled_notional / self.filled_qty if self.filled_qty else None

    @property
    def signed_filled_qty(self) -> Decimal:
        return self.filled_qty * self.side.sign
