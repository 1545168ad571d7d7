"""`OrderStateMachine`: the only place where an order's status changes.

Rules that keep orders from being lost or duplicated:

- A timeout, disconnect or 5xx is *not* an event here: the order stays SUBMITTED (or
  PENDING_CANCEL) — in flight — until the exchange tells us, by ack, query, user-data stream
  or reconciliation. Only a definitive exchange rejection rejects. (hummingbot marks orders
  failed on any submit error and then loses track of the ones that did reach the exchange.)
- Fills are applied by trade id exactly once. A fill may arrive before the ack (market
  orders), after a cancel was requested, and even after the cancel was confirmed (the REST
  cancel response can overtake the stream's trade event): it is always recorded, never
  dropped; the order is flagged ``late_fill`` in the last case.
- A fill beyond the order quantity is recorded and flagged ``overfilled``: it happened on the
  exchange, so the books must show it; reconciliation and alerts take it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tessera.execution.fastinit import slot_init
from tessera.execution.orders import Fill, Order, OrderStatus

S = OrderStatus


class InvalidTransitionError(Exception):
    """An event that cannot happen to an order in its current state (a bug or bad data)."""


class OrderEventKind(StrEnum):
    SUBMITTED = "submitted"  # request written to the wire
    ACCEPTED = "accepted"  # exchange ack: resting (NEW)
    REJECTED = "rejected"  # definitive rejection by the exchange or our risk engine
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REJECTED = "cancel_rejected"  # e.g. -2011: the order was already done
    CANCELED = "canceled"
    EXPIRED = "expired"
    FILLED = "filled"  # a trade of this order (partial or complete)


@slot_init
@dataclass(frozen=True, slots=True)
class OrderEvent:
    kind: OrderEventKind
    ts: int  # ns
    exchange_order_id: str | None = None
    reason: str | None = None
    fill: Fill | None = None


class FillOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # trade id already seen: ignored
    OVERFILL = "overfill"  # applied, but total filled exceeds the order quantity
    LATE = "late"  # applied to an order that was already terminal


# Allowed status changes for the non-fill events. Fills are handled by `_apply_fill`.
_TRANSITIONS: dict[OrderEventKind, dict[OrderStatus, OrderStatus]] = {
    OrderEventKind.SUBMITTED: {S.INITIALIZED: S.SUBMITTED},
    OrderEventKind.ACCEPTED: {
        S.SUBMITTED: S.ACCEPTED,
        # Ack overtaken by a fill or a cancel request: keep the more advanced state.
        S.ACCEPTED: S.ACCEPTED,
        S.PARTIALLY_FILLED: S.PARTIALLY_FILLED,
        S.PENDING_CANCEL: S.PENDING_CANCEL,
        S.FILLED: S.FILLED,
        S.CANCELED: S.CANCELED,
        S.EXPIRED: S.EXPIRED,
    },
    OrderEventKind.REJECTED: {S.INITIALIZED: S.REJECTED, S.SUBMITTED: S.REJECTED},
    OrderEventKind.CANCEL_REQUESTED: {
        S.SUBMITTED: S.PENDING_CANCEL,
        S.ACCEPTED: S.PENDING_CANCEL,
        S.PARTIALLY_FILLED: S.PENDING_CANCEL,
        S.PENDING_CANCEL: S.PENDING_CANCEL,
    },
    OrderEventKind.CANCEL_REJECTED: {
        # Back to what the fills say; a terminal event will follow if the order is done.
        S.PENDING_CANCEL: S.ACCEPTED,
    },
    OrderEventKind.CANCELED: {
        S.INITIALIZED: S.CANCELED,  # never sent (e.g. found unsent after a crash)
        S.SUBMITTED: S.CANCELED,
        S.ACCEPTED: S.CANCELED,
        S.PARTIALLY_FILLED: S.CANCELED,
        S.PENDING_CANCEL: S.CANCELED,
        S.CANCELED: S.CANCELED,
    },
    OrderEventKind.EXPIRED: {
        S.SUBMITTED: S.EXPIRED,
        S.ACCEPTED: S.EXPIRED,
        S.PARTIALLY_FILLED: S.EXPIRED,
        S.PENDING_CANCEL: S.EXPIRED,
        S.EXPIRED: S.EXPIRED,
    },
}


class OrderStateMachine:
    """Applies events to orders. Stateless: all state lives in the `Order`."""

    def apply(self, order: Order, event: OrderEvent) -> FillOutcome | None:
        """Apply ``event``; returns the fill outcome for FILLED events, else None.

        Raises `InvalidTransitionError` for an event the order's state does not allow.
        """
        if event.kind is OrderEventKind.FILLED:
            if event.fill is None:
                raise InvalidTransitionError("a FILLED event needs a fill")
            return self._apply_fill(order, event.fill)
        self.transition(order, event.kind, event.ts, event.exchange_order_id, event.reason)
        return None

    def transition(
        self,
        order: Order,
        kind: OrderEventKind,
        ts: int,
        exchange_order_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """`apply` of a non-fill event given by its parts, without building the `OrderEvent`
        (what a backtest does three times for every order); the same rules, the same errors."""
        if kind is OrderEventKind.FILLED:
            raise InvalidTransitionError("a FILLED event needs a fill: use fill()")
        allowed = _TRANSITIONS[kind]
        status = order.status
        if status not in allowed:
            raise InvalidTransitionError(
                f"order {order.client_order_id}: {kind} is not allowed in {status}"
            )
        new = allowed[status]
        if kind is OrderEventKind.CANCEL_REJECTED:
            new = S.PARTIALLY_FILLED if order.filled_qty > 0 else S.ACCEPTED
        if exchange_order_id:
            order.exchange_order_id = exchange_order_id
        if kind is OrderEventKind.REJECTED:
            order.reject_reason = reason or "rejected"
        order.status = new
        if ts > order.ts_last:  # max(ts_last, ts)
            order.ts_last = ts

    def fill(self, order: Order, fill: Fill) -> FillOutcome:
        """`apply` of a FILLED event carrying ``fill``, without building the `OrderEvent`."""
        return self._apply_fill(order, fill)

    def _apply_fill(self, order: Order, fill: Fill) -> FillOutcome:
        if fill.client_order_id != order.client_order_id:
            raise InvalidTransitionError(
                f"fill {fill.trade_id} belongs to {fill.client_order_id}, "
                f"not {order.client_order_id}"
            )
        if fill.trade_id in order.trade_ids:
            return FillOutcome.DUPLICATE
        if order.status in (S.INITIALIZED, S.REJECTED):
            raise InvalidTransitionError(
                f"order {order.client_order_id}: fill {fill.trade_id} in {order.status}"
            )
        was_terminal = order.status.is_terminal
        order.trade_ids.add(fill.trade_id)
        order.filled_qty += fill.qty
        order.filled_notional += fill.price * fill.qty
        order.fees[fill.fee_asset] = order.fees.get(fill.fee_asset, Decimal(0)) + fill.fee
        order.ts_last = max(order.ts_last, fill.ts_event)

        if was_terminal:
            # Recorded, status kept: a confirmed cancel/expiry stays the final word on the
            # remainder, and a FILLED order stays FILLED.
            order.late_fill = True
            if order.filled_qty > order.qty:
                order.overfilled = True
            return FillOutcome.LATE
        if order.filled_qty >= order.qty:
            order.status = S.FILLED
        elif order.status is not S.PENDING_CANCEL:
            # While a cancel is pending, the cancel's outcome decides the next state.
            order.status = S.PARTIALLY_FILLED
        if order.filled_qty > order.qty:
            order.overfilled = True
            return FillOutcome.OVERFILL
        return FillOutcome.APPLIED
