"""Built-in strategies: `SmaCross` (baseline and cross-check), `BollingerMeanReversion`, and
`ModelSignalStrategy` (model scores -> target positions).

Sizing is shared: ``size`` is a fraction of equity (default) or, with ``qty``, a fixed base
quantity. Spot trading is long-only unless ``allow_short=true``.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from tessera.strategies.base import Bar, Strategy, StrategyContext, register_strategy

ZERO = Decimal(0)
# Fraction of the sized budget actually committed: the rest pays fees, slippage and the move
# to the next bar's open, so that an all-in entry is not refused for lack of cash.
SIZING_BUFFER = Decimal("0.99")


SIZING = frozenset({"size", "qty", "allow_short", "qty_step"})


class _Sized(Strategy):
    """Turns a direction (-1, 0, +1) into a target position."""

    known_params: ClassVar[frozenset[str] | None] = SIZING

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.size = float(params.get("size", 1.0))
        qty = params.get("qty")
        self.qty = Decimal(str(qty)) if qty is not None else None
        self.allow_short = bool(params.get("allow_short", False))
        self.qty_step = Decimal(str(params.get("qty_step", "0.00001")))
        if not 0 < self.size <= 1:
            raise ValueError(f"size must be in (0, 1], got {self.size}")

    def target_qty(self, direction: int, price: float, ctx: StrategyContext) -> Decimal:
        if direction < 0 and not self.allow_short:
            direction = 0
        if direction == 0:
            return ZERO
        if self.qty is not None:
            return self.qty * direction
        # Size on equity, leaving room for fees and slippage of the entry itself.
        budget = ctx.equity() * Decimal(str(self.size)) * SIZING_BUFFER
        units = (budget / Decimal(str(price)) / self.qty_step).to_integral_value(ROUND_DOWN)
        return units * self.qty_step * direction


class _Rolling:
    """Rolling mean and population std of the last ``n`` values, O(1) per update."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"window must be >= 1, got {n}")
        self.n = n
        self.values: deque[float] = deque()
        self.total = 0.0
        self.total_sq = 0.0
        self.updates = 0

    def push(self, x: float) -> None:
        self.values.append(x)
        self.total += x
        self.total_sq += x * x
        if len(self.values) > self.n:
            old = self.values.popleft()
            self.total -= old
            self.total_sq -= old * old
        self.updates += 1
        if self.updates % 10_000 == 0:  # re-sum now and then so float drift cannot build up
            self.total = math.fsum(self.values)
            self.total_sq = math.fsum(v * v for v in self.values)

    @property
    def ready(self) -> bool:
        return len(self.values) == self.n

    @property
    def mean(self) -> float:
        return self.total / len(self.values)

    @property
    def std(self) -> float:
        m = self.mean
        return math.sqrt(max(self.total_sq / len(self.values) - m * m, 0.0))


class _CumulativeMean:
    """Rolling mean as ``(cumsum[i] - cumsum[i-n]) / n``: the very float operations of
    `tessera.backtest.vectorized.sma`, so both paths produce bit-identical averages."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"window must be >= 1, got {n}")
        self.n = n
        self.cum = 0.0
        self.history: deque[float] = deque([0.0], maxlen=n + 1)

    def push(self, x: float) -> None:
        self.cum += x
        self.history.append(self.cum)

    @property
    def ready(self) -> bool:
        return len(self.history) == self.n + 1

    @property
    def mean(self) -> float:
        return (self.history[-1] - self.history[0]) / self.n


@register_strategy
class SmaCross(_Sized):
    """Long when the fast SMA crosses above the slow one, flat (or short) when it crosses below.

    Acts only on crossings, like backtesting.py's and vectorbt's SmaCross examples, so the
    three can be compared trade for trade. The SMAs are computed exactly as
    `tessera.backtest.vectorized.sma` computes them (same float operations), so the event engine
    and the vectorized fast path see identical crossings.
    """

    name = "sma_cross"
    known_params = SIZING | {"fast", "slow"}

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.fast = int(params.get("fast", 10))
        self.slow = int(params.get("slow", 30))
        if not 0 < self.fast < self.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.fast} slow={self.slow}")
        self._fast = {s: _CumulativeMean(self.fast) for s in symbols}
        self._slow = {s: _CumulativeMean(self.slow) for s in symbols}
        self._prev: dict[str, float | None] = dict.fromkeys(symbols)

    @property
    def warmup_bars(self) -> int:
        return self.slow

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        fast, slow = self._fast[bar.symbol], self._slow[bar.symbol]
        fast.push(bar.close)
        slow.push(bar.close)
        if not slow.ready:
            return
        diff = fast.mean - slow.mean
        prev = self._prev[bar.symbol]
        self._prev[bar.symbol] = diff
        if prev is None:
            return
        # Strict crossings (before strictly below, now strictly above), as backtesting.py's
        # `crossover` and our vectorized path define them.
        # A crossing only changes sides: a second "up" while already long (possible when the
        # averages touch without crossing in between) does not re-size the position.
        if prev < 0 < diff:
            if ctx.position(bar.symbol) <= 0:
                ctx.target_position(bar.symbol, self.target_qty(1, bar.close, ctx))
        elif prev > 0 > diff:
            pos = ctx.position(bar.symbol)
            if pos > 0 or (pos == 0 and self.allow_short):
                ctx.target_position(bar.symbol, self.target_qty(-1, bar.close, ctx))


@register_strategy
class BollingerMeanReversion(_Sized):
    """Buy when the close is ``entry_z`` std below its rolling mean; exit back at ``exit_z``."""

    name = "mean_reversion"
    known_params = SIZING | {"window", "entry_z", "exit_z"}

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.window = int(params.get("window", 60))
        self.entry_z = float(params.get("entry_z", 2.0))
        self.exit_z = float(params.get("exit_z", 0.0))
        if self.entry_z <= self.exit_z:
            raise ValueError("entry_z must be above exit_z")
        self._stats = {s: _Rolling(self.window) for s in symbols}

    @property
    def warmup_bars(self) -> int:
        return self.window

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        stats = self._stats[bar.symbol]
        stats.push(bar.close)
        if not stats.ready or stats.std == 0:
            return
        z = (bar.close - stats.mean) / stats.std
        pos = ctx.position(bar.symbol)
        if pos == 0:
            if z <= -self.entry_z:
                ctx.target_position(bar.symbol, self.target_qty(1, bar.close, ctx))
            elif z >= self.entry_z:
                ctx.target_position(bar.symbol, self.target_qty(-1, bar.close, ctx))
        elif (pos > 0 and z >= -self.exit_z) or (pos < 0 and z <= self.exit_z):
            ctx.target_position(bar.symbol, ZERO)


@register_strategy
class ModelSignalStrategy(_Sized):
    """Model score -> target position: long above ``long_threshold``, short below
    ``short_threshold`` (if allowed), flat in between. Re-targets only when the side changes,
    so a noisy score near a threshold does not churn fees."""

    name = "model_signal"
    known_params = SIZING | {"long_threshold", "short_threshold"}

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.long_threshold = float(params.get("long_threshold", 0.0))
        self.short_threshold = float(params.get("short_threshold", -math.inf))
        if self.short_threshold > self.long_threshold:
            raise ValueError("short_threshold must be <= long_threshold")
        self._side: dict[str, int] = dict.fromkeys(symbols, 0)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        score = ctx.prediction(bar.symbol)
        if score is None or math.isnan(score):
            return
        side = 1 if score > self.long_threshold else (-1 if score < self.short_threshold else 0)
        if side < 0 and not self.allow_short:
            side = 0
        if side != self._side[bar.symbol]:
            self._side[bar.symbol] = side
            ctx.target_position(bar.symbol, self.target_qty(side, bar.close, ctx))


@register_strategy
class BuyAndHold(_Sized):
    """The baseline every strategy must beat: buy on the first bar, hold to the end."""

    name = "buy_and_hold"

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self._done: set[str] = set()

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.symbol not in self._done:
            self._done.add(bar.symbol)
            # Split the budget evenly across symbols.
            share = Decimal(1) / len(self.symbols)
            qty = self.target_qty(1, bar.close, ctx) * share
            ctx.target_position(bar.symbol, qty)
