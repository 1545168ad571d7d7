"""The pre-trade checks every order passes, in the backtest and live alike: the risk engine,
then the exchange's filters. Pure (no I/O): the live `OrderGateway` and the backtest engine both
call `pretrade_denial`, so an order is refused for the same reason in research and production.
"""

from __future__ import annotations

from decimal import Decimal

from tessera.execution.filters import FilterViolationError, SymbolFilters
from tessera.execution.orders import Order
from tessera.risk.engine import AccountView, OrderIntent, RiskEngine


def pretrade_denial(
    intent: OrderIntent,
    stop_price: Decimal | None,
    risk: RiskEngine | None,
    account: AccountView,
    filters: SymbolFilters | None,
    last_price: Decimal | None,
    now_ns: int,
) -> str | None:
    """Why the order may not be sent (``risk:<reason>`` or ``filter:<name>``), or None."""
    if risk is not None:
        decision = risk.check(intent, account, now_ns)
        if not decision.allowed:
            return f"risk:{decision.reason}"
    if filters is not None:
        try:
            filters.check(intent.order_type, intent.qty, intent.price, last_price, stop_price)
        except FilterViolationError as exc:
            return f"filter:{exc.filter_type}"
    return None


def intent_of(order: Order) -> OrderIntent:
    return OrderIntent(
        order.symbol,
        order.side,
        order.qty,
        order.type,
        order.price,
        order.strategy,
        reduce_only=order.reduce_only,
    )
