"""Funding payments reach the ledger: the dev bot on the USDⓈ-M simulator in bar mode (the
bundled real XRP/USDT perpetual candles, mark klines and 8h funding rates) holds a long over
funding times and stores each payment the simulator books (its ``/fapi/v1/income`` rows) once
— from the ACCOUNT_UPDATE FUNDING_FEE while it listens, and from ``/fapi/v1/income`` at start
for the funding times it was down over."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from inprocess_bot import wait_until
from usdm_harness import start_bot, stop_bot, usdm_bot_options, xrp_bar_venue

from tessera.config.models import RiskConfig
from tessera.execution.persistence import ExecutionStore
from tessera.live import bot as bot_module
from tessera.live.bot import BotOptions, TradingBot
from tessera.live.halt import ACCOUNT
from tessera.sim.usdm.bars import SAMPLE_SYMBOL
from tessera.strategies.base import (
    Bar,
    Strategy,
    StrategyContext,
    StrategyParams,
    register_strategy,
)

WARM = 12  # candles released before the bot starts (its warm-up reads them)
SPEED = 72_000.0  # 0.05 s per 1h candle


class HoldLongParams(StrategyParams):
    qty: Decimal = Decimal(100)


@register_strategy
class HoldLong(Strategy):
    """Long ``qty`` from its first bar on, and holds it."""

    name = "usdm_funding_hold_long"
    Params: ClassVar[type[StrategyParams]] = HoldLongParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        assert isinstance(self.params, HoldLongParams)
        self.qty = self.params.qty

    @property
    def warmup_bars(self) -> int:
        return 1

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        ctx.target_position(bar.symbol, self.qty)


def _options(venue: Any, db: str) -> BotOptions:
    return usdm_bot_options(
        venue,
        HoldLong.name,
        db,
        symbols=[SAMPLE_SYMBOL],
        interval="1h",
        run_id=f"usdm-funding-{secrets.token_hex(4)}",
        risk=RiskConfig(max_orders_per_second=1000),
        max_bar_age_s=1e9,
    )


def _ledger(db: str) -> list[tuple[str, int, Decimal, str]]:
    store = ExecutionStore(db)
    try:
        return [
            (r.record.symbol, r.record.ts_ms, r.record.amount, r.record.source)
            for r in store.funding_payments(ACCOUNT)
        ]
    finally:
        store.close()


async def _start(venue: Any, db: str) -> tuple[TradingBot, asyncio.Task[int]]:
    return await start_bot(_options(venue, db))


async def test_the_bot_stores_each_funding_payment_once_and_imports_those_it_missed_while_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the market stands still while a bot starts: its warm-up need not wait for a live frame
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    venue = xrp_bar_venue(SPEED)
    engine = venue.engine
    assert engine is not None
    db = f"sqlite:///{tmp_path / 'bot.db'}"

    def incomes() -> list[tuple[str, int, Decimal]]:
        return [(r.symbol, r.time_ms, r.amount) for r in engine.incomes if r.kind == "FUNDING_FEE"]

    async with venue.sim:
        venue.sim.release(WARM)
        bot, task = await _start(venue, db)
        venue.sim.start_replay()
        # listening: the stream's payments are stored as they come
        await wait_until(lambda: len(incomes()) >= 1, 30, "a funding time held")
        venue.sim.pause()
        await wait_until(lambda: len(_ledger(db)) == len(incomes()), 10, "the payments stored")
        await stop_bot(bot, task)
        heard = incomes()
        assert [row[:3] for row in _ledger(db)] == heard
        assert {row[3] for row in _ledger(db)} == {"user_data"}
        assert all(amount < 0 for _, _, amount in heard)  # the rates are positive: longs pay

        # down over a funding time: nobody listens while the simulator books it
        venue.sim.resume()
        await wait_until(lambda: len(incomes()) > len(heard), 30, "a funding time while down")
        venue.sim.pause()
        missed = incomes()[len(heard) :]
        assert _ledger(db) == [(*row, "user_data") for row in heard]

        bot, task = await _start(venue, db)  # imports what it missed at start
        await wait_until(lambda: len(_ledger(db)) == len(incomes()), 10, "the import")
        await stop_bot(bot, task)
    assert _ledger(db) == [(*row, "user_data") for row in heard] + [
        (*row, "income") for row in missed
    ]
