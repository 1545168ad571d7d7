"""The venue contract's order life-cycle and reconciliation cases, on every registered venue's
simulator through the venue's `Exchange` adapter, over real sockets.

One test body per case for every venue: where the venues differ (spot's account is balances,
USDⓈ-M's a position and a margin wallet; each has its own lot-size code) the case
reads the venue's `SimulatorSpec` in the contract, never the venue's name. The markets are the
bundled real BTCUSDT recordings (``simulators.py``); each case starts its own simulator on the
module's market, so no case sees another's orders.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from simulators import HARNESSES, KEY, SECRET, SERVED_BY, SYMBOL, Harness, Running

from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.exchange import (
    ExchangeError,
    ExchangeOrder,
    OrderRejectedError,
    OutcomeUnknownError,
    UnknownOrderError,
)
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.venues.binance.errors import ErrorAction
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange
from tessera.venues.contract import venue, venue_names

ZERO = Decimal(0)


@pytest.fixture(scope="module", params=venue_names())
def harness(request: pytest.FixtureRequest) -> Harness:
    name: str = request.param
    assert name in HARNESSES, f"{name} has a simulator in the contract but no harness"
    return HARNESSES[name]


@pytest.fixture
async def run(harness: Harness, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    gap = harness.known_gaps.get(request.function.__name__)
    if gap is not None:
        request.applymarker(pytest.mark.xfail(reason=f"{harness.name}: {gap}", strict=True))
    async with harness.start() as running:
        yield running


def order(cid: str, side: str, qty: Decimal, price: Decimal | None = None) -> Order:
    return Order(
        client_order_id=cid,
        symbol=SYMBOL,
        side=OrderSide(side),
        type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        qty=qty,
        price=price,
    )


Account = dict[str, Decimal]


async def account(run: Running) -> Account:
    """The exchange's account as the spec says the venue keeps it: every asset's total (free +
    locked) and locked amount on a balances venue; the signed position of the symbol and the
    margin wallet on a positions venue."""
    ex = run.exchange
    if run.spec.account == "balances":
        out: Account = {}
        for asset, b in (await ex.balances()).items():
            out[asset] = b.free + b.locked
            out[f"{asset}.locked"] = b.locked
        return out
    assert isinstance(ex, UsdmCcxtExchange)
    [pos] = await ex.positions([SYMBOL])
    wallet = (await ex.perp_balances())[run.spec.margin_asset].wallet
    return {f"{SYMBOL}.position": pos.qty, f"{run.spec.margin_asset}.wallet": wallet}


def implied(run: Running, start: Account, fills: list[Fill], locked: Decimal) -> Account:
    """What ``fills`` (all of them BTCUSDT, on an account that started as ``start``) and resting
    buys locking ``locked`` USDT leave the account at.

    Balances: the base asset moves by the signed quantity, the quote by the signed notional, each
    fee out of its fee asset. Positions: the position moves by the signed quantity; the wallet
    loses the fees and gains the PnL realized by the fills that reduce (average entry price)."""
    out = dict(start)
    if run.spec.account == "balances":
        for f in fills:
            sign = 1 if f.side is OrderSide.BUY else -1
            out["BTC"] += sign * f.qty
            out["USDT"] -= sign * f.qty * f.price
            out[f.fee_asset] -= f.fee
        out["USDT.locked"] = start["USDT.locked"] + locked
        return out
    pos_key, wallet_key = f"{SYMBOL}.position", f"{run.spec.margin_asset}.wallet"
    pos, entry = out[pos_key], ZERO
    assert pos == 0, "the implied PnL starts flat"
    for f in fills:
        signed = f.qty if f.side is OrderSide.BUY else -f.qty
        out[wallet_key] -= f.fee
        if pos == 0 or (pos > 0) == (signed > 0):  # opens or grows
            entry = (entry * abs(pos) + f.price * f.qty) / (abs(pos) + f.qty)
        else:  # reduces (the cases never flip)
            assert f.qty <= abs(pos)
            out[wallet_key] += (f.price - entry) * f.qty * (1 if pos > 0 else -1)
        pos += signed
    out[pos_key] = pos
    return out


def test_every_registered_venue_has_a_simulator_and_the_harness_serves_that_one() -> None:
    for name in venue_names():
        spec = venue(name).simulator
        assert spec is not None, f"{name}: no simulator in the contract"
        importlib.import_module(spec.module)
        assert SERVED_BY[name] == spec.module
        assert HARNESSES[name].name == name


async def test_a_limit_rests_is_found_by_client_id_and_a_second_cancel_is_an_unknown_order(
    harness: Harness, run: Running
) -> None:
    ex, v = run.exchange, venue(harness.name)
    bid, _ = run.book_top()
    price = (bid * Decimal("0.95")).quantize(Decimal("1"))
    placed = await ex.submit(order("c-rest", "BUY", harness.qty, price))
    assert (placed.status, placed.filled_qty, placed.price) == (OrderStatus.ACCEPTED, ZERO, price)
    [listed] = await ex.open_orders(SYMBOL)
    assert (listed.client_order_id, listed.exchange_order_id) == (
        "c-rest",
        placed.exchange_order_id,
    )
    found = await ex.query(SYMBOL, "c-rest")
    assert found is not None and (found.status, found.qty) == (OrderStatus.ACCEPTED, harness.qty)
    canceled = await ex.cancel(SYMBOL, "c-rest")
    assert (canceled.client_order_id, canceled.status) == ("c-rest", OrderStatus.CANCELED)
    with pytest.raises(UnknownOrderError) as again:
        await ex.cancel(SYMBOL, "c-rest")
    assert v.classify_error(again.value.code) is ErrorAction.UNKNOWN_ORDER
    assert await ex.open_orders(SYMBOL) == []
    gone = await ex.query(SYMBOL, "c-rest")
    assert gone is not None and gone.status is OrderStatus.CANCELED


async def test_a_market_order_fills_and_its_fills_move_the_account_by_exactly_them(
    harness: Harness, run: Running
) -> None:
    ex = run.exchange
    _, ask = run.book_top()
    before = await account(run)
    got = await ex.submit(order("c-mkt", "BUY", harness.qty))
    assert (got.status, got.filled_qty) == (OrderStatus.FILLED, harness.qty)
    assert got.fills and sum(f.qty for f in got.fills) == harness.qty
    assert got.fills[0].price == ask  # the best ask first
    assert got.filled_notional == sum(f.qty * f.price for f in got.fills)
    trades = await ex.my_trades(SYMBOL)
    assert {t.exchange_order_id for t in trades} == {got.exchange_order_id}
    listed = sorted((t.fill for t in trades), key=lambda f: f.trade_id)
    for f in listed:  # price, qty, fee, liquidity on every fill the exchange lists
        assert f.side is OrderSide.BUY  # (known by the exchange's order id, not ours)
        assert f.price > 0 and f.qty > 0 and f.fee > 0 and f.fee_asset
        assert f.liquidity is Liquidity.TAKER
    answered = sorted(got.fills, key=lambda f: f.trade_id)
    assert [(f.trade_id, f.price, f.qty, f.fee) for f in answered] == [
        (f.trade_id, f.price, f.qty, f.fee) for f in listed
    ]
    assert await account(run) == implied(run, before, listed, ZERO)


async def test_a_partly_filled_limit_canceled_keeps_its_filled_quantity(
    harness: Harness, run: Running
) -> None:
    ex = run.exchange
    price = run.resting_price()
    big = Decimal("1.000")  # larger than the recorded prints that reach the price
    placed = await ex.submit(order("c-part", "BUY", big, price))
    assert placed.status is OrderStatus.ACCEPTED
    [ours] = [o for o in run.engine.orders.values() if o.client_order_id == "c-part"]
    assert run.step_until(lambda: ours.executed_qty > 0)
    filled = ours.executed_qty
    assert 0 < filled < big
    mid = await ex.query(SYMBOL, "c-part")
    assert mid is not None and (mid.status, mid.filled_qty) == (
        OrderStatus.PARTIALLY_FILLED,
        filled,
    )
    done = await ex.cancel(SYMBOL, "c-part")
    assert (done.status, done.filled_qty) == (OrderStatus.CANCELED, filled)
    after = await ex.query(SYMBOL, "c-part")
    assert after is not None and (after.status, after.filled_qty) == (OrderStatus.CANCELED, filled)
    fills = [t.fill for t in await ex.my_trades(SYMBOL)]
    assert sum(f.qty for f in fills) == filled
    assert all(f.price == price and f.liquidity is Liquidity.MAKER for f in fills)
    assert await ex.open_orders(SYMBOL) == []


async def test_an_order_over_the_lot_size_is_refused_with_the_reject_action(
    harness: Harness, run: Running
) -> None:
    ex, v = run.exchange, venue(harness.name)
    bid, _ = run.book_top()
    before = await account(run)
    big = order("c-big", "BUY", harness.over_max_qty, bid.quantize(Decimal("1")))
    with pytest.raises(ExchangeError) as refused:
        await ex.submit(big)
    assert refused.value.code == run.spec.lot_size_code
    assert v.classify_error(refused.value.code) is ErrorAction.REJECT
    assert isinstance(refused.value, OrderRejectedError)  # what the order manager books
    assert await ex.query(SYMBOL, "c-big") is None  # it never existed
    assert await ex.open_orders(SYMBOL) == []
    assert await account(run) == before


async def test_an_order_whose_answer_is_lost_is_found_by_its_client_id_in_its_state(
    harness: Harness, run: Running
) -> None:
    """What `OrderManager` recovery relies on: a query by client order id answers the order as
    the exchange holds it, whether the answer was dropped by us or lost on the wire."""
    ex = run.exchange
    bid, _ = run.book_top()
    price = (bid * Decimal("0.95")).quantize(Decimal("1"))
    # sent, and the answer dropped by the caller
    await ex.submit(order("c-drop-limit", "BUY", harness.qty, price))
    await ex.submit(order("c-drop-market", "BUY", harness.qty))
    resting = await ex.query(SYMBOL, "c-drop-limit")
    assert resting is not None
    assert (resting.status, resting.qty, resting.price, resting.filled_qty) == (
        OrderStatus.ACCEPTED,
        harness.qty,
        price,
        ZERO,
    )
    filled = await ex.query(SYMBOL, "c-drop-market")
    assert filled is not None and (filled.status, filled.filled_qty) == (
        OrderStatus.FILLED,
        harness.qty,
    )
    # lost on the wire: the exchange placed it and its answer never arrived
    run.engine.config.lose_responses = 1
    lost: ExchangeOrder | None = None
    try:
        lost = await ex.submit(order("c-lost", "BUY", harness.qty, price))
    except OutcomeUnknownError:
        lost = await ex.query(SYMBOL, "c-lost")
    assert run.sim.stats.faults["lost_order_response"] == 1
    assert lost is not None and (lost.client_order_id, lost.status) == (
        "c-lost",
        OrderStatus.ACCEPTED,
    )
    cids = [o.client_order_id for o in run.engine.orders.values()]
    assert sorted(cids) == ["c-drop-limit", "c-drop-market", "c-lost"]  # exactly one of each
    assert sorted(o.client_order_id for o in await ex.open_orders(SYMBOL)) == [
        "c-drop-limit",
        "c-lost",
    ]


async def test_the_order_manager_recovers_by_client_id_an_order_that_filled_while_it_was_away(
    harness: Harness, run: Running, tmp_path: Path
) -> None:
    """`OrderManager` on a real SQLite store: a resting buy whose answer is lost on the wire is
    resolved by its client order id (placed once); the market fills it while no one listens; a
    restarted manager's `recover()` finds it FILLED and imports its fills once."""
    url = f"sqlite:///{tmp_path / 'tessera.db'}"
    store, restarted = ExecutionStore(url), ExecutionStore(url)
    try:
        om = OrderManager(store, run.exchange, "run-contract", strategy="contract")
        price = run.resting_price()
        run.engine.config.lose_responses = 1  # placed; its answer never arrives
        placed = await om.submit(order("c-om", "BUY", harness.qty, price))
        assert run.sim.stats.faults["lost_order_response"] == 1
        assert placed.status is OrderStatus.ACCEPTED
        [ours] = [o for o in run.engine.orders.values() if o.client_order_id == "c-om"]
        assert run.step_until(lambda: ours.executed_qty == harness.qty, frames=200)
        report = await OrderManager(restarted, run.exchange, "run-contract").recover()
        assert report.updated == ["c-om"] and report.fills_imported >= 1
        stored = store.get_order("c-om")
        assert stored is not None and (stored.status, stored.filled_qty) == (
            OrderStatus.FILLED,
            harness.qty,
        )
        trades = await run.exchange.my_trades(SYMBOL)
        assert sorted(f.trade_id for f in store.all_fills()) == sorted(
            t.fill.trade_id for t in trades
        )
        again = await OrderManager(restarted, run.exchange, "run-contract").recover()
        assert again.fills_imported == 0 and len(store.all_fills()) == len(trades)
    finally:
        store.close()
        restarted.close()


async def test_after_a_sequence_the_exchanges_orders_and_account_equal_what_the_fills_imply(
    harness: Harness, run: Running
) -> None:
    ex = run.exchange
    bid, _ = run.book_top()
    far = (bid * Decimal("0.95")).quantize(Decimal("1"))
    before = await account(run)
    answers = [
        await ex.submit(order("c-seq-buy", "BUY", harness.qty * 2)),
        await ex.submit(order("c-seq-rest", "BUY", harness.qty, far)),
        await ex.submit(order("c-seq-gone", "BUY", harness.qty, far - 1)),
        await ex.submit(order("c-seq-sell", "SELL", harness.qty)),
    ]
    await ex.cancel(SYMBOL, "c-seq-gone")
    # the fills the answers carried are the ones the exchange lists
    ours = sorted((f for a in answers for f in a.fills), key=lambda f: f.trade_id)
    listed = sorted((t.fill for t in await ex.my_trades(SYMBOL)), key=lambda f: f.trade_id)
    assert [(f.trade_id, f.side, f.price, f.qty, f.fee) for f in ours] == [
        (f.trade_id, f.side, f.price, f.qty, f.fee) for f in listed
    ]
    [open_order] = await ex.open_orders(SYMBOL)
    assert (open_order.client_order_id, open_order.filled_qty) == ("c-seq-rest", ZERO)
    locked = far * harness.qty
    view = await account(run)
    assert view == implied(run, before, listed, locked)
    # after a reconnect (a new adapter, as a restarted process has) the exchange says the same
    fresh = open_exchange(run.sim.rest_url, KEY, SECRET, exchange_id=run.spec.exchange_id)
    try:
        again = Running(run.spec, run.sim, run.engine, fresh)
        assert await account(again) == view
        assert [o.client_order_id for o in await fresh.open_orders(SYMBOL)] == ["c-seq-rest"]
        assert [t.fill.trade_id for t in await fresh.my_trades(SYMBOL)] == [
            t.fill.trade_id for t in await ex.my_trades(SYMBOL)
        ]
    finally:
        await fresh.close()
