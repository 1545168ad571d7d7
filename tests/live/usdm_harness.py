"""Shared set-up of the USDⓈ-M bot tests: the bundled real BTCUSDT perpetual recording served by
a USDⓈ-M simulator that trades with the test keys.

The bot tests on USDⓈ-M (dev, paper, live, risk, mark, funding, liquidation, margin call) all
start the same kind of venue and build nearly the same `BotOptions`; both are built here once so
that each test file states only what differs and what it checks.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from inprocess_bot import wait_until
from live_bot_helpers import KEY, SECRET

from tessera.config.models import RiskConfig, StrategyRef
from tessera.live.bot import BotOptions, TradingBot
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue
from tessera.sim.usdm.bars import usdm_bar_market
from tessera.strategies.base import Bar, Strategy, StrategyContext, StrategyParams

D = Decimal
USDM_BTC = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"


class BarScript(Strategy):
    """Targets set by bar count: on its ``n``-th bar (warm-up excluded) the strategy trades to
    ``targets()[n]``; between those bars it does nothing. A subclass names its script."""

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.bars = 0

    @property
    def warmup_bars(self) -> int:
        return 1

    def targets(self) -> dict[int, Decimal]:
        raise NotImplementedError

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.bars += 1
        steps = self.targets()
        if self.bars in steps:
            ctx.target_position(bar.symbol, steps[self.bars])


class LongShortFlatParams(StrategyParams):
    qty: Decimal = D("0.010")
    every: int = 4  # bars between decisions


class LongShortFlat(BarScript):
    """Long ``qty``, then short ``qty``, then flat, ``every`` bars apart; then nothing.

    Not registered at import: a test registers it with
    ``monkeypatch.setitem(base._REGISTRY, LongShortFlat.name, LongShortFlat)``."""

    name = "usdm_long_short_flat"
    Params: ClassVar[type[StrategyParams]] = LongShortFlatParams

    def targets(self) -> dict[int, Decimal]:
        p = self.params
        assert isinstance(p, LongShortFlatParams)
        return {p.every: p.qty, 2 * p.every: -p.qty, 3 * p.every: D(0)}


class GoLongParams(StrategyParams):
    qty: Decimal = D("0.010")
    after: int = 2  # bars before the entry


class GoLong(BarScript):
    """Long ``qty`` after ``after`` bars, then holds (registered by the tests with monkeypatch)."""

    name = "usdm_go_long"
    Params: ClassVar[type[StrategyParams]] = GoLongParams

    def targets(self) -> dict[int, Decimal]:
        p = self.params
        assert isinstance(p, GoLongParams)
        return {p.after: p.qty}


def btc_usdm_venue() -> UsdmVenue:
    """The BTCUSDT perpetual recording replayed once at 10x, trading with KEY/SECRET."""
    return usdm_venue(
        usdm_market([USDM_BTC]),
        speed=10.0,
        loop_replay=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )


def xrp_bar_venue(speed: float | None) -> UsdmVenue:
    """The bundled real XRP/USDT perpetual 1h candles (bar mode), stepped by hand unless started
    at ``speed``; replayed once, trading with KEY/SECRET."""
    return usdm_venue(
        usdm_bar_market(),
        speed=speed,
        autostart=False,
        loop_replay=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )


def step_to(venue: UsdmVenue, n: int) -> None:
    """Release candles one at a time up to ``n``."""
    while venue.sim.head < n:
        venue.sim.release(venue.sim.head + 1)


async def start_bot(options: BotOptions) -> tuple[TradingBot, asyncio.Task[int]]:
    """Run a bot on ``options`` until it is ready and warmed up (fails if it exits instead)."""
    bot = TradingBot(options)
    task = asyncio.create_task(bot.run())
    await wait_until(lambda: (bot.health.ready and not bot.warming) or task.done(), 30, "start-up")
    assert not task.done(), bot.problems
    return bot, task


async def stop_bot(bot: TradingBot, task: asyncio.Task[int]) -> None:
    """Ask the bot to stop and wait (30 s at most) for its run to end."""
    bot._request_stop()
    await asyncio.wait_for(task, 30)


def usdm_bot_options(
    venue: UsdmVenue, strategy: str, database_url: str, **overrides: Any
) -> BotOptions:
    """`BotOptions` for one strategy on ``venue``: dev mode on ``binance-usdm``, BTCUSDT at 1s,
    the test keys, isolated 5x, a fresh ``usdm-…`` run id; ``overrides`` replace any field."""
    values: dict[str, Any] = dict(
        mode="dev",
        strategies=[StrategyRef(name=strategy, params={})],
        symbols=["BTCUSDT"],
        interval="1s",
        rest_url=venue.sim.rest_url,
        ws_url=venue.sim.ws_url,
        database_url=database_url,
        run_id=f"usdm-{secrets.token_hex(4)}",
        risk=RiskConfig(),
        api_key=KEY,
        api_secret=SECRET,
        reconcile_interval_s=3600.0,
        exchange_id="binance-usdm",
        perp_leverage=5,
        perp_margin_mode="ISOLATED",
    )
    values.update(overrides)
    return BotOptions(**values)
