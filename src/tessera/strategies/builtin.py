"""Built-in strategies: `SmaCross` (baseline and cross-check), `BollingerMeanReversion`, and
`ModelSignalStrategy` (model scores -> target positions).

Sizing is shared: ``size`` is a fraction of equity (default) or, with ``qty``, a fixed base
quantity. Spot trading is long-only unless ``allow_short=true``.

Each strategy declares its parameters as a nested ``Params`` model; the base class validates
them on construction (see `tessera.strategies.base.StrategyParams`), so a negative, zero,
infinite or NaN quantity, a zero step or an unknown name stops the run at start.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from tessera.strategies.base import (
    Bar,
    Strategy,
    StrategyContext,
    StrategyParams,
    register_strategy,
)

ZERO = Decimal(0)
# Fraction of the sized budget actually committed: the rest pays fees, slippage and the move
# to the next bar's open, so that an all-in entry is not refused for lack of cash.
SIZING_BUFFER = Decimal("0.99")


class SizingParams(StrategyParams):
    """How a direction becomes a quantity; shared by every built-in strategy."""

    size: float = Field(1.0, gt=0, le=1, description="fraction of equity per entry")
    qty: Decimal | None = Field(
        None, gt=0, description="fixed base quantity per entry instead of size (none: use size)"
    )
    allow_short: bool = Field(False, description="go short on a sell signal (spot: no)")
    qty_step: Decimal = Field(
        Decimal("0.00001"), gt=0, description="size-based quantities are rounded down to this"
    )


class _Sized(Strategy):
    """Turns a direction (-1, 0, +1) into a target position."""

    Params: ClassVar[type[StrategyParams]] = SizingParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        p = self.params
        assert isinstance(p, SizingParams)
        self.size = p.size
        self.qty = p.qty
        self.allow_short = p.allow_short
        self.qty_step = p.qty_step

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

    class Params(SizingParams):
        # `search`: the space `tessera optimize` searches by default (see tessera.optimize.space);
        # the two ranges do not overlap, so no trial is spent on a refused fast >= slow point
        fast: int = Field(
            10,
            gt=0,
            description="bars of the fast average",
            json_schema_extra={"search": "int:5..40"},
        )
        slow: int = Field(
            30,
            gt=0,
            description="bars of the slow average, more than fast",
            json_schema_extra={"search": "int:50..200"},
        )

        @model_validator(mode="after")
        def _fast_below_slow(self) -> SmaCross.Params:
            if self.fast >= self.slow:
                raise ValueError(f"fast must be below slow (got fast={self.fast} slow={self.slow})")
            return self

    name = "sma_cross"
    params: Params

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.fast = self.params.fast
        self.slow = self.params.slow
        self._fast = {s: _CumulativeMean(self.fast) for s in symbols}
        self._slow = {s: _CumulativeMean(self.slow) for s in symbols}
        self._prev: dict[str, float | None] = dict.fromkeys(symbols)

    @property
    def warmup_bars(self) -> int:
        return self.slow

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        # `_CumulativeMean.push`, `.ready` and `.mean` written out: the same float operations
        # (bit-identical averages), without five method calls on every bar of a backtest
        close = bar.close
        fast, slow = self._fast[bar.symbol], self._slow[bar.symbol]
        fast.cum += close
        fh = fast.history
        fh.append(fast.cum)
        slow.cum += close
        sh = slow.history
        sh.append(slow.cum)
        if len(sh) <= slow.n:  # not `ready`
            return
        diff = (fh[-1] - fh[0]) / fast.n - (sh[-1] - sh[0]) / slow.n
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

    class Params(SizingParams):
        window: int = Field(
            60,
            gt=0,
            description="bars of the rolling mean and std",
            json_schema_extra={"search": "int:20..200"},
        )
        entry_z: float = Field(
            2.0,
            gt=0,
            description="enter this many std from the mean",
            json_schema_extra={"search": "float:1.0..3.5"},
        )
        exit_z: float = Field(
            0.0,
            description="exit when back within this many std",
            json_schema_extra={"search": "float:-0.5..0.5"},
        )

        @model_validator(mode="after")
        def _exit_inside_entry(self) -> BollingerMeanReversion.Params:
            if self.entry_z <= self.exit_z:
                raise ValueError(
                    f"entry_z must be above exit_z (got entry_z={self.entry_z} "
                    f"exit_z={self.exit_z})"
                )
            return self

    name = "mean_reversion"
    params: Params

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.window = self.params.window
        self.entry_z = self.params.entry_z
        self.exit_z = self.params.exit_z
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

    class Params(SizingParams):
        # `search`: what `tessera optimize -s model_signal` searches by default, on the scale of
        # a forward-return score (configs/model.yaml's label); short_threshold declares none,
        # as it only acts with allow_short (add it with --space short_threshold=float:...)
        long_threshold: float = Field(
            0.0,
            description="long when the score is above this",
            json_schema_extra={"search": "float:-0.0005..0.0005"},
        )
        short_threshold: float = Field(
            -math.inf,
            allow_inf_nan=True,
            description="short (if allowed) when the score is below this; -inf: never",
        )

        @field_validator("short_threshold")
        @classmethod
        def _no_nan(cls, value: float) -> float:
            if math.isnan(value) or value == math.inf:
                raise ValueError("a number or -inf is expected")
            return value

        @model_validator(mode="after")
        def _short_below_long(self) -> ModelSignalStrategy.Params:
            if self.short_threshold > self.long_threshold:
                raise ValueError("short_threshold must be <= long_threshold")
            return self

    name = "model_signal"
    params: Params

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.long_threshold = self.params.long_threshold
        self.short_threshold = self.params.short_threshold
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
