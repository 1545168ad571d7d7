"""`UsdmCcxtExchange` (ccxt ``binanceusdm``, signed REST) against the in-process USDⓈ-M
simulator over real sockets, on the bundled real BTCUSDT perpetual recording.

Long, short, a reduce-only close, a reduce-only order that would open (refused: -2022 through
the venue's table), leverage and margin mode, positions and the account, and an order whose
answer is lost found by its client order id (exactly one order results). The replay is
stepped by hand, so the book a test reads is the book its order meets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from usdm_exchange_helpers import btc_usdm_market, started_usdm_venue, usdm_exchange

from tessera.config.errors import ConfigError
from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.exchange import OrderRejectedError, OutcomeUnknownError
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue
from tessera.venues.binance_spot.exchange import CcxtExchange
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return btc_usdm_market()


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[UsdmVenue]:
    async with started_usdm_venue(market) as v:
        yield v


@pytest.fixture
async def ex(venue: UsdmVenue) -> AsyncIterator[UsdmCcxtExchange]:
    async with usdm_exchange(venue) as client:
        yield client


def order(cid: str, side: str, qty: str, *, reduce_only: bool = False, **kw: object) -> Order:
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=OrderSide(side),
        type=OrderType(str(kw.pop("type", "MARKET"))),
        qty=Decimal(qty),
        reduce_only=reduce_only,
        **kw,  # type: ignore[arg-type]
    )


def best(venue: UsdmVenue) -> tuple[Decimal, Decimal]:
    sim = venue.sim
    sim.state.advance_to(sim.head)
    book = sim.state.books["BTCUSDT"]
    return max(book.bids), min(book.asks)


def test_binance_usdm_is_a_trading_venue_and_speaks_through_its_own_adapter() -> None:
    spot = open_exchange("http://127.0.0.1:1")
    assert type(spot) is CcxtExchange and spot.client.id == "binance"
    usdm = open_exchange("http://127.0.0.1:1", exchange_id="binance-usdm")
    assert type(usdm) is UsdmCcxtExchange and usdm.client.id == "binanceusdm"
    assert usdm.client.urls["api"]["fapiPrivate"] == "http://127.0.0.1:1/fapi/v1"
    with pytest.raises(ConfigError, match="open_exchange"):
        CcxtExchange("http://127.0.0.1:1", exchange_id="binance-usdm")


async def test_a_long_then_a_short_then_a_reduce_only_close_leave_the_account_flat(
    venue: UsdmVenue, ex: UsdmCcxtExchange
) -> None:
    bid, ask = best(venue)
    long = await ex.submit(order("u-long", "BUY", "0.010"))
    assert (long.status, long.filled_qty, long.client_order_id) == (
        OrderStatus.FILLED,
        Decimal("0.010"),
        "u-long",
    )
    assert long.filled_notional == Decimal("0.010") * ask  # the best ask holds 0.01
    # the answer carries its fills (from the order's trades), as spot's FULL answer does
    assert [(f.client_order_id, f.side, f.qty, f.price) for f in long.fills] == [
        ("u-long", OrderSide.BUY, Decimal("0.010"), ask)
    ]
    [pos] = await ex.positions(["BTCUSDT"])
    assert (pos.qty, pos.entry_price, pos.mode) == (Decimal("0.010"), ask, MarginMode.CROSS)
    assert pos.liquidation_price is None  # 10,000 USDT cross behind 0.01 BTC: Binance sends 0
    # sell twice the long: the long closes and a short of the same size opens at the bid
    await ex.submit(order("u-flip", "SELL", "0.020"))
    [pos] = await ex.positions(["BTCUSDT"])
    assert (pos.qty, pos.entry_price) == (Decimal("-0.010"), bid)
    # a reduce-only buy of more than the short closes it and never opens a long
    close = await ex.submit(order("u-close", "BUY", "0.050", reduce_only=True))
    assert (close.filled_qty, close.status) == (Decimal("0.010"), OrderStatus.EXPIRED)
    [pos] = await ex.positions(["BTCUSDT"])
    assert pos.qty == 0 and pos.liquidation_price is None
    trades = await ex.my_trades("BTCUSDT")
    assert [(t.fill.side, t.fill.qty) for t in trades] == [
        (OrderSide.BUY, Decimal("0.010")),
        (OrderSide.SELL, Decimal("0.020")),
        (OrderSide.BUY, Decimal("0.010")),
    ]
    assert {t.exchange_order_id for t in trades} == {
        long.exchange_order_id,
        (await ex.query("BTCUSDT", "u-flip")).exchange_order_id,  # type: ignore[union-attr]
        close.exchange_order_id,
    }
    # flat: the wallet is the start less the fees and the realized loss of crossing the spread
    [usdt] = (await ex.perp_balances()).values()
    fees = sum((t.fill.fee for t in trades), Decimal(0))
    assert (usdt.asset, usdt.unrealized) == ("USDT", 0)
    assert usdt.wallet == Decimal(10_000) - fees + Decimal("0.010") * (bid - ask) * 2
    balances = await ex.balances()
    assert balances["USDT"].free + balances["USDT"].locked == usdt.equity


async def test_a_reduce_only_order_that_would_open_is_refused_with_2022(
    ex: UsdmCcxtExchange,
) -> None:
    with pytest.raises(OrderRejectedError) as err:
        await ex.submit(order("u-ro", "SELL", "0.010", reduce_only=True))
    assert err.value.code == -2022
    assert await ex.query("BTCUSDT", "u-ro") is None  # a rejection: the order never existed


async def test_leverage_and_margin_mode_are_set_and_a_repeat_is_no_change(
    ex: UsdmCcxtExchange,
) -> None:
    assert await ex.hedge_mode() is False
    assert await ex.set_leverage("BTCUSDT", 5) == 5
    assert await ex.set_margin_mode("BTCUSDT", MarginMode.ISOLATED) is True
    assert await ex.set_margin_mode("BTCUSDT", MarginMode.ISOLATED) is False  # -4046
    [pos] = await ex.positions(["BTCUSDT"])
    assert (pos.qty, pos.leverage, pos.mode) == (0, 5, MarginMode.ISOLATED)
    with pytest.raises(OrderRejectedError) as err:
        await ex.set_leverage("BTCUSDT", 126)
    assert err.value.code == -4028
    await ex.submit(order("u-iso", "BUY", "0.010"))
    [pos] = await ex.positions(["BTCUSDT"])
    assert pos.liquidation_price is not None and pos.liquidation_price < pos.entry_price
    assert pos.isolated_wallet > 0
    with pytest.raises(OrderRejectedError) as err:
        await ex.set_margin_mode("BTCUSDT", MarginMode.CROSS)
    assert err.value.code == -4048  # not with a position open


async def test_a_resting_limit_is_listed_found_by_client_id_and_canceled(
    venue: UsdmVenue, ex: UsdmCcxtExchange
) -> None:
    bid, _ = best(venue)
    price = (bid * Decimal("0.95")).quantize(Decimal("0.1"))
    placed = await ex.submit(order("u-rest", "BUY", "0.010", type="LIMIT", price=price))
    assert (placed.status, placed.price, placed.type) == (
        OrderStatus.ACCEPTED,
        price,
        OrderType.LIMIT,
    )
    [listed] = await ex.open_orders("BTCUSDT")
    assert listed.client_order_id == "u-rest"
    canceled = await ex.cancel("BTCUSDT", "u-rest")
    assert canceled.status is OrderStatus.CANCELED
    assert await ex.open_orders("BTCUSDT") == []


async def test_a_post_only_limit_goes_out_as_gtx_and_one_that_would_take_is_refused(
    venue: UsdmVenue, ex: UsdmCcxtExchange
) -> None:
    bid, ask = best(venue)
    maker = await ex.submit(order("u-mk", "BUY", "0.010", type="LIMIT_MAKER", price=bid))
    assert (maker.type, maker.status) == (OrderType.LIMIT_MAKER, OrderStatus.ACCEPTED)
    with pytest.raises(OrderRejectedError) as err:  # it would take: Binance's -5022
        await ex.submit(order("u-take", "BUY", "0.010", type="LIMIT_MAKER", price=ask))
    assert err.value.code == -5022
    assert venue.engine is not None
    assert [o.client_order_id for o in venue.engine.orders.values()] == ["u-mk"]


async def test_a_lost_answer_ends_with_exactly_one_order_found_by_its_client_id(
    venue: UsdmVenue, ex: UsdmCcxtExchange
) -> None:
    engine = venue.engine
    assert engine is not None
    engine.config.lose_responses = 1  # the order is placed; its answer never arrives
    o = order("u-lost", "BUY", "0.010")
    with pytest.raises(OutcomeUnknownError):
        await ex.submit(o)
    got = await ex.submit_resolved(o)  # looked up by client id first: not sent again
    assert (got.client_order_id, got.status, got.filled_qty) == (
        "u-lost",
        OrderStatus.FILLED,
        Decimal("0.010"),
    )
    assert sum(1 for x in engine.orders.values() if x.client_order_id == "u-lost") == 1
    [pos] = await ex.positions(["BTCUSDT"])
    assert pos.qty == Decimal("0.010")
