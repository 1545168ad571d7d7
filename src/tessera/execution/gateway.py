"""`OrderGateway`: the one way an order reaches a venue — risk, filters, rate limiter, manager.

Every order the bot sends passes here, whoever decided it: a strategy's own order, the orders
that move a strategy to its target, the legs of an OCO, the kill-switch's flatten and an
operator's command. The checks are therefore the same for all of them, and a flatten is a
reduce-only order that the risk engine sees too (it lets reducing orders through a halt).

The pre-trade part, `execution.pretrade.pretrade_denial`, is pure and the backtest calls it too:
the same risk engine, the same exchange filters, the same denial reasons (``risk:<reason>``,
``filter:<filter>``). The live part adds the shared rate limiter and the `OrderManager` (intent
persisted before send, recovery by client order id).

A denied order never reaches the store: it is marked REJECTED with the denial as its reason and
handed back, so the strategy hears of it through ``on_order`` like any rejection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from tessera.execution.filters import SymbolFilters
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderList
from tessera.execution.pretrade import intent_of, pretrade_denial
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine
from tessera.risk.engine import AccountView, RiskEngine


class Limiter(Protocol):
    async def admit(self) -> float:
        """Waits out a back-off and raises a ban this process knows of; no weight is taken
        (the adapter's own limiter does that right before the request)."""
        ...


class OrderGateway:
    """Risk → filters → rate limiter → order manager, for every order of the live bot."""

    def __init__(
        self,
        manager: OrderManager,
        risk: RiskEngine,
        filters: Mapping[str, SymbolFilters],
        limiter: Limiter,
        account: Callable[[], AccountView],
        on_denied: Callable[[Order, str], None] | None = None,
    ) -> None:
        self.manager = manager
        self.risk = risk
        self.filters = filters
        self.limiter = limiter
        self.account = account
        self.on_denied = on_denied
        self._machine = OrderStateMachine()

    def denial(self, order: Order) -> str | None:
        view = self.account()
        return pretrade_denial(
            intent_of(order),
            order.stop_price,
            self.risk,
            view,
            self.filters.get(order.symbol),
            view.last_prices.get(order.symbol),
            time.time_ns(),
        )

    def _deny(self, order: Order, reason: str) -> Order:
        self._machine.apply(
            order, OrderEvent(OrderEventKind.REJECTED, time.time_ns(), reason=reason)
        )
        if self.on_denied is not None:
            self.on_denied(order, reason)
        return order

    async def submit(self, order: Order, marks: dict[str, int] | None = None) -> Order:
        """The order as now known: REJECTED (not recorded) when a check denied it; otherwise
        recorded and sent (`OrderManager.submit`). `RateLimitBannedError` propagates: the
        caller keeps the decision for later rather than dropping it. ``marks`` receives the
        times (ns) the checks passed (``checked``) and the request left (``send``)."""
        reason = self.denial(order)
        if reason is not None:
            return self._deny(order, reason)
        now = time.time_ns()
        self.risk.record_sent(now)
        if marks is not None:
            marks["checked"] = now
        state = self.risk.state
        # a ban (418) known here stops the order before it is recorded; without a round trip
        # (a ban only another process has seen stops it in the adapter, never sent)
        await self.limiter.admit()
        # the checks above held when they ran; trading halted (or reducing) since — while the
        # limiter held the order back — is checked again before anything is recorded, and
        # once more after the intent (`OrderManager.submit`): a suspension lies between
        reason = self._changed(order, state)
        if reason is not None:
            return self._deny(order, reason)
        if marks is not None:
            marks["send"] = time.time_ns()
        return await self.manager.submit(order, lambda o: self._changed(o, state))

    def _changed(self, order: Order, state: object) -> str | None:
        """The denial of ``order`` if the risk engine's trading state moved since ``state``
        (the checks run again); None if it did not (nothing to check again)."""
        return None if self.risk.state is state else self.denial(order)

    async def submit_list(self, orders: OrderList) -> list[Order]:
        """Both legs checked; one denied denies the list (an OCO with one leg is no OCO)."""
        for leg in orders.legs:
            reason = self.denial(leg)
            if reason is not None:
                return [self._deny(o, reason) for o in orders.legs]
        self.risk.record_sent(time.time_ns())
        state = self.risk.state
        await self.limiter.admit()
        for leg in orders.legs:  # trading halted while the limiter held the list back
            reason = self._changed(leg, state)
            if reason is not None:
                return [self._deny(o, reason) for o in orders.legs]
        placed = await self.manager.submit_list(orders)
        return list(placed.legs)

    async def cancel(self, order: Order) -> Order:
        """Cancels are never refused by risk (they only ever reduce what is at risk)."""
        await self.limiter.admit()
        return await self.manager.cancel(order)
