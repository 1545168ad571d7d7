"""What happens on a USDⓈ-M account while the bot's user-data stream is down reaches the bot when
it reconnects: the simulator closes every user-data websocket (as Binance does when it restarts a
stream server), the bot reconnects and reads over REST what it could not hear.

- A leverage changed by hand under the bot's open position: the reconnect runs the same
  reconciliation as the start (orders and fills, then each symbol's position, leverage and
  margin mode), which halts trading; the periodic pass is an hour away, so nothing else can.
- A funding time settled while the stream was down: the reconnect imports it from
  ``/fapi/v1/income`` (source ``income``), next to the one heard on the stream (``user_data``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from inprocess_bot import wait_until
from live_bot_helpers import KEY, SECRET
from test_usdm_funding_bot import WARM, _ledger, _options
from usdm_harness import (
    GoLong,
    btc_usdm_venue,
    start_bot,
    stop_bot,
    usdm_bot_options,
    xrp_bar_venue,
)

from tessera.data.store import ParquetStore
from tessera.execution.ccxt_exchange import open_exchange
from tessera.live import bot as bot_module
from tessera.live.halt import ACCOUNT
from tessera.sim.server import SimulatorThread
from tessera.strategies import base
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

D = Decimal


@pytest.fixture(autouse=True)
def _go_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, GoLong.name, GoLong)


async def test_a_leverage_changed_by_hand_while_the_user_stream_was_down_halts_at_its_reconnect(
    tmp_path: Path,
) -> None:
    venue = btc_usdm_venue()
    engine = venue.engine
    assert engine is not None
    thread = SimulatorThread(venue.sim)
    thread.start()
    try:
        bot, task = await start_bot(
            usdm_bot_options(venue, GoLong.name, f"sqlite:///{tmp_path / 'bot.db'}")
        )
        try:
            await wait_until(
                lambda: (
                    engine.accounts["BTCUSDT"].qty == D("0.010")
                    and bot.manager.positions.get(("BTCUSDT", GoLong.name)) is not None
                    and bot.manager.positions[("BTCUSDT", GoLong.name)].qty == D("0.010")
                ),
                30,
                "the bot's long, on the exchange and in the ledger",
            )
            ex = open_exchange(venue.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
            assert isinstance(ex, UsdmCcxtExchange)
            try:
                await ex.set_leverage("BTCUSDT", 3)  # a person, on the exchange's website
            finally:
                await ex.close()
            assert engine.accounts["BTCUSDT"].leverage == 3
            await asyncio.sleep(1.5)
            assert bot.store.load_halt(ACCOUNT) is None  # nothing tells the bot by itself
            dropped = thread.call(engine.drop_user_streams())
            assert dropped >= 1  # the bot's stream was connected, and is closed now
            await wait_until(
                lambda: bot.store.load_halt(ACCOUNT) is not None, 20, "the reconnect's halt"
            )
        finally:
            await stop_bot(bot, task)
        halt = bot.store.load_halt(ACCOUNT)
        assert halt is not None
        reason = str(halt["reason"])
        assert reason.startswith("reconciliation:"), reason
        assert "leverage 3x on the exchange, 5x configured" in reason, reason
        assert bot.risk.state.value == "HALTED"
    finally:
        thread.stop()


async def test_a_funding_time_settled_while_the_user_stream_was_down_is_imported_at_its_reconnect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    venue = xrp_bar_venue(None)  # candles released by hand
    engine = venue.engine
    assert engine is not None
    db = f"sqlite:///{tmp_path / 'bot.db'}"

    def funding() -> list[tuple[str, int, Decimal]]:
        return [(r.symbol, r.time_ms, r.amount) for r in engine.incomes if r.kind == "FUNDING_FEE"]

    async def step_until(done: Callable[[], bool], what: str) -> None:
        for _ in range(400):
            if done():
                return
            venue.sim.release(venue.sim.head + 1)
            await asyncio.sleep(0.05)  # the bot hears the candle (and its fills, its funding)
        raise AssertionError(f"not reached: {what}")

    async with venue.sim:
        venue.sim.release(WARM)
        bot, task = await start_bot(_options(venue, db))
        try:
            await step_until(lambda: len(funding()) >= 1, "a funding time held")
            await wait_until(lambda: len(_ledger(db)) == 1, 10, "the heard payment stored")
            heard = funding()
            await engine.drop_user_streams()
            # no await until a funding time is settled: the bot cannot reconnect before it
            while len(funding()) == len(heard):
                venue.sim.release(venue.sim.head + 1)
            missed = funding()[len(heard) :]
            await wait_until(lambda: len(_ledger(db)) == len(funding()), 20, "the import")
        finally:
            await stop_bot(bot, task)
    assert _ledger(db) == [(*row, "user_data") for row in heard] + [
        (*row, "income") for row in missed
    ]


async def test_a_usdm_bots_embedded_ingest_stores_into_the_usdm_venue_over_fapi_paths(
    tmp_path: Path,
) -> None:
    """``ingest_store`` on a perpetual bot: the trades it hears go to the store's
    ``binance-usdm`` partition (where `tessera data import` and `tessera ingest` put USDⓈ-M
    rows), and nothing of the run asks spot's ``/api/v3`` paths."""
    venue = btc_usdm_venue()
    thread = SimulatorThread(venue.sim)
    thread.start()
    market = tmp_path / "market"
    try:
        bot, task = await start_bot(
            usdm_bot_options(
                venue, GoLong.name, f"sqlite:///{tmp_path / 'bot.db'}", ingest_store=market
            )
        )
        try:
            await wait_until(
                lambda: (
                    hasattr(bot, "_ingest_service")
                    and bot._ingest_service.stats.rows_written.get("trades", 0) > 0
                ),
                30,
                "trades written by the embedded ingest",
            )
        finally:
            await stop_bot(bot, task)
    finally:
        thread.stop()
    assert sorted(p.name for p in market.glob("exchange=*")) == ["exchange=binance-usdm"]
    trades = ParquetStore(market).venue("binance-usdm").read("trades", "BTCUSDT")
    assert trades.num_rows > 0
    assert not [p for p in venue.sim.stats.rest_requests if p.startswith("/api/")]
