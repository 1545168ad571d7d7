"""Margin calls acted on: the bot on the USDⓈ-M simulator in bar mode (the bundled real
XRP/USDT perpetual candles and mark klines) holds an isolated 50x long that the simulator
margin-calls and liquidates on the 4th candle (as in ``tests/sim/test_usdm_bars.py``). The
venue's ``MARGIN_CALL`` is an error in the log, ``tessera_margin_calls_total{symbol}``,
``/readyz`` false (check ``no_margin_call``) and, by ``risk.on_margin_call``, a halt with reason
"margin call" (default) or nothing more (``log``); a margin ratio past
``risk.margin_ratio_alert`` does the same before the venue's call, and with ``flatten`` the
position is closed before the venue liquidates it."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from inprocess_bot import wait_until
from prometheus_client import REGISTRY
from usdm_harness import usdm_bot_options, xrp_bar_venue

from tessera.config.models import RiskConfig
from tessera.execution.orders import ExitReason, OrderSide, OrderStatus
from tessera.live import bot as bot_module
from tessera.live.bot import BotOptions, TradingBot
from tessera.live.halt import ACCOUNT
from tessera.sim.usdm import UsdmVenue
from tessera.sim.usdm.bars import SAMPLE_SYMBOL
from tessera.strategies.base import (
    Bar,
    Strategy,
    StrategyContext,
    StrategyParams,
    register_strategy,
)

ENTRY = 25  # candles released before the bot starts: the long fills at candle 25's open
LIQUIDATED = 29  # candle 28's mark low reaches the liquidation price (closed at release 29)
QTY = Decimal(1000)


class CalledLongParams(StrategyParams):
    qty: Decimal = QTY


@register_strategy
class CalledLong(Strategy):
    """Long ``qty`` once, on its first bar."""

    name = "usdm_margin_call_long"
    Params: ClassVar[type[StrategyParams]] = CalledLongParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        assert isinstance(self.params, CalledLongParams)
        self.done = False

    @property
    def warmup_bars(self) -> int:
        return 1

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.done:
            assert isinstance(self.params, CalledLongParams)
            ctx.target_position(bar.symbol, self.params.qty)
            self.done = True


def _margin_calls() -> float:
    sample = REGISTRY.get_sample_value("tessera_margin_calls_total", {"symbol": SAMPLE_SYMBOL})
    return sample or 0.0


def _halt_reasons(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT reason FROM risk_events WHERE kind = 'halt' ORDER BY ts, id")
        return [str(r[0]) for r in rows]


def _options(venue: UsdmVenue, tmp_path: Path, risk: RiskConfig) -> BotOptions:
    return usdm_bot_options(
        venue,
        CalledLong.name,
        f"sqlite:///{tmp_path / 'bot.db'}",
        mode="live",  # against the simulator, as spot's live tests run
        symbols=[SAMPLE_SYMBOL],
        interval="1h",
        run_id=f"usdm-mc-{secrets.token_hex(4)}",
        risk=risk,
        max_bar_age_s=1e9,
        perp_leverage=50,
    )


async def _run_to(
    tmp_path: Path,
    risk: RiskConfig,
    release_to: int,
    before_last: Callable[[TradingBot], bool] | None = None,
) -> tuple[TradingBot, UsdmVenue]:
    """The bot long from candle ``ENTRY`` on, the candles released one by one up to
    ``release_to`` (the last once ``before_last`` holds), then stopped; returns the stopped
    bot and the venue."""
    venue = xrp_bar_venue(None)
    async with venue.sim:
        venue.sim.release(ENTRY)
        bot = TradingBot(_options(venue, tmp_path, risk))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(
                lambda: (bot.health.ready and not bot.warming) or task.done(), 30, "start-up"
            )
            assert not task.done(), bot.problems
            await wait_until(
                lambda: any(o.status is OrderStatus.FILLED for o in bot.store.list_orders()),
                10,
                "the long filled",
            )
            while venue.sim.head < release_to:
                if venue.sim.head == release_to - 1 and before_last is not None:
                    await wait_until(lambda: before_last(bot), 10, "the bot acting")
                venue.sim.release(venue.sim.head + 1)
                await asyncio.sleep(0.3)  # the bar closes, the bot marks and acts
            await asyncio.sleep(0.5)
            ready, checks = bot.health.readiness()
            bot.readiness_at_end = (ready, checks)  # type: ignore[attr-defined]
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 30)
    return bot, venue


@pytest.mark.parametrize("action", ["halt", "log"])
async def test_the_venues_margin_call_is_counted_shown_by_readyz_and_halts_unless_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    before = _margin_calls()
    risk = RiskConfig(max_orders_per_second=1000, on_margin_call=action)
    bot, venue = await _run_to(tmp_path, risk, LIQUIDATED)
    assert _margin_calls() == before + 1
    assert bot.margin_called == [SAMPLE_SYMBOL]
    ready, checks = bot.readiness_at_end  # type: ignore[attr-defined]
    assert not ready and checks["no_margin_call"] is False
    reasons = _halt_reasons(tmp_path / "bot.db")
    if action == "halt":
        # the margin call halts first; the liquidation that follows it halts again
        assert reasons[0] == f"margin call: {SAMPLE_SYMBOL} (the venue's MARGIN_CALL)", reasons
    else:
        assert not any(r.startswith("margin call") for r in reasons), reasons
    assert venue.engine is not None and venue.engine.accounts[SAMPLE_SYMBOL].qty == 0


async def test_a_margin_ratio_past_the_alert_halts_and_flattens_before_the_venue_liquidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    before = _margin_calls()
    # the margin ratio of the 50x long at the closes: 0.18 (candles 25, 26), 0.31 (27); the
    # venue liquidates it in candle 28
    risk = RiskConfig(max_orders_per_second=1000, margin_ratio_alert=0.3, on_margin_call="flatten")

    def flat(bot: TradingBot) -> bool:
        orders = bot.store.list_orders()
        return len(orders) == 2 and all(o.status.is_terminal for o in orders)

    bot, venue = await _run_to(tmp_path, risk, LIQUIDATED, before_last=flat)
    halt = bot.store.load_halt(ACCOUNT)
    assert halt is not None
    assert str(halt["reason"]) == (
        f"margin call: {SAMPLE_SYMBOL} (margin ratio past risk.margin_ratio_alert)"
    )
    assert _margin_calls() == before + 1
    entry, flatten = sorted(bot.store.list_orders(), key=lambda o: o.ts_created)
    assert (entry.side, entry.qty) == (OrderSide.BUY, QTY)
    assert (flatten.side, flatten.qty, flatten.reduce_only, flatten.reason, flatten.status) == (
        OrderSide.SELL,
        QTY,
        True,
        ExitReason.KILL_SWITCH,
        OrderStatus.FILLED,
    )
    assert venue.engine is not None and venue.engine.accounts[SAMPLE_SYMBOL].qty == 0
    assert not any(o.client_order_id.startswith("autoclose-") for o in venue.engine.orders.values())
