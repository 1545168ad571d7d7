"""`AccountMarks`: the account marked to market — equity for the kill-switch, PnL and exposure
for the dashboards.

Every ``mark_interval_s`` (and on demand) the bot's last prices value the account: equity feeds
the risk engine's drawdown (whose kill-switch actions go to the halt guard), and the position,
exposure, PnL and rate-limit gauges are published. Realized PnL counts from the run's start
(before fees); unrealized is marked at the last price.

On a perpetual the drawdown's equity is the venue's account at its mark price (wallet, funding
included, plus each position's unrealized PnL at the mark: ``equity`` given by the bot from its
`PerpRiskBook`), the same figure `RiskEngine.mark_perp` feeds at each closed bar. The spot
book at the last trade price would drive ``tessera_drawdown_pct`` and the kill-switch from a
price the exchange does not liquidate on, and without the funding paid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal

from tessera import metrics
from tessera.execution.manager import OrderManager
from tessera.live.account import AccountBook
from tessera.live.ratelimit import LocalRateLimiter, RateLimiter
from tessera.risk.engine import RiskAction, RiskEngine

ZERO = Decimal(0)


class AccountMarks:
    def __init__(
        self,
        account: AccountBook,
        manager: OrderManager,
        risk: RiskEngine,
        limiter: RateLimiter,
        last_prices: Mapping[str, Decimal],
        strategies: Callable[[], Sequence[str]],
        on_actions: Callable[[Sequence[RiskAction]], Awaitable[None]],
        equity: Callable[[], Decimal] | None = None,
    ) -> None:
        self.account = account
        self.manager = manager
        self.risk = risk
        self.limiter = limiter
        self.last_prices = last_prices
        self.strategies = strategies
        self.on_actions = on_actions
        self._equity = equity
        # the ledger's realized PnL at start: tessera_pnl_realized counts from the run's start
        self.pnl_base = {k: p.realized_pnl for k, p in manager.positions.items()}

    def equity(self) -> Decimal:
        """The equity the drawdown is measured on (see the module docstring)."""
        if self._equity is not None:
            return self._equity()
        return self.account.equity(self.last_prices)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.mark()

    async def mark(self) -> None:
        if not self.last_prices:
            return
        actions = self.risk.update_equity(self.equity(), time.time_ns())
        gross = ZERO
        by_symbol: dict[str, Decimal] = {}
        for (sym, strat), p in self.manager.positions.items():
            metrics.POSITION_SIZE.labels(symbol=sym, strategy=strat).set(float(p.qty))
            by_symbol[sym] = by_symbol.get(sym, ZERO) + p.qty
            price = self.last_prices.get(sym)
            if price is not None:
                gross += abs(p.qty) * price
        for sym, qty in by_symbol.items():
            price = self.last_prices.get(sym)
            if price is not None:
                metrics.POSITION_NOTIONAL.labels(symbol=sym).set(float(qty * price))
        metrics.GROSS_EXPOSURE.set(float(gross))
        self._publish_pnl()
        self._publish_rate_limits()
        if actions:
            await self.on_actions(actions)

    def _publish_pnl(self) -> None:
        """Realized (since run start, before fees) and unrealized PnL per strategy."""
        realized = dict.fromkeys(self.strategies(), ZERO)
        unrealized = dict(realized)
        for (sym, strat), p in self.manager.positions.items():
            base = self.pnl_base.get((sym, strat), ZERO)
            realized[strat] = realized.get(strat, ZERO) + p.realized_pnl - base
            price = self.last_prices.get(sym)
            if price is not None and p.qty:
                unrealized[strat] = unrealized.get(strat, ZERO) + p.unrealized_pnl(price)
        for strat, value in realized.items():
            metrics.PNL_REALIZED.labels(strategy=strat).set(float(value))
            metrics.PNL_UNREALIZED.labels(strategy=strat).set(float(unrealized.get(strat, ZERO)))

    def _publish_rate_limits(self) -> None:
        """Usage of the embedded limiter (the Redis one publishes what it observes itself)."""
        if isinstance(self.limiter, LocalRateLimiter):
            for lim in self.limiter.limits:
                scope = metrics.bounded(lim.scope, metrics.RATE_LIMIT_SCOPES)
                metrics.RATE_LIMIT_USED.labels(scope=scope).set(self.limiter.used(lim.scope))
