"""USDⓈ-M conditional orders through Binance's algo order service on the simulator, driven by
ccxt ``binanceusdm`` (which sends STOP_MARKET & co. to ``/fapi/v1/algoOrder``): a reduce-only
stop-market rests as an algo order, triggers on the recorded trades and closes the position;
cancel and the open list; the ``ALGO_UPDATE`` events against Binance's real payloads.

Reference values: the bundled real BTCUSDT perpetual recording (the trade that reaches the
trigger is the market's own), the real ``algo_update_*.json`` payloads, ccxt's parser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from test_usdm_public import USDM_BTC
from test_usdm_trading import KEY, OPTIONS, SECRET, START, SYM, real
from usdm_client import started_usdm_venue, usdm_ccxt_client

from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue, usdm_market


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


def first_print_below(venue: UsdmVenue, by: Decimal) -> tuple[int, Decimal]:
    """The index and price of the first recorded trade after the replay's head at least
    ``by`` under the last one."""
    trades = venue.sim.market.trades("BTCUSDT")
    seen = len(venue.sim.state.trades("BTCUSDT"))
    last = Decimal(trades.trades[seen - 1].price)
    i = next(
        k for k in range(seen, len(trades.trades)) if Decimal(trades.trades[k].price) <= last - by
    )
    return i, Decimal(trades.trades[i].price)


async def test_a_reduce_only_stop_market_rests_as_an_algo_order_then_closes_the_long(
    venue: UsdmVenue, ex: Any
) -> None:
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    await ex.create_order(SYM, "market", "buy", 0.01)
    i, stop = first_print_below(venue, Decimal(10))
    placed = await ex.create_order(
        SYM, "market", "sell", 0.01, None,
        {"stopLossPrice": float(stop), "reduceOnly": True, "clientOrderId": "stop-1"},
    )  # fmt: skip
    info = placed["info"]
    assert (info["algoType"], info["orderType"], info["algoStatus"]) == (
        "CONDITIONAL", "STOP_MARKET", "NEW",
    )  # fmt: skip
    assert (placed["status"], placed["clientOrderId"], placed["triggerPrice"]) == (
        "open", "stop-1", float(stop),
    )  # fmt: skip
    assert placed["reduceOnly"] is True
    # the algo service holds it: the regular order list does not show it, the algo list does
    assert await ex.fetch_open_orders(SYM) == []
    [listed] = await ex.fetch_open_orders(SYM, params={"trigger": True})
    assert listed["id"] == placed["id"]
    trades = sim.market.trades("BTCUSDT")
    sim.release(trades.anchors[i])  # the print before the trigger: nothing happens
    engine.match_resting()
    assert (await ex.fetch_order(placed["id"], SYM, {"trigger": True}))["status"] == "open"
    sim.release(trades.anchors[i] + 1)
    engine.match_resting()
    done = await ex.fetch_order(placed["id"], SYM, {"trigger": True})
    assert (done["info"]["algoStatus"], done["status"]) == ("FINISHED", "closed")
    actual = done["info"]["actualOrderId"]
    order = await ex.fetch_order(actual, SYM)  # the triggered order, in the matching engine
    assert (order["status"], order["filled"], order["clientOrderId"]) == ("closed", 0.01, "stop-1")
    assert await ex.fetch_positions([SYM]) == []
    assert await ex.fetch_open_orders(SYM, params={"trigger": True}) == []


async def test_a_conditional_is_canceled_by_its_id_or_client_id_and_then_unknown(
    venue: UsdmVenue, ex: Any
) -> None:
    await ex.create_order(SYM, "market", "buy", 0.01)
    _, stop = first_print_below(venue, Decimal(10))
    args = (SYM, "market", "sell", 0.01, None)
    a = await ex.create_order(*args, {"stopLossPrice": float(stop), "reduceOnly": True})
    b = await ex.create_order(
        *args, {"stopLossPrice": float(stop), "reduceOnly": True, "clientOrderId": "stop-b"}
    )
    gone = await ex.cancel_order(a["id"], SYM, {"trigger": True})
    assert (gone["id"], gone["info"]["msg"]) == (a["id"], "success")
    await ex.cancel_order(None, SYM, {"trigger": True, "clientOrderId": "stop-b"})
    assert (await ex.fetch_order(b["id"], SYM, {"trigger": True}))["status"] == "canceled"
    assert await ex.fetch_open_orders(SYM, params={"trigger": True}) == []
    with pytest.raises(Exception, match="-2011"):
        await ex.cancel_order(a["id"], SYM, {"trigger": True})
    history = await ex.fapiPrivateGetAllAlgoOrders({"symbol": "BTCUSDT"})
    assert [h["algoStatus"] for h in history] == ["CANCELED", "CANCELED"]


async def test_binances_refusals_of_conditionals_hold_on_the_algo_endpoint(
    venue: UsdmVenue, ex: Any
) -> None:
    _, stop = first_print_below(venue, Decimal(10))

    async def raw(**kw: str) -> Any:
        base = {"symbol": "BTCUSDT", "side": "SELL", "algoType": "CONDITIONAL",
                "type": "STOP_MARKET", "quantity": "0.01"}  # fmt: skip
        return await ex.fapiPrivatePostAlgoOrder({**base, **kw})

    with pytest.raises(Exception, match="-2022"):  # reduce-only with no position
        await raw(triggerPrice=f"{stop}", reduceOnly="true")
    with pytest.raises(Exception, match="-2021"):  # a sell stop above the last price
        await raw(triggerPrice=f"{stop + 1000}")
    with pytest.raises(Exception, match="-1130"):
        await raw(triggerPrice=f"{stop}", workingType="MARK_PRICE")
    with pytest.raises(Exception, match="-1130"):  # not implemented, refused rather than ignored
        await raw(type="TRAILING_STOP_MARKET", triggerPrice=f"{stop}", callbackRate="1")
    with pytest.raises(Exception, match="-1102"):
        await raw(algoType="", triggerPrice=f"{stop}")


async def test_the_stream_sends_algo_updates_then_the_triggered_orders_updates(
    venue: UsdmVenue, ex: Any
) -> None:
    sim, engine = venue.sim, venue.engine
    assert engine is not None
    await ex.create_order(SYM, "market", "buy", 0.01)
    i, stop = first_print_below(venue, Decimal(10))
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/ws/{key}") as ws:
        await asyncio.sleep(0.05)
        await ex.create_order(
            SYM, "market", "sell", 0.01, None,
            {"stopLossPrice": float(stop), "reduceOnly": True, "clientOrderId": "s1"},
        )  # fmt: skip
        sim.release(sim.market.trades("BTCUSDT").anchors[i] + 1)
        engine.match_resting()
        while not events or events[-1]["e"] != "ALGO_UPDATE" or events[-1]["o"]["X"] != "FINISHED":
            events.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
    kinds = [(e["e"], e["o"]["X"]) for e in events if e["e"] != "ACCOUNT_UPDATE"]
    # the triggered market order may take more than one level of the book
    fills = [k for k in kinds[3:-1] if k != ("ORDER_TRADE_UPDATE", "PARTIALLY_FILLED")]
    assert kinds[:3] + fills + kinds[-1:] == [
        ("ALGO_UPDATE", "NEW"),
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "FILLED"),
        ("ALGO_UPDATE", "FINISHED"),
    ]
    ref = real("futures-user-data/algo_update_new.json")
    algo = [e for e in events if e["e"] == "ALGO_UPDATE"]
    for e in algo:
        assert list(e) == list(ref) and list(e["o"]) == list(ref["o"])
    new, finished = algo[0]["o"], algo[-1]["o"]
    assert (new["caid"], new["o"], new["tp"], new["R"]) == ("s1", "STOP_MARKET", f"{stop}", True)
    assert (finished["aq"], finished["ai"] != "") == ("0.010", True)
    last = [e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE"][-1]
    assert (last["c"], last["z"], last["i"]) == ("s1", "0.010", int(finished["ai"]))
