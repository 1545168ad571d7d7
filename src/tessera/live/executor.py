"""`SignalExecutor`: signals in, orders out — the one place the live bot turns decisions into
orders.

Strategies decide on the market thread of the bot; what they decide is published as a `Signal`
(in emission order, by one publisher) on the signal queue (Redis Streams, or in process). The
executor consumes it and acts through the `OrderGateway` (risk, filters, rate limiter, order
manager), then acknowledges it once the order intent is durable:

* ``target``: the orders that move the strategy from what it holds (and has in flight) to the
  target, from the pure `sizing` module the backtest uses too — a flip is closed first, then
  opened; on spot a short is refused (``no_borrow``) and a sell is capped at what the account
  holds, both said and counted, never narrowed in silence; on a perpetual
  (``market=MarketKind.PERPETUAL``) a negative target is a short and the close is reduce-only;
* ``order`` / ``oco``: the strategy's own order or order list, with the client order ids the
  strategy was given when it decided (so it can cancel them, and a redelivered or re-decided
  signal finds its order by that id instead of sending a second one);
* ``cancel``: cancels one of the strategy's orders.

A signal is idempotent by its ``signal_id`` (unique in the orders table); a signal that could
not be recorded stays pending and is retried; a stale one (older than ``max_signal_age_s``) is
dropped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from tessera import metrics
from tessera.execution.filters import SymbolFilters
from tessera.execution.gateway import OrderGateway
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.manager import OrderManager
from tessera.execution.orders import (
    ExitReason,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.persistence import ExecutionStore
from tessera.execution.sizing import MarketKind, orders_for_market
from tessera.live.account import AccountBook
from tessera.live.ratelimit import RateLimitBannedError
from tessera.live.signals import Delivery, LocalSignalQueue, Signal, SignalKind, SignalQueue
from tessera.logging import get_logger

log = get_logger(__name__)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LatencyTrace:
    """Wall-clock ns of one signal's way from the market event to the exchange's answer."""

    recv: int  # market event received
    model: int  # features updated and model scored
    signal: int  # strategy emitted the target
    consumed: int  # executor took it off the queue
    checked: int  # risk and exchange filters passed
    sent: int  # order request on the wire (after the intent was made durable)
    acked: int  # the exchange's answer applied

    def stages_us(self) -> dict[str, float]:
        """Stage durations in µs: features+model, strategy, queue, risk, persist, exchange."""
        points = [self.recv, self.model, self.signal, self.consumed, self.checked, self.sent]
        names = ["features_model", "strategy", "queue", "risk_filters", "persist_intent"]
        out = {n: (b - a) / 1e3 for n, a, b in zip(names, points, points[1:], strict=False)}
        out["tick_to_decision"] = (self.checked - self.recv) / 1e3  # before the durable write
        out["tick_to_order"] = (self.sent - self.recv) / 1e3
        out["exchange_ack"] = (self.acked - self.sent) / 1e3
        return out


# --- orders on the wire of the signal queue ------------------------------------------------------


def _opt(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def order_payload(order: Order) -> dict[str, str]:
    """What of an order a signal carries (strings: the queue's payload is JSON)."""
    return {
        "client_order_id": order.client_order_id,
        "side": order.side.value,
        "type": order.type.value,
        "qty": str(order.qty),
        "price": _opt(order.price),
        "stop_price": _opt(order.stop_price),
        "time_in_force": order.time_in_force.value,
        "reason": order.reason.value,
        "reduce_only": "1" if order.reduce_only else "",
        "list_id": order.list_id,
    }


def order_from_payload(p: Mapping[str, str], sig: Signal, signal_id: str) -> Order:
    return Order(
        client_order_id=p["client_order_id"],
        symbol=sig.symbol,
        side=OrderSide(p["side"]),
        type=OrderType(p["type"]),
        qty=Decimal(p["qty"]),
        price=Decimal(p["price"]) if p.get("price") else None,
        stop_price=Decimal(p["stop_price"]) if p.get("stop_price") else None,
        time_in_force=TimeInForce(p.get("time_in_force") or "GTC"),
        strategy=sig.strategy,
        signal_id=signal_id,
        reason=ExitReason(p.get("reason") or "signal"),
        reduce_only=bool(p.get("reduce_only")),
        list_id=p.get("list_id", ""),
    )


def oco_payload(orders: OrderList) -> dict[str, str]:
    return {
        "list_id": orders.list_id,
        "above": orjson.dumps(order_payload(orders.above)).decode(),
        "below": orjson.dumps(order_payload(orders.below)).decode(),
    }


def oco_from_payload(p: Mapping[str, str], sig: Signal) -> OrderList:
    # one signal, two orders: the order manager derives the second leg's signal id (the
    # column is unique per order)
    above = order_from_payload(orjson.loads(p["above"]), sig, sig.signal_id)
    below = order_from_payload(orjson.loads(p["below"]), sig, sig.signal_id)
    return OrderList(p["list_id"], above, below)


def _stop_if_cancelled() -> None:
    """Raise `CancelledError` if this task was asked to stop. A client library that turns a
    cancellation into its own error, or swallows it (a blocking Redis read cut short: the
    executor kept polling a closed Redis after the bot had cancelled it), must not keep a
    cancelled loop alive."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _never_sent(order: Order) -> bool:
    """Refused after its intent, before its request left: trading halted meanwhile (closed
    CANCELED by the order manager, or REJECTED by the adapter's `Sending.guard`)."""
    if order.exchange_order_id:
        return False
    if order.status is OrderStatus.CANCELED:
        return True
    return order.status is OrderStatus.REJECTED and (order.reject_reason or "").startswith(
        "never sent:"
    )


class SignalExecutor:
    """Publishes the strategies' signals and executes them; see the module docstring."""

    def __init__(
        self,
        *,
        queue: SignalQueue,
        store: ExecutionStore,
        manager: OrderManager,
        gateway: OrderGateway,
        account: AccountBook,
        filters: Mapping[str, SymbolFilters],
        ids: ClientOrderIdGenerator,
        known: Callable[[str, str], bool],
        can_record: Callable[[], bool],
        failed: Callable[[str, Exception], None],
        problem: Callable[[str], None],
        wire_ns: dict[str, int],
        consumer: str,
        max_signal_age_s: float,
        claim_idle_ms: int,
        market: MarketKind = MarketKind.SPOT,
    ) -> None:
        """``market``: what a target means (`MarketKind`): on spot a short is refused and a
        sell capped at the account's base balance; on a perpetual a negative target is a
        short and exits are reduce-only orders, capped by the exchange."""
        self.market = market
        self.queue = queue
        self.store = store
        self.manager = manager
        self.gateway = gateway
        self.account = account
        self.filters = filters
        self.ids = ids
        self.known = known
        self.can_record = can_record
        self.failed = failed
        self.problem = problem
        self.wire_ns = wire_ns  # client id -> when its request went on the wire
        self.consumer = consumer
        self.max_signal_age_s = max_signal_age_s
        self.claim_idle_ms = claim_idle_ms
        # held while a signal becomes orders and while the ledgers are reconciled: a
        # reconciliation must not see an order the exchange has and our records do not yet
        self.lock = asyncio.Lock()
        # one publisher, in emission order: two decisions of one strategy must not swap places
        self.outbox: asyncio.Queue[Signal] = asyncio.Queue()
        self.publishing = False
        self.executing = False
        self.signals_published = 0
        self.orders_sent = 0
        self.traces: deque[LatencyTrace] = deque(maxlen=100_000)
        self._narrowed_logged: set[tuple[str, str]] = set()

    # --- publishing ------------------------------------------------------------------------------

    def emit(self, sig: Signal) -> None:
        """Onto the signal queue, in emission order. The in-process queue takes the signal at
        once when nothing is waiting before it (a turn of the event loop less between the
        decision and the executor: the publisher task need not wake); Redis through the
        publisher task, which retries while Redis is away."""
        if isinstance(self.queue, LocalSignalQueue) and not self.publishing and self.outbox.empty():
            self.queue.publish_nowait(sig)
            self.signals_published += 1
            return
        self.outbox.put_nowait(sig)

    async def publisher(self) -> None:
        while True:
            sig = await self.outbox.get()
            self.publishing = True
            try:
                await self._publish(sig)
            finally:
                self.publishing = False

    async def _publish(self, sig: Signal) -> None:
        for attempt in range(50):
            try:
                await self.queue.publish(sig)
                self.signals_published += 1
                return
            except Exception as exc:  # Redis restarting: keep the signal, retry
                log.warning("signal publish failed; retrying", error=str(exc)[:200], n=attempt)
                await asyncio.sleep(0.2)
        metrics.SIGNALS_DROPPED.labels(strategy=sig.strategy).inc()
        self.problem(f"signals dropped: the signal queue was unreachable ({sig.signal_id})")

    # --- consuming -------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            _stop_if_cancelled()
            try:
                deliveries = await self.queue.consume(self.consumer, count=16, block_ms=50)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _stop_if_cancelled()
                log.warning("signal queue unavailable; retrying", error=str(exc)[:200])
                await asyncio.sleep(0.5)
                continue
            for d in deliveries:
                await self.execute(d)

    async def claim_loop(self) -> None:
        """Take over signals a dead executor left pending (Redis only)."""
        while True:
            await asyncio.sleep(max(self.claim_idle_ms / 2000, 0.5))
            try:
                claimed = await self.queue.claim_stale(self.consumer, self.claim_idle_ms)
            except Exception as exc:
                _stop_if_cancelled()
                log.warning("claiming stale signals failed", error=str(exc)[:200])
                continue
            for d in claimed:
                log.info("claimed a pending signal", signal_id=d.signal.signal_id)
                await self.execute(d)

    async def execute(self, d: Delivery) -> None:
        self.executing = True
        ack = True
        try:
            async with self.lock:
                ack = await self.execute_signal(d.signal, redelivered=d.deliveries > 1)
        except Exception as exc:
            ack = False
            self.failed("signal execution", exc)
        finally:
            self.executing = False
        if ack:
            with contextlib.suppress(Exception):
                await self.queue.ack(d.entry_id)

    async def drain(self) -> None:
        # Polled: "drained" spans three owners (emitter, queue, executor) with no common event.
        while (  # noqa: ASYNC110
            not self.outbox.empty() or self.publishing or self.executing or self._queued()
        ):
            await asyncio.sleep(0.02)

    def _queued(self) -> int:
        if isinstance(self.queue, LocalSignalQueue):
            return self.queue.backlog()
        return 0  # Redis keeps what is left for the next executor

    # --- one signal ------------------------------------------------------------------------------

    async def execute_signal(self, sig: Signal, redelivered: bool = False) -> bool:
        """Returns whether the signal is done with (ack it); False leaves it pending.

        A first delivery skips the lookup of an order for the signal: the unique signal id
        of the order intent refuses a second order anyway (`OrderManager.submit`)."""
        t_consumed = time.time_ns()
        if not self.can_record():
            return False  # nothing can be recorded: the signal stays for the next start
        if redelivered and self.store.order_for_signal(sig.signal_id) is not None:
            log.info("signal already executed", signal_id=sig.signal_id)
            return True
        age = (time.time_ns() - sig.ts_signal) / 1e9
        if age > self.max_signal_age_s:
            log.warning("stale signal dropped", signal_id=sig.signal_id, age_s=round(age, 1))
            return True
        if not self.known(sig.strategy, sig.symbol) or sig.kind not in SignalKind.ALL:
            log.warning(
                "signal for an unknown strategy, symbol or kind",
                signal_id=sig.signal_id,
                kind=sig.kind,
            )
            return True
        if sig.kind == SignalKind.CANCEL:
            await self._cancel(sig)
            return True
        if sig.kind == SignalKind.OCO:
            return await self._send_list(sig, oco_from_payload(sig.order, sig))
        if sig.kind == SignalKind.ORDER:
            order = order_from_payload(sig.order, sig, sig.signal_id)
            return await self._send(sig, order, t_consumed)
        return await self._to_target(sig, t_consumed)

    async def _to_target(self, sig: Signal, t_consumed: int) -> bool:
        filters = self.filters[sig.symbol]
        held = self.position(sig.symbol, sig.strategy) + self.in_flight(sig.symbol, sig.strategy)
        # spot: sell at most what the account holds; a buy's commission paid in the base asset
        # leaves less than the position, and the exchange refuses the rest
        sellable = (
            max(self.account.balances.get(filters.base_asset, ZERO), ZERO)
            if self.market is MarketKind.SPOT
            else None
        )
        plan = orders_for_market(
            held,
            Decimal(sig.target_qty),
            market=self.market,
            filters=filters,
            sellable=sellable,
        )
        log.debug("signal", target=sig.target_qty, held=str(held), plan=str(plan))
        if plan.cut:
            self._narrowed(sig, plan.cut, filters.base_asset, nothing_left=not plan.orders)
        ok = True
        for n, step in enumerate(plan.orders):
            order = Order(
                client_order_id=self.ids.next(),
                symbol=sig.symbol,
                side=step.side,
                type=OrderType.MARKET,
                qty=step.qty,
                strategy=sig.strategy,
                # one signal may need two orders (a flip): each its own signal id
                signal_id=sig.signal_id if n == 0 else f"{sig.signal_id}#{n + 1}",
                reduce_only=step.reduce_only,
            )
            ok = await self._send(sig, order, t_consumed) and ok
            if order.status is OrderStatus.REJECTED and step.reduce_only:
                break  # the close was refused: opening the other way would double the risk
        return ok

    async def _send(self, sig: Signal, order: Order, t_consumed: int) -> bool:
        marks: dict[str, int] = {}
        try:
            placed = await self.gateway.submit(order, marks)
        except RateLimitBannedError as exc:
            log.error("rate-limit ban: not sending", until_ms=exc.until_ms)
            return False
        except Exception as exc:
            # The intent is durable (or was never written): recovery resolves it either way.
            if self.wire_ns.pop(order.client_order_id, None) is not None:
                self.orders_sent += 1  # it reached the wire: recovery settles its outcome
            self.failed("submit", exc)
            # nothing recorded: leave the signal pending so that it is retried
            return self.store.order_for_signal(order.signal_id) is not None
        if placed.status is OrderStatus.REJECTED and "send" not in marks:
            kind = order.type.value.lower()
            reason = (placed.reject_reason or "").split(":", 1)[0] or "risk"
            metrics.record_order_rejected(sig.symbol, order.side.value.lower(), kind, reason)
            log.info(
                "order refused before sending",
                strategy_id=sig.strategy,
                symbol=sig.symbol,
                reason=placed.reject_reason,
            )
            return True
        t_ack = time.time_ns()
        wired = self.wire_ns.pop(order.client_order_id, None)
        if _never_sent(placed):
            return True  # refused after its intent: not sent, not counted (`OrderManager.submit`)
        if wired is not None:
            self.orders_sent += 1  # counted once on the wire, not when merely attempted
        t_send = marks.get("send", t_ack)
        t_wire = wired if wired is not None else t_send
        metrics.ORDER_LATENCY.labels(stage="signal_to_send").observe((t_send - sig.ts_signal) / 1e9)
        metrics.ORDER_LATENCY.labels(stage="send_to_ack").observe((t_ack - t_wire) / 1e9)
        if sig.ts_recv:
            metrics.ORDER_LATENCY.labels(stage="tick_to_order").observe(
                (t_wire - sig.ts_recv) / 1e9
            )
            t_model = int(sig.meta.get("t_model", sig.ts_signal))
            t_checked = marks.get("checked", t_send)
            self.traces.append(
                LatencyTrace(
                    sig.ts_recv, t_model, sig.ts_signal, t_consumed, t_checked, t_wire, t_ack
                )
            )
        return True

    async def _send_list(self, sig: Signal, orders: OrderList) -> bool:
        try:
            placed = await self.gateway.submit_list(orders)
        except RateLimitBannedError as exc:
            log.error("rate-limit ban: not sending", until_ms=exc.until_ms)
            return False
        except Exception as exc:
            for leg in orders.legs:
                if self.wire_ns.pop(leg.client_order_id, None) is not None:
                    self.orders_sent += 1
            self.failed("submit order list", exc)
            return self.store.order_for_signal(orders.above.signal_id) is not None
        for leg in placed:
            if self.wire_ns.pop(leg.client_order_id, None) is not None:
                self.orders_sent += 1
        return True

    async def _cancel(self, sig: Signal) -> None:
        cid = sig.order.get("client_order_id", "")
        order = self.manager.live.get(cid)
        if order is None:
            order = self.store.get_order(cid) if cid else None
        if order is None or order.strategy != sig.strategy or not order.status.is_open:
            log.info("cancel: no such open order of the strategy", cid=cid, strategy=sig.strategy)
            return
        try:
            await self.gateway.cancel(order)
        except Exception as exc:
            self.failed("cancel", exc)

    # --- what a strategy holds -------------------------------------------------------------------

    def position(self, symbol: str, strategy: str) -> Decimal:
        p = self.manager.positions.get((symbol, strategy))
        return p.qty if p is not None else ZERO

    def in_flight(self, symbol: str, strategy: str) -> Decimal:
        """Signed quantity of the strategy's open orders that are not exits resting on the
        exchange: a market order on its way moves the position, a resting stop may never."""
        return sum(
            (
                o.remaining_qty * o.side.sign
                for o in self.manager.live.values()
                if o.symbol == symbol
                and o.strategy == strategy
                and o.status.is_open
                and o.type is OrderType.MARKET
            ),
            ZERO,
        )

    def _narrowed(self, sig: Signal, cut: Decimal, asset: str, nothing_left: bool) -> None:
        if nothing_left:
            metrics.RISK_DENIALS.labels(reason="no_borrow").inc()
        key = (sig.strategy, sig.symbol)
        if key in self._narrowed_logged:
            return
        self._narrowed_logged.add(key)
        log.warning(
            "spot: selling only what the account holds (a short needs a borrow)",
            strategy_id=sig.strategy,
            symbol=sig.symbol,
            target=sig.target_qty,
            refused=str(cut),
            asset=asset,
        )

    def stats(self) -> dict[str, Any]:
        return {"signals": self.signals_published, "orders": self.orders_sent}
