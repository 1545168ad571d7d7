"""`OrderManager`: orders from intent to final state, persisted at every step, crash-safe.

The sequence for each order, each step committed before the next:

1. the **intent** (status INITIALIZED) with its deterministic client order id;
2. SUBMITTED — the request is about to go on the wire;
3. the exchange's answer: ACCEPTED / fills / FILLED / EXPIRED, or REJECTED only on a definitive
   refusal. An unknown outcome leaves the order SUBMITTED (in flight) and resolves it by
   querying the client order id.

`recover()` runs on start (and after reconnects): every order the store holds as possibly live
is looked up on the exchange by client order id. Found: its state and its fills (by exchange
trade id: imported once, however often recovery runs) are brought up to date. Not found: an
INITIALIZED or SUBMITTED order never reached the exchange — it is closed as CANCELED, never
silently resent (the strategy decides again on current data). A process killed anywhere in
the sequence therefore restarts into the exchange's truth, with no order lost or doubled.

Recovery is called from several tasks (start-up, feed and user-data reconnects, the resolver
of unknown outcomes, reconciliation). Two passes at once raced: one closed an order as never
sent while the other, resuming after its query, reported the same order "unknown to the
exchange" and reconciliation persisted a halt. So passes are serialised (a lock: a second
caller waits, then runs its own pass on the state the first left), and after every ``await``
the order is looked up again: if the submit's answer or the user-data stream moved it while
the query was out, the query's answer is older than what we know and is not acted on.

On PostgreSQL the intent is one statement awaited on the store's asynchronous connection
(psycopg's ``AsyncConnection``): the loop reads market frames while the server commits, and
nothing waits for a thread or the GIL. The await is made uncancellable in effect
(`_record_submission_async`): a shutdown that cancels the submit there waits for the write to
land or fail, so its recovery never runs before an intent it should see. On SQLite the commit
is a local fsync, run on the loop's thread synchronously on the order path's engine. Either way
there is no pool pre-ping, and a write that finds its connection dead is retried once. A writer
thread the loop awaited was tried (issue 20) and taken out: the shutdown did not wait for its
commit — the recovery then ran before the commit landed, leaving a SUBMITTED order nobody
resolved — and, with the loop busy, the thread waited for the GIL (p99 of the intent 13–17 ms
inline, 349–389 ms on the thread; docs/benchmarks.md).

An order list (OCO, `submit_list`) follows the same sequence with both legs together: both
intents and SUBMITTED events in one commit, then the one request, then the answer for both legs
in one transaction. Each leg keeps its own client order id, so an unknown outcome leaves both in
flight and recovery resolves each like any order. ``orders.signal_id`` is unique and the two
legs come from one signal: the first leg carries the signal id, the second a derived one
(`leg_signal_id`), so a redelivered signal still places nothing.

An order the exchange placed itself on the account (a perpetual's liquidation ``autoclose-``
order, ADL, insurance fund, settlement: the report's ``by_exchange``) carries no client id of
ours, yet it moves our position: ignored as "not ours", the ledger would still hold the
position the exchange closed, and reconciliation would halt on fills and a position it cannot
explain. So its first report books it as an order of the account (`book_exchange_order`):
reason ``liquidation``, reduce-only, attributed to the strategy holding the symbol, then its
fills like any order's (once by trade id, so the later userTrades import finds them stored),
and ``on_exchange_order`` tells the bot, which halts trading.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from tessera import __version__
from tessera.execution.exchange import (
    SENDING,
    Exchange,
    ExchangeOrder,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    Sending,
)
from tessera.execution.observers import NullObserver, OrderObserver
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.persistence import ExecutionStore, is_disconnect
from tessera.execution.position import Position
from tessera.execution.schema import MAX_SIGNAL_ID
from tessera.execution.state import (
    InvalidTransitionError,
    OrderEvent,
    OrderEventKind,
    OrderStateMachine,
)
from tessera.execution.userdata import ExecutionReport
from tessera.logging import get_logger

log = get_logger(__name__)

_T = TypeVar("_T")


FINAL_EVENTS = {
    OrderStatus.CANCELED: OrderEventKind.CANCELED,
    OrderStatus.EXPIRED: OrderEventKind.EXPIRED,
    OrderStatus.REJECTED: OrderEventKind.REJECTED,
}


def now_ns() -> int:
    return time.time_ns()


def leg_signal_id(signal_id: str, leg: int) -> str:
    """The signal id of leg ``leg`` (1, 2) of an order list that one signal decided: the
    signal's own for the first leg, ``<signal_id>#<leg>`` for the next (``orders.signal_id`` is
    unique). Deterministic, so a redelivered signal derives the same ids and places nothing. A
    signal id too long for the suffix keeps its beginning and a hash of the whole id, so the
    result fits ``orders.signal_id`` and stays distinct per signal."""
    if leg == 1 or not signal_id:
        return signal_id
    suffix = f"#{leg}"
    if len(signal_id) + len(suffix) <= MAX_SIGNAL_ID:
        return signal_id + suffix
    digest = hashlib.sha256(signal_id.encode()).hexdigest()[:32]
    keep = MAX_SIGNAL_ID - len(suffix) - len(digest) - 1
    return f"{signal_id[:keep]}~{digest}{suffix}"


def _snapshot(order: Order) -> Order:
    """A copy of ``order`` to put back if the write of its next step fails."""
    snap = copy.copy(order)
    snap.fees = dict(order.fees)
    snap.trade_ids = set(order.trade_ids)
    return snap


def _copy_position(position: Position) -> Position:
    """A copy of ``position`` that a fill can move without touching the original: its own
    deque of lots (the lots themselves are tuples of Decimals, immutable: shared). A deep copy
    cost ~6 ms per fill on a position of a few hundred lots."""
    twin = copy.copy(position)
    twin.lots = deque(position.lots)
    return twin


def _restore(order: Order, snap: Order) -> None:
    for f in dataclasses.fields(Order):
        setattr(order, f.name, getattr(snap, f.name))


@dataclass
class RecoveryReport:
    checked: int = 0
    updated: list[str] = field(default_factory=list)
    closed_unsent: list[str] = field(default_factory=list)
    fills_imported: int = 0
    unresolved: list[str] = field(default_factory=list)  # the exchange did not answer
    settling: list[str] = field(default_factory=list)  # unknown yet, but too recent to close
    # moved by something newer (the submit's answer, the stream) while the query was out
    moved: list[str] = field(default_factory=list)


class OrderManager:
    def __init__(
        self,
        store: ExecutionStore,
        exchange: Exchange,
        run_id: str,
        strategy: str = "",
        mode: str = "live",
        observer: OrderObserver | None = None,
    ) -> None:
        # orders belong to a run; a restarted process continues its run (of the same mode)
        store.ensure_run(run_id, mode, __version__, [strategy] if strategy else [])
        self.store = store
        self.exchange = exchange
        self.run_id = run_id
        self.strategy = strategy
        self.machine = OrderStateMachine()
        self.observer: OrderObserver = observer or NullObserver()
        self.positions: dict[tuple[str, str], Position] = {
            (p.symbol, p.strategy): p for p in store.positions()
        }
        # orders this process sent: the REST answer and the user-data stream update one object
        self.live: dict[str, Order] = {}
        # client ids whose submit request is still awaiting its answer: that answer settles them
        self._submitting: set[str] = set()
        # A SUBMITTED order the exchange does not know is closed as "never reached the exchange"
        # only once it is this old: a request may still be processed within the exchange's
        # recvWindow. 0 at start-up (the process that sent it is gone); a running bot sets it.
        self.settle_ns = 0
        # events of an open `apply_batched` transaction, told to observers once it commits
        self._deferred: list[tuple[Order, OrderEvent]] | None = None
        # one recovery pass at a time (see the module docstring)
        self._recovering = asyncio.Lock()
        # the sequence of an order whose client id does not end in one (see `_seq`)
        self.take_seq: Callable[[], int] | None = None
        # told once of each order the exchange placed on the account (a liquidation), after
        # the report that made it known is booked
        self.on_exchange_order: Callable[[Order], None] | None = None
        self.reconnects = 0  # order-path writes retried after a lost connection
        # what a recovery pass is awaiting now (for a pass that overruns its time: the log
        # says which request it was stuck on)
        self.recovery_step = ""

    # --- the order path -------------------------------------------------------------------------

    def record_intent(self, order: Order) -> bool:
        """Step 1; False if the order's signal already produced an order (send nothing)."""
        if not order.ts_created:
            order.ts_created = now_ns()
        return self.store.record_intent(order, self.run_id, self._seq(order))

    def _seq(self, order: Order) -> int:
        # ids from `ClientOrderIdGenerator.next` end in their sequence; others (ids derived
        # from a signal) take one from ``take_seq`` — the same generator, so that two orders
        # never get one sequence — or the store's next
        tail = order.client_order_id.rsplit("-", 1)[-1]
        if tail.isdigit():
            return int(tail)
        return self.take_seq() if self.take_seq is not None else self.store.next_seq(self.run_id)

    def mark_submitted(self, order: Order) -> None:
        """Step 2: from here on, the order may exist on the exchange."""
        self._event(order, OrderEvent(OrderEventKind.SUBMITTED, now_ns()))

    def _on_path(self, fn: Callable[..., _T], /, *args: object) -> _T:
        """``fn(*args)`` on the order path's engine (no pre-ping round trip), once more if the
        driver reports the connection gone: a connection found dead at a write's first
        statement committed nothing, and a replayed intent is recognised as recorded."""
        with self.store.on_path():
            try:
                return fn(*args)
            except Exception as exc:
                if not is_disconnect(exc):
                    raise
                self.reconnects += 1
                log.warning("database connection lost: reconnecting once", error=str(exc)[:200])
                return fn(*args)

    async def _record_submission_async(self, order: Order, submitted: OrderEvent) -> bool:
        """The intent on the store's asynchronous connection (PostgreSQL), retried once on a
        lost connection as `_on_path`. The await is a suspension point between "intent
        decided" and "intent durable", so it is made one nobody can cut in half: the write
        runs as a task of its own, and a cancellation of the submit (a shutdown) waits for
        that write to land or fail before it goes on. An intent that landed is then an order
        in flight that was never sent — the shutdown's recovery, which runs after the
        cancelled tasks end, finds it and closes it as never sent. (The writer thread tried
        before lacked exactly this wait: its commit could land after that recovery.)"""
        seq = self._seq(order)

        async def write() -> bool:
            try:
                return await self.store.record_submission_async(order, self.run_id, seq, submitted)
            except Exception as exc:
                if not is_disconnect(exc):
                    raise
                self.reconnects += 1
                log.warning("database connection lost: reconnecting once", error=str(exc)[:200])
                return await self.store.record_submission_async(order, self.run_id, seq, submitted)

        cid = order.client_order_id
        # while its intent is being written, a recovery pass (another task) leaves the order
        # alone: committed but not yet answered to us, it is on its way, not "never sent"
        self._submitting.add(cid)
        task = asyncio.ensure_future(write())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([task])
            if not task.cancelled() and task.exception() is None and task.result():
                self.live[cid] = order  # in flight, never sent: the recovery closes it
            else:
                order.status = OrderStatus.INITIALIZED  # nothing was written
            raise
        finally:
            self._submitting.discard(cid)  # `submit` adds it again at once if recorded

    async def submit(
        self, order: Order, may_send: Callable[[Order], str | None] | None = None
    ) -> Order:
        """Intent, SUBMITTED, send, and apply the answer; returns the order as now known.

        ``may_send``, asked after the intent is durable and before the request: why the order
        may no longer go (trading halted while the intent was being written — on PostgreSQL
        that write is awaited, and a kill-switch may engage meanwhile), or None. An order it
        stops is closed, never sent (CANCELED, ``never sent: <why>``)."""
        if not order.ts_created:
            order.ts_created = now_ns()
        submitted = OrderEvent(OrderEventKind.SUBMITTED, now_ns())
        self.machine.apply(order, submitted)
        # intent and SUBMITTED in one commit: nothing happens between them; on PostgreSQL the
        # commit is awaited, made safe against a cancel (see the module docstring)
        try:
            if self.store.intent_is_async:
                recorded = await self._record_submission_async(order, submitted)
            else:
                recorded = self._on_path(
                    self.store.record_submission, order, self.run_id, self._seq(order), submitted
                )
        except Exception:
            order.status = OrderStatus.INITIALIZED  # nothing was written, nothing is sent
            raise
        if not recorded:
            order.status = OrderStatus.INITIALIZED
            log.warning("signal already produced an order", cid=order.client_order_id)
            existing = self.store.order_for_signal(order.signal_id)
            return existing if existing is not None else order
        self.observer.on_event(order, submitted, len(self.live))
        self.live[order.client_order_id] = order
        stop = may_send(order) if may_send is not None else None
        if stop is not None:
            self._close_unsent(order, stop, "refused after its intent")
            return order
        self._submitting.add(order.client_order_id)
        sending = Sending(guard=(lambda: may_send(order)) if may_send is not None else None)
        told = SENDING.set(sending)
        try:
            ack = await self.exchange.submit(order)
        except asyncio.CancelledError:
            if sending.held:  # stopped in the adapter's rate limiter: the request never left
                self._close_held(order, "stopped while the rate limiter held it back", "stopped")
            raise
        except (OrderRejectedError, RateLimitedError) as exc:
            # 429/-1015 (and 418): the exchange refused the request without processing it
            self._event(order, OrderEvent(OrderEventKind.REJECTED, now_ns(), reason=str(exc)))
            return order
        except OutcomeUnknownError as exc:
            log.warning(
                "order in flight: outcome unknown", cid=order.client_order_id, error=str(exc)
            )
            found = await self.exchange.query(order.symbol, order.client_order_id)
            if found is None:
                return order  # still SUBMITTED: recovery or the user-data stream will tell
            ack = found
        except Exception as exc:
            if sending.held:  # raised in the adapter's limiter (a ban): the request never left
                self._close_held(order, f"{type(exc).__name__}: {str(exc)[:200]}", "refused")
            raise
        finally:
            SENDING.reset(told)
            self._submitting.discard(order.client_order_id)
        self.apply_batched(order, ack)
        return order

    async def submit_list(self, orders: OrderList) -> OrderList:
        """`submit` for an order list (OCO): both intents and SUBMITTED in one commit, then the
        one request; its answer applies to both legs in one transaction. A rejection rejects
        both; an unknown outcome leaves both in flight (each is queried by its client order id
        now, and by recovery later). Returns the list as now known."""
        legs = orders.legs
        first, second = legs
        if first.signal_id and second.signal_id in ("", first.signal_id):
            second.signal_id = leg_signal_id(first.signal_id, 2)
        items: list[tuple[Order, int, OrderEvent]] = []
        seqs: set[int] = set()
        for leg in legs:
            if not leg.ts_created:
                leg.ts_created = now_ns()
            seq = self._seq(leg)
            while seq in seqs:  # two legs numbered from the store's next sequence
                seq += 1
            seqs.add(seq)
            submitted = OrderEvent(OrderEventKind.SUBMITTED, now_ns())
            self.machine.apply(leg, submitted)
            items.append((leg, seq, submitted))
        try:
            recorded = self._on_path(self.store.record_list_submission, items, self.run_id)
        except Exception:
            for leg in legs:
                leg.status = OrderStatus.INITIALIZED  # nothing was written, nothing is sent
            raise
        if not recorded:
            for leg in legs:
                leg.status = OrderStatus.INITIALIZED
            log.warning("signal already produced an order", list_id=orders.list_id)
            return self._stored_list(orders)
        for leg, _, submitted in items:
            self.observer.on_event(leg, submitted, len(self.live))
            self.live[leg.client_order_id] = leg
            self._submitting.add(leg.client_order_id)
        try:
            acks = await self.exchange.submit_list(orders)
        except (OrderRejectedError, RateLimitedError) as exc:
            for leg in legs:
                self._event(leg, OrderEvent(OrderEventKind.REJECTED, now_ns(), reason=str(exc)))
            return orders
        except OutcomeUnknownError as exc:
            log.warning("order list in flight: outcome unknown", list_id=orders.list_id,
                        error=str(exc))  # fmt: skip
            acks = []
            for leg in legs:
                try:
                    found = await self.exchange.query(leg.symbol, leg.client_order_id)
                except OutcomeUnknownError:
                    found = None  # still no answer: recovery or the stream will tell
                if found is not None:
                    acks.append(found)
        finally:
            for leg in legs:
                self._submitting.discard(leg.client_order_id)
        answered = {a.client_order_id: a for a in acks}
        missing = [leg.client_order_id for leg in legs if leg.client_order_id not in answered]
        if missing and acks:
            log.error("the exchange's answer lacks legs of the list", list_id=orders.list_id,
                      missing=missing)  # fmt: skip
        self._apply_all(
            [(leg, answered[leg.client_order_id], None) for leg in legs
             if leg.client_order_id in answered]
        )  # fmt: skip
        return orders

    def _stored_list(self, orders: OrderList) -> OrderList:
        """The list an earlier delivery of this signal placed, as stored (else ``orders``)."""
        stored = [self.store.order_for_signal(leg.signal_id) for leg in orders.legs]
        above, below = stored
        if above is None or below is None:
            return orders
        try:
            return OrderList(above.list_id, above, below)
        except ValueError:
            return orders  # the signal produced something else than this list

    def apply_batched(
        self, order: Order, ack: ExchangeOrder, fills: list[Fill] | None = None
    ) -> None:
        """`apply` in one transaction (see `_apply_all`)."""
        self._apply_all([(order, ack, fills)])

    def _apply_all(self, answers: Sequence[tuple[Order, ExchangeOrder, list[Fill] | None]]) -> None:
        """`apply` for each answer, all in one transaction. If the transaction fails, the orders
        and their positions in memory are put back as they were (memory never runs ahead of the
        store) and observers hear nothing; on a constraint violation (another writer recorded
        one of these fills first) the writes are redone one by one."""
        answers = [(self.live.get(o.client_order_id, o), a, f) for o, a, f in answers]
        saved = [(o, _snapshot(o)) for o, _, _ in answers]
        # the positions these fills can move; `apply_fill` replaces a position, never changes
        # it in place: the references suffice
        saved_positions = {
            key: self.positions.get(key) for key in {(o.symbol, o.strategy) for o, _, _ in answers}
        }
        for attempt in (1, 2):
            self._deferred = []
            try:
                # the order path's engine: no pre-ping round trip before the transaction
                with self.store.on_path(), self.store.batch():
                    for order, ack, fills in answers:
                        self.apply(order, ack, fills)
                break
            except Exception as exc:
                self._deferred = None
                for order, snap in saved:
                    _restore(order, snap)
                for key, position in saved_positions.items():
                    if position is None:
                        self.positions.pop(key, None)
                    else:
                        self.positions[key] = position
                if attempt == 1 and is_disconnect(exc):
                    # a connection that died while idle: nothing was written, write it again
                    self.reconnects += 1
                    log.warning("database connection lost: reconnecting once", error=str(exc))
                    continue
                if not isinstance(exc, IntegrityError):
                    raise
                for order, ack, fills in answers:
                    self.apply(order, ack, fills)
                return
        deferred, self._deferred = self._deferred or [], None
        for o, event in deferred:  # committed: now the observers may act on it
            self.observer.on_event(o, event, len(self.live))

    async def cancel(self, order: Order) -> Order:
        # the object the stream updates while the cancel is out, not a copy that goes stale
        order = self.live.get(order.client_order_id, order)
        self._event(order, OrderEvent(OrderEventKind.CANCEL_REQUESTED, now_ns()))
        try:
            ack = await self.exchange.cancel(order.symbol, order.client_order_id)
        except OutcomeUnknownError:
            return order  # PENDING_CANCEL until a query says otherwise
        except Exception:
            found = await self.exchange.query(order.symbol, order.client_order_id)
            if found is None:
                raise
            ack = found
        self.apply(order, ack)
        return order

    # --- applying what the exchange says --------------------------------------------------------

    def apply(self, order: Order, ack: ExchangeOrder, fills: list[Fill] | None = None) -> None:
        """Bring ``order`` to the exchange's state: acceptance, fills (once), final status."""
        ts = ack.ts_update or now_ns()
        if order.status in (OrderStatus.INITIALIZED,):
            self._event(order, OrderEvent(OrderEventKind.SUBMITTED, ts))
        fills = fills if fills is not None else ack.fills
        self._apply_update(order, ack.status, ts, ack.exchange_order_id, fills, None)

    def _apply_update(
        self,
        order: Order,
        status: OrderStatus,
        ts: int,
        exchange_order_id: str,
        fills: list[Fill],
        reason: str | None,
    ) -> None:
        """The exchange says ``order`` is in ``status`` with ``fills``: acceptance first (if we
        had not heard it), then the fills (once each), then a final state."""
        if order.status is OrderStatus.SUBMITTED and status is not OrderStatus.REJECTED:
            accepted = OrderEvent(OrderEventKind.ACCEPTED, ts, exchange_order_id=exchange_order_id)
            self._event(order, accepted)
        for fill in fills:
            self.apply_fill(order, fill)
        final = FINAL_EVENTS.get(status)
        if final is not None and order.status is not status:
            try:
                event = OrderEvent(final, ts, exchange_order_id=exchange_order_id, reason=reason)
                self._event(order, event)
            except InvalidTransitionError:
                log.error("exchange state not reachable", cid=order.client_order_id, status=status)

    def apply_fill(self, order: Order, fill: Fill) -> bool:
        """Record one fill (idempotent by trade id); returns whether it was new."""
        # one object per order: a copy read from the store (reconciliation) must not diverge
        # from the order this process is working with
        order = self.live.get(order.client_order_id, order)
        fill = dataclasses.replace(
            fill, client_order_id=order.client_order_id, strategy=order.strategy or fill.strategy
        )
        # stored already: the same fill (skip), or another fill under this trade id — a
        # `LedgerConflictError`, never skipped: it would leave the order without its fill.
        # Inside a batch (an exchange's answer) the read is left to the fill's unique key: a
        # trade id stored already fails the batch, which `_apply_all` redoes write by write,
        # with this read (a round trip saved on every new fill).
        if fill.trade_id in order.trade_ids or (
            not self.store.in_batch and self.store.fill_recorded(fill)
        ):
            order.trade_ids.add(fill.trade_id)
            return False
        event = OrderEvent(OrderEventKind.FILLED, fill.ts_event or now_ns(), fill=fill)
        saved = _snapshot(order)
        key = (fill.symbol, order.strategy)
        previous = self.positions.get(key)
        # the fill moves a copy: the position in memory changes only once the store has it
        position = _copy_position(previous) if previous else Position(fill.symbol, order.strategy)
        self.machine.apply(order, event)
        # which asset the fee is in, from the symbol's name (BTCUSDT: USDT quote, BTC base)
        asset = fill.fee_asset
        position.apply_fill(
            fill,
            quote_asset=asset if fill.symbol.endswith(asset) else None,
            base_asset=asset if fill.symbol.startswith(asset) else None,
        )
        try:
            new = self.store.record_fill(order, event, position)
        except Exception:
            _restore(order, saved)  # a later recovery applies this fill, exactly once
            raise
        # stored now, by us or (not new) by another writer that recorded it first
        self.positions[key] = position
        if new:
            self._notify(order, event)
        return new

    def _close_unsent(self, order: Order, why: str, what: str) -> None:
        """An order recorded in flight whose request never left: closed CANCELED, ``never
        sent: <why>``, and logged as ``order not sent: <what>``."""
        log.warning(f"order not sent: {what}", cid=order.client_order_id, reason=why)
        closed = OrderEvent(OrderEventKind.CANCELED, now_ns(), reason=f"never sent: {why}")
        self._event(order, closed)

    def _close_held(self, order: Order, why: str, what: str) -> None:
        """`_close_unsent` for a submit that ended in the adapter's rate limiter (``what``:
        how), and out of the live set: nothing is left in flight."""
        self._close_unsent(order, why, f"{what} in the rate limiter")
        self.live.pop(order.client_order_id, None)

    def _event(self, order: Order, event: OrderEvent) -> None:
        saved = _snapshot(order)
        self.machine.apply(order, event)
        try:
            self.store.record_event(order, event)
        except Exception:
            _restore(order, saved)  # memory never runs ahead of the store
            raise
        self._notify(order, event)

    def _notify(self, order: Order, event: OrderEvent) -> None:
        # inside `apply_batched`, observers hear of an event only once its transaction commits
        if self._deferred is not None:
            self._deferred.append((order, event))
        else:
            self.observer.on_event(order, event, len(self.live))

    # --- the user-data stream -------------------------------------------------------------------

    def on_execution_report(self, report: ExecutionReport) -> None:
        """Apply a pushed order update (idempotent: a fill already known is ignored)."""
        order = self.live.get(report.client_order_id) or self.store.get_order(
            report.client_order_id
        )
        placed_by_exchange = False
        if order is None and getattr(report, "by_exchange", False):
            order = self.book_exchange_order(report)
            placed_by_exchange = order is not None
        if order is None:
            log.info("execution report for an order not ours", cid=report.client_order_id)
            return
        self.live.setdefault(order.client_order_id, order)
        ts = report.event_ms * 1_000_000
        fills = [report.fill] if report.fill is not None else []
        self._apply_update(
            order, report.status, ts, report.exchange_order_id, fills, report.reject_reason
        )
        if order.status.is_terminal:
            self.live.pop(order.client_order_id, None)
        if placed_by_exchange and self.on_exchange_order is not None:
            self.on_exchange_order(order)

    def book_exchange_order(self, report: ExecutionReport) -> Order | None:
        """Record an order the exchange placed on the account (see the module docstring) as
        SUBMITTED, ready for the report's acceptance and fills: reason ``liquidation``,
        reduce-only, a market IOC (it takes the book), its quantity what the ledger holds on
        the other side of ``report.side`` (at least what the report says is filled), its
        strategy the one holding most of it (this manager's own when none does). None when
        neither the ledger nor the report gives a quantity (a later report books it)."""
        closes_long = report.side is OrderSide.SELL
        holders = sorted(
            (
                (abs(p.qty), strategy)
                for (symbol, strategy), p in self.positions.items()
                if symbol == report.symbol and p.qty and (p.qty > 0) == closes_long
            ),
            reverse=True,
        )
        qty = max(
            sum((q for q, _ in holders), Decimal(0)),
            report.cum_qty,
            report.fill.qty if report.fill is not None else Decimal(0),
        )
        if qty <= 0:
            log.warning(
                "an order of the exchange with nothing to close", cid=report.client_order_id
            )
            return None
        if len(holders) > 1:
            log.warning(
                "an order of the exchange closes several strategies' positions: booked to the "
                "largest",
                cid=report.client_order_id,
                strategies=[s for _, s in holders],
            )
        order = Order(
            client_order_id=report.client_order_id,
            symbol=report.symbol,
            side=report.side,
            type=OrderType.MARKET,
            qty=qty,
            time_in_force=TimeInForce.IOC,
            strategy=holders[0][1] if holders else self.strategy,
            ts_created=report.event_ms * 1_000_000 or now_ns(),
            reason=ExitReason.LIQUIDATION,
            reduce_only=True,
        )
        seq = self.take_seq() if self.take_seq is not None else self.store.next_seq(self.run_id)
        # intent and SUBMITTED in one commit; not told to observers: we sent nothing
        # (tessera_orders_submitted_total counts our requests)
        submitted = OrderEvent(OrderEventKind.SUBMITTED, order.ts_created)
        self.machine.apply(order, submitted)
        if not self.store.record_submission(order, self.run_id, seq, submitted):
            return self.store.get_order(report.client_order_id)
        log.error(
            "the exchange placed an order on the account (liquidation)",
            cid=order.client_order_id,
            symbol=order.symbol,
            side=order.side.value,
            qty=str(order.qty),
            strategy=order.strategy,
        )
        return order

    # --- recovery -------------------------------------------------------------------------------

    async def recover(self) -> RecoveryReport:
        """Reconcile every possibly-live order with the exchange (see the module docstring).

        One pass at a time: a caller that arrives during a pass waits for it, then runs its own.
        """
        async with self._recovering:
            return await self._recover()

    async def _recover(self) -> RecoveryReport:
        report = RecoveryReport()
        self.recovery_step = "reading open orders"
        for stored in self.store.open_orders():
            cid = stored.client_order_id
            if cid in self._submitting:
                continue  # on its way to the exchange: not "never sent"; its answer settles it
            # the object the REST answer and the user-data stream update, if this process sent it
            order = self.live.get(cid, stored)
            report.checked += 1
            seen = (order.status, order.filled_qty)
            self.recovery_step = f"querying {cid}"
            try:
                found = await self.exchange.query(order.symbol, cid)
            except OutcomeUnknownError:
                if self._current(cid, seen) is not None:
                    report.unresolved.append(cid)
                else:
                    report.moved.append(cid)
                continue
            current = self._current(cid, seen)
            if current is None:
                report.moved.append(cid)  # newer news arrived while we asked: not acted on
                continue
            order = current
            if found is None:
                sent_ns = order.ts_last or order.ts_created
                if order.status is OrderStatus.SUBMITTED and now_ns() - sent_ns < self.settle_ns:
                    report.settling.append(cid)  # may still be processed
                    continue
                if order.status in (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED):
                    self._event(
                        order,
                        OrderEvent(
                            OrderEventKind.CANCELED, now_ns(), reason="never reached the exchange"
                        ),
                    )
                    report.closed_unsent.append(cid)
                else:
                    report.unresolved.append(cid)
                    log.error("a live order is unknown to the exchange", cid=cid)
                continue
            before = (order.status, order.filled_qty)
            self.recovery_step = f"fetching the trades of {cid}"
            fills = await self._fills_of(order, found)
            # applying the exchange's answer is monotonic (fills once by trade id, states only
            # forward), so it is safe after the await — but on the order as it is now
            order = self.live.get(cid) or self.store.get_order(cid) or order
            n_before = len(order.trade_ids)
            self.apply(order, found, fills)
            report.fills_imported += len(order.trade_ids) - n_before
            if (order.status, order.filled_qty) != before:
                report.updated.append(cid)
        self.recovery_step = ""
        log.info(
            "recovery done",
            checked=report.checked,
            updated=len(report.updated),
            closed_unsent=len(report.closed_unsent),
            fills_imported=report.fills_imported,
            unresolved=len(report.unresolved),
            moved=len(report.moved),
        )
        return report

    def on_its_way(self, cid: str) -> bool:
        """Whether ``cid``'s submit is still awaiting its answer (recovery leaves it alone)."""
        return cid in self._submitting

    def _current(self, cid: str, seen: tuple[OrderStatus, Decimal]) -> Order | None:
        """The order as it is now, after an ``await``; None if it moved since ``seen`` (the
        submit's answer or the stream told us more than the query we awaited), if it is on its
        way to the exchange, or if it is no longer open."""
        if cid in self._submitting:
            return None
        order = self.live.get(cid) or self.store.get_order(cid)
        if order is None or (order.status, order.filled_qty) != seen:
            return None
        if order.status.is_terminal:
            return None
        return order

    async def _fills_of(self, order: Order, found: ExchangeOrder) -> list[Fill]:
        if found.filled_qty == Decimal(0):
            return []
        trades = await self.exchange.my_trades(order.symbol)
        return [
            dataclasses.replace(t.fill, client_order_id=order.client_order_id)
            for t in trades
            if t.exchange_order_id == found.exchange_order_id
        ]
