"""`TradingBot` in paper mode on Binance USDⓈ-M: the USDⓈ-M simulator replays the bundled real
BTCUSDT perpetual recording as the venue's market data only; the orders of a strategy that goes
long, then short, then flat are filled by `PerpPaperExchange` on those quotes. Afterwards the
ledger equals the paper account (fills, fees, wallet, flat position) and the simulator's order
endpoints never saw an order."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path

import pytest
from inprocess_bot import wait_until
from usdm_harness import LongShortFlat, btc_usdm_venue, usdm_bot_options

from tessera.execution.orders import OrderSide, OrderStatus
from tessera.live.bot import TradingBot
from tessera.sim.server import SimulatorThread
from tessera.strategies import base

D = Decimal


async def test_paper_mode_on_usdm_goes_long_short_flat_on_the_venues_quotes_and_sends_no_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(base._REGISTRY, LongShortFlat.name, LongShortFlat)
    # the venue can trade (keys, an engine), so that an order sent to it would be seen there
    venue = btc_usdm_venue()
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    thread = SimulatorThread(sim)
    thread.start()
    try:
        options = usdm_bot_options(
            venue,
            LongShortFlat.name,
            f"sqlite:///{tmp_path / 'bot.db'}",
            mode="paper",
            run_id=f"usdm-paper-{secrets.token_hex(4)}",
            api_key="",
            api_secret="",
        )
        bot = TradingBot(options)
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: hasattr(bot, "store"), 20, "the bot's setup")
            await wait_until(
                lambda: (
                    len(bot.store.list_orders()) >= 4
                    and all(o.status.is_terminal for o in bot.store.list_orders())
                ),
                30,
                "four orders, all done",
            )
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 30)
        store_orders = sorted(bot.store.list_orders(), key=lambda o: o.ts_created)
        assert [(o.side, o.qty, o.reduce_only, o.status) for o in store_orders] == [
            (OrderSide.BUY, D("0.010"), False, OrderStatus.FILLED),
            (OrderSide.SELL, D("0.010"), True, OrderStatus.FILLED),
            (OrderSide.SELL, D("0.010"), False, OrderStatus.FILLED),
            (OrderSide.BUY, D("0.010"), True, OrderStatus.FILLED),
        ]
        paper = bot.paper
        acct = paper.account
        fills = bot.store.all_fills()
        assert sorted((f.trade_id, f.qty, f.price, f.fee) for f in fills) == sorted(
            (t.fill.trade_id, t.fill.qty, t.fill.price, t.fill.fee) for t in paper.trades
        )
        assert acct.positions == {} and acct.leverage_of("BTCUSDT") == 5
        assert acct.fees_paid == sum((f.fee for f in fills), D(0))
        cash = sum((f.qty * f.price * (-f.side.sign) for f in fills), D(0))
        assert acct.wallet == D(10000) + cash - acct.fees_paid
        # the leverage risk follows the paper account (no ACCOUNT_UPDATE in paper)
        assert bot.perp_risk is not None and bot.perp_risk.wallet == acct.wallet != 10000
        assert bot.perp_risk.positions == {}
        # the venue's order endpoints never saw an order: its trading engine holds none
        assert not engine.orders and all(a.qty == 0 for a in engine.accounts.values())
    finally:
        thread.stop()
