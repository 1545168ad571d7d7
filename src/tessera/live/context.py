"""`LiveContext`: the `StrategyContext` of the live bot, one per strategy.

A strategy's order requests do not go to the exchange from here: they become *signals* — a
signed target position per symbol — that the executor turns into orders after the risk
checks. Targets, not deltas, so that a signal delivered twice or late cannot trade twice: the
executor always trades the difference between the target and what the strategy holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from tessera.execution.orders import Order, OrderSide, OrderType, TimeInForce

if TYPE_CHECKING:
    from tessera.live.bot import TradingBot

ZERO = Decimal(0)


class LiveContext:
    def __init__(
        self, bot: TradingBot, strategy: str, emit: Callable[[str, str, Decimal], None]
    ) -> None:
        self._bot = bot
        self._strategy = strategy
        self._emit = emit  # (strategy, symbol, target) -> a signal on the queue
        # the newest target per symbol; during warm-up it is only remembered (see TradingBot)
        self.targets: dict[str, Decimal] = {}

    @property
    def now(self) -> int:
        return self._bot.now_ns

    def position(self, symbol: str) -> Decimal:
        """What the strategy holds and could trade: dust the exchange would not accept in an
        order (below the lot step or the minimum notional, e.g. left by base-asset fees) is
        flat, or a strategy asking "am I in a position?" would never trade again."""
        return self._bot.tradeable_position(symbol, self._strategy)

    def equity(self) -> Decimal:
        return self._bot.equity()

    def cash(self) -> Decimal:
        return self._bot.account.cash()

    def last_price(self, symbol: str) -> float | None:
        p = self._bot.last_prices.get(symbol)
        return float(p) if p is not None else None

    def features(self, symbol: str) -> Mapping[str, float]:
        return self._bot.latest_features.get(symbol, {})

    def prediction(self, symbol: str) -> float | None:
        return self._bot.predictions.get(symbol)

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> Order | None:
        """Market orders only, expressed as a new target (current target + signed qty)."""
        if order_type is not OrderType.MARKET:
            raise NotImplementedError(
                "the live bot trades target positions with market orders; "
                f"{order_type.value} orders from strategies are not supported yet"
            )
        base = self.targets.get(symbol, self.position(symbol))
        self.target_position(symbol, base + qty * side.sign)
        return None

    def cancel_order(self, client_order_id: str) -> None:
        return None  # market orders only: nothing rests

    def cancel_all(self, symbol: str | None = None) -> None:
        return None

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self._bot.manager.live.values()
            if o.strategy == self._strategy and (symbol is None or o.symbol == symbol)
        ]

    def target_position(self, symbol: str, qty: Decimal) -> Order | None:
        self.targets[symbol] = qty
        self._emit(self._strategy, symbol, qty)
        return None
