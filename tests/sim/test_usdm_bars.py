"""USDⓈ-M bar mode through ccxt ``binanceusdm``: the real XRP/USDT perpetual 1h candles, 1h mark
klines and 8h funding rates (samples/freqtrade/futures) replayed by `usdm_bar_market`; orders
matched bar by bar (the spot bar mode's rules), funding settled at each funding time the replay
passes, liquidation when a candle's mark range reaches the liquidation price.

The replay is stepped by hand one candle at a time (`ExchangeSimulator.release`): after
``release(n)`` candles 0..n-1 are closed and candle n is forming (a market order fills at its
open plus the bar mode's 1 bp slippage). Candle 0 opens 2021-11-17 01:00 UTC, so candle 23
(23:00) closes at the funding time 2021-11-18 00:00. Reference values: the domain's
`funding_payment` and `liquidation_price` on the files' own numbers.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import SAMPLES
from typer.testing import CliRunner
from usdm_client import started_usdm_venue, usdm_ccxt_client

from tessera.execution.perp.funding import funding_payment
from tessera.execution.perp.margin import MarginMode, PerpPosition, liquidation_price
from tessera.sim.cli import app
from tessera.sim.usdm import UsdmVenue, usdm_trading_config, usdm_venue
from tessera.sim.usdm.bars import UsdmBarMarket, symbol_from_file_name, usdm_bar_market
from tessera.sim.usdm.market import usdm_brackets
from tessera.venues.binance_usdm.rest import funding_rate_and_mark

KEY, SECRET = "bars-key", "bars-secret"
SYM = "XRP/USDT:USDT"
OPTIONS = {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "fetchMargins": False}
FUTURES = SAMPLES / "freqtrade" / "futures"
F1 = 1_637_193_600_000  # 2021-11-18 00:00 UTC, the first funding time inside the candles
F2 = F1 + 8 * 3_600_000


@pytest.fixture(scope="module")
def xrp() -> UsdmBarMarket:
    return usdm_bar_market()


@pytest.fixture
async def venue(xrp: UsdmBarMarket) -> AsyncIterator[UsdmVenue]:
    async with started_usdm_venue(xrp, KEY, SECRET, 20) as v:
        yield v


@pytest.fixture
async def ex(venue: UsdmVenue) -> AsyncIterator[Any]:
    async with usdm_ccxt_client(venue, KEY, SECRET, OPTIONS) as client:
        yield client


def step_to(venue: UsdmVenue, n: int) -> None:
    """Release candles one at a time up to ``n`` (each candle's checks in its own step)."""
    while venue.sim.head < n:
        venue.sim.release(venue.sim.head + 1)


def test_the_bar_market_is_the_real_xrp_perpetual_with_its_mark_and_funding(
    xrp: UsdmBarMarket,
) -> None:
    assert (xrp.symbol, xrp.interval, len(xrp.frames)) == ("XRPUSDT", "1h", 100)
    assert [s["symbol"] for s in xrp.exchange_info["symbols"]] == ["XRPUSDT"]
    # the 1h mark file ends 2021-11-19 09:00: later candles are marked at their close
    assert sum(m.from_mark_file for m in xrp.mark_bars) == 57
    assert "57 of 100" in xrp.mark_source
    first = xrp.funding[0]
    assert (first.ts_ns // 1_000_000, first.rate, first.mark_price) == (
        F1,
        Decimal("0.0001"),
        Decimal("1.09503"),  # the open of the 1h mark kline opening at 00:00
    )
    assert symbol_from_file_name(FUTURES / "XRP_USDT_USDT-1h-futures.feather") == "XRPUSDT"


async def test_candles_premium_index_and_funding_history_come_from_the_files(
    venue: UsdmVenue, ex: Any, xrp: UsdmBarMarket
) -> None:
    bars = await ex.fetch_ohlcv(SYM, "1h", limit=2)
    given = xrp.given_bars("XRPUSDT")
    assert given is not None
    assert [Decimal(str(b[4])) for b in bars] == [given.bars[18].close, given.bars[19].close]
    marks = await ex.fetch_mark_ohlcv(SYM, "1h", limit=2)
    assert [(m[0], Decimal(str(m[4]))) for m in marks] == [
        (b.open_ms, b.close) for b in xrp.mark_bars[18:20]
    ]
    premium = await ex.fapiPublicGetPremiumIndex({"symbol": "XRPUSDT"})
    assert Decimal(premium["markPrice"]) == xrp.mark_bars[19].close
    assert (premium["lastFundingRate"], premium["nextFundingTime"]) == ("0.00000000", F1)
    assert await ex.fetch_funding_rate_history(SYM) == []  # no funding time passed yet
    with pytest.raises(Exception, match="-1120"):
        await ex.fetch_ohlcv(SYM, "1m")  # finer than the candles: not served
    step_to(venue, 24)
    [row] = await ex.fetch_funding_rate_history(SYM)
    assert (row["timestamp"], row["fundingRate"], row["info"]["markPrice"]) == (
        F1,
        0.0001,
        "1.09503000",
    )
    premium = await ex.fapiPublicGetPremiumIndex({"symbol": "XRPUSDT"})
    assert (premium["lastFundingRate"], premium["nextFundingTime"]) == ("0.00010000", F2)
    # what paper mode books at a funding time, read by the venue's parser
    assert funding_rate_and_mark(premium) == (Decimal("0.0001"), Decimal(premium["markPrice"]))
    with pytest.raises(ValueError, match="premiumIndex answer without 'markPrice'"):
        funding_rate_and_mark({"lastFundingRate": "0.0001"})


async def test_a_long_pays_and_a_short_receives_the_funding_on_the_real_rate_and_mark(
    venue: UsdmVenue, ex: Any
) -> None:
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{venue.sim.ws_url}/ws/{key}") as ws:
        await asyncio.sleep(0.05)
        await ex.create_order(SYM, "market", "buy", 1000)  # long 1000 XRP from candle 20
        before = Decimal((await ex.fetch_balance())["info"]["totalWalletBalance"])
        step_to(venue, 24)  # candle 23 closes at F1
        after = Decimal((await ex.fetch_balance())["info"]["totalWalletBalance"])
        # hand check: 1000 XRP x mark 1.09503 x rate 0.0001 = 0.109503 USDT, paid by the long
        long_pays = funding_payment(Decimal(1000), Decimal("1.09503"), Decimal("0.0001"))
        assert long_pays == Decimal("-0.109503")
        assert after - before == long_pays
        await ex.create_order(SYM, "market", "sell", 2000)  # flip: short 1000 from candle 24
        step_to(venue, 32)  # candle 31 closes at F2
        while len(events) < 8:  # 2 x (NEW, TRADE, ACCOUNT_UPDATE ORDER) + 2 x FUNDING_FEE
            events.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
    history = await ex.fetch_funding_history(SYM)
    mark2 = Decimal("1.10725")  # the 1h mark kline opening at 08:00
    assert [(h["timestamp"], Decimal(h["info"]["income"])) for h in history] == [
        (F1, long_pays),
        (F2, funding_payment(Decimal(-1000), mark2, Decimal("0.0001"))),
    ]
    assert Decimal(history[1]["info"]["income"]) == Decimal("0.110725")  # the short receives
    funding = [e for e in events if e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "FUNDING_FEE"]
    assert [(e["E"], e["a"]["B"][0]["bc"], e["a"]["P"]) for e in funding] == [
        (F1, "-0.10950300", []),  # cross: the balance only, as Binance's docs say
        (F2, "0.11072500", []),
    ]
    assert list(funding[0]["a"]["B"][0]) == ["a", "wb", "cw", "bc"]


async def test_a_flat_account_pays_no_funding(venue: UsdmVenue, ex: Any) -> None:
    step_to(venue, 40)
    assert await ex.fetch_funding_history(SYM) == []
    assert Decimal((await ex.fetch_balance())["info"]["totalWalletBalance"]) == 10000


async def test_an_isolated_50x_long_is_liquidated_when_the_mark_low_reaches_its_price(
    venue: UsdmVenue, ex: Any, xrp: UsdmBarMarket
) -> None:
    step_to(venue, 25)
    await ex.set_leverage(50, SYM)
    await ex.set_margin_mode("isolated", SYM)
    order = await ex.create_order(SYM, "market", "buy", 1000)  # at candle 25's open
    entry = Decimal(order["info"]["avgPrice"])
    pos = PerpPosition("XRPUSDT", Decimal(1000), entry, 50, MarginMode.ISOLATED, entry * 1000 / 50)
    liq = liquidation_price(pos, usdm_brackets()["XRPUSDT"])
    assert liq is not None
    # the mark lows of candles 25-27 stay above it; candle 28's (1.11085) reaches it
    assert all(xrp.mark_bars[i].low > liq for i in (25, 26, 27))
    assert xrp.mark_bars[28].low <= liq
    step_to(venue, 28)
    [held] = await ex.fetch_positions([SYM])
    assert held["contracts"] == 1000
    step_to(venue, 29)
    assert await ex.fetch_positions([SYM]) == []
    _buy, sell = await ex.fetch_my_trades(SYM)
    assert (sell["side"], sell["amount"]) == ("sell", 1000)
    assert Decimal(sell["info"]["price"]) == Decimal(f"{liq:.4f}")
    fee = (liq * 1000 * Decimal("0.005")).quantize(Decimal("1e-8"))  # XRPUSDT liquidationFee
    assert Decimal(sell["info"]["commission"]) == fee


async def test_stop_orders_are_refused_in_bar_mode_rather_than_ignored(ex: Any) -> None:
    with pytest.raises(Exception, match="-1130"):
        await ex.fapiPrivatePostOrder(
            {"symbol": "XRPUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "100",
             "stopPrice": "1.0"}
        )  # fmt: skip


def test_serve_usdm_bars_with_a_missing_file_is_one_paragraph() -> None:
    result = CliRunner().invoke(app, ["serve", "--usdm", "--bars", "nope.feather"])
    assert result.exit_code == 2
    assert "nope.feather" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["serve", "--mark", "x.feather"])
    flat = re.sub(r"[│╭╮╰╯─\s]+", " ", result.output)
    assert result.exit_code == 2 and "go with --usdm --bars" in flat


def test_serve_usdm_bars_says_where_the_mark_and_funding_come_from() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tessera.sim.cli import app; app(prog_name='tessera sim')",
         "serve", "--usdm", "--port", "0",
         "--bars", str(FUTURES / "XRP_USDT_USDT-1h-futures.feather"),
         "--mark", str(FUTURES / "XRP_USDT_USDT-1h-mark.feather"),
         "--funding", str(FUTURES / "XRP_USDT_USDT-8h-funding_rate.feather")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(12)]
        text = "".join(lines)
        assert "XRPUSDT 1h candles" in text
        assert "mark klines XRP_USDT_USDT-1h-mark.feather for 57 of 100 candles" in text
        assert "XRP_USDT_USDT-8h-funding_rate.feather (91 funding times)" in text
    finally:
        proc.terminate()
        proc.wait(20)


@settings(max_examples=15, deadline=None)
@given(
    tenths=st.integers(min_value=-20_000, max_value=20_000).filter(lambda n: abs(n) >= 50),
    funding_index=st.integers(min_value=0, max_value=4),
)
def test_any_position_over_a_funding_time_books_the_domains_payment_once(
    xrp: UsdmBarMarket, tenths: int, funding_index: int
) -> None:
    """Long or short, any size the filters take, any of the funding times inside the candles:
    the wallet moves by `funding_payment` at the file's rate and mark (8 decimals), once."""
    venue = usdm_venue(xrp, speed=None, autostart=False, trading=usdm_trading_config())
    engine = venue.engine
    assert engine is not None
    qty = Decimal(tenths) / 10
    funding = xrp.funding[funding_index]
    at = funding.ts_ns // 1_000_000
    given_bars = xrp.given_bars("XRPUSDT")
    assert given_bars is not None
    closes = [b.close_time + 1 for b in given_bars.bars]
    last_before = closes.index(at)  # the candle closing at the funding time
    venue.sim.release(last_before)
    side = "BUY" if qty > 0 else "SELL"
    engine.place({"symbol": "XRPUSDT", "side": side, "type": "MARKET",
                  "quantity": f"{abs(qty)}"})  # fmt: skip
    wallet = engine.wallet
    venue.sim.release(last_before + 1)
    assert funding.mark_price is not None
    due = funding_payment(qty, funding.mark_price, funding.rate).quantize(Decimal("1e-8"))
    assert engine.wallet - wallet == due
    assert [(r.time_ms, r.amount) for r in engine.incomes] == [(at, due)]
    assert (due < 0) == (qty > 0)  # every rate in the candles' span is positive
    venue.sim.release(last_before + 9)  # the next funding time closes 8 candles on
    assert len(engine.incomes) == 2


async def test_an_isolated_positions_funding_event_carries_that_position(
    venue: UsdmVenue, ex: Any
) -> None:
    await ex.set_margin_mode("isolated", SYM)
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{venue.sim.ws_url}/ws/{key}") as ws:
        await asyncio.sleep(0.05)
        await ex.create_order(SYM, "market", "sell", 500)  # short 500 XRP from candle 20
        step_to(venue, 24)
        events = [json.loads((await asyncio.wait_for(ws.receive(), 5)).data) for _ in range(4)]
    funding = events[-1]
    assert (funding["e"], funding["a"]["m"], funding["E"]) == ("ACCOUNT_UPDATE", "FUNDING_FEE", F1)
    received = funding_payment(Decimal(-500), Decimal("1.09503"), Decimal("0.0001"))
    assert funding["a"]["B"][0]["bc"] == f"{received:.8f}" == "0.05475150"
    [position] = funding["a"]["P"]
    assert (position["s"], position["pa"], position["mt"]) == ("XRPUSDT", "-500.0", "isolated")
