"""Live mode on Binance USDⓈ-M perpetuals behind spot's gates: ``tessera run --mode live``
refuses without ``--i-understand-live-trading``, the bot refuses without credentials, a
start-up reconciliation that is not clean (a position opened by hand, leverage or margin mode
that cannot be set under it) halts it before it trades, and with everything in order it
trades; a hedge-mode account is refused in one paragraph. The venue is the USDⓈ-M simulator
replaying the bundled real BTCUSDT perpetual recording, pointed at as spot's live tests point
at the spot simulator (the bot's REST and websocket URLs). The simulator is one-way only, so
for hedge mode a proxy in front of it answers GET /fapi/v1/positionSide/dual as a hedge-mode
account does (``{"dualSidePosition": true}``) and passes every other request on."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from inprocess_bot import wait_until
from live_bot_helpers import KEY, SECRET
from usdm_harness import BarScript, btc_usdm_venue, usdm_bot_options

from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.live.bot import BotOptions, LiveRefusedError, TradingBot
from tessera.live.halt import ACCOUNT
from tessera.sim.server import SimulatorThread
from tessera.sim.usdm import UsdmVenue
from tessera.strategies.base import (
    StrategyParams,
    register_strategy,
)
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

D = Decimal


class LiveLongFlatParams(StrategyParams):
    qty: Decimal = D("0.010")
    every: int = 3  # bars between decisions


@register_strategy
class LiveLongFlat(BarScript):
    """Long ``qty``, then flat, ``every`` bars apart; then nothing."""

    name = "usdm_live_long_flat"
    Params: ClassVar[type[StrategyParams]] = LiveLongFlatParams

    def targets(self) -> dict[int, Decimal]:
        p = self.params
        assert isinstance(p, LiveLongFlatParams)
        return {p.every: p.qty, 2 * p.every: D(0)}


@pytest.fixture
def venue() -> Iterator[UsdmVenue]:
    v = btc_usdm_venue()
    thread = SimulatorThread(v.sim)
    thread.start()
    try:
        yield v
    finally:
        thread.stop()


def live_options(venue: UsdmVenue, tmp_path: Path, **overrides: Any) -> BotOptions:
    values: dict[str, Any] = dict(mode="live", run_id=f"usdm-live-{secrets.token_hex(4)}")
    values.update(overrides)
    return usdm_bot_options(
        venue, "usdm_live_long_flat", f"sqlite:///{tmp_path / 'bot.db'}", **values
    )


def test_tessera_run_live_on_binance_usdm_refuses_without_the_live_trading_flag(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env |= {
        "TESSERA_EXCHANGE__NAME": "binance-usdm",
        "TESSERA_EXCHANGE__API_KEY": KEY,
        "TESSERA_EXCHANGE__API_SECRET": SECRET,
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-m", "tessera.cli", "run", "--mode", "live", "--no-ingest"]
    argv += ["--strategy", "sma_cross:fast=1,slow=2,qty=0.01", "--symbol", "BTCUSDT"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "--i-understand-live-trading" in out and "Traceback" not in out


async def test_live_mode_on_usdm_refuses_without_credentials(
    venue: UsdmVenue, tmp_path: Path
) -> None:
    bot = TradingBot(live_options(venue, tmp_path, api_key="", api_secret=""))
    with pytest.raises(LiveRefusedError, match="credentials"):
        await bot.run()
    assert venue.engine is not None and not venue.engine.orders


async def _open_by_hand(venue: UsdmVenue, leverage: int, qty: str) -> None:
    """A person trades the account on the venue: ``leverage`` x, cross, a market buy."""
    ex = open_exchange(venue.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
    assert isinstance(ex, UsdmCcxtExchange)
    try:
        await ex.set_leverage("BTCUSDT", leverage)
        await ex.set_margin_mode("BTCUSDT", MarginMode.CROSS)
        placed = await ex.submit(
            Order("manual-1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, D(qty))
        )
        assert placed.status is OrderStatus.FILLED, placed
    finally:
        await ex.close()


async def test_live_mode_on_usdm_halts_before_trading_on_a_position_opened_by_hand(
    venue: UsdmVenue, tmp_path: Path
) -> None:
    """The position is not in the ledger, and the configured 5x isolated cannot be set under
    it (the account is 3x cross): start-up reconciliation is not clean, the bot refuses and
    the persisted halt names all three."""
    await _open_by_hand(venue, leverage=3, qty="0.010")
    bot = TradingBot(live_options(venue, tmp_path))
    with pytest.raises(LiveRefusedError, match="reconciliation failed"):
        await bot.run()
    halt = bot.store.load_halt(ACCOUNT) if hasattr(bot, "store") else None
    assert halt is not None
    reason = str(halt["reason"])
    assert "opened or changed by hand" in reason, reason
    assert "leverage 3x on the exchange, 5x configured" in reason, reason
    assert "margin mode CROSS on the exchange, ISOLATED configured" in reason, reason
    assert venue.engine is not None
    assert [o.client_order_id for o in venue.engine.orders.values()] == ["manual-1"]
    acc = venue.engine.accounts["BTCUSDT"]
    assert (acc.qty, acc.leverage, acc.mode) == (D("0.010"), 3, MarginMode.CROSS)


async def test_live_mode_on_usdm_with_everything_in_order_trades(
    venue: UsdmVenue, tmp_path: Path
) -> None:
    bot = TradingBot(live_options(venue, tmp_path))
    task = asyncio.create_task(bot.run())
    try:
        await wait_until(lambda: hasattr(bot, "store"), 20, "the bot's setup")
        await wait_until(
            lambda: (
                len(bot.store.list_orders()) >= 2
                and all(o.status.is_terminal for o in bot.store.list_orders())
            ),
            30,
            "two orders, both done",
        )
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 30)
    assert code == 0
    orders = sorted(bot.store.list_orders(), key=lambda o: o.ts_created)
    assert [(o.side, o.qty, o.reduce_only, o.status) for o in orders] == [
        (OrderSide.BUY, D("0.010"), False, OrderStatus.FILLED),
        (OrderSide.SELL, D("0.010"), True, OrderStatus.FILLED),
    ]
    assert venue.engine is not None
    acc = venue.engine.accounts["BTCUSDT"]
    assert (acc.qty, acc.leverage, acc.mode) == (0, 5, MarginMode.ISOLATED)
    assert bot.store.load_halt(ACCOUNT) is None


@pytest.fixture
async def hedge_mode_venue(venue: UsdmVenue) -> AsyncIterator[tuple[str, list[str]]]:
    """The simulator behind a proxy that says the account is in hedge mode: its URL and the
    paths of the requests it passed on."""
    session = aiohttp.ClientSession()
    passed: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path == "/fapi/v1/positionSide/dual":
            return web.json_response({"dualSidePosition": True})
        passed.append(f"{request.method} {request.path}")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.request(
            request.method,
            venue.sim.rest_url + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                body=body, status=upstream.status, content_type=upstream.content_type
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", passed
    finally:
        await runner.cleanup()
        await session.close()


async def test_live_mode_on_usdm_refuses_a_hedge_mode_account_in_one_paragraph(
    venue: UsdmVenue, tmp_path: Path, hedge_mode_venue: tuple[str, list[str]]
) -> None:
    url, passed = hedge_mode_venue
    bot = TradingBot(live_options(venue, tmp_path, rest_url=url))
    with pytest.raises(LiveRefusedError) as refused:
        await bot.run()
    text = str(refused.value)
    assert "hedge mode" in text and "one-way mode only" in text and "\n" not in text
    # refused before anything is reconciled, set or traded
    assert not any("leverage" in p or "marginType" in p or "order" in p for p in passed), passed
    assert venue.engine is not None and not venue.engine.orders
    acc = venue.engine.accounts.get("BTCUSDT")
    assert acc is None or acc.leverage != 5
