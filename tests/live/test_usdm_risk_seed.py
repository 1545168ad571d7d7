"""The bot's leverage risk reads the venue's account when its user-data stream connects.

The risk book follows ACCOUNT_UPDATEs; one sent while no stream listened — a fill between
start-up and the stream's first connect, or during a disconnect — reaches nobody, and the book
would go on checking orders against an account without that position (the funding test saw it:
a cross payment booked as ``CROSS`` while XRPUSDT was held). Here the stream's connect is held
back until the entry has filled on the venue: the fill's ACCOUNT_UPDATE is lost for sure (the
book is checked flat before the connect), and once connected the book holds the venue's
position. Venue: the USDⓈ-M simulator in bar mode on the bundled real XRP/USDT candles.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from inprocess_bot import wait_until
from live_bot_helpers import KEY, SECRET
from test_usdm_funding_bot import WARM, _start
from usdm_harness import stop_bot

from tessera.live import bot as bot_module
from tessera.live.perp_userdata import PerpUserDataStream
from tessera.sim.usdm import usdm_trading_config, usdm_venue
from tessera.sim.usdm.bars import SAMPLE_SYMBOL, usdm_bar_market


async def test_a_fill_made_before_the_user_data_stream_connects_is_in_the_risk_book_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot_module, "FIRST_FRAME_WAIT_S", 0.05)
    gate = asyncio.Event()
    original = PerpUserDataStream.run

    async def connect_late(self: PerpUserDataStream) -> None:
        await gate.wait()
        await original(self)

    monkeypatch.setattr(PerpUserDataStream, "run", connect_late)
    venue = usdm_venue(
        usdm_bar_market(),
        speed=72_000.0,
        autostart=False,
        loop_replay=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    engine = venue.engine
    assert engine is not None
    async with venue.sim:
        venue.sim.release(WARM)
        bot, task = await _start(venue, f"sqlite:///{tmp_path / 'bot.db'}")
        risk = bot.perp_risk
        assert risk is not None
        venue.sim.start_replay()
        await wait_until(lambda: engine.position(SAMPLE_SYMBOL) is not None, 30, "the entry")
        venue.sim.pause()
        held: Any = engine.position(SAMPLE_SYMBOL)
        assert held.qty == Decimal(100)
        await asyncio.sleep(0.3)
        assert SAMPLE_SYMBOL not in risk.positions  # its ACCOUNT_UPDATE reached nobody
        gate.set()
        await wait_until(lambda: SAMPLE_SYMBOL in risk.positions, 10, "the seeded risk book")
        seeded = risk.positions[SAMPLE_SYMBOL]
        assert (seeded.qty, seeded.entry_price) == (held.qty, held.entry_price)
        await stop_bot(bot, task)
