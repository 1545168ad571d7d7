"""Order domain: plain typed values with no I/O, shared by backtest, paper and live.

Prices, quantities and fees are ``Decimal``; times are integer nanoseconds since the epoch
(UTC). Enum values use Binance's spelling so that they map to the wire without tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from tessera.execution.fastinit import slot_init


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
    """Binance spot's order types. Stop and take-profit orders rest on the exchange until the
    market reaches their ``stop_price`` (Binance's ``stopPrice``), so they protect a position
    while the bot is down. Which way is "reached" depends on type and side (`triggered_by`)."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"  # post-only: rejected if it would take
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"

    @property
    def has_price(self) -> bool:
        return self in _PRICED

    @property
    def has_stop(self) -> bool:
        return self in _STOPS

    @property
    def is_stop_loss(self) -> bool:
        return self in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)

    @property
    def is_take_profit(self) -> bool:
        return self in (OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT)

    @property
    def is_market_on_trigger(self) -> bool:
        """Becomes a market order when triggered (the others become limit orders)."""
        return self in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)

    def trigger_above(self, side: OrderSide) -> bool:
        """Whether the order triggers when the price rises to its stop (else when it falls).

        A stop-loss sells when the price falls and buys (covers) when it rises; a take-profit
        the other way round — Binance's rule for ``STOP_LOSS*`` and ``TAKE_PROFIT*``."""
        if not self.has_stop:
            raise ValueError(f"{self} has no stop price")
        rising = side is OrderSide.BUY
        return rising if self.is_stop_loss else not rising


_PRICED = frozenset(
    {
        OrderType.LIMIT,
        OrderType.LIMIT_MAKER,
        OrderType.STOP_LOSS_LIMIT,
        OrderType.TAKE_PROFIT_LIMIT,
    }
)
_STOPS = frozenset(
    {
        OrderType.STOP_LOSS,
        OrderType.STOP_LOSS_LIMIT,
        OrderType.TAKE_PROFIT,
        OrderType.TAKE_PROFIT_LIMIT,
    }
)


class ExitReason(StrEnum):
    """Why an order was sent; the fill that closes (part of) a position records it as the
    position's exit reason, in reports, ``tessera fills list`` and the ``orders`` table."""

    SIGNAL = "signal"  # the strategy's own order or target
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    OCO = "oco"  # a leg of an order list the strategy placed itself
    KILL_SWITCH = "kill_switch"  # the risk engine's flatten
    MANUAL = "manual"  # an operator's command (``tessera orders flatten``)
    END_OF_DATA = "end_of_data"  # the backtest closing what is open at its last bar
    LIQUIDATION = "liquidation"  # a perpetual closed by the exchange at its liquidation price
    # the risk monitor cut a perpetual closer to liquidation than min_liquidation_distance_pct
    # (tessera.risk.leverage.ReduceOrder; "liq_distance": the orders.reason column holds 16)
    LIQ_DISTANCE = "liq_distance"

    @classmethod
    def for_type(cls, order_type: OrderType) -> ExitReason:
        """The reason an order of this type gets when its sender names none."""
        if order_type.is_stop_loss:
            return cls.STOP_LOSS
        if order_type.is_take_profit:
            return cls.TAKE_PROFIT
        return cls.SIGNAL


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


@slot_init
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
    # why it was sent (the exit reason of the position it closes); see `ExitReason`
    reason: ExitReason = ExitReason.SIGNAL
    # the client id of the order list (OCO) it belongs to; "" when it stands alone
    list_id: str = ""
    # may only reduce the position it is sent for (flatten, protective legs): the order
    # gateway caps it at what is held instead of opening the other way
    reduce_only: bool = False

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


def _profit_leg(order_type: OrderType) -> bool:
    return order_type is OrderType.LIMIT_MAKER or order_type.is_take_profit


def _leg_level(order: Order) -> Decimal:
    level = order.stop_price if order.type.has_stop else order.price
    assert level is not None
    return level


@dataclass(frozen=True, slots=True)
class OrderList:
    """An OCO — one cancels the other — as Binance's order list: two orders on one symbol, side
    and quantity, one above the market and one below. When either fills (even in part) or
    triggers, the exchange expires the other.

    A SELL protects a long: above, a take-profit (``LIMIT_MAKER`` or ``TAKE_PROFIT*``); below, a
    stop-loss (``STOP_LOSS*``). A BUY protects a short the other way round. Both legs carry
    ``list_id``; each keeps its own client order id, so each is recovered like any order.
    """

    list_id: str
    above: Order
    below: Order

    def __post_init__(self) -> None:
        a, b = self.above, self.below
        where = f"order list {self.list_id}"
        if (a.symbol, a.side, a.qty) != (b.symbol, b.side, b.qty):
            raise ValueError(f"{where}: both legs need the same symbol, side and quantity")
        if a.list_id != self.list_id or b.list_id != self.list_id:
            raise ValueError(f"{where}: each leg must carry list_id={self.list_id!r}")
        sell = a.side is OrderSide.SELL
        profit, loss = (a, b) if sell else (b, a)
        if not _profit_leg(profit.type):
            side = "above" if sell else "below"
            raise ValueError(
                f"{where}: the {side} leg of a {a.side} must be LIMIT_MAKER, TAKE_PROFIT or "
                f"TAKE_PROFIT_LIMIT, got {profit.type}"
            )
        if not loss.type.is_stop_loss:
            side = "below" if sell else "above"
            raise ValueError(
                f"{where}: the {side} leg of a {a.side} must be STOP_LOSS or STOP_LOSS_LIMIT, "
                f"got {loss.type}"
            )
        if _leg_level(a) <= _leg_level(b):
            raise ValueError(
                f"{where}: the above leg ({_leg_level(a)}) must be above the below leg "
                f"({_leg_level(b)})"
            )

    @property
    def legs(self) -> tuple[Order, Order]:
        return (self.above, self.below)

    @property
    def symbol(self) -> str:
        return self.above.symbol


def exit_oco(
    list_id: str,
    take_profit_id: str,
    stop_loss_id: str,
    *,
    symbol: str,
    side: OrderSide,
    qty: Decimal,
    take_profit: Decimal,
    stop_loss: Decimal,
    stop_limit: Decimal | None,
    take_profit_reason: ExitReason,
    stop_loss_reason: ExitReason,
    strategy: str = "",
    signal_id: str = "",
    ts: int = 0,
) -> OrderList:
    """The OCO of ``StrategyContext.submit_oco``, the same for every venue: a reduce-only
    LIMIT_MAKER take-profit and a STOP_LOSS (STOP_LOSS_LIMIT at ``stop_limit``) stop-loss; for a
    SELL the take-profit is the above leg, for a BUY the stop-loss."""
    common = {
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "strategy": strategy,
        "signal_id": signal_id,
        "ts_created": ts,
        "list_id": list_id,
        "reduce_only": True,
    }
    profit = Order(
        client_order_id=take_profit_id,
        type=OrderType.LIMIT_MAKER,
        price=take_profit,
        reason=take_profit_reason,
        **common,  # type: ignore[arg-type]
    )
    loss = Order(
        client_order_id=stop_loss_id,
        type=OrderType.STOP_LOSS_LIMIT if stop_limit is not None else OrderType.STOP_LOSS,
        price=stop_limit,
        stop_price=stop_loss,
        reason=stop_loss_reason,
        **common,  # type: ignore[arg-type]
    )
    above, below = (profit, loss) if side is OrderSide.SELL else (loss, profit)
    return OrderList(list_id, above, below)  # raises on legs the wrong way round
