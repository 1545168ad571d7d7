"""Signed USDⓈ-M trading on the simulator through ccxt ``binanceusdm``: leverage, margin type,
long and short positions, a partially filled limit, reduce-only closes, position risk and the
user-data stream, on the bundled real BTCUSDT perpetual recording.

The replay is stepped by hand (`ExchangeSimulator.release`), so the book a test reads over REST
is the book its order meets. Reference values: the book the test fetched, the recorded trades
(the market's own list), Binance's isolated liquidation formula written out here, and the
payload shapes of Binance's documented examples (samples/binance-api/futures-http and
futures-user-data).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest
from sim_helpers import SAMPLES, shape
from test_usdm_public import USDM_BTC, point_usdm_at
from usdm_client import started_usdm_venue, usdm_ccxt_client

from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue

KEY, SECRET = "usdm-key", "usdm-secret"
SYM = "BTC/USDT:USDT"
START = 15_000  # frames released before a test trades (about 50 s into the recording)
OPTIONS = {
    "fetchMarkets": {"types": ["linear"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
    "fetchBalance": {"useV2": True},
    "fetchPositionsRisk": {"useV2": True},
}


def real(name: str) -> Any:
    """A bundled real USDⓈ-M payload (samples/binance-api/futures-*)."""
    return json.loads((SAMPLES / "binance-api" / name).read_text())


@pytest.fixture(scope="module")
def usdm() -> SimMarket:
    return usdm_market([USDM_BTC])


@pytest.fixture
async def venue(usdm: SimMarket) -> AsyncIterator[UsdmVenue]:
    async with started_usdm_venue(usdm, KEY, SECRET, START) as v:
        yield v


@pytest.fixture
async def ex(venue: UsdmVenue) -> AsyncIterator[Any]:
    async with usdm_ccxt_client(venue, KEY, SECRET, OPTIONS) as client:
        yield client


def walk(levels: list[list[float]], qty: Decimal) -> Decimal:
    """Average price of taking ``qty`` from book levels, best first."""
    left, cost = qty, Decimal(0)
    for p, q in levels:
        take = min(left, Decimal(str(q)))
        cost += take * Decimal(str(p))
        left -= take
        if left == 0:
            return cost / qty
    raise AssertionError("book too thin")


async def test_leverage_and_margin_type_are_set_and_refused_as_binance_does(ex: Any) -> None:
    assert (await ex.set_leverage(10, SYM))["leverage"] == 10
    assert (await ex.set_margin_mode("isolated", SYM))["msg"] == "success"
    with pytest.raises(Exception, match="-4046"):
        await ex.fapiPrivatePostMarginType({"symbol": "BTCUSDT", "marginType": "ISOLATED"})
    with pytest.raises(Exception, match="-4028"):
        await ex.fapiPrivatePostLeverage({"symbol": "BTCUSDT", "leverage": 126})
    await ex.create_order(SYM, "market", "buy", 0.01)
    with pytest.raises(Exception, match="-4048"):
        await ex.set_margin_mode("cross", SYM)
    with pytest.raises(Exception, match="-4061"):
        await ex.create_order(SYM, "market", "buy", 0.01, params={"positionSide": "LONG"})


async def test_a_market_long_walks_the_asks_and_its_entry_is_the_average_taken(ex: Any) -> None:
    await ex.set_leverage(50, SYM)  # a 4 BTC position needs more than 20x of 10,000 USDT
    book = await ex.fetch_order_book(SYM, limit=20)
    qty = Decimal(str(book["asks"][0][1])) + Decimal("0.5")  # more than the best level
    long = await ex.create_order(SYM, "market", "buy", float(qty))
    assert long["status"] == "closed"
    assert Decimal(long["info"]["avgPrice"]) == walk(book["asks"], qty)
    [pos] = await ex.fetch_positions([SYM])
    assert (pos["side"], Decimal(str(pos["contracts"]))) == ("long", qty)
    assert Decimal(pos["info"]["entryPrice"]) == walk(book["asks"], qty)
    assert (pos["leverage"], pos["marginMode"]) == (50, "cross")


async def test_a_sell_of_twice_the_long_closes_it_and_opens_a_short_at_the_bid(ex: Any) -> None:
    book = await ex.fetch_order_book(SYM, limit=5)
    (bid, bid_qty), (ask, ask_qty) = book["bids"][0], book["asks"][0]
    assert min(bid_qty, ask_qty) >= 0.02  # both fit in the best level
    await ex.create_order(SYM, "market", "buy", 0.01)
    await ex.create_order(SYM, "market", "sell", 0.02)
    [pos] = await ex.fetch_positions([SYM])
    assert (pos["side"], pos["contracts"], pos["entryPrice"]) == ("short", 0.01, bid)
    buy, sell = await ex.fetch_my_trades(SYM)
    assert Decimal(buy["info"]["realizedPnl"]) == 0
    expected = Decimal("0.01") * (Decimal(str(bid)) - Decimal(str(ask)))
    assert Decimal(sell["info"]["realizedPnl"]) == expected
    # taker fees (0.05 %) in USDT, and the realized loss, come out of the wallet
    balance = await ex.fapiPrivateV2GetBalance()
    fees = Decimal(buy["info"]["commission"]) + Decimal(sell["info"]["commission"])
    assert Decimal(balance[0]["balance"]) == Decimal(10_000) + expected - fees
    assert Decimal(sell["info"]["commission"]) == (
        Decimal(str(bid)) * Decimal("0.02") * Decimal("0.0005")
    ).quantize(Decimal("1e-8"))


async def test_a_limit_fills_in_part_when_a_smaller_trade_prints_through_it(
    venue: UsdmVenue, ex: Any
) -> None:
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    book = await ex.fetch_order_book(SYM, limit=5)
    bid = Decimal(str(book["bids"][0][0]))
    trades = sim.market.trades("BTCUSDT")
    after = sim.state.trades("BTCUSDT")
    i = next(
        k for k in range(len(after), len(trades.trades)) if Decimal(trades.trades[k].price) <= bid
    )
    hit = trades.trades[i]
    qty = (Decimal(hit.qty) * 2).quantize(Decimal("0.001"))
    order = await ex.create_order(SYM, "limit", "buy", float(qty), float(bid))
    assert order["status"] == "open"
    sim.release(trades.anchors[i] + 1)
    engine.match_resting()
    got = await ex.fetch_order(order["id"], SYM)
    assert got["info"]["status"] == "PARTIALLY_FILLED"
    assert Decimal(got["info"]["executedQty"]) == Decimal(hit.qty)
    assert Decimal(got["info"]["avgPrice"]) == bid  # a maker fills at its own price


async def test_a_reduce_only_order_closes_and_never_flips_the_position(ex: Any) -> None:
    with pytest.raises(Exception, match="-2022"):  # nothing to reduce
        await ex.create_order(SYM, "market", "sell", 0.01, params={"reduceOnly": True})
    await ex.create_order(SYM, "market", "buy", 0.01)
    close = await ex.create_order(SYM, "market", "sell", 0.05, params={"reduceOnly": True})
    assert (close["filled"], close["info"]["status"]) == (0.01, "EXPIRED")
    assert await ex.fetch_positions([SYM]) == []


async def test_position_risk_shows_entry_leverage_and_binances_isolated_liquidation_price(
    venue: UsdmVenue, ex: Any
) -> None:
    await ex.set_leverage(25, SYM)
    await ex.set_margin_mode("isolated", SYM)
    await ex.create_order(SYM, "market", "buy", 0.2)
    rows = await ex.fapiPrivateV2GetPositionRisk({"symbol": "BTCUSDT"})
    [row] = rows
    assert shape(row).keys() == shape(real("futures-http/position_risk.json")[0]).keys()
    entry, qty = Decimal(row["entryPrice"]), Decimal("0.2")
    assert (row["leverage"], row["marginType"], row["positionAmt"]) == ("25", "isolated", "0.200")
    # Binance, isolated one-way long: LP = (WB + cum - qty*EP) / (qty*MMR - qty), with the
    # bracket of BTCUSDT's first tier (notional < 50,000: MMR 0.004, cum 0), WB = qty*EP/lev
    wallet = qty * entry / 25
    lp = (wallet + 0 - qty * entry) / (qty * Decimal("0.004") - qty)
    assert row["liquidationPrice"] == f"{lp:.2f}"
    [pos] = await ex.fetch_positions([SYM])
    assert (pos["leverage"], pos["marginMode"]) == (25, "isolated")


async def test_payloads_have_the_fields_of_binances_examples(venue: UsdmVenue, ex: Any) -> None:
    order = await ex.create_order(SYM, "limit", "buy", 0.01, 60000)
    assert list(order["info"]) == list(real("futures-http/order_response.json"))
    account = await ex.fapiPrivateV2GetAccount()
    ref = real("futures-http/account_info_v2.json")
    assert list(account) == list(ref)
    assert list(account["assets"][0]) == list(ref["assets"][0])
    assert list(account["positions"][0]) == list(ref["positions"][0])
    balance = await ex.fapiPrivateV2GetBalance()
    assert list(balance[0]) == list(real("futures-http/balance.json")[0])
    assert Decimal(account["totalOpenOrderInitialMargin"]) == Decimal("0.01") * 60000 / 20


async def test_the_user_data_stream_sends_order_and_account_updates(
    venue: UsdmVenue, ex: Any
) -> None:
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{venue.sim.ws_url}/ws/{key}") as ws:
        await asyncio.sleep(0.05)
        await ex.create_order(SYM, "market", "sell", 0.01)
        while len(events) < 3:
            events.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
    new, trade, account = events
    assert (new["e"], new["o"]["x"], trade["o"]["x"]) == ("ORDER_TRADE_UPDATE", "NEW", "TRADE")
    ref_trade = real("futures-user-data/order_update_trade_partial.json")
    assert list(trade) == list(ref_trade) and list(trade["o"]) == list(ref_trade["o"])
    assert (trade["o"]["X"], trade["o"]["l"], trade["o"]["ps"]) == ("FILLED", "0.010", "BOTH")
    ref_account = real("futures-user-data/account_update.json")
    assert list(account["a"]) == list(ref_account["a"])
    assert list(account["a"]["P"][0]) == list(ref_account["a"]["P"][0])
    assert (account["a"]["m"], account["a"]["P"][0]["pa"]) == ("ORDER", "-0.010")
    assert (await ex.fapiPrivatePutListenKey())["listenKey"] == key


async def test_orders_the_account_or_the_filters_cannot_take_are_refused_with_binances_codes(
    ex: Any,
) -> None:
    book = await ex.fetch_order_book(SYM, limit=5)
    ask = Decimal(str(book["asks"][0][0]))

    async def raw(**params: Any) -> Any:
        return await ex.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", **params})

    with pytest.raises(Exception, match="-2019"):  # 10 BTC at 20x needs ~31,000 USDT
        await raw(type="MARKET", quantity="10")
    with pytest.raises(Exception, match="-4014"):
        await raw(
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.01",
            price=f"{ask - 100 + Decimal('0.005')}",
        )
    with pytest.raises(Exception, match="-4023"):
        await raw(type="MARKET", quantity="0.0015")
    with pytest.raises(Exception, match="-4024"):  # below PERCENT_PRICE's 0.85 x mark
        await raw(type="LIMIT", timeInForce="GTC", quantity="0.01", price=f"{ask * 8 // 10}")
    with pytest.raises(Exception, match="-5022"):  # post-only at the ask would take
        await raw(type="LIMIT", timeInForce="GTX", quantity="0.01", price=f"{ask}")
    with pytest.raises(Exception, match="-1130"):  # a listed type the simulator lacks
        await raw(type="TRAILING_STOP_MARKET", quantity="0.01", callbackRate="1")
    with pytest.raises(Exception, match="-2021"):  # a buy stop under the market
        await raw(type="STOP_MARKET", quantity="0.01", stopPrice=f"{ask - 100}")
    assert await ex.fetch_open_orders(SYM) == []


async def test_a_position_under_its_maintenance_margin_gets_a_margin_call_then_is_liquidated(
    usdm: SimMarket,
) -> None:
    # 10 USDT at 125x opens 0.02 BTC (~1,237 USDT, initial margin ~9.9); a 0.5 % taker fee
    # (a setting, not market data: the recorded prices move too little in two minutes to
    # liquidate anything) leaves ~3.7 USDT, under the 0.4 % maintenance margin (~4.9)
    config = usdm_trading_config(
        api_key=KEY, api_secret=SECRET, balances={"USDT": "10"}, taker_fee=Decimal("0.005")
    )
    venue = usdm_venue(usdm, speed=None, autostart=False, trading=config)
    engine = venue.engine
    assert engine is not None
    async with venue.sim as sim:
        sim.release(START)
        client = ccxt_async.binanceusdm({"apiKey": KEY, "secret": SECRET, "options": OPTIONS})
        point_usdm_at(client, sim)
        try:
            await client.load_markets()
            await client.set_leverage(125, SYM)
            key = (await client.fapiPrivatePostListenKey())["listenKey"]
            events: list[dict[str, Any]] = []
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(f"{sim.ws_url}/ws/{key}") as ws,
            ):
                await asyncio.sleep(0.05)
                await client.create_order(SYM, "market", "buy", 0.02)
                while not any(e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "CALCULATED"
                              and e["o"]["X"] == "FILLED" for e in events):  # fmt: skip
                    events.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
            assert await client.fetch_positions([SYM]) == []
        finally:
            await client.close()
    kinds = [(e["e"], e.get("o", {}).get("x")) for e in events]
    call = kinds.index(("MARGIN_CALL", None))
    assert kinds[:call] == [
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ACCOUNT_UPDATE", None),
    ]
    margin_call = events[call]
    [row] = margin_call["p"]
    assert (row["s"], row["pa"], row["mt"]) == ("BTCUSDT", "0.020", "CROSSED")
    assert Decimal(row["mm"]) > Decimal(margin_call["cw"]) + Decimal(row["up"])
    liquidation = events[-1]["o"]
    assert liquidation["c"].startswith("autoclose-")
    assert (liquidation["S"], liquidation["o"], liquidation["f"], liquidation["R"]) == (
        "SELL",
        "LIMIT",
        "IOC",
        True,
    )
    assert liquidation["z"] == "0.020"
    # the liquidation fee is BTCUSDT's liquidationFee (1.2 % in the bundled exchangeInfo)
    fee = Decimal(liquidation["L"]) * Decimal("0.020") * Decimal("0.012")
    assert Decimal(liquidation["n"]) == fee.quantize(Decimal("1e-8"))


async def test_ccxt_pro_watch_orders_hears_the_fill_on_the_private_stream(
    venue: UsdmVenue,
) -> None:
    client = ccxtpro.binanceusdm({"apiKey": KEY, "secret": SECRET, "options": OPTIONS})
    point_usdm_at(client, venue.sim)
    client.urls["api"]["ws"]["linear"] = f"{venue.sim.ws_url}/ws"  # -> <ws>/private/ws?listenKey=
    try:
        await client.load_markets()
        watching = asyncio.ensure_future(client.watch_orders(SYM))
        engine = venue.engine
        assert engine is not None
        for _ in range(200):  # until ccxt made its listen key and opened the socket
            if engine.listeners:
                break
            await asyncio.sleep(0.02)
        placed = await client.create_order(SYM, "market", "buy", 0.01)
        orders = await asyncio.wait_for(watching, 10)
        while orders[-1]["status"] != "closed":
            orders = await asyncio.wait_for(client.watch_orders(SYM), 10)
        assert (orders[-1]["id"], orders[-1]["filled"]) == (placed["id"], 0.01)
    finally:
        await client.close()


async def test_a_close_position_stop_market_closes_the_long_when_a_trade_reaches_its_stop(
    venue: UsdmVenue, ex: Any
) -> None:
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    await ex.create_order(SYM, "market", "buy", 0.01)
    [pos] = await ex.fetch_positions([SYM])
    trades = sim.market.trades("BTCUSDT")
    seen = len(sim.state.trades("BTCUSDT"))
    last = Decimal(trades.trades[seen - 1].price)
    # the stop: the first later print at least 10 USDT under the last one
    i = next(
        k for k in range(seen, len(trades.trades)) if Decimal(trades.trades[k].price) <= last - 10
    )
    stop = Decimal(trades.trades[i].price)
    placed = await ex.fapiPrivatePostOrder(
        {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stopPrice": f"{stop}",
         "closePosition": "true"}
    )  # fmt: skip
    assert (placed["status"], placed["origQty"], placed["closePosition"]) == ("NEW", "0.000", True)
    sim.release(trades.anchors[i])  # the print before the stop: nothing happens yet
    engine.match_resting()
    assert (await ex.fetch_order(placed["orderId"], SYM))["info"]["status"] == "NEW"
    sim.release(trades.anchors[i] + 1)
    book = await ex.fetch_order_book(SYM, limit=5)  # the book the triggered order takes
    engine.match_resting()
    done = (await ex.fetch_order(placed["orderId"], SYM))["info"]
    assert (done["status"], done["executedQty"], done["type"]) == ("FILLED", "0.010", "STOP_MARKET")
    assert Decimal(done["avgPrice"]) == walk(book["bids"], Decimal("0.01"))
    assert await ex.fetch_positions([SYM]) == []
    fills = await ex.fetch_my_trades(SYM)
    expected = Decimal("0.01") * (Decimal(done["avgPrice"]) - Decimal(str(pos["entryPrice"])))
    closing = [f for f in fills if f["order"] == str(placed["orderId"])]
    assert sum(Decimal(f["info"]["realizedPnl"]) for f in closing) == expected


# GET /fapi/v3/positionRisk, one-way mode, as Binance's "Position Information V3" page lists it
V3_POSITION_RISK = [
    "symbol", "positionSide", "positionAmt", "entryPrice", "breakEvenPrice", "markPrice",
    "unRealizedProfit", "liquidationPrice", "isolatedMargin", "notional", "marginAsset",
    "isolatedWallet", "initialMargin", "maintMargin", "positionInitialMargin",
    "openOrderInitialMargin", "adl", "bidNotional", "askNotional", "updateTime",
]  # fmt: skip


async def test_ccxt_defaults_read_the_v3_position_risk_and_account(venue: UsdmVenue) -> None:
    v3 = {k: v for k, v in OPTIONS.items() if k not in ("fetchBalance", "fetchPositionsRisk")}
    client = ccxt_async.binanceusdm({"apiKey": KEY, "secret": SECRET, "options": v3})
    point_usdm_at(client, venue.sim)
    try:
        await client.load_markets()
        assert await client.fapiPrivateV3GetPositionRisk() == []  # nothing open: no rows
        order = await client.create_order(SYM, "market", "sell", 0.01)
        [pos] = await client.fetch_positions([SYM])  # /fapi/v3/positionRisk
        assert list(pos["info"]) == V3_POSITION_RISK
        assert (pos["side"], pos["contracts"], pos["entryPrice"]) == (
            "short",
            0.01,
            order["average"],
        )
        balance = await client.fetch_balance()  # /fapi/v3/account
        v2 = await client.fapiPrivateV2GetAccount()
        assert balance["USDT"]["total"] == float(v2["totalMarginBalance"])
        assert balance["USDT"]["used"] == float(v2["totalInitialMargin"])
    finally:
        await client.close()
