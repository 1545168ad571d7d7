"""The leverage risk of `tessera.risk.leverage` in the bot on Binance USDⓈ-M (dev mode, the
USDⓈ-M simulator replaying the bundled real BTCUSDT perpetual recording): the pre-trade check
sees the account as a `PerpAccountSnapshot` (max_leverage denies an entry, counted as spot
denials are), and each closed bar marks it (the margin-ratio gauge, margin-ratio alerts)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from inprocess_bot import wait_until
from prometheus_client import REGISTRY
from usdm_harness import GoLong, btc_usdm_venue, usdm_bot_options

from tessera.config.models import RiskConfig
from tessera.execution.orders import ExitReason, OrderSide, OrderStatus
from tessera.live.bot import TradingBot
from tessera.sim.server import SimulatorThread
from tessera.strategies import base

D = Decimal


@pytest.fixture(autouse=True)
def _go_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, GoLong.name, GoLong)


def _denials(reason: str) -> float:
    return REGISTRY.get_sample_value("tessera_risk_denials_total", {"reason": reason}) or 0.0


async def _run(
    tmp_path: Path, risk: RiskConfig, until: Any, what: str, then: Any = None
) -> TradingBot:
    venue = btc_usdm_venue()
    thread = SimulatorThread(venue.sim)
    thread.start()
    try:
        bot = TradingBot(
            usdm_bot_options(venue, GoLong.name, f"sqlite:///{tmp_path / 'bot.db'}", risk=risk)
        )
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: hasattr(bot, "store"), 20, "the bot's setup")
            await wait_until(lambda: until(bot), 30, what)
            if then is not None:
                await wait_until(lambda: then(bot), 30, "what follows")
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 30)
        return bot
    finally:
        thread.stop()


async def test_max_leverage_denies_a_perpetual_entry_above_it_and_counts_the_denial(
    tmp_path: Path,
) -> None:
    """5x isolated: the entry's position leverage is 5 > max_leverage 2, so it is denied
    before it is sent (no order in the ledger) and counted under reason max_leverage."""
    before = _denials("max_leverage")
    bot = await _run(
        tmp_path,
        RiskConfig(max_leverage=D(2)),
        lambda b: _denials("max_leverage") > before,
        "the max_leverage denial",
    )
    assert bot.store.list_orders() == []
    assert bot.orders_sent == 0


async def test_a_held_perpetual_publishes_its_margin_ratio_and_raises_the_alert(
    tmp_path: Path,
) -> None:
    """Allowed under max_leverage 6: the long fills; the closed bars after it publish
    tessera_margin_ratio and tessera_liquidation_distance_pct for BTCUSDT, and a
    margin_ratio_alert below the ratio is raised."""

    def ratio() -> float | None:
        return REGISTRY.get_sample_value("tessera_margin_ratio", {"symbol": "BTCUSDT"})

    bot = await _run(
        tmp_path,
        RiskConfig(max_leverage=D(6), margin_ratio_alert=0.0001),
        lambda b: (ratio() or 0) > 0 and b.margin_ratio_alerts > 0,
        "the margin ratio of the long",
    )
    [order] = bot.store.list_orders()
    assert (order.side, order.qty, order.status) == (OrderSide.BUY, D("0.010"), OrderStatus.FILLED)
    value = ratio()
    assert value is not None and 0 < value < 1  # 5x isolated, far from liquidation
    distance = REGISTRY.get_sample_value("tessera_liquidation_distance_pct", {"symbol": "BTCUSDT"})
    assert distance is not None and 5 < distance < 25  # about 1/5x less the maintenance
    assert bot.perp_risk is not None and bot.perp_risk.updates > 0  # from ACCOUNT_UPDATE


async def test_a_position_closer_to_liquidation_than_the_minimum_is_cut_reduce_only(
    tmp_path: Path,
) -> None:
    """The long fills at 5x isolated (about 19 % from liquidation); then the minimum distance
    is raised to 50 % (the risk config of the running engine): the next closed bar's monitor
    cut goes through the gateway as a reduce-only market sell with reason liq_distance."""

    def filled(b: TradingBot) -> bool:
        orders = b.store.list_orders()
        done = len(orders) == 1 and orders[0].status is OrderStatus.FILLED
        if done:
            b.risk.config = RiskConfig(min_liquidation_distance_pct=50.0)
        return done

    def cut(b: TradingBot) -> bool:
        return any(
            o.reason is ExitReason.LIQ_DISTANCE and o.status is OrderStatus.FILLED
            for o in b.store.list_orders()
        )

    bot = await _run(tmp_path, RiskConfig(), filled, "the long", then=cut)
    entry, *cuts = sorted(bot.store.list_orders(), key=lambda o: o.ts_created)
    assert entry.side is OrderSide.BUY and cuts
    assert all(
        (o.side, o.reduce_only, o.reason) == (OrderSide.SELL, True, ExitReason.LIQ_DISTANCE)
        for o in cuts
    )
    assert sum((o.qty for o in cuts), D(0)) <= entry.qty
    assert bot.liq_distance_cuts == len(cuts)
