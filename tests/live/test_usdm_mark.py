"""The bot's perpetual risk on Binance USDⓈ-M uses the venue's mark price and leverage brackets
(dev mode, the USDⓈ-M simulator replaying the bundled real BTCUSDT perpetual recording, where
the venue's mark is the recorded book mid, `tessera.sim.usdm.market`): the feed's
``@markPrice@1s`` frames mark the risk snapshot, and the brackets come from
``GET /fapi/v1/leverageBracket``, the bundled file only when the venue does not answer it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from inprocess_bot import wait_until
from prometheus_client import REGISTRY
from usdm_harness import GoLong, btc_usdm_venue, usdm_bot_options

from tessera import metrics
from tessera.backtest.perp_inputs import load_brackets
from tessera.live.bot import LiveRefusedError, TradingBot
from tessera.live.perp_risk import PerpRiskBook
from tessera.sim.server import SimulatorThread
from tessera.sim.usdm import UsdmVenue
from tessera.strategies import base

D = Decimal


@pytest.fixture(autouse=True)
def _go_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, GoLong.name, GoLong)


def _venue() -> UsdmVenue:
    return btc_usdm_venue()


async def _run(tmp_path: Path, venue: UsdmVenue, until: Any, what: str) -> TradingBot:
    thread = SimulatorThread(venue.sim)
    thread.start()
    try:
        bot = TradingBot(usdm_bot_options(venue, GoLong.name, f"sqlite:///{tmp_path / 'bot.db'}"))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: hasattr(bot, "store") or task.done(), 20, "the bot's setup")
            if not task.done():
                await wait_until(lambda: until(bot) or task.done(), 30, what)
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 30)  # raises what the run raised
        return bot
    finally:
        thread.stop()


def _source(source: str) -> float | None:
    return REGISTRY.get_sample_value(
        "tessera_perp_mark_source", {"symbol": "BTCUSDT", "source": source}
    )


async def test_the_risk_snapshot_marks_a_held_perpetual_at_the_venues_mark_not_the_last_trade(
    tmp_path: Path,
) -> None:
    """The long fills; once the feed's ``@markPrice@1s`` frames arrived, the snapshot's mark is
    the venue's mark (the simulator's mark at that frame's event time: the recorded book mid),
    not the last trade price, and tessera_perp_mark_source says mark_price."""
    venue = _venue()
    metrics.MARGIN_RATIO.clear()  # published again by this run's closed bars

    def held_and_marked(b: TradingBot) -> bool:
        book: PerpRiskBook | None = getattr(b, "perp_risk", None)
        return (
            book is not None
            and "BTCUSDT" in book.positions
            and "BTCUSDT" in book.marks
            and _source("mark_price") == 1.0
            and REGISTRY.get_sample_value("tessera_margin_ratio", {"symbol": "BTCUSDT"}) is not None
        )

    bot = await _run(tmp_path, venue, held_and_marked, "a held position marked by the venue")
    book = bot.perp_risk
    assert book is not None
    venue_mark = book.marks["BTCUSDT"]
    snap = book.snapshot(bot.last_prices, bot.symbols)
    assert snap.symbols["BTCUSDT"].mark == venue_mark.price
    assert snap.symbols["BTCUSDT"].mark != bot.last_prices["BTCUSDT"]
    _, samples = venue.public.marks.series("BTCUSDT")
    served = {s.time: s.price for s in samples}
    assert served[venue_mark.event_ms] == venue_mark.price
    assert _source("last_trade") == 0.0
    ratio = REGISTRY.get_sample_value("tessera_margin_ratio", {"symbol": "BTCUSDT"})
    assert ratio is not None and 0 < ratio < 1


async def test_the_drawdown_of_a_perpetual_bot_is_measured_on_its_equity_at_the_venues_mark(
    tmp_path: Path,
) -> None:
    """The periodic marks (`AccountMarks`, every 0.25 s) feed the kill-switch's drawdown with
    the account at the venue's mark (the risk book's wallet plus unrealized PnL at the mark),
    not the spot book at the last trade price; the two differ here, and the drawdown the risk
    engine holds after a mark is the one of the mark's equity."""
    venue = _venue()

    def held_and_marked(b: TradingBot) -> bool:
        book: PerpRiskBook | None = getattr(b, "perp_risk", None)
        return book is not None and "BTCUSDT" in book.positions and "BTCUSDT" in book.marks

    bot = await _run(tmp_path, venue, held_and_marked, "a held position marked by the venue")
    book = bot.perp_risk
    assert book is not None
    at_mark = book.snapshot(bot.last_prices, bot.symbols).equity
    assert bot.marks.equity() == at_mark
    assert bot.account.equity(bot.last_prices) != at_mark  # the last trade is not the mark
    peak = max(bot.risk.equity_peak, at_mark)
    await bot.marks.mark()
    assert bot.risk.equity_peak == peak
    expected = max((float(peak) - float(at_mark)) / float(peak) * 100.0, 0.0)
    assert bot.risk.drawdown_pct == pytest.approx(expected, rel=1e-12)


async def test_the_leverage_brackets_come_from_the_venue_and_a_symbol_it_lacks_refuses_the_start(
    tmp_path: Path,
) -> None:
    """The venue's /fapi/v1/leverageBracket lists no BTCUSDT (the bundled file does): the bot
    does not start, and the one-paragraph refusal names the venue's endpoint and the symbol."""
    venue = _venue()
    assert venue.engine is not None
    del venue.engine.brackets["BTCUSDT"]
    with pytest.raises(LiveRefusedError) as caught:
        await _run(tmp_path, venue, lambda b: False, "the refusal")
    text = str(caught.value)
    assert "GET /fapi/v1/leverageBracket has no leverage brackets for BTCUSDT" in text
    assert "\n" not in text


async def test_the_bundled_brackets_stand_in_only_when_the_venue_does_not_answer_the_endpoint(
    tmp_path: Path,
) -> None:
    """The venue answers /fapi/v1/leverageBracket with 404 (its own BTCUSDT brackets are
    XRPUSDT's here, so the two sources differ): the bot starts on the bundled real brackets."""
    venue = _venue()
    engine = venue.engine
    assert engine is not None
    engine.brackets["BTCUSDT"] = engine.brackets["XRPUSDT"]

    async def not_served(request: web.Request, params: dict[str, str]) -> web.Response:
        raise web.HTTPNotFound()

    engine.leverage_bracket = not_served  # type: ignore[method-assign]
    bot = await _run(
        tmp_path,
        venue,
        lambda b: bool(getattr(b, "perp_risk", None) and b.perp_risk.brackets),
        "brackets",
    )
    assert bot.perp_risk is not None
    bundled = load_brackets()
    assert bot.perp_risk.brackets == bundled
    assert bundled["BTCUSDT"] != engine.brackets["BTCUSDT"]
