"""`HaltGuard`: the kill-switch's hands in the live bot — halts persisted, followed and acted on.

The risk engine decides (pure: `RiskEngine.update_equity` returns actions); this carries the
decision out and keeps it across processes:

* a halt is saved to the store (account ``main``) the moment it happens and restored at start,
  so a restarted bot does not resume trading a halted account;
* halts set from outside — ``tessera risk halt``, another bot, a failed reconciliation — are
  followed within a second (`watch`); a halt cleared by a person resumes trading;
* the actions: cancel every open order, then flatten every position with reduce-only market
  orders (reason ``kill_switch``) through the same `OrderGateway` as every other order — the
  risk engine lets reducing orders through a halt, and the sizing module caps a spot sell at
  what the account holds (a buy's commission paid in the base asset leaves less).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tessera.control.events import EventKind
from tessera.execution.filters import SymbolFilters
from tessera.execution.gateway import OrderGateway
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.manager import OrderManager
from tessera.execution.orders import ExitReason
from tessera.execution.persistence import ExecutionStore
from tessera.execution.sizing import flatten_orders
from tessera.live.account import AccountBook
from tessera.logging import get_logger
from tessera.risk.engine import HaltRecord, RiskAction, RiskEngine

log = get_logger(__name__)
ZERO = Decimal(0)
ACCOUNT = "main"  # the account name `tessera risk halt|reset|status` use


class HaltGuard:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        risk: RiskEngine,
        manager: OrderManager,
        gateway: OrderGateway,
        account: AccountBook,
        filters: Mapping[str, SymbolFilters],
        ids: ClientOrderIdGenerator,
        equity: Callable[[], Decimal],
        failed: Callable[[str, Exception], None],
        order_lock: asyncio.Lock,
        publish: Callable[[EventKind, Mapping[str, Any]], object] | None = None,
    ) -> None:
        self.store = store
        self.risk = risk
        self.manager = manager
        self.gateway = gateway
        self.account = account
        self.filters = filters
        self.ids = ids
        self.equity = equity
        self.failed = failed
        self.order_lock = order_lock
        self.seen: float | None = None  # ts of the halt this process knows of
        # the bot's event hub: every halt, kill-switch and reset this process acts on
        self.publish = publish

    def _tell(self, kind: EventKind, reason: str, ts: int, **extra: Any) -> None:
        if self.publish is not None:
            self.publish(kind, {"reason": reason, "ts": ts, **extra})

    def restore(self) -> None:
        halt = self.store.load_halt(ACCOUNT)
        if halt is not None:
            record = HaltRecord(str(halt["reason"]), int(halt["ts"]), float(halt["drawdown_pct"]))
            self.risk.restore(record, Decimal(str(halt["equity_peak"] or 0)))
            self.seen = float(halt["ts"])
            log.error("trading is halted (persisted)", reason=record.reason)

    async def on_actions(self, actions: Sequence[RiskAction]) -> None:
        """The risk engine halted trading (the kill-switch): persist, then act."""
        halt = self.risk.halt
        if halt is None:
            return
        log.error("kill-switch engaged", reason=halt.reason, drawdown_pct=halt.drawdown_pct)
        self.store.save_halt(
            ACCOUNT, halt.reason, halt.ts, halt.drawdown_pct, self.risk.equity_peak
        )
        self.seen = float(halt.ts)
        kind: EventKind = "kill_switch" if halt.reason == "kill_switch" else "halt"
        limit = self.risk.config.max_drawdown_pct
        self._tell(
            kind, halt.reason, halt.ts, drawdown_pct=halt.drawdown_pct, max_drawdown_pct=limit
        )
        await self.carry_out(actions)

    def halt_now(
        self, reason: str, *, flatten: bool | None = None, by: str | None = None
    ) -> list[RiskAction]:
        """Halt trading from inside this process for ``reason`` (a margin call), persisted as
        every halt, at once; returns what `carry_out` is to do: cancel the open orders and,
        when ``flatten`` (default: ``risk.flatten_on_halt``, as the kill-switch does), close
        every position reduce-only. An account already halted keeps its first halt: [].
        ``by`` names the person (an operator's halt), for the event."""
        if self.risk.halt is not None:
            return []
        ts = time.time_ns()
        self.seen = float(ts)  # this process's own halt: the watch does not act on it again
        actions = self.risk.manual_halt(reason, ts)
        if self.risk.config.flatten_on_halt if flatten is None else flatten:
            actions.append(RiskAction.FLATTEN)
        log.error("trading halted", reason=reason, flatten=RiskAction.FLATTEN in actions)
        self.store.save_halt(ACCOUNT, reason, ts, self.risk.drawdown_pct, self.risk.equity_peak)
        extra = {"by": by} if by else {}
        self._tell("halt", reason, ts, drawdown_pct=self.risk.drawdown_pct, **extra)
        return actions

    def reset_now(self, by: str) -> bool:
        """Re-enable trading from inside this process, as ``tessera risk reset --by <by>``
        does (the halt cleared in the store with ``reset by <by>`` in the risk events) and at
        once (the equity peak restarts from the current equity). False when not halted.

        ``seen`` stays the cleared halt's time: a `watch` read still in flight that saw the
        halt must not take it for a new one."""
        if self.risk.halt is None:
            return False
        self.store.clear_halt(ACCOUNT, by=f"reset by {by}")
        self.risk.reset(self.equity())
        log.warning("trading re-enabled", by=by)
        self._tell("reset", f"reset by {by}", time.time_ns(), by=by)
        return True

    async def carry_out(self, actions: Sequence[RiskAction]) -> None:
        async with self.order_lock:  # not between a signal's intent and its send
            if RiskAction.CANCEL_ALL in actions:
                for order in [o for o in self.manager.live.values() if o.status.is_open]:
                    try:
                        await self.gateway.cancel(order)
                    except Exception as exc:
                        log.error("cancel failed", cid=order.client_order_id, error=str(exc)[:200])
            if RiskAction.FLATTEN in actions:
                await self._flatten()

    async def _flatten(self) -> None:
        positions = {k: p.qty for k, p in self.manager.positions.items() if p.qty}
        held = {a: max(q, ZERO) for a, q in self.account.balances.items()}
        for step in flatten_orders(positions, self.filters, held, ExitReason.KILL_SWITCH):
            signal_id = f"flatten:{step.strategy}:{step.symbol}:{time.time_ns()}"
            order = step.order(self.ids.next(), signal_id)
            try:
                placed = await self.gateway.submit(order)
            except Exception as exc:
                log.error("flatten failed", symbol=step.symbol, error=str(exc)[:200])
                continue
            if placed.reject_reason:
                log.error("flatten failed", symbol=step.symbol, error=placed.reject_reason[:200])

    async def watch(self) -> None:
        """Follow halts set from outside (`tessera risk halt`, another bot, reconciliation)."""
        while True:
            await asyncio.sleep(1.0)
            read_at = time.time_ns()
            try:
                halt = await asyncio.to_thread(self.store.load_halt, ACCOUNT)
            except Exception as exc:  # the database is down: the order path refuses anyway
                self.failed("halt watch", exc)
                continue
            if halt is not None and self.seen != float(halt["ts"]):
                self.seen = float(halt["ts"])
                actions = self.risk.manual_halt(str(halt["reason"]), int(halt["ts"]))
                self._tell("halt", str(halt["reason"]), int(halt["ts"]), source="store")
                await self.carry_out(actions)
            # "no halt" only clears a halt that was there before the read: the kill-switch may
            # have fired (and saved its halt) while the read was in flight
            elif halt is None and self.risk.halt is not None and self.risk.halt.ts < read_at:
                log.warning("halt cleared by a person; trading resumes")
                self.seen = None
                self.risk.reset(self.equity())
                self._tell("reset", "halt cleared in the store", time.time_ns(), source="store")
