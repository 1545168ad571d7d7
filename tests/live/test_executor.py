"""The live bot's decisions without servers: signals executed through the order gateway into a
`PaperExchange`, on an embedded SQLite store and the in-process queue (no PostgreSQL, no Redis).
The end-to-end tests in this folder run the same objects inside the bot."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera.config.models import RiskConfig
from tessera.execution.exchange import refused_before_sending
from tessera.execution.gateway import OrderGateway
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.manager import OrderManager
from tessera.execution.orders import ExitReason, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.paper import PaperExchange
from tessera.execution.persistence import ExecutionStore
from tessera.execution.state import OrderEvent
from tessera.live.account import AccountBook
from tessera.live.bot import WireTimedExchange
from tessera.live.executor import SignalExecutor, order_payload
from tessera.live.halt import HaltGuard
from tessera.live.signals import LocalSignalQueue, Signal, SignalKind
from tessera.risk.engine import AccountView, RiskAction, RiskEngine
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol

FILTERS = filters_by_symbol(recorded_exchange_info())
D = Decimal
PRICE = D("60000")


class Desk:
    """The executor's collaborators, wired as the bot wires them."""

    def __init__(self, tmp: Path, risk: RiskConfig | None = None, btc: str = "0") -> None:
        self.store = ExecutionStore(f"sqlite:///{tmp / 'ledger.db'}")
        self.events: list[tuple[str, OrderStatus, str | None]] = []
        self.denied: list[tuple[str, str]] = []
        self.paper = PaperExchange(
            FILTERS, self.store, initial_balances={"USDT": "100000", "BTC": btc}
        )
        self.paper.on_quote("BTCUSDT", PRICE, PRICE)
        self.manager = OrderManager(self.store, self.paper, "unit-run", "", "paper", self)
        self.ids = ClientOrderIdGenerator("unit-run", self.store.next_seq("unit-run"))
        self.manager.take_seq = self.ids.take
        self.account = AccountBook(FILTERS, "USDT", {"USDT": D("100000"), "BTC": D(btc)})
        self.risk = RiskEngine(risk or RiskConfig())
        self.gateway = OrderGateway(
            self.manager,
            self.risk,
            FILTERS,
            _NoLimit(),
            self.view,
            on_denied=lambda o, r: self.denied.append((o.client_order_id, r)),
        )
        self.problems: list[str] = []
        self.queue = LocalSignalQueue()
        self.executor = SignalExecutor(
            queue=self.queue,
            store=self.store,
            manager=self.manager,
            gateway=self.gateway,
            account=self.account,
            filters=FILTERS,
            ids=self.ids,
            known=lambda strategy, symbol: symbol in FILTERS,
            can_record=lambda: True,
            failed=lambda where, exc: self.problems.append(f"{where}: {exc!r}"),
            problem=self.problems.append,
            wire_ns={},
            consumer="unit",
            max_signal_age_s=60.0,
            claim_idle_ms=30_000,
        )

    def view(self) -> AccountView:
        positions: dict[str, Decimal] = {}
        for (sym, _), p in self.manager.positions.items():
            positions[sym] = positions.get(sym, D(0)) + p.qty
        return AccountView(positions, {"BTCUSDT": PRICE}, len(self.manager.live))

    # the manager's observer
    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        if event.fill is not None:
            self.account.apply_fill(event.fill)
        self.events.append((order.client_order_id, order.status, order.reject_reason))
        if order.status.is_terminal:
            self.manager.live.pop(order.client_order_id, None)

    def position(self, strategy: str = "s") -> Decimal:
        p = self.manager.positions.get(("BTCUSDT", strategy))
        return p.qty if p is not None else D(0)


class _NoLimit:
    async def admit(self) -> float:
        return 0.0


_seq = iter(range(1, 10**9))


def new_signal_id() -> str:
    return f"unit-run:s:BTCUSDT:0:{next(_seq)}"


def signal(
    kind: str = SignalKind.TARGET, target: str = "", signal_id: str = "", **order: str
) -> Signal:
    now = time.time_ns()
    return Signal(
        signal_id=signal_id or new_signal_id(),
        strategy="s",
        symbol="BTCUSDT",
        target_qty=target,
        ts_event=now,
        ts_recv=now,
        ts_signal=now,
        kind=kind,
        order=dict(order),
    )


@pytest.fixture
def desk(tmp_path: Path) -> Any:
    d = Desk(tmp_path)
    yield d
    d.store.close()


async def test_a_target_signal_buys_the_difference(desk: Desk) -> None:
    assert await desk.executor.execute_signal(signal(target="0.01"))
    assert desk.position() == D("0.01")
    assert await desk.executor.execute_signal(signal(target="0.01"))  # already there
    assert len(desk.store.list_orders()) == 1


async def test_a_flip_on_spot_closes_the_long_and_refuses_the_short(desk: Desk) -> None:
    await desk.executor.execute_signal(signal(target="0.02"))
    assert await desk.executor.execute_signal(signal(target="-0.02"))
    # the close went out (reduce-only), the short part was refused: spot has no borrow
    assert desk.position() == 0
    orders = desk.store.list_orders()
    assert [o.side for o in sorted(orders, key=lambda o: o.ts_created)] == [
        OrderSide.BUY,
        OrderSide.SELL,
    ]


async def test_a_strategy_order_keeps_the_client_id_the_strategy_was_given(desk: Desk) -> None:
    sid = new_signal_id()
    cid = desk.ids.for_signal(sid)
    order = Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        qty=D("0.01"),
        price=D("59000"),
        strategy="s",
        signal_id=sid,
    )
    sig = signal(SignalKind.ORDER, signal_id=sid, **order_payload(order))
    assert await desk.executor.execute_signal(sig)
    stored = desk.store.get_order(cid)
    assert stored is not None and stored.type is OrderType.LIMIT
    assert stored.status is OrderStatus.ACCEPTED  # resting below the market
    # a second delivery of the same signal sends nothing more
    assert await desk.executor.execute_signal(sig, redelivered=True)
    assert len(desk.store.list_orders()) == 1
    # and the strategy cancels it by that id
    assert await desk.executor.execute_signal(signal(SignalKind.CANCEL, client_order_id=cid))
    stored = desk.store.get_order(cid)
    assert stored is not None and stored.status is OrderStatus.CANCELED


async def test_an_order_the_risk_engine_refuses_is_rejected_before_it_is_sent(
    tmp_path: Path,
) -> None:
    desk = Desk(tmp_path, RiskConfig(max_order_notional=100.0))  # 0.01 BTC is 600 USDT
    try:
        sid = new_signal_id()
        order = Order(
            client_order_id=desk.ids.for_signal(sid),
            symbol="BTCUSDT",
            side=OrderSide.BUY,
            type=OrderType.MARKET,
            qty=D("0.01"),
            strategy="s",
        )
        assert await desk.executor.execute_signal(
            signal(SignalKind.ORDER, signal_id=sid, **order_payload(order))
        )
        assert desk.store.list_orders() == []  # never recorded, never sent
        assert desk.denied and desk.denied[0][1].startswith("risk:")
    finally:
        desk.store.close()


async def test_the_kill_switch_flattens_through_the_gateway_while_halted(tmp_path: Path) -> None:
    desk = Desk(tmp_path, RiskConfig(flatten_on_halt=True))
    await desk.executor.execute_signal(signal(target="0.03"))
    assert desk.position() == D("0.03")
    guard = HaltGuard(
        store=desk.store,
        risk=desk.risk,
        manager=desk.manager,
        gateway=desk.gateway,
        account=desk.account,
        filters=FILTERS,
        ids=desk.ids,
        equity=lambda: D("100000"),
        failed=lambda where, exc: None,
        order_lock=desk.executor.lock,
    )
    desk.risk.update_equity(D("100000"), time.time_ns())
    actions = desk.risk.update_equity(D("50000"), time.time_ns())  # past max_drawdown_pct
    assert RiskAction.FLATTEN in actions
    await guard.carry_out(actions)
    assert desk.position() == 0  # the reduce-only flatten passed the halt
    flat = [o for o in desk.store.list_orders() if o.side is OrderSide.SELL]
    assert flat and flat[0].reason is ExitReason.KILL_SWITCH
    # while a new order that would add risk is refused
    assert await desk.executor.execute_signal(signal(target="0.01"))
    assert desk.position() == 0


class _HaltsWhileWaiting:
    """A rate limiter that holds the order back while an operator halts trading."""

    def __init__(self, risk: RiskEngine) -> None:
        self.risk = risk

    async def admit(self) -> float:
        await asyncio.sleep(0)
        self.risk.manual_halt("operator", time.time_ns())
        return 0.01


async def test_a_halt_while_the_limiter_holds_an_order_back_stops_it_before_its_intent(
    tmp_path: Path,
) -> None:
    """The gateway's checks passed, then the limiter held the order back, and trading was
    halted meanwhile: the checks run again after the wait, and the order is refused before
    anything is recorded or sent."""
    desk = Desk(tmp_path)
    try:
        desk.gateway.limiter = _HaltsWhileWaiting(desk.risk)
        assert await desk.executor.execute_signal(signal(target="0.01"))
        assert desk.store.list_orders() == []  # never recorded, never sent
        assert desk.denied and desk.denied[0][1] == "risk:halted"
        assert desk.position() == 0
    finally:
        desk.store.close()


async def test_a_halt_during_the_intent_closes_the_order_unsent(desk: Desk) -> None:
    """On PostgreSQL the intent is awaited: a kill-switch may engage while it is written.
    Asked after the intent, `may_send` stops the request; the order is closed, never sent."""
    order = Order(
        client_order_id=desk.ids.next(),
        symbol="BTCUSDT",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        qty=D("0.01"),
        strategy="s",
        signal_id=new_signal_id(),
    )
    placed = await desk.manager.submit(order, may_send=lambda o: "risk:kill_switch")
    assert placed.status is OrderStatus.CANCELED and not placed.exchange_order_id
    stored = desk.store.get_order(order.client_order_id)
    assert stored is not None and stored.status is OrderStatus.CANCELED
    assert await desk.paper.query("BTCUSDT", order.client_order_id) is None  # never sent
    assert desk.position() == 0


async def test_an_order_refused_right_before_its_request_is_not_counted_sent(
    tmp_path: Path,
) -> None:
    """Trading halts while the adapter holds the request back (its own rate limiter): the
    adapter asks `Sending.guard` and refuses it, REJECTED "never sent". The executor counts it
    neither as sent nor in the latency figures — the exit line counts orders on the wire."""
    desk = Desk(tmp_path)
    try:
        paper = desk.paper

        class _HaltsBeforeTheRequest:
            async def submit(self, order: Order) -> Any:
                desk.risk.manual_halt("operator", time.time_ns())
                refused = refused_before_sending()
                if refused is not None:
                    raise refused
                return await paper.submit(order)

            def __getattr__(self, name: str) -> Any:
                return getattr(paper, name)

        wired = WireTimedExchange(_HaltsBeforeTheRequest())  # type: ignore[arg-type]
        desk.manager.exchange = wired
        desk.executor.wire_ns = wired.wire_ns
        assert await desk.executor.execute_signal(signal(target="0.01"))
        [stored] = desk.store.list_orders()
        assert stored.status is OrderStatus.REJECTED
        assert stored.reject_reason == "never sent: risk:halted"
        assert desk.executor.orders_sent == 0
        assert desk.position() == 0
    finally:
        desk.store.close()


class _SwallowsCancellation(LocalSignalQueue):
    """A queue client that turns a cancellation into an empty answer, as a blocking read cut
    short by a closed connection may."""

    async def consume(self, consumer: str, count: int = 16, block_ms: int = 100) -> list[Any]:
        try:
            await asyncio.sleep(block_ms / 1000)
        except asyncio.CancelledError:
            return []
        return []


async def test_a_cancelled_executor_stops_even_when_its_queue_client_swallows_the_cancel(
    desk: Desk,
) -> None:
    desk.executor.queue = _SwallowsCancellation()
    task = asyncio.create_task(desk.executor.run())
    await asyncio.sleep(0.2)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done and task.cancelled()


async def test_the_in_process_queue_takes_a_signal_at_emission_and_keeps_their_order(
    desk: Desk,
) -> None:
    """With the in-process queue a decision is on the queue when `emit` returns (no publisher
    turn in between); while the publisher still holds earlier signals, later ones wait behind
    them, so the executor sees them in the order they were decided."""
    ex = desk.executor
    first, second, third = (signal(target=t) for t in ("0.001", "0.002", "0.003"))
    ex.emit(first)
    assert desk.queue.backlog() == 1 and ex.outbox.empty() and ex.signals_published == 1
    ex.publishing = True  # the publisher busy with an earlier signal (as with Redis away)
    ex.emit(second)
    ex.publishing = False
    ex.emit(third)  # the outbox is not empty: behind the second
    assert desk.queue.backlog() == 1 and ex.outbox.qsize() == 2
    publisher = asyncio.create_task(ex.publisher())
    try:
        await asyncio.wait_for(_until(lambda: ex.outbox.empty() and not ex.publishing), 5)
    finally:
        publisher.cancel()
    got = await desk.queue.consume("unit", count=16, block_ms=100)
    assert [d.signal.target_qty for d in got] == ["0.001", "0.002", "0.003"]


async def _until(check: Any) -> None:
    while not check():  # noqa: ASYNC110 -- polled: the flags have no event of their own
        await asyncio.sleep(0.005)
