"""Order-event observers: what leaves the order path besides the database (metrics, logs).

`OrderManager` reports every event to its observer right after writing it to the store, so the
metrics follow the ledger (an event whose write fails raises before it is observed).
"""

from __future__ import annotations

from typing import Protocol

from tessera import metrics
from tessera.execution.orders import Order
from tessera.execution.state import OrderEvent, OrderEventKind

K = OrderEventKind


class OrderObserver(Protocol):
    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        """``event`` was applied to ``order`` and persisted."""
        ...


class NullObserver:
    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        return None


class MetricsOrderObserver:
    """Order flow, fills, fees, fill ratio, in-flight and open orders as Prometheus metrics."""

    def __init__(self, quote_asset: str = "USDT") -> None:
        self.quote_asset = quote_asset
        self._in_flight: set[str] = set()
        self._open: dict[str, set[str]] = {}

    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        side, otype = order.side.value.lower(), order.type.value.lower()
        labels = {
            "symbol": order.symbol,
            "side": metrics.bounded(side, metrics.SIDES),
            "type": metrics.bounded(otype, metrics.ORDER_TYPES),
        }
        cid = order.client_order_id
        if event.kind is K.SUBMITTED:
            metrics.ORDERS_SUBMITTED.labels(**labels).inc()
            metrics.record_order_quantity(order.symbol, side, float(order.qty))
            self._in_flight.add(cid)
        elif event.kind is K.ACCEPTED:
            metrics.ORDERS_ACKED.labels(**labels).inc()
        elif event.kind is K.REJECTED:
            metrics.record_order_rejected(order.symbol, side, otype, _reason(event.reason))
        elif event.kind in (K.CANCELED, K.EXPIRED):
            metrics.ORDERS_CANCELED.labels(**labels).inc()
        elif event.kind is K.FILLED and event.fill is not None:
            fill = event.fill
            fee = fill.fee if fill.fee_asset == self.quote_asset else fill.fee * fill.price
            metrics.record_fill(
                fill.symbol, side, fill.liquidity.value.lower(), float(fill.qty), float(fee)
            )
        if event.kind is not K.SUBMITTED:
            self._in_flight.discard(cid)
        resting = self._open.setdefault(order.symbol, set())
        if order.status.is_open and event.kind is not K.SUBMITTED:
            resting.add(cid)
        else:
            resting.discard(cid)
        metrics.ORDERS_IN_FLIGHT.set(len(self._in_flight))
        metrics.ORDERS_OPEN.labels(symbol=order.symbol).set(len(resting))


def _reason(text: str | None) -> str:
    """Collapse an exchange message to the bounded reason vocabulary of the metric."""
    t = (text or "").lower()
    if "insufficient" in t or "-2010" in t:
        return "insufficient_balance"
    if "filter" in t or "-1013" in t:
        return "filter"
    if "rate" in t or "-1015" in t or "-1003" in t:
        return "rate_limit"
    if "recvwindow" in t or "-1021" in t:
        return "timestamp"
    return "exchange"
