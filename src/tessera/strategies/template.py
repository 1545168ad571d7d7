"""The file `tessera strategy new NAME` writes: a working strategy to start from.

A blank skeleton teaches little and is edited into a broken strategy; a real one that backtests
at once, uses every hook and the protective orders (a bracket: entry, stop-loss, take-profit),
with comments that say what the engine does around each line, is the faster way in. It is
rendered with `string.Template` (``$name``, ``$class_name``) so that the code keeps its braces.
"""

from __future__ import annotations

import keyword
from string import Template

_TEMPLATE = Template('''\
"""$class_name: buy an oversold RSI with a stop-loss and a take-profit attached.

Written by `tessera strategy new $name`; edit freely. Try it:

    tessera strategy list                                  # found, with its parameters
    tessera backtest --strategy $name -p period=7          # on the bundled real BTC bars
    tessera sweep -s $name -g period=7:28:7 -g oversold=20,25,30
    tessera optimize --strategy $name --trials 100         # Bayesian search of the declared space
    tessera run --mode paper --strategy $name:period=14    # live market data, simulated fills

The rules: when the RSI (Wilder's, over `period` bars) closes below `oversold` and the strategy
is flat, it buys for `notional` USDT with a bracket — a market entry and, once that fills, an
OCO that sells the filled quantity at +take_profit_pct (limit) or -stop_loss_pct (stop). When
the RSI closes above `overbought` while still long, it cancels the bracket and sells at market.
Long only: spot cannot sell what it does not hold.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import Field, model_validator
from tessera.execution.orders import Fill, Order, OrderSide, OrderStatus
from tessera.logging import get_logger
from tessera.strategies import Bar, Strategy, StrategyContext, StrategyParams

log = get_logger(__name__)
ZERO = Decimal(0)
HUNDRED = Decimal(100)


class _Rsi:
    """Wilder's RSI, updated one close at a time (O(1) per bar)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.prev: float | None = None
        self.gain = 0.0
        self.loss = 0.0
        self.count = 0

    def update(self, close: float) -> float | None:
        """The RSI after this close, or None while fewer than ``period`` changes are seen."""
        if self.prev is None:
            self.prev = close
            return None
        change, self.prev = close - self.prev, close
        up, down = max(change, 0.0), max(-change, 0.0)
        self.count += 1
        if self.count <= self.period:  # the first average is a plain mean
            self.gain += up / self.period
            self.loss += down / self.period
            if self.count < self.period:
                return None
        else:  # then Wilder's smoothing
            self.gain = (self.gain * (self.period - 1) + up) / self.period
            self.loss = (self.loss * (self.period - 1) + down) / self.period
        if self.loss == 0.0:
            return 100.0 if self.gain > 0.0 else 50.0
        return 100.0 - 100.0 / (1.0 + self.gain / self.loss)


class $class_name(Strategy):
    """Buys an oversold RSI with a bracket (stop-loss and take-profit); sells an overbought one."""

    # The registry key: what --strategy, configs and sweeps call it. Unique among all
    # strategies (built-in, your files, installed packages): a clash is an error at load.
    name = "$name"

    class Params(StrategyParams):
        """Typed, constrained, defaulted: `-p period=7` is checked here before the run starts
        (a wrong type or value stops it with a sentence naming the parameter)."""

        # `search` is the space `tessera optimize --strategy $name` searches when no --space
        # is given: int:LOW..HIGH, float:LOW..HIGH (:STEP or :log), cat:A,B,C. It must lie
        # inside the field's own constraints.
        period: int = Field(
            14, gt=1, description="bars of the RSI", json_schema_extra={"search": "int:5..30"}
        )
        oversold: float = Field(
            30.0,
            gt=0,
            lt=100,
            description="buy when the RSI is below this",
            json_schema_extra={"search": "float:15..40"},
        )
        overbought: float = Field(
            70.0,
            gt=0,
            lt=100,
            description="sell when the RSI is above this",
            json_schema_extra={"search": "float:60..85"},
        )
        notional: Decimal = Field(
            Decimal("1000"), gt=0, description="quote currency (USDT) spent per entry"
        )
        stop_loss_pct: Decimal = Field(
            Decimal("1.0"),
            gt=0,
            lt=100,
            description="stop-loss, percent below the close",
            json_schema_extra={"search": "float:0.5..5:0.25"},
        )
        take_profit_pct: Decimal = Field(
            Decimal("1.5"),
            gt=0,
            description="take-profit, percent above the close",
            json_schema_extra={"search": "float:0.5..5:0.25"},
        )
        qty_step: Decimal = Field(
            Decimal("0.00001"), gt=0, description="quantities round down to this (lot step)"
        )
        tick: Decimal = Field(
            Decimal("0.01"), gt=0, description="prices round to this (the symbol's tick size)"
        )

        @model_validator(mode="after")
        def _oversold_below_overbought(self) -> $class_name.Params:
            if self.oversold >= self.overbought:
                raise ValueError(
                    f"oversold must be below overbought (got {self.oversold} >= {self.overbought})"
                )
            return self

    params: Params  # the validated values, typed: self.params.period is an int

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)  # validates params first
        self._rsi = {s: _Rsi(self.params.period) for s in symbols}
        self.entries = 0  # filled entries
        self.exits: dict[str, int] = {}  # filled exits by reason: signal, stop_loss, take_profit
        self.refused = 0

    @property
    def warmup_bars(self) -> int:
        # Bars needed before the first decision: the live bot fetches this much history at
        # start, walk-forward slicing keeps it in front of each window.
        return self.params.period + 1

    # --- hooks, in the order the engine calls them -------------------------------------------

    def on_start(self, ctx: StrategyContext) -> None:
        """Once, before the first bar (after the bot's warm-up history is loaded, live)."""
        log.info("strategy started", strategy=self.strategy_id, equity=str(ctx.equity()))

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        """Every closed bar of every symbol of the strategy. Orders sent here reach the market
        after the close: in a backtest they fill from the next bar on."""
        rsi = self._rsi[bar.symbol].update(bar.close)
        if rsi is None:
            return
        position = ctx.position(bar.symbol)  # this strategy's own position, signed
        if position == 0 and rsi < self.params.oversold and not ctx.open_orders(bar.symbol):
            self._enter(bar, ctx)
        elif position > 0 and rsi > self.params.overbought:
            # Cancel the bracket's exits first: they would otherwise sell a second time.
            ctx.cancel_all(bar.symbol)
            ctx.target_position(bar.symbol, ZERO)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        """Every (partial) fill of this strategy's orders, before on_order."""
        log.debug(
            "fill",
            strategy=self.strategy_id,
            side=fill.side.value,
            qty=str(fill.qty),
            price=str(fill.price),
        )

    def on_order(self, order: Order, ctx: StrategyContext) -> None:
        """Every state change of this strategy's orders: accepted, filled, cancelled, expired
        (the other leg of an OCO), rejected (``order.reject_reason``)."""
        if order.status is OrderStatus.FILLED and order.side is OrderSide.BUY:
            self.entries += 1
        elif order.status is OrderStatus.FILLED:
            reason = order.reason.value  # signal, stop_loss or take_profit
            self.exits[reason] = self.exits.get(reason, 0) + 1
        elif order.status is OrderStatus.REJECTED:  # the risk limits, the exchange's filters...
            self.refused += 1
            log.debug("order refused", strategy=self.strategy_id, reason=order.reject_reason)

    def on_stop(self, ctx: StrategyContext) -> None:
        """Once, at the end of the data (backtest) or at shutdown (bot)."""
        log.info(
            "strategy stopped",
            strategy=self.strategy_id,
            entries=self.entries,
            exits=self.exits,
            refused=self.refused,
        )

    # --- helpers -----------------------------------------------------------------------------

    def _enter(self, bar: Bar, ctx: StrategyContext) -> None:
        p = self.params
        price = Decimal(repr(bar.close))
        qty = (p.notional / price / p.qty_step).to_integral_value(ROUND_DOWN) * p.qty_step
        if qty <= 0:
            return
        stop = self._round(price * (1 - p.stop_loss_pct / HUNDRED))
        target = self._round(price * (1 + p.take_profit_pct / HUNDRED))
        # Entry at market; once it fills, an OCO on the exchange exits the filled quantity at
        # the take-profit (limit) or the stop-loss (stop), whichever the market reaches first.
        # A refusal (risk limits, filters) comes back as None or through on_order (REJECTED).
        ctx.submit_bracket(bar.symbol, OrderSide.BUY, qty, stop_loss=stop, take_profit=target)

    def _round(self, price: Decimal) -> Decimal:
        tick = self.params.tick
        return (price / tick).to_integral_value(ROUND_HALF_UP) * tick
''')


def class_name_for(name: str) -> str:
    """``my_rsi`` -> ``MyRsi``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def check_strategy_name(name: str) -> None:
    """`ValueError` (one sentence) unless ``name`` can be a strategy file, module and name."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{name!r} is not a Python identifier: a strategy name is the file's and the "
            "module's name too, so letters, digits and _ only, not starting with a digit "
            "(e.g. my_rsi)"
        )
    if name.startswith("_"):
        raise ValueError(
            f"{name!r} starts with _: files starting with _ are helpers and never loaded as "
            "strategies"
        )
    if not class_name_for(name).isidentifier():  # pragma: no cover - implied by the above
        raise ValueError(f"{name!r} does not make a class name")


def render_template(name: str) -> str:
    """The source of a new strategy named ``name`` (checked by `check_strategy_name`)."""
    check_strategy_name(name)
    return _TEMPLATE.substitute(name=name, class_name=class_name_for(name))
