"""`LiveContext`: the `StrategyContext` of the live bot, one per strategy.

A strategy's decisions do not go to the exchange from here: each becomes a *signal* on the
signal queue, executed in order by the `SignalExecutor` through the order gateway (risk,
filters, rate limiter, order manager) — the same checks as every other order:

* ``target_position``: a signed target, sized by the executor against what the strategy holds,
  so that a signal delivered twice or late cannot trade twice;
* ``submit_order`` / ``submit_oco``: the strategy's own order or OCO, of any type. The client
  order id is decided here, from the signal id (`ClientOrderIdGenerator.for_signal`), so the
  returned `Order` names the order the exchange will know and ``cancel_order`` can take it;
* ``cancel_order`` / ``cancel_all``: cancels, in order after the orders they cancel.

What happens to an order arrives through ``on_order`` and ``on_fill``; the `Order` returned
here is the decision (status INITIALIZED), not a live view. None is returned when the bot is
not acting on decisions at that moment (the warm-up over past bars, a bar that arrived too
late, shutdown) — nothing is sent. Bracket orders and trailing stops come from `OrderHelpers`,
the same code the backtest's context runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.orders import (
    ExitReason,
    Order,
    OrderList,
    OrderSide,
    OrderType,
    TimeInForce,
    exit_oco,
)
from tessera.live.executor import oco_payload, order_payload
from tessera.live.signals import SignalKind
from tessera.strategies.context import OrderHelpers

ZERO = Decimal(0)


class LiveHost(Protocol):
    """What a `LiveContext` needs of the bot (and nothing more)."""

    now_ns: int
    warming: bool
    last_prices: dict[str, Decimal]
    latest_features: dict[str, dict[str, float]]
    predictions: dict[str, float]
    ids: ClientOrderIdGenerator

    def tradeable_position(self, symbol: str, strategy: str) -> Decimal: ...

    def equity(self) -> Decimal: ...

    def cash(self) -> Decimal: ...

    def live_orders(self, strategy: str) -> list[Order]: ...

    def signal_id(self, strategy: str, symbol: str) -> str | None: ...

    def publish(
        self,
        signal_id: str,
        strategy: str,
        symbol: str,
        kind: str,
        target: Decimal | None = None,
        order: dict[str, str] | None = None,
    ) -> None: ...

    def tick_size(self, symbol: str) -> Decimal | None: ...

    def order_types(self, symbol: str) -> frozenset[str]: ...


class LiveContext(OrderHelpers):
    def __init__(self, host: LiveHost, strategy: str) -> None:
        super().__init__()
        self._host = host
        self.strategy_id = strategy
        # the newest target per symbol; during warm-up it is only remembered (see TradingBot)
        self.targets: dict[str, Decimal] = {}
        # orders decided and not yet known to the order manager (queued, or being sent)
        self._pending: dict[str, Order] = {}

    @property
    def now(self) -> int:
        return self._host.now_ns

    @property
    def warming(self) -> bool:
        return self._host.warming

    def position(self, symbol: str) -> Decimal:
        """What the strategy holds and could trade: dust the exchange would not accept in an
        order (below the lot step or the minimum notional, e.g. left by base-asset fees) is
        flat, or a strategy asking "am I in a position?" would never trade again."""
        return self._host.tradeable_position(symbol, self.strategy_id)

    def equity(self) -> Decimal:
        return self._host.equity()

    def cash(self) -> Decimal:
        return self._host.cash()

    def last_price(self, symbol: str) -> float | None:
        p = self._host.last_prices.get(symbol)
        return float(p) if p is not None else None

    def features(self, symbol: str) -> Mapping[str, float]:
        return self._host.latest_features.get(symbol, {})

    def prediction(self, symbol: str) -> float | None:
        return self._host.predictions.get(symbol)

    def tick_size(self, symbol: str) -> Decimal | None:
        return self._host.tick_size(symbol)

    def order_types(self, symbol: str) -> frozenset[str]:
        return self._host.order_types(symbol)

    # --- orders ----------------------------------------------------------------------------------

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        reason: ExitReason | None = None,
        reduce_only: bool = False,
    ) -> Order | None:
        sid = self._host.signal_id(self.strategy_id, symbol)
        if sid is None:
            return None
        order = Order(
            client_order_id=self._host.ids.for_signal(sid),
            symbol=symbol,
            side=side,
            type=order_type,
            qty=qty,
            price=price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            strategy=self.strategy_id,
            signal_id=sid,
            ts_created=self._host.now_ns,
            reason=reason or ExitReason.for_type(order_type),
            reduce_only=reduce_only,
        )
        self._pending[order.client_order_id] = order
        self._host.publish(
            sid, self.strategy_id, symbol, SignalKind.ORDER, order=order_payload(order)
        )
        return order

    def submit_oco(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        take_profit: Decimal,
        stop_loss: Decimal,
        stop_limit: Decimal | None = None,
        reason: ExitReason | None = None,
        take_profit_reason: ExitReason | None = None,
        stop_loss_reason: ExitReason | None = None,
    ) -> OrderList | None:
        sid = self._host.signal_id(self.strategy_id, symbol)
        if sid is None:
            return None
        orders = exit_oco(
            self._host.ids.for_signal(sid + "#list"),
            self._host.ids.for_signal(sid + "#tp"),
            self._host.ids.for_signal(sid + "#sl"),
            symbol=symbol,
            side=side,
            qty=qty,
            take_profit=take_profit,
            stop_loss=stop_loss,
            stop_limit=(
                stop_limit
                if stop_limit is not None
                else self.stop_limit_for(symbol, side, stop_loss)
            ),
            take_profit_reason=take_profit_reason or reason or ExitReason.OCO,
            stop_loss_reason=stop_loss_reason or reason or ExitReason.OCO,
            strategy=self.strategy_id,
            signal_id=sid,
            ts=self._host.now_ns,
        )
        for leg in orders.legs:
            self._pending[leg.client_order_id] = leg
        self._host.publish(sid, self.strategy_id, symbol, SignalKind.OCO, order=oco_payload(orders))
        return orders

    def cancel_order(self, client_order_id: str) -> None:
        known = self._pending.get(client_order_id) or next(
            (o for o in self._host.live_orders(self.strategy_id)
             if o.client_order_id == client_order_id),
            None,
        )  # fmt: skip
        if known is None:
            return
        sid = self._host.signal_id(self.strategy_id, known.symbol)
        if sid is not None:
            self._host.publish(
                sid,
                self.strategy_id,
                known.symbol,
                SignalKind.CANCEL,
                order={"client_order_id": client_order_id},
            )

    def cancel_all(self, symbol: str | None = None) -> None:
        for order in self.open_orders(symbol):
            self.cancel_order(order.client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders of the strategy: the order manager's, and those decided but not yet
        sent (their signal is queued)."""
        live = [
            o
            for o in self._host.live_orders(self.strategy_id)
            if o.status.is_open and (symbol is None or o.symbol == symbol)
        ]
        known = {o.client_order_id for o in live}
        pending = [
            o
            for cid, o in self._pending.items()
            if cid not in known and (symbol is None or o.symbol == symbol)
        ]
        return live + pending

    def forget(self, client_order_id: str) -> None:
        """The order manager knows the order now (or it was refused): no longer pending."""
        self._pending.pop(client_order_id, None)

    def target_position(self, symbol: str, qty: Decimal) -> Order | None:
        self.targets[symbol] = qty
        sid = self._host.signal_id(self.strategy_id, symbol)
        if sid is not None:
            self._host.publish(sid, self.strategy_id, symbol, SignalKind.TARGET, target=qty)
        return None
