"""`PaperExchange` on real recorded Binance BTCUSDT quotes and trades, through `OrderManager`."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tessera.execution.exchange import OrderRejectedError
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import filters_by_symbol
from tessera.execution.manager import OrderManager
from tessera.execution.matching import SlippageModel
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.paper import PaperExchange
from tessera.execution.persistence import ExecutionStore
from tessera.sim.exchange_info import recorded_exchange_info

SPOT = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
FILTERS = filters_by_symbol(recorded_exchange_info())


def events() -> list[tuple[str, Decimal, Decimal]]:
    """("quote", bid, ask) and ("trade", price, qty) in the order Binance sent them."""
    out = []
    with gzip.open(SPOT, "rt") as fh:
        for line in fh:
            doc = orjson.loads(line.split(" ", 1)[1])
            stream, d = doc.get("stream", ""), doc.get("data", {})
            if stream.endswith("@bookTicker"):
                out.append(("quote", Decimal(d["b"]), Decimal(d["a"])))
            elif stream.endswith("@trade"):
                out.append(("trade", Decimal(d["p"]), Decimal(d["q"])))
    return out


@pytest.fixture(scope="module")
def market() -> list[tuple[str, Decimal, Decimal]]:
    return events()


def feed(paper: PaperExchange, evs: list[tuple[str, Decimal, Decimal]]) -> None:
    for kind, a, b in evs:
        if kind == "quote":
            paper.on_quote("BTCUSDT", a, b)
        else:
            paper.on_trade("BTCUSDT", a, b)


async def test_paper_fills_fees_balances_and_restart(
    market: list[tuple[str, Decimal, Decimal]], database_url: str
) -> None:
    store = ExecutionStore(database_url)
    paper = PaperExchange(
        FILTERS,
        store,
        initial_balances={"USDT": "10000", "BTC": "0"},
        fees=FeeSchedule(Decimal("2"), Decimal("10")),
        slippage=SlippageModel(bps=Decimal("1")),
    )
    om = OrderManager(store, paper, "run-paper")
    paper.on_report = om.on_execution_report
    head = 500
    feed(paper, market[:head])
    bid, ask = paper.quotes["BTCUSDT"]

    buy = Order("p-1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("0.01"))
    await om.submit(buy)
    assert buy.status is OrderStatus.FILLED
    px = ask * (1 + Decimal("0.0001"))  # the ask plus 1 bp of slippage, as taker
    assert buy.avg_price == px
    fee = px * Decimal("0.01") * Decimal("0.001")
    bal = await paper.balances()
    assert bal["BTC"].free == Decimal("0.01")
    assert bal["USDT"].free == Decimal("10000") - px * Decimal("0.01") - fee

    # a resting buy below the market fills at its limit, as maker, when a print reaches it
    later = [e for e in market[head:] if e[0] == "trade"]
    low = min(p for _, p, _ in later[:3000])
    limit = min(low, bid - 1)
    rest = Order("p-2", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.002"), price=limit)
    await om.submit(rest)
    assert rest.status is OrderStatus.ACCEPTED
    assert (await paper.balances())["USDT"].locked > 0
    feed(paper, market[head:])
    assert rest.status is OrderStatus.FILLED and rest.avg_price == limit
    stored = store.get_order("p-2")
    assert stored is not None and stored.status is OrderStatus.FILLED
    maker_fees = [
        f.fill.fee for f in store.list_fills(limit=100) if f.fill.client_order_id == "p-2"
    ]
    assert sum(maker_fees) == limit * Decimal("0.002") * Decimal("0.0002")
    assert (await paper.balances())["USDT"].locked == 0

    with pytest.raises(OrderRejectedError) as err:
        await paper.submit(Order("p-3", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("5")))
    assert err.value.code == -2010

    # a restarted paper account continues where it stopped
    before = await paper.balances()
    again = PaperExchange(FILTERS, ExecutionStore(database_url), initial_balances={"USDT": "1"})
    assert await again.balances() == before
    store.close()
