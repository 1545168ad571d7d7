"""`PerpRiskBook` fed by the USDⓈ-M simulator's own ``ACCOUNT_UPDATE`` events over the real
XRP/USDT perpetual candles, mark klines and funding rates (samples/freqtrade/futures): after a
fill and a funding time the book's wallet and position equal the simulator's account, its
snapshot's margin ratio equals the simulator's at the same mark (to the 8 decimals of the
event's isolated wallet), and the FUNDING_FEE update
gives the payment the simulator booked."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tessera.backtest.perp_inputs import load_brackets
from tessera.execution.perp.margin import MarginMode
from tessera.live.perp_risk import FundingPayment, PerpRiskBook
from tessera.sim.usdm import usdm_trading_config, usdm_venue
from tessera.sim.usdm.bars import UsdmBarMarket, usdm_bar_market
from tessera.venues.binance_usdm.user_data import FuturesAccountUpdate, parse_user_event

SYM = "XRPUSDT"
F1 = 1_637_193_600_000  # 2021-11-18 00:00 UTC: candle 23 of the XRP file closes at it


@pytest.fixture(scope="module")
def xrp() -> UsdmBarMarket:
    return usdm_bar_market()


@pytest.mark.parametrize("mode", [MarginMode.CROSS, MarginMode.ISOLATED])
@pytest.mark.parametrize("qty", [Decimal(1000), Decimal(-500)])
def test_the_risk_book_follows_the_venues_account_updates_through_a_fill_and_a_funding_time(
    xrp: UsdmBarMarket, mode: MarginMode, qty: Decimal
) -> None:
    venue = usdm_venue(xrp, speed=None, autostart=False, trading=usdm_trading_config())
    engine = venue.engine
    assert engine is not None
    events: list[dict[str, Any]] = []
    engine.listeners.append(events.append)
    acc = engine.accounts[SYM]
    acc.mode = mode
    book = PerpRiskBook(load_brackets(), acc.leverage, mode)
    book.wallet = engine.wallet  # what reset() reads from the balances at start-up
    venue.sim.release(20)
    side = "BUY" if qty > 0 else "SELL"
    engine.place({"symbol": SYM, "side": side, "type": "MARKET", "quantity": f"{abs(qty)}"})
    venue.sim.release(24)  # candle 23 closes at the funding time F1
    payments: list[FundingPayment] = []
    for raw in events:
        event = parse_user_event(json.dumps(raw))
        if isinstance(event, FuturesAccountUpdate):
            payment = book.on_account_update(event)
            if payment is not None:
                payments.append(payment)
    [income] = [r for r in engine.incomes if r.kind == "FUNDING_FEE"]
    assert payments == [FundingPayment(F1, SYM, income.amount)]
    assert (income.amount < 0) == (qty > 0)  # the rate is positive: longs pay
    assert book.wallet == engine.wallet
    held = engine.position(SYM)
    assert held is not None
    pos = book.positions[SYM]
    assert (pos.qty, pos.entry_price, pos.mode) == (held.qty, held.entry_price, mode)
    mark = engine.mark(SYM)
    snap = book.snapshot({SYM: mark}, [SYM])
    ours, theirs = snap.margin_ratio(SYM), engine.margin_ratio(SYM)
    assert ours is not None and theirs is not None
    # the event's isolated wallet (iw) is the simulator's, printed to 8 decimals
    assert abs(ours - theirs) < Decimal("1e-9")
