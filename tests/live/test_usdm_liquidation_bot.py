"""What the bot does when the exchange liquidates it: the dev bot on the USDⓈ-M simulator in
bar mode (the bundled real XRP/USDT perpetual candles and mark klines) holds an isolated 50x
long that the simulator liquidates on the 4th candle (as in ``tests/sim/test_usdm_bars.py``):
its ``autoclose-`` order is no order of ours, yet the ledger books it (reason liquidation, its
fill once), the position is flat as on the exchange, trading halts ("liquidated on the
exchange") and ``tessera_liquidations_total`` counts it; a restart imports nothing twice and
stays halted until a person resets."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from inprocess_bot import wait_until
from prometheus_client import REGISTRY
from usdm_harness import start_bot, step_to, stop_bot, usdm_bot_options, xrp_bar_venue

from tessera.config.models import RiskConfig
from tessera.execution.orders import ExitReason, Fill, Order, OrderSide, OrderStatus
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
HALT_REASON = "liquidated on the exchange"


class LiqLongParams(StrategyParams):
    qty: Decimal = QTY


@register_strategy
class LiqLong(Strategy):
    """Long ``qty`` from its first bar on; records what it hears of its orders."""

    name = "usdm_liquidation_long"
    Params: ClassVar[type[StrategyParams]] = LiqLongParams
    heard_orders: ClassVar[list[Order]] = []
    heard_fills: ClassVar[list[Fill]] = []

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        assert isinstance(self.params, LiqLongParams)
        self.qty = self.params.qty

    @property
    def warmup_bars(self) -> int:
        return 1

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not ctx.position(bar.symbol) and not LiqLong.heard_fills:
            ctx.target_position(bar.symbol, self.qty)

    def on_order(self, order: Order, ctx: StrategyContext) -> None:
        LiqLong.heard_orders.append(order)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        LiqLong.heard_fills.append(fill)


def _options(venue: UsdmVenue, db: str, run_id: str) -> BotOptions:
    return usdm_bot_options(
        venue,
        LiqLong.name,
        db,
        symbols=[SAMPLE_SYMBOL],
        interval="1h",
        run_id=run_id,
        risk=RiskConfig(max_orders_per_second=1000),
        max_bar_age_s=1e9,
        perp_leverage=50,
    )


def _sells_submitted() -> float:
    labels = {"symbol": SAMPLE_SYMBOL, "side": "sell", "type": "market"}
    return REGISTRY.get_sample_value("tessera_orders_submitted_total", labels) or 0.0


def _liquidations() -> float:
    return REGISTRY.get_sample_value("tessera_liquidations_total", {"symbol": SAMPLE_SYMBOL}) or 0.0


async def _start(venue: UsdmVenue, db: str, run_id: str) -> tuple[TradingBot, asyncio.Task[int]]:
    return await start_bot(_options(venue, db, run_id))


async def test_a_liquidation_by_the_exchange_is_booked_once_and_halts_trading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    LiqLong.heard_orders.clear()
    LiqLong.heard_fills.clear()
    venue = xrp_bar_venue(None)
    engine = venue.engine
    assert engine is not None
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    run_id = f"usdm-liq-{secrets.token_hex(4)}"
    before, sells = _liquidations(), _sells_submitted()
    async with venue.sim:
        venue.sim.release(ENTRY)
        bot, task = await _start(venue, db, run_id)
        try:
            await wait_until(
                lambda: any(o.status is OrderStatus.FILLED for o in bot.store.list_orders()),
                10,
                "the long filled",
            )
            step_to(venue, LIQUIDATED - 1)  # candles 25-27: the mark stays above it
            assert engine.accounts[SAMPLE_SYMBOL].qty == QTY
            step_to(venue, LIQUIDATED)
            assert engine.accounts[SAMPLE_SYMBOL].qty == 0  # the exchange closed it
            await wait_until(lambda: bot.risk.halt is not None, 10, "the halt")
            await wait_until(lambda: len(LiqLong.heard_fills) == 2, 10, "the strategy hears it")
        finally:
            await stop_bot(bot, task)

        entry, liq = sorted(bot.store.list_orders(), key=lambda o: o.ts_created)
        assert (entry.side, entry.qty, entry.reason) == (OrderSide.BUY, QTY, ExitReason.SIGNAL)
        assert liq.client_order_id.startswith("autoclose-")
        assert (liq.side, liq.status, liq.reason) == (
            OrderSide.SELL,
            OrderStatus.FILLED,
            ExitReason.LIQUIDATION,
        )
        assert liq.strategy == entry.strategy and liq.reduce_only
        fills = bot.store.all_fills()
        assert [f.client_order_id for f in fills] == [entry.client_order_id, liq.client_order_id]
        assert fills[1].qty == QTY
        assert sum(p.qty for p in bot.manager.positions.values()) == 0
        halt = bot.store.load_halt(ACCOUNT)
        assert halt is not None and HALT_REASON in str(halt["reason"])
        assert _liquidations() == before + 1
        assert _sells_submitted() == sells  # we sent no sell
        assert any(o.client_order_id == liq.client_order_id for o in LiqLong.heard_orders)

        # a restart: the reconciliation imports nothing twice and trading stays halted
        bot, task = await _start(venue, db, run_id)
        try:
            assert bot.risk.halt is not None and HALT_REASON in bot.risk.halt.reason
        finally:
            await stop_bot(bot, task)
        assert len(bot.store.all_fills()) == 2
        assert len(bot.store.list_orders()) == 2
        halt = bot.store.load_halt(ACCOUNT)
        assert halt is not None and HALT_REASON in str(halt["reason"])
        assert "reconciliation" not in str(halt["reason"])
        assert _liquidations() == before + 1
