"""What an exchange adapter promises, and what can go wrong, said so that nothing is lost.

The failure that loses orders in other systems is treating "I did not hear back" as "it
failed". Here the two are different exceptions:

* `OrderRejectedError`: the exchange answered and refused (a filter, the balance, a duplicate id).
  Definitive: the order never existed.
* `OutcomeUnknownError`: a timeout, a dropped connection, a 5xx. The order may or may not exist; it
  stays in flight until a query by client order id (`Exchange.query`), the user-data stream or
  reconciliation says which. Because client order ids are deterministic, resubmitting after a
  "not found" can never create a second order.

Other errors say what to do: `RateLimitedError` (wait ``retry_after_s``), `ClockSkewError`
(-1021, see below), `AuthError` (stop: keys or permissions), `UnknownOrderError`
(-2011/-2013).

-1021 (our timestamp outside the exchange's recvWindow) is the adapter's to handle: it
resynchronises its clock (`tessera.live.clock.ExchangeClock`) and repeats a request that is safe
to repeat once; `ClockSkewError` reaches a caller only if the repeat is refused too. A submit is
never repeated: the exchange refused it without creating it, so it is an `OrderRejectedError`
with code -1021.

Which exchange code means which of these is each venue's (`tessera.venues.*.errors`); this
module names no venue.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from tessera.execution.orders import Fill, Order, OrderList, OrderStatus, OrderType


class ExchangeError(Exception):
    """An error the exchange answered with; ``code`` is Binance's (or 0 if none)."""

    def __init__(self, message: str, code: int = 0, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class OrderRejectedError(ExchangeError):
    """Definitively refused: the order does not exist on the exchange."""


class UnknownOrderError(ExchangeError):
    """The exchange does not know this order (-2011 on cancel, -2013 on query)."""


@dataclass
class Sending:
    """A new order's request while `OrderManager.submit` awaits it (`SENDING`), shared with
    the adapter sending it.

    ``guard``, set by the manager: why the order may no longer go (trading halted while the
    adapter's rate limiter held it back), asked by the adapter right before the request leaves;
    an answer other than None is raised as `OrderRejectedError` ("never sent: ..."). ``held``,
    set by the adapter: True while its rate limiter holds the request back — it has not left,
    and a submit cancelled then (a bot stopping) never reached the exchange — False once it
    leaves; None: the adapter does not say, and nothing is concluded from it."""

    guard: Callable[[], str | None] | None = None
    held: bool | None = None

    def refused(self) -> OrderRejectedError | None:
        """The guard's refusal as the error to raise, or None (no guard, or it lets go)."""
        reason = self.guard() if self.guard is not None else None
        return OrderRejectedError(f"never sent: {reason}") if reason is not None else None


SENDING: ContextVar[Sending | None] = ContextVar("sending", default=None)


def refused_before_sending() -> OrderRejectedError | None:
    """For an adapter about to send a new order: the submitting manager's refusal
    (`Sending.refused`), or None (none submitting, or it lets go)."""
    sending = SENDING.get()
    return sending.refused() if sending is not None else None


class RateLimitedError(ExchangeError):
    def __init__(self, message: str, code: int = 0, status: int = 429, retry_after_s: float = 1.0):
        super().__init__(message, code, status)
        self.retry_after_s = retry_after_s


class ClockSkewError(ExchangeError):
    """-1021: our timestamp is outside the exchange's recvWindow, even after a resync.

    Not an `OrderRejectedError` on purpose: a query refused for its timestamp says nothing
    about whether the order exists, and `query` reads a rejection as "does not exist"."""


class AuthError(ExchangeError):
    """-1022 / -2014 / -2015: signature, key or permissions."""


class OutcomeUnknownError(Exception):
    """No answer we can trust (timeout, disconnect, 5xx): the request may have taken effect."""


@dataclass
class ExchangeOrder:
    """An order as the exchange reports it."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    status: OrderStatus
    qty: Decimal
    filled_qty: Decimal
    filled_notional: Decimal
    price: Decimal | None = None
    ts_update: int = 0  # ns
    fills: list[Fill] = field(default_factory=list)  # when the response carries them
    type: OrderType | None = None  # when the answer names it
    stop_price: Decimal | None = None  # stop and take-profit types


@dataclass(frozen=True)
class ExchangeTrade:
    """One of our trades as the exchange lists it; the exchange knows orders by its own id."""

    exchange_order_id: str
    fill: Fill


@dataclass(frozen=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


class Exchange(Protocol):
    """The adapter interface: the same calls for the simulator, testnet and the real exchange."""

    async def submit(self, order: Order) -> ExchangeOrder: ...

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        """Places an OCO in one request; answers both legs (above first, then below).

        Raises like `submit`: `OrderRejectedError` when the exchange refuses the list (neither
        leg exists), `OutcomeUnknownError` when no answer came (either both legs exist or
        neither: each is found by its client order id). Once placed, either leg filling or
        triggering expires the other; canceling either leg cancels both."""
        ...

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder: ...

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None: ...

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def balances(self) -> dict[str, Balance]: ...

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]: ...

    async def close(self) -> None: ...
