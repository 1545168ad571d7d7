"""Recovery and reconciliation while the rest of the bot keeps running: every ``await``.

`OrderManager.recover` is called from start-up, reconnects, the unknown-order resolver and
reconciliation, and the stream and submit answers keep arriving while it waits on the exchange.
Each test holds one exchange call open (an `asyncio.Event` the test controls), lets something
else happen meanwhile, then releases it — and asserts the final order state, that nothing is
falsely "unresolved", and that no halt is persisted. The exchange double is the allowed stand-in;
the store is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tessera.execution.exchange import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    OutcomeUnknownError,
    UnknownOrderError,
)
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import Reconciler
from tessera.execution.state import OrderEventKind
from tessera.execution.userdata import ExecutionReport
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol

D = Decimal
FILTERS = filters_by_symbol(recorded_exchange_info())
PRICE = D("60000")


class Gate:
    """Holds the calls of one exchange method until the test opens it."""

    def __init__(self) -> None:
        self.closed = False
        self.entered = asyncio.Event()  # a call is waiting at the gate
        self._open = asyncio.Event()

    def close(self) -> None:
        self.closed, self._open = True, asyncio.Event()
        self.entered.clear()

    def open(self) -> None:
        self.closed = False
        self._open.set()

    async def passage(self) -> None:
        if self.closed:
            self.entered.set()
            await self._open.wait()


class GatedExchange:
    """A spot exchange in memory whose every call can be held open (the Exchange protocol).

    An answer is the exchange's state when the call *entered*: a held query returns what the
    exchange knew when it was asked, like a real response delayed in flight.
    """

    def __init__(self) -> None:
        self.gates = {m: Gate() for m in ("submit", "query", "open_orders", "my_trades",
                                          "balances")}  # fmt: skip
        self.orders: dict[str, ExchangeOrder] = {}
        self.trades: list[ExchangeTrade] = []
        self.balance = {"BTC": D("1"), "USDT": D("100000")}
        self.submit_unknown = False  # the next submit's answer is lost (after it took effect?)
        self.submit_takes_effect = True
        self._next = 1

    def fill(self, cid: str) -> Fill:
        """The exchange fills the resting order ``cid`` completely; returns the fill."""
        eo = self.orders[cid]
        fill = Fill(f"T{self._next}", cid, eo.symbol, OrderSide.BUY, PRICE, eo.qty, D("0"), "USDT",
                    Liquidity.MAKER, 5_000_000)  # fmt: skip
        self._next += 1
        self.trades.append(ExchangeTrade(eo.exchange_order_id, dataclasses.replace(fill)))
        self.orders[cid] = dataclasses.replace(
            eo, status=OrderStatus.FILLED, filled_qty=eo.qty, filled_notional=eo.qty * PRICE,
            fills=[fill],
        )  # fmt: skip
        self.balance["BTC"] += eo.qty
        self.balance["USDT"] -= eo.qty * PRICE
        return fill

    def accept(self, order: Order) -> ExchangeOrder:
        eo = ExchangeOrder(order.client_order_id, str(1000 + len(self.orders)), order.symbol,
                           OrderStatus.ACCEPTED, order.qty, D("0"), D("0"), order.price,
                           ts_update=1_000_000)  # fmt: skip
        self.orders[order.client_order_id] = eo
        return eo

    async def submit(self, order: Order) -> ExchangeOrder:
        if self.submit_unknown:
            if self.submit_takes_effect:
                self.accept(order)
            raise OutcomeUnknownError("timeout")
        eo = self.accept(order)
        await self.gates["submit"].passage()
        return eo

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        raise UnknownOrderError("Unknown order sent.", -2011)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        answer = self.orders.get(client_order_id)
        await self.gates["query"].passage()
        return answer

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        await self.gates["open_orders"].passage()  # the list as it is when the answer leaves
        return [o for o in self.orders.values() if o.status.is_open]

    async def balances(self) -> dict[str, Balance]:
        snapshot = {a: Balance(a, v, D("0")) for a, v in self.balance.items()}
        await self.gates["balances"].passage()
        return snapshot

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        await self.gates["my_trades"].passage()  # the list as it is when the answer leaves
        return [t for t in self.trades if t.fill.symbol == symbol]

    async def close(self) -> None:
        return None


def report_of(eo: ExchangeOrder, fill: Fill | None) -> ExecutionReport:
    return ExecutionReport(symbol=eo.symbol, client_order_id=eo.client_order_id,
                           side=OrderSide.BUY, exec_type="TRADE" if fill else "NEW",
                           status=eo.status, exchange_order_id=eo.exchange_order_id,
                           cum_qty=eo.filled_qty, cum_quote=eo.filled_notional, event_ms=5,
                           fill=fill)  # fmt: skip


def limit_buy(cid: str) -> Order:
    return Order(cid, "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, D("0.001"), price=PRICE)


async def others_run() -> None:
    """Let every other ready task run up to its next ``await`` (yields the loop; no time)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    yield s
    s.close()


@pytest.fixture
async def setup(store: ExecutionStore) -> tuple[GatedExchange, OrderManager]:
    ex = GatedExchange()
    return ex, OrderManager(store, ex, "run-cc", mode="live")


async def unknown_order(ex: GatedExchange, om: OrderManager, cid: str, took_effect: bool) -> Order:
    """An order sent by this process whose answer was lost and whose query found nothing yet:
    SUBMITTED, in the manager's live orders, not being submitted."""
    ex.submit_unknown, ex.submit_takes_effect = True, took_effect
    hidden = {}
    if took_effect:  # the exchange has not processed it when the submit's own query asks
        order = await om.submit(_and_hide(ex, limit_buy(cid), hidden))
        ex.orders.update(hidden)
    else:
        order = await om.submit(limit_buy(cid))
    ex.submit_unknown = False
    assert order.status is OrderStatus.SUBMITTED and cid in om.live
    return order


def _and_hide(ex: GatedExchange, order: Order, hidden: dict[str, ExchangeOrder]) -> Order:
    """Make the submit's first query miss the order (it reaches the exchange a little later)."""
    original = ex.accept

    def accept_later(o: Order) -> ExchangeOrder:
        eo = original(o)
        hidden[o.client_order_id] = ex.orders.pop(o.client_order_id)
        ex.accept = original  # type: ignore[method-assign]
        return eo

    ex.accept = accept_later  # type: ignore[method-assign]
    return order


def canceled_events(store: ExecutionStore, cid: str) -> int:
    from sqlalchemy import func, select

    from tessera.execution.schema import order_events

    with store.tx() as c:
        return int(
            c.execute(
                select(func.count()).where(
                    order_events.c.client_order_id == cid,
                    order_events.c.kind == OrderEventKind.CANCELED.value,
                )
            ).scalar()
            or 0
        )


async def test_two_recoveries_at_once_close_a_never_sent_order_once_and_report_nothing_unresolved(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    order = await unknown_order(ex, om, "cc-1", took_effect=False)
    ex.gates["query"].close()
    first = asyncio.create_task(om.recover())
    await ex.gates["query"].entered.wait()  # the first pass is asking the exchange
    second = asyncio.create_task(om.recover())
    await others_run()  # the second pass gets as far as it can
    ex.gates["query"].open()
    a, b = await asyncio.gather(first, second)

    assert a.closed_unsent == ["cc-1"] and not a.unresolved
    assert not b.unresolved and not b.closed_unsent
    assert order.status is OrderStatus.CANCELED
    stored = om.store.get_order("cc-1")
    assert stored is not None and stored.status is OrderStatus.CANCELED
    assert canceled_events(om.store, "cc-1") == 1


async def test_a_late_answer_arriving_while_recovery_asks_is_not_reported_unresolved(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    order = await unknown_order(ex, om, "cc-2", took_effect=False)
    ex.gates["query"].close()
    recovering = asyncio.create_task(om.recover())
    await ex.gates["query"].entered.wait()  # asked: the exchange does not know the order yet
    # ... then the request is processed after all, and the stream brings its late answer
    eo = ex.accept(order)
    om.on_execution_report(report_of(eo, None))
    fill = ex.fill("cc-2")
    om.on_execution_report(report_of(ex.orders["cc-2"], fill))
    ex.gates["query"].open()
    report = await recovering

    assert not report.unresolved and not report.closed_unsent and report.moved == ["cc-2"]
    assert order.status is OrderStatus.FILLED
    stored = om.store.get_order("cc-2")
    assert stored is not None and stored.status is OrderStatus.FILLED
    assert stored.trade_ids == {fill.trade_id}


async def test_reconciliation_racing_a_recovery_persists_no_halt(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    rec = Reconciler(om, FILTERS, ["BTCUSDT"], account="acct")
    assert (await rec.run()).ok  # the balance baseline
    order = await unknown_order(ex, om, "cc-3", took_effect=False)
    ex.gates["query"].close()
    resolver = asyncio.create_task(om.recover())  # the unknown-order resolver
    await ex.gates["query"].entered.wait()
    reconciling = asyncio.create_task(rec.run())  # a reconnect's reconciliation
    await others_run()
    ex.gates["query"].open()
    _, report = await asyncio.gather(resolver, reconciling)

    assert report.ok, report.problems
    assert om.store.load_halt("acct") is None
    assert order.status is OrderStatus.CANCELED


async def test_an_order_placed_while_reconciliation_lists_open_orders_is_ours(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    rec = Reconciler(om, FILTERS, ["BTCUSDT"], account="acct")
    assert (await rec.run()).ok
    ex.gates["open_orders"].close()
    reconciling = asyncio.create_task(rec.run())
    await ex.gates["open_orders"].entered.wait()
    placed = await om.submit(limit_buy("cc-4"))  # rests on the exchange
    ex.gates["open_orders"].open()
    report = await reconciling

    assert report.ok, report.problems
    assert placed.status is OrderStatus.ACCEPTED and om.store.load_halt("acct") is None


async def test_a_trade_of_an_order_acknowledged_while_trades_are_listed_is_ours(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    rec = Reconciler(om, FILTERS, ["BTCUSDT"], account="acct")
    assert (await rec.run()).ok
    ex.gates["my_trades"].close()
    reconciling = asyncio.create_task(rec.run())
    await ex.gates["my_trades"].entered.wait()
    placed = await om.submit(limit_buy("cc-5"))
    fill = ex.fill("cc-5")  # fills at once; the stream tells us
    om.on_execution_report(report_of(ex.orders["cc-5"], fill))
    ex.gates["my_trades"].open()
    report = await reconciling

    assert report.ok, report.problems
    assert placed.status is OrderStatus.FILLED and om.store.load_halt("acct") is None
    assert len(om.store.all_fills()) == 1


async def test_a_fill_recorded_while_balances_are_asked_for_is_no_unexplained_balance(
    setup: tuple[GatedExchange, OrderManager],
) -> None:
    ex, om = setup
    rec = Reconciler(om, FILTERS, ["BTCUSDT"], account="acct")
    assert (await rec.run()).ok
    resting = await om.submit(limit_buy("cc-6"))
    ex.gates["balances"].close()
    reconciling = asyncio.create_task(rec.run())
    await ex.gates["balances"].entered.wait()  # the balances were read before the fill ...
    fill = ex.fill("cc-6")
    om.on_execution_report(report_of(ex.orders["cc-6"], fill))  # ... which we record meanwhile
    ex.gates["balances"].open()
    report = await reconciling

    assert report.ok, report.problems
    assert resting.status is OrderStatus.FILLED and om.store.load_halt("acct") is None
    assert (await rec.run()).ok  # and the next reconciliation compares them: they agree
