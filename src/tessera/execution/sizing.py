"""Sizing: the orders that take a position to a target, and the orders that flatten — pure.

One module because the backtest and the live bot used to size twice with different rules (live
capped a spot sell at the held balance, the backtest sold what it did not have). Both now ask
this module, so a strategy meets the same refusals in research as in production:

* a flip (long to short or back) is two orders, the close first and reduce-only, then the
  open: an opening leg that cannot be paid for (or is refused) still leaves the close done;
* on spot (``can_short=False``) a target below zero is cut to zero — a short needs a borrow —
  and the plan says so (``denied="no_borrow"``, ``cut`` the refused quantity); on a
  perpetual a target below zero is a short position like a long (`MarketKind`,
  `orders_for_market`: the caller says which market it trades, not how to size);
* ``sellable`` caps what a spot sell may take (the account's base balance live, the portfolio's
  base holding in the backtest); the part cut is in the plan, never dropped in silence;
* quantities are rounded down to the market lot step (``SymbolFilters.round_qty``); rounding is
  not a refusal (the plan reaches the target to within one step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tessera.execution.fastinit import slot_init
from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import ExitReason, Order, OrderSide, OrderType

ZERO = Decimal(0)
NO_BORROW = "no_borrow"


class MarketKind(StrEnum):
    """What the traded market lets a target be: spot holds the base asset (no short without a
    borrow; a sell is capped at what is held); a perpetual holds a signed position (a short is
    a position; the exchange's reduce-only flag, not a balance, keeps an exit from opening)."""

    SPOT = "spot"
    PERPETUAL = "perpetual"


@slot_init
@dataclass(frozen=True, slots=True)
class SizedOrder:
    """One market order of a plan."""

    side: OrderSide
    qty: Decimal
    reduce_only: bool = False
    note: str = ""  # "close", "open", "reduce" or "increase"

    @property
    def signed(self) -> Decimal:
        return self.qty * self.side.sign


@slot_init
@dataclass(frozen=True, slots=True)
class SizingPlan:
    """The orders to send, in order, and what was refused on the way."""

    position: Decimal
    target: Decimal  # as asked
    orders: tuple[SizedOrder, ...] = ()
    cut: Decimal = ZERO  # quantity asked for and refused (no borrow, or beyond ``sellable``)
    denied: str | None = None  # ``"no_borrow"`` when ``cut`` is not zero

    @property
    def reaches(self) -> Decimal:
        """The position once every order has filled."""
        return self.position + sum((o.signed for o in self.orders), ZERO)

    def __str__(self) -> str:
        legs = ", ".join(
            f"{o.side} {o.qty}{' (reduce-only)' if o.reduce_only else ''}" for o in self.orders
        )
        refused = f"; refused {self.cut} ({self.denied})" if self.cut else ""
        return f"{self.position} -> {self.target}: [{legs}]{refused}"


def _round(qty: Decimal, filters: SymbolFilters | None) -> Decimal:
    return filters.round_qty(qty, market=True) if filters is not None else qty


def orders_for_target(
    position: Decimal,
    target: Decimal,
    *,
    filters: SymbolFilters | None,
    can_short: bool,
    sellable: Decimal | None,
) -> SizingPlan:
    """The market orders that move ``position`` to ``target`` (signed base quantities)."""
    cut = ZERO
    goal = target
    if not can_short and goal < 0:
        cut += -goal  # the short part: spot has no borrow
        goal = ZERO
    orders: list[SizedOrder] = []
    free = None if sellable is None else max(sellable, ZERO)

    def add(side: OrderSide, qty: Decimal, reduce_only: bool, note: str) -> Decimal:
        """Append a leg; returns the quantity refused because it could not be sold."""
        nonlocal free
        refused = ZERO
        if side is OrderSide.SELL and free is not None and qty > free:
            refused = qty - free
            qty = free
        qty = _round(qty, filters)
        if qty > 0:
            orders.append(SizedOrder(side, qty, reduce_only, note))
            if side is OrderSide.SELL and free is not None:
                free -= qty
        return refused

    flips = position != 0 and goal != 0 and (position > 0) != (goal > 0)
    if flips:
        close_side = OrderSide.SELL if position > 0 else OrderSide.BUY
        cut += add(close_side, abs(position), True, "close")
        cut += add(close_side, abs(goal), False, "open")
    else:
        delta = goal - position
        if delta:
            side = OrderSide.BUY if delta > 0 else OrderSide.SELL
            reduces = position != 0 and abs(goal) < abs(position)
            cut += add(side, abs(delta), reduces, "reduce" if reduces else "increase")
    return SizingPlan(
        position=position,
        target=target,
        orders=tuple(orders),
        cut=cut,
        denied=NO_BORROW if cut else None,
    )


def orders_for_market(
    position: Decimal,
    target: Decimal,
    *,
    market: MarketKind,
    filters: SymbolFilters | None,
    sellable: Decimal | None = None,
) -> SizingPlan:
    """`orders_for_target` for ``market``: on spot a short is cut (``no_borrow``) and a sell
    capped at ``sellable``; on a perpetual ``sellable`` must be None (a position, not a
    balance, is what an order reduces) and a negative target is a short."""
    if market is MarketKind.PERPETUAL:
        if sellable is not None:
            raise ValueError("a perpetual has no sellable balance: pass sellable=None")
        return orders_for_target(position, target, filters=filters, can_short=True, sellable=None)
    return orders_for_target(position, target, filters=filters, can_short=False, sellable=sellable)


@dataclass(frozen=True, slots=True)
class FlattenOrder:
    """A reduce-only market order that closes one strategy's position on one symbol."""

    symbol: str
    strategy: str
    side: OrderSide
    qty: Decimal
    reason: ExitReason = ExitReason.KILL_SWITCH
    reduce_only: bool = True
    cut: Decimal = ZERO  # part of the position that could not be sold (not held)

    def order(self, client_order_id: str, signal_id: str) -> Order:
        """The live `Order` of this step (a market order; the caller names it)."""
        return Order(
            client_order_id=client_order_id,
            symbol=self.symbol,
            side=self.side,
            type=OrderType.MARKET,
            qty=self.qty,
            strategy=self.strategy,
            signal_id=signal_id,
            reason=self.reason,
            reduce_only=self.reduce_only,
        )


def flatten_orders(
    positions: Mapping[tuple[str, str], Decimal],
    filters: Mapping[str, SymbolFilters] | None = None,
    held: Mapping[str, Decimal] | None = None,
    reason: ExitReason = ExitReason.KILL_SWITCH,
) -> list[FlattenOrder]:
    """Reduce-only market orders that close every ``(symbol, strategy)`` position, in the
    mapping's order. ``held`` (base asset -> quantity the account holds) caps the sells of
    each base asset together, when the symbol's filters name its base asset; a position that
    rounds to nothing (below one lot step) gets no order."""
    left = dict(held) if held is not None else None
    out: list[FlattenOrder] = []
    for (symbol, strategy), qty in positions.items():
        if not qty:
            continue
        f = (filters or {}).get(symbol)
        side = OrderSide.SELL if qty > 0 else OrderSide.BUY
        size = abs(qty)
        cut = ZERO
        if side is OrderSide.SELL and left is not None and f is not None:
            have = max(left.get(f.base_asset, ZERO), ZERO)
            if size > have:
                cut, size = size - have, have
        size = _round(size, f)
        if size <= 0:
            continue
        if side is OrderSide.SELL and left is not None and f is not None:
            left[f.base_asset] = left.get(f.base_asset, ZERO) - size
        out.append(FlattenOrder(symbol, strategy, side, size, reason, True, cut))
    return out
