"""Start-up reconciliation of a USDⓈ-M account (`PerpReconciler`, `perp_reconcile.plan`)
against the in-process USDⓈ-M simulator on the bundled real BTCUSDT perpetual recording.

A flat account gets the configured leverage and margin mode; the bot's own position
reconciles clean; a position opened by hand (through ccxt, beside the bot) halts trading with
the persisted halt spot uses; settings that differ under an open position halt too, naming
both values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.execution.perp_reconcile import PerpSettings, VenuePosition, plan
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import PerpReconciler
from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

USDM_BTC = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"
KEY, SECRET = "usdm-key", "usdm-secret"
START = 15_000
ISO5 = PerpSettings(leverage=5, mode=MarginMode.ISOLATED)

Setup = tuple[UsdmVenue, OrderManager, PerpReconciler]


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return usdm_market([USDM_BTC])


@pytest.fixture
async def setup(database_url: str, market: SimMarket) -> AsyncIterator[Setup]:
    v = usdm_venue(
        market,
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    async with v.sim:
        v.sim.release(START)
        assert v.engine is not None
        store = ExecutionStore(database_url)
        ex = open_exchange(v.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
        om = OrderManager(store, ex, "run-usdm-rec")
        rec = PerpReconciler(om, v.engine.filters, ["BTCUSDT"], ISO5, account="perp")
        try:
            yield v, om, rec
        finally:
            await ex.close()
            store.close()


async def by_hand(v: UsdmVenue) -> Any:
    """A second client on the same account: a person trading in the app."""
    options = {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
               "fetchMargins": False}  # fmt: skip
    client = ccxt_async.binanceusdm({"apiKey": KEY, "secret": SECRET, "options": options})
    for key, url in list(client.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
            client.urls["api"][key] = url.replace("https://fapi.binance.com", v.sim.rest_url)
    return client


def market_order(cid: str, side: OrderSide, qty: str, reduce_only: bool = False) -> Order:
    return Order(cid, "BTCUSDT", side, OrderType.MARKET, Decimal(qty), reduce_only=reduce_only)


def flat(lev: int = 20, mode: MarginMode = MarginMode.CROSS, qty: str = "0") -> VenuePosition:
    return VenuePosition("BTCUSDT", Decimal(qty), Decimal(0), lev, mode, None)


def test_the_plan_sets_flat_symbols_and_names_what_it_cannot_change() -> None:
    p = plan([flat()], {}, ISO5, ["BTCUSDT"])
    assert (p.set_leverage, p.set_mode, p.problems) == (
        {"BTCUSDT": 5},
        {"BTCUSDT": MarginMode.ISOLATED},
        [],
    )
    held = flat(qty="0.01")
    p = plan([held], {"BTCUSDT": Decimal("0.01")}, ISO5, ["BTCUSDT"])
    assert (p.set_leverage, p.set_mode, p.unexplained) == ({}, {}, [])
    assert any("leverage 20x on the exchange, 5x configured" in x for x in p.problems)
    assert any("margin mode CROSS on the exchange, ISOLATED configured" in x for x in p.problems)
    p = plan([flat(5, MarginMode.ISOLATED, "-0.01")], {}, ISO5, ["BTCUSDT"])
    assert p.unexplained == ["BTCUSDT"] and "position -0.01 on the exchange, 0" in p.problems[0]
    assert plan([], {}, ISO5, ["BTCUSDT"]).problems == [
        "BTCUSDT: the exchange reported no position or settings"
    ]


async def test_a_flat_account_gets_the_configured_leverage_and_margin_mode(
    setup: Setup,
) -> None:
    _, om, rec = setup
    report = await rec.run()
    assert report.ok, report.problems
    ex = om.exchange
    assert isinstance(ex, UsdmCcxtExchange)
    [pos] = await ex.positions(["BTCUSDT"])
    assert (pos.qty, pos.leverage, pos.mode) == (0, 5, MarginMode.ISOLATED)
    assert (await rec.run()).ok  # nothing left to change


async def test_the_bots_own_long_and_its_reduce_only_exit_reconcile_clean(
    setup: Setup,
) -> None:
    _, om, rec = setup
    assert (await rec.run()).ok
    await om.submit(market_order("p-1", OrderSide.BUY, "0.010"))
    report = await rec.run()  # its fill comes in from the exchange's trade list if need be
    assert report.ok, report.problems
    assert rec.ledger_positions() == {"BTCUSDT": Decimal("0.010")}
    await om.submit(market_order("p-2", OrderSide.SELL, "0.010", reduce_only=True))
    assert (await rec.run()).ok
    assert rec.ledger_positions() == {"BTCUSDT": Decimal(0)}
    assert om.store.load_halt("perp") is None


async def test_a_position_opened_by_hand_halts_trading(setup: Setup) -> None:
    v, om, rec = setup
    assert (await rec.run()).ok
    person = await by_hand(v)
    try:
        await person.create_order("BTC/USDT:USDT", "market", "sell", 0.01)
    finally:
        await person.close()
    report = await rec.run()
    assert not report.ok
    assert any("belongs to an order we never sent" in p for p in report.problems)
    assert len(report.problems) == len(set(report.problems))  # each told once
    assert any("position -0.010 on the exchange, 0 in our ledger" in p for p in report.problems)
    halt = om.store.load_halt("perp")
    assert halt is not None and "opened or changed by hand" in str(halt)


async def test_settings_that_differ_under_an_open_position_halt_naming_both(
    setup: Setup,
) -> None:
    _, om, rec = setup
    # the bot's own position, taken at 20x cross before the configuration said 5x isolated
    await om.submit(market_order("p-3", OrderSide.BUY, "0.010"))
    report = await rec.run()
    assert not report.ok
    assert any("leverage 20x on the exchange, 5x configured" in p for p in report.problems)
    assert any("margin mode CROSS on the exchange, ISOLATED" in p for p in report.problems)
    assert not any("ledger" in p for p in report.problems)  # the position itself is ours
    assert om.store.load_halt("perp") is not None
