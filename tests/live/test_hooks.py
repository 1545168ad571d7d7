"""Every hook the strategy guide names is called by the bot — trading on the simulator's order
API ("live" against the simulator) and in paper mode — in the documented order: on_start
first, on_bar / on_trade / on_book as the market speaks, on_fill then on_order for a fill,
on_stop last. (The backtest's order is tested in tests/backtest; bars carry no trades or book,
so a backtest on bars calls neither on_trade nor on_book — the guide says so.)"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from inprocess_bot import bot_options, running_simulator, wait_until

from tessera.config.models import StrategyRef
from tessera.execution.orders import Fill, Order, OrderSide, OrderStatus, OrderType
from tessera.live.bot import EXIT_OK, TradingBot
from tessera.strategies.base import Bar, BookTop, Strategy, StrategyContext, TradeTick

pytestmark = pytest.mark.slow

CALLS: list[str] = []


class _Recorder(Strategy):
    """Buys once with a LIMIT order through the market (it fills at once), and records."""

    name = "hook_recorder"

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.sent = False

    def on_start(self, ctx: StrategyContext) -> None:
        CALLS.append("on_start")

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        CALLS.append("on_bar")
        price = ctx.last_price(bar.symbol)
        if not self.sent and price is not None:
            limit = (Decimal(repr(price)) * Decimal("1.01")).quantize(Decimal("0.01"))
            order = ctx.submit_order(
                bar.symbol, OrderSide.BUY, Decimal("0.001"), OrderType.LIMIT, price=limit
            )
            self.sent = order is not None

    def on_trade(self, trade: TradeTick, ctx: StrategyContext) -> None:
        CALLS.append("on_trade")

    def on_book(self, book: BookTop, ctx: StrategyContext) -> None:
        CALLS.append("on_book")

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        CALLS.append("on_fill")

    def on_order(self, order: Order, ctx: StrategyContext) -> None:
        CALLS.append(f"on_order:{order.status.value}")

    def on_stop(self, ctx: StrategyContext) -> None:
        CALLS.append("on_stop")


@pytest.mark.parametrize("mode", ["live", "paper"])
async def test_the_bot_calls_every_hook_in_the_documented_order(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.strategies import base

    monkeypatch.setitem(base._REGISTRY, _Recorder.name, _Recorder)
    CALLS.clear()
    with running_simulator() as (simulator, _engine):
        db = f"sqlite:///{tmp_path / 'bot.db'}"
        bot = TradingBot(bot_options(simulator, db, strategies=[StrategyRef(name="hook_recorder")]))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: "on_fill" in CALLS or task.done(), 60, "a fill")
            await wait_until(lambda: "on_trade" in CALLS and "on_book" in CALLS, 30, "ticks")
        finally:
            bot._request_stop()
            code = await asyncio.wait_for(task, 60)
    assert code == EXIT_OK, bot.problems
    assert CALLS[0] == "on_start" and CALLS[-1] == "on_stop"
    assert {"on_bar", "on_trade", "on_book"} <= set(CALLS)
    fill = CALLS.index("on_fill")
    assert CALLS[fill + 1] == f"on_order:{OrderStatus.FILLED.value}", CALLS[fill - 2 : fill + 3]
    # on_order heard the order before it filled too (accepted), or at the fill at once
    assert CALLS.index("on_order:FILLED") > CALLS.index("on_bar")
