"""`TradingBot` in dev mode on Binance USDⓈ-M (``exchange_id="binance-usdm"``) against the
USDⓈ-M simulator on its own thread, replaying the bundled real BTCUSDT perpetual recording:
the feed on the USDⓈ-M streams, the venue's user data, start-up reconciliation setting the
configured leverage and margin mode, and a tiny strategy that goes long, then short, then flat.
Afterwards the ledger (orders, fills, position) equals the simulator's account."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import ccxt.async_support as ccxt_async
import pytest
from inprocess_bot import wait_until
from live_bot_helpers import KEY, SECRET
from usdm_harness import LongShortFlat, btc_usdm_venue, usdm_bot_options

from tessera.execution.orders import OrderSide, OrderStatus
from tessera.execution.perp.margin import MarginMode
from tessera.live.bot import TradingBot
from tessera.live.halt import ACCOUNT
from tessera.sim.server import SimulatorThread
from tessera.strategies import base

D = Decimal


async def test_dev_mode_on_usdm_goes_long_short_flat_and_the_ledger_equals_the_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(base._REGISTRY, LongShortFlat.name, LongShortFlat)
    venue = btc_usdm_venue()
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    thread = SimulatorThread(sim)
    thread.start()
    try:
        options = usdm_bot_options(
            venue, "usdm_long_short_flat", f"sqlite:///{tmp_path / 'bot.db'}"
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
        # the simulator's account: flat, at the configured 5x isolated, its trades ours
        acc = engine.accounts["BTCUSDT"]
        assert (acc.qty, acc.leverage, acc.mode) == (0, 5, MarginMode.ISOLATED)
        client = ccxt_async.binanceusdm(
            {"apiKey": KEY, "secret": SECRET,
             "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                         "fetchMargins": False}}
        )  # fmt: skip
        for key, url in list(client.urls["api"].items()):
            if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
                client.urls["api"][key] = url.replace("https://fapi.binance.com", sim.rest_url)
        try:
            trades = await client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"})
        finally:
            await client.close()
        fills = bot.store.all_fills()
        assert sorted((f.trade_id, f.qty, f.price, f.fee) for f in fills) == sorted(
            (str(t["id"]), D(t["qty"]), D(t["price"]), D(t["commission"])) for t in trades
        )
        net = sum((f.qty if f.side is OrderSide.BUY else -f.qty for f in fills), D(0))
        assert net == 0
        assert bot.store.load_halt(ACCOUNT) is None
    finally:
        thread.stop()
