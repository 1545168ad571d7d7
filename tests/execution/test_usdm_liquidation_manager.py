"""An order the exchange places on the account, from Binance USDⓈ-M's real ORDER_TRADE_UPDATE
payloads (a liquidation's ``autoclose-``, the insurance fund's, an ADL), through the venue's
parser into `OrderManager.on_execution_report`: booked as an order of the account with reason
liquidation, its fill once however often the report comes (and after a restart), attributed
to the strategy holding the symbol, and ``on_exchange_order`` told once (SQLite and
PostgreSQL)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.execution.exchange import ExchangeOrder
from tessera.execution.manager import OrderManager
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tessera.execution.paper import PaperExchange
from tessera.execution.persistence import ExecutionStore
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol
from tessera.venues.binance_usdm.user_data import FuturesExecutionReport, parse_user_event

USER = Path(__file__).resolve().parents[2] / "samples/binance-api/futures-user-data"
FILTERS = filters_by_symbol(recorded_exchange_info())
RUN = "run-liq"


def report(name: str) -> FuturesExecutionReport:
    parsed = parse_user_event((USER / f"{name}.json").read_text())
    assert isinstance(parsed, FuturesExecutionReport) and parsed.by_exchange
    return parsed


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    yield s
    s.close()


def hold(om: OrderManager, strategy: str, cid: str, side: OrderSide, qty: Decimal) -> None:
    """``strategy`` holds ``qty`` of BTCUSDT, bought (or sold) by an order of its own."""
    price = Decimal("9910.12")  # the liquidation payload's own price
    order = Order(cid, "BTCUSDT", side, OrderType.MARKET, qty, strategy=strategy)
    assert om.record_intent(order)
    om.mark_submitted(order)
    fill = Fill(f"t-{cid}", cid, "BTCUSDT", side, price, qty, Decimal(0), "USDT",
                Liquidity.TAKER, 1)  # fmt: skip
    om.apply(order, ExchangeOrder(cid, f"x-{cid}", "BTCUSDT", OrderStatus.FILLED, qty, qty,
                                  qty * price, fills=[fill]))  # fmt: skip


def manager(store: ExecutionStore, told: list[Order]) -> OrderManager:
    om = OrderManager(store, PaperExchange(FILTERS), RUN, strategy="bot", mode="live")
    om.on_exchange_order = told.append
    return om


@pytest.mark.parametrize(
    ("name", "held_side"),
    [
        ("order_update_calculated", OrderSide.BUY),  # a liquidation closing a long
        ("order_update_insurance", OrderSide.BUY),  # the insurance fund's, closing a long
        ("order_update_adl", OrderSide.SELL),  # an ADL closing a short
    ],
)
def test_an_order_of_the_exchange_is_booked_once_as_a_liquidation_of_the_holder(
    store: ExecutionStore, name: str, held_side: OrderSide
) -> None:
    rep = report(name)
    assert rep.fill is not None
    told: list[Order] = []
    om = manager(store, told)
    hold(om, "trend", "entry-1", held_side, rep.fill.qty)
    om.on_execution_report(rep)
    om.on_execution_report(rep)  # the stream delivers it again: nothing twice

    booked = store.get_order(rep.client_order_id)
    assert booked is not None
    assert (booked.reason, booked.reduce_only, booked.strategy) == (
        ExitReason.LIQUIDATION,
        True,
        "trend",
    )
    assert (booked.side, booked.status, booked.filled_qty) == (
        rep.side,
        OrderStatus.FILLED,
        rep.fill.qty,
    )
    assert booked.exchange_order_id == rep.exchange_order_id
    assert [
        f.trade_id for f in store.all_fills() if f.client_order_id == booked.client_order_id
    ] == [rep.fill.trade_id]
    assert om.positions[("BTCUSDT", "trend")].qty == 0
    assert [o.client_order_id for o in told] == [rep.client_order_id]

    # a restart: the same report again (a replayed stream) books nothing and tells nobody
    told_after: list[Order] = []
    manager(store, told_after).on_execution_report(rep)
    assert len(store.all_fills()) == 2 and told_after == []
    assert store.order_for_exchange_id("BTCUSDT", rep.exchange_order_id) is not None


def test_an_order_of_the_exchange_with_nothing_held_and_no_fill_waits_for_its_fill(
    store: ExecutionStore,
) -> None:
    """A NEW report of an exchange order while the ledger holds nothing gives no quantity: it
    is not booked yet; its trade report books it with the traded quantity."""
    rep = report("order_update_calculated")
    assert rep.fill is not None
    told: list[Order] = []
    om = manager(store, told)
    om.on_execution_report(
        replace(rep, fill=None, cum_qty=Decimal(0), status=OrderStatus.ACCEPTED, exec_type="NEW")
    )
    assert store.get_order(rep.client_order_id) is None and told == []
    om.on_execution_report(rep)
    booked = store.get_order(rep.client_order_id)
    assert booked is not None and booked.filled_qty == rep.fill.qty and booked.strategy == "bot"
    assert len(told) == 1


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    held=st.lists(
        st.integers(min_value=1, max_value=50).map(lambda n: Decimal(n) / 1000),
        min_size=1,
        max_size=3,
    )
)
def test_the_order_of_the_exchange_is_as_large_as_the_holdings_and_goes_to_the_largest_holder(
    tmp_path: Path, held: list[Decimal]
) -> None:
    """Several strategies long BTCUSDT: the exchange's SELL is booked for all they hold,
    to the strategy holding most (the ledger keeps one order per client id)."""
    store = ExecutionStore(f"sqlite:///{tmp_path / f'{secrets.token_hex(4)}.db'}")
    try:
        om = manager(store, [])
        for i, qty in enumerate(held):
            hold(om, f"s{i}", f"entry-{i}", OrderSide.BUY, qty)
        rep = report("order_update_calculated")
        assert rep.fill is not None
        om.on_execution_report(rep)
        booked = store.get_order(rep.client_order_id)
        assert booked is not None
        assert booked.qty == max(sum(held), rep.fill.qty)
        largest = max(range(len(held)), key=lambda i: (held[i], f"s{i}"))
        assert booked.strategy == f"s{largest}"
    finally:
        store.close()
