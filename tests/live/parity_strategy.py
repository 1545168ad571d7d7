"""A user strategy that uses every kind of exit, for the backtest-vs-bot parity tests.

Flat and without orders, above its moving average: a LIMIT buy a little under the close,
cancelled if it has not filled after ``max_wait`` bars. Once it fills, the exit alternates
between an OCO (take-profit LIMIT_MAKER + STOP_LOSS, via ``submit_oco``) and a trailing stop
(``trail_stop``). It decides only on bars that open at or after ``trade_from_ns`` (the bot's
warm-up bars and the backtest's first bars are only seen), so the two runs trade the same bars.
What it must remember across a restart of the bot is in ``ctx.state``.
"""

from __future__ import annotations

from collections import deque
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from pydantic import Field

from tessera.execution.orders import Fill, OrderSide, OrderType
from tessera.strategies.base import Bar, Strategy, StrategyContext, StrategyParams


class ParityParams(StrategyParams):
    n: int = Field(5, ge=2)
    qty: Decimal = Field(Decimal("0.01"), gt=0)
    entry_bps: Decimal = Field(Decimal("3"), ge=0)
    take_profit_bps: Decimal = Field(Decimal("25"), gt=0)
    stop_loss_bps: Decimal = Field(Decimal("25"), gt=0)
    trail_pct: Decimal = Field(Decimal("0.2"), gt=0)
    max_wait: int = Field(3, ge=1)
    trade_from_ns: int = Field(0, ge=0)


class ParityProbe(Strategy):
    """Limit entries; exits by OCO (take-profit + stop-loss) or trailing stop, alternately."""

    name = "parity_probe"
    Params: ClassVar[type[StrategyParams]] = ParityParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        p = self.params
        assert isinstance(p, ParityParams)
        self.p = p
        self.closes: deque[float] = deque(maxlen=p.n)
        # every fill heard, with the last bar seen before it (the test's bar-for-bar record)
        self.last_bar_open = 0
        self.fill_log: list[tuple[int, str, Decimal, Decimal]] = []

    @property
    def warmup_bars(self) -> int:
        return self.p.n

    def _tick(self, price: Decimal, ctx: StrategyContext) -> Decimal:
        tick = ctx.tick_size(self.symbols[0]) if hasattr(ctx, "tick_size") else None
        tick = tick or Decimal("0.01")
        return (price / tick).to_integral_value(rounding=ROUND_DOWN) * tick

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        # what must survive a restart is in ctx.state: the entry waited on, the trade count
        self.closes.append(bar.close)
        self.last_bar_open = bar.open_time
        if bar.open_time < self.p.trade_from_ns or len(self.closes) < self.p.n or ctx.warming:
            return
        open_orders = ctx.open_orders(bar.symbol)
        entry = ctx.state.get("entry")
        if entry is not None:
            waited = (bar.open_time - ctx.state["entry_time"]) // (
                bar.close_time - bar.open_time + 1
            )
            if waited >= self.p.max_wait and any(o.client_order_id == entry for o in open_orders):
                ctx.cancel_order(entry)
                ctx.state.pop("entry")
            return
        if ctx.position(bar.symbol) != 0 or open_orders:
            return
        if bar.close > sum(self.closes) / len(self.closes):
            close = Decimal(repr(bar.close))
            price = self._tick(close * (1 - self.p.entry_bps / Decimal(10_000)), ctx)
            order = ctx.submit_order(
                bar.symbol, OrderSide.BUY, self.p.qty, OrderType.LIMIT, price=price
            )
            if order is not None:
                ctx.state["entry"] = order.client_order_id
                ctx.state["entry_time"] = bar.open_time

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fill_log.append((self.last_bar_open, fill.side.value, fill.price, fill.qty))
        if fill.client_order_id != ctx.state.get("entry"):
            return
        if fill.qty < self.p.qty:
            return  # protect once the whole entry is in
        ctx.state.pop("entry")
        trades = ctx.state.get("trades", 0) + 1
        ctx.state["trades"] = trades
        if trades % 2:
            tp = self._tick(fill.price * (1 + self.p.take_profit_bps / Decimal(10_000)), ctx)
            sl = self._tick(fill.price * (1 - self.p.stop_loss_bps / Decimal(10_000)), ctx)
            ctx.submit_oco(fill.symbol, OrderSide.SELL, fill.qty, take_profit=tp, stop_loss=sl)
        else:
            ctx.trail_stop(fill.symbol, fill.qty, trail_pct=self.p.trail_pct)
