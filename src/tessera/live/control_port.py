"""`BotControl`: the running bot as the control API and console see it (`ControlPort`).

Reads come from the bot's own objects — the order manager's positions and live orders, the
account book, the last prices, the risk engine, the strategies' guards, the feed's event times —
and from the store for history (on a worker thread: a query must not stall the event loop).
Actions go through the objects the bot already trades with, so an operator's command obeys the
same rules as everything else:

* halt: `HaltGuard.halt_now` (persisted in ``risk_state`` like ``tessera risk halt``, so a
  restarted bot stays halted; open orders cancelled, positions flattened when
  ``risk.flatten_on_halt``);
* reset: `HaltGuard.reset_now`, as ``tessera risk reset --by <name>``;
* pause/resume: the strategy's `StrategyGuard` (no hook runs, so it decides nothing and places
  nothing), persisted in ``strategy_pauses`` until resumed;
* cancel: `OrderGateway.cancel` under the bot's order lock, as the halt's cancels;
* close a position: a reduce-only MARKET order (reason ``manual``) through the `OrderGateway`
  — risk checks, exchange filters, rate limiter, order manager — sized as the kill-switch's
  flatten sizes it (a spot sell capped at what the account holds).

Every action, whatever its outcome (done, refused, failed), is recorded in ``control_actions``
(who, role, how, from where, when, why), logged, and published on the bot's `EventHub` as a
``control_action`` event before it returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tessera import __version__
from tessera.control.events import EventHub
from tessera.control.logbuffer import BUFFER, LogBuffer
from tessera.control.port import Actor, ControlError
from tessera.control.schemas import (
    ActionOut,
    ActionRecord,
    Balance,
    Balances,
    EquityPoint,
    FillOut,
    HaltOut,
    LogLine,
    MarketDataStatus,
    OrderOut,
    Page,
    PositionOut,
    RiskOut,
    Status,
    StrategyPnl,
    StrategyStatus,
)
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Order,
    OrderSide,
    OrderStatus,
)
from tessera.execution.persistence import StoredFill
from tessera.execution.sizing import flatten_orders
from tessera.logging import get_logger

if TYPE_CHECKING:
    from tessera.live.bot import TradingBot

log = get_logger(__name__)
ZERO = Decimal(0)
MAX_PAGE = 1_000
EQUITY_SAMPLE_S = 5.0


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _money(value: Decimal) -> str:
    return format(value, "f")


# --- events: what the bot publishes on its hub --------------------------------------------------


def order_data(order: Order) -> dict[str, Any]:
    """An order's state as an ``order`` event's body (decimal strings)."""
    return {
        "cid": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "status": order.status.value,
        "qty": _money(order.qty),
        "filled": _money(order.filled_qty),
        "price": _dec(order.price),
        "strategy": order.strategy,
        "reason": order.reason.value,
    }


def fill_data(order: Order, fill: Fill) -> dict[str, Any]:
    """A fill as a ``fill`` event's body."""
    return {
        "cid": fill.client_order_id,
        "trade_id": fill.trade_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "qty": _money(fill.qty),
        "price": _money(fill.price),
        "fee": _money(fill.fee),
        "fee_asset": fill.fee_asset,
        "strategy": order.strategy,
        "reason": order.reason.value,
    }


def order_out(order: Order) -> OrderOut:
    return OrderOut(
        client_order_id=order.client_order_id,
        exchange_order_id=order.exchange_order_id,
        symbol=order.symbol,
        strategy=order.strategy,
        side=order.side.value,
        type=order.type.value,
        status=order.status.value,
        qty=_money(order.qty),
        filled_qty=_money(order.filled_qty),
        price=_dec(order.price),
        stop_price=_dec(order.stop_price),
        reduce_only=order.reduce_only,
        reason=order.reason.value,
        ts_created=order.ts_created,
    )


def fill_out(stored: StoredFill) -> FillOut:
    f = stored.fill
    return FillOut(
        trade_id=f.trade_id,
        client_order_id=f.client_order_id,
        symbol=f.symbol,
        strategy=f.strategy,
        side=f.side.value,
        qty=_money(f.qty),
        price=_money(f.price),
        fee=_money(f.fee),
        fee_asset=f.fee_asset,
        liquidity=f.liquidity.value,
        ts=f.ts_event,
    )


def _page_bounds(limit: int, offset: int) -> tuple[int, int]:
    if limit < 1 or limit > MAX_PAGE:
        raise ControlError(422, f"limit must be between 1 and {MAX_PAGE}; got {limit}")
    if offset < 0:
        raise ControlError(422, f"offset must be 0 or more; got {offset}")
    return limit, offset


class BotControl:
    """`ControlPort` over a `TradingBot` (see the module docstring)."""

    def __init__(self, bot: TradingBot, logs: LogBuffer = BUFFER) -> None:
        self.bot = bot
        self.logs = logs
        self.started_ns = time.time_ns()

    @property
    def hub(self) -> EventHub:
        return self.bot.hub

    # --- reads -----------------------------------------------------------------------------

    def status(self) -> Status:
        bot = self.bot
        now = time.time_ns()
        trading: Any
        if bot.stopping.is_set():
            trading = "stopping"
        elif getattr(bot, "risk", None) is not None and bot.risk.halt is not None:
            trading = "halted"
        elif bot.warming:
            trading = "warming_up"
        else:
            trading = "trading"
        market = []
        for sym in bot.symbols:
            seen = bot._event_ts.get(sym)
            last = (seen[1] or seen[0]) if seen else None
            market.append(
                MarketDataStatus(
                    symbol=sym,
                    last_event_ns=last,
                    age_s=round((now - last) / 1e9, 3) if last else None,
                )
            )
        return Status(
            mode=bot.o.mode,
            venue=bot.o.exchange_id,
            run_id=bot.o.run_id,
            version=__version__,
            trading=trading,
            ready=bot.health.readiness()[0],  # what /readyz answers
            started_ns=self.started_ns,
            uptime_s=round((now - self.started_ns) / 1e9, 3),
            symbols=list(bot.symbols),
            strategies=[self._strategy_status(sid) for sid in bot.guards],
            market_data=market,
        )

    def _strategy_status(self, sid: str) -> StrategyStatus:
        guard = self.bot.guards[sid]
        if guard.held is not None:
            return StrategyStatus(
                strategy=sid,
                state="paused",
                paused_by=guard.held.by,
                paused_reason=guard.held.reason,
                errors=guard.errors,
            )
        return StrategyStatus(
            strategy=sid,
            state="paused_by_errors" if guard.paused else "running",
            errors=guard.errors,
        )

    def balances(self) -> Balances:
        """Each asset the account holds: what open orders hold of it is ``locked`` (a buy
        holds its quote amount, a sell its base quantity), the rest ``free``."""
        bot = self.bot
        locked: dict[str, Decimal] = {}
        for order in list(bot.manager.live.values()):
            f = bot.filters.get(order.symbol)
            if f is None or not order.status.is_open:
                continue
            left = order.qty - order.filled_qty
            if order.side is OrderSide.SELL:
                locked[f.base_asset] = locked.get(f.base_asset, ZERO) + left
            else:
                price = order.price or bot.last_prices.get(order.symbol) or ZERO
                locked[f.quote_asset] = locked.get(f.quote_asset, ZERO) + left * price
        assets = []
        for asset, total in sorted(bot.account.balances.items()):
            held = min(locked.get(asset, ZERO), max(total, ZERO))
            assets.append(Balance(asset=asset, free=_money(total - held), locked=_money(held)))
        return Balances(quote_asset=bot.o.quote_asset, equity=_money(bot.equity()), assets=assets)

    def positions(self) -> list[PositionOut]:
        out = []
        prices = self.bot.last_prices
        for (sym, strat), p in sorted(self.bot.manager.positions.items()):
            if not p.qty:
                continue
            mark = prices.get(sym)
            out.append(
                PositionOut(
                    symbol=sym,
                    strategy=strat,
                    qty=_money(p.qty),
                    entry_price=_money(p.avg_price),
                    mark_price=_dec(mark),
                    unrealized_pnl=_dec(p.unrealized_pnl(mark)) if mark is not None else None,
                )
            )
        return out

    def open_orders(self) -> list[OrderOut]:
        live = [o for o in list(self.bot.manager.live.values()) if o.status.is_open]
        return [order_out(o) for o in sorted(live, key=lambda o: o.ts_created)]

    async def orders(
        self,
        *,
        status: str | None = None,
        symbol: str | None = None,
        strategy: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[OrderOut]:
        limit, offset = _page_bounds(limit, offset)
        if status and status.lower() != "open" and status.upper() not in OrderStatus.__members__:
            known = ", ".join(["open", *(s.value for s in OrderStatus)])
            raise ControlError(422, f"unknown order status {status!r}; use one of {known}")
        rows, total = await asyncio.to_thread(
            self.bot.store.orders_page,
            status=status,
            symbol=symbol,
            strategy=strategy,
            limit=limit,
            offset=offset,
        )
        return Page[OrderOut](
            items=[order_out(o) for o in rows], total=total, limit=limit, offset=offset
        )

    async def fills(
        self,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        since_ns: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[FillOut]:
        limit, offset = _page_bounds(limit, offset)
        rows, total = await asyncio.to_thread(
            self.bot.store.fills_page,
            symbol=symbol,
            strategy=strategy,
            since=since_ns,
            limit=limit,
            offset=offset,
        )
        return Page[FillOut](
            items=[fill_out(f) for f in rows], total=total, limit=limit, offset=offset
        )

    async def pnl(self) -> list[StrategyPnl]:
        """Per strategy: realized PnL net of fees and the fees (the ledger's positions, as
        `Position` books them from the fills, over every run on this store), unrealized at the
        last price, and the number of fills."""
        counts = await asyncio.to_thread(self.bot.store.fill_counts)
        realized: dict[str, Decimal] = dict.fromkeys(self.bot.guards, ZERO)
        fees = dict(realized)
        unrealized = dict(realized)
        for (sym, strat), p in list(self.bot.manager.positions.items()):
            realized[strat] = realized.get(strat, ZERO) + p.realized_pnl
            fees[strat] = fees.get(strat, ZERO) + p.fees_quote
            mark = self.bot.last_prices.get(sym)
            if p.qty and mark is not None:
                unrealized[strat] = unrealized.get(strat, ZERO) + p.unrealized_pnl(mark)
        return [
            StrategyPnl(
                strategy=strat,
                realized_net=_money(realized[strat] - fees.get(strat, ZERO)),
                fees=_money(fees.get(strat, ZERO)),
                unrealized=_money(unrealized.get(strat, ZERO)),
                trades=counts.get(strat, 0),
            )
            for strat in sorted(realized)
        ]

    async def equity_history(
        self, *, since_ns: int | None = None, limit: int = 1_000
    ) -> list[EquityPoint]:
        if limit < 1 or limit > 100_000:
            raise ControlError(422, f"limit must be between 1 and 100000; got {limit}")
        rows = await asyncio.to_thread(self.bot.store.equity_history, since_ns, limit)
        return [EquityPoint(ts=ts, equity=_money(eq), drawdown_pct=dd) for ts, eq, dd in rows]

    def risk(self) -> RiskOut:
        risk = self.bot.risk
        halt = risk.halt
        equity = risk.equity if risk.equity is not None else self.bot.equity()
        return RiskOut(
            state="halted" if halt is not None else "trading",
            halt=(
                HaltOut(reason=halt.reason, ts=halt.ts, drawdown_pct=halt.drawdown_pct)
                if halt is not None
                else None
            ),
            equity=_money(equity),
            equity_peak=_money(risk.equity_peak),
            drawdown_pct=risk.drawdown_pct,
            max_drawdown_pct=risk.config.max_drawdown_pct,
            limits={k: str(v) for k, v in risk.config.model_dump().items()},
        )

    def recent_logs(self, limit: int = 200, level: str | None = None) -> list[LogLine]:
        try:
            lines = self.logs.recent(limit, level)
        except ValueError as exc:
            raise ControlError(422, str(exc)) from None
        return [
            LogLine(ts=r.ts, level=r.level, event=r.event, logger=r.logger, fields=dict(r.fields))
            for r in lines
        ]

    async def actions(self, *, limit: int = 100, offset: int = 0) -> Page[ActionRecord]:
        limit, offset = _page_bounds(limit, offset)
        rows, total = await asyncio.to_thread(self.bot.store.list_actions, limit, offset)
        items = [
            ActionRecord(
                id=int(r["id"]),
                action=r["action"],
                target=r["target"],
                actor=r["actor"],
                reason=r["reason"],
                ts=int(r["ts"]),
                outcome=r["outcome"],
                detail=r["detail"] or "",
                role=r["role"],
                via=r["via"],
            )
            for r in rows
        ]
        return Page[ActionRecord](items=items, total=total, limit=limit, offset=offset)

    async def summary(self) -> Mapping[str, str]:
        """The notifier's daily summary: equity, drawdown, state, and each strategy's PnL."""
        out = {
            "equity": _money(self.bot.equity()),
            "drawdown_pct": f"{self.bot.risk.drawdown_pct:.2f}",
            "state": "halted" if self.bot.risk.halt is not None else "trading",
        }
        for p in await self.pnl():
            out[f"{p.strategy} realized_net"] = p.realized_net
            out[f"{p.strategy} unrealized"] = p.unrealized
            out[f"{p.strategy} trades"] = str(p.trades)
        return out

    # --- actions ---------------------------------------------------------------------------

    async def _record(
        self,
        actor: Actor,
        action: str,
        target: str | None,
        reason: str,
        outcome: str,
        detail: str = "",
    ) -> ActionOut:
        ts = time.time_ns()
        try:
            row_id = await asyncio.to_thread(
                self.bot.store.record_action,
                actor=actor.name,
                role=actor.role,
                via=actor.via,
                address=actor.address,
                action=action,
                target=target,
                reason=reason,
                outcome=outcome,
                detail=detail,
                ts=ts,
            )
        except Exception as exc:  # the action stands; the log line below is its record
            log.error("control action not stored", action=action, error=str(exc)[:300])
            row_id = 0
        out = ActionOut(
            id=row_id,
            action=action,
            target=target,
            actor=actor.name,
            reason=reason,
            ts=ts,
            outcome=outcome,
            detail=detail,
        )
        (log.warning if outcome == "done" else log.error)(
            "control action",
            action=action,
            target=target,
            actor=actor.name,
            role=actor.role,
            via=actor.via,
            address=actor.address,
            reason=reason[:300],
            outcome=outcome,
            detail=detail[:300],
        )
        self.hub.publish(
            "control_action", {**out.model_dump(), "role": actor.role, "via": actor.via}
        )
        return out

    async def _refuse(
        self, actor: Actor, action: str, target: str | None, reason: str, status: int, why: str
    ) -> ControlError:
        await self._record(actor, action, target, reason, "refused", why)
        return ControlError(status, why)

    async def _check(self, actor: Actor, action: str, target: str | None, reason: str) -> None:
        if not actor.can_operate:
            raise await self._refuse(
                actor, action, target, reason, 403, f"{actor.name} has a read-only role"
            )
        if not reason.strip():
            raise ControlError(422, "a reason is required (it is kept with who and when)")

    async def halt(self, actor: Actor, reason: str) -> ActionOut:
        await self._check(actor, "halt", None, reason)
        halt = self.bot.risk.halt
        if halt is not None:
            raise await self._refuse(
                actor, "halt", None, reason, 409, f"trading is already halted: {halt.reason}"
            )
        text = f"manual: {reason} (by {actor.name} via {actor.via})"
        try:
            actions = self.bot.halt.halt_now(text, by=actor.name)
        except Exception as exc:
            await self._record(actor, "halt", None, reason, "failed", str(exc)[:300])
            raise ControlError(503, "the halt could not be stored; see the log") from None
        await self.bot.halt.carry_out(actions)
        said = {"cancel_all": "open orders cancelled", "flatten": "positions closed"}
        done = ", ".join(said.get(a.value, a.value.replace("_", " ")) for a in actions)
        return await self._record(actor, "halt", None, reason, "done", done or "halted")

    async def reset(self, actor: Actor, reason: str) -> ActionOut:
        await self._check(actor, "reset", None, reason)
        if self.bot.risk.halt is None:
            raise await self._refuse(actor, "reset", None, reason, 409, "trading is not halted")
        previous = self.bot.risk.halt.reason
        try:
            self.bot.halt.reset_now(actor.name)
        except Exception as exc:
            await self._record(actor, "reset", None, reason, "failed", str(exc)[:300])
            raise ControlError(503, "the reset could not be stored; see the log") from None
        return await self._record(actor, "reset", None, reason, "done", f"was: {previous}"[:300])

    async def pause(self, actor: Actor, strategy: str, reason: str) -> ActionOut:
        await self._check(actor, "pause", strategy, reason)
        if strategy not in self.bot.guards:
            raise await self._refuse(
                actor, "pause", strategy, reason, 404, f"no strategy {strategy!r} runs here"
            )
        guard = self.bot.guards[strategy]
        if guard.held is not None:
            raise await self._refuse(
                actor, "pause", strategy, reason, 409, f"already paused by {guard.held.by}"
            )
        ts = time.time_ns()
        await asyncio.to_thread(self.bot.store.save_pause, strategy, actor.name, reason, ts)
        guard.hold(actor.name, reason, ts)
        self.hub.publish(
            "strategy_paused", {"strategy": strategy, "by": actor.name, "reason": reason}
        )
        return await self._record(actor, "pause", strategy, reason, "done")

    async def resume(self, actor: Actor, strategy: str, reason: str) -> ActionOut:
        await self._check(actor, "resume", strategy, reason)
        if strategy not in self.bot.guards:
            raise await self._refuse(
                actor, "resume", strategy, reason, 404, f"no strategy {strategy!r} runs here"
            )
        guard = self.bot.guards[strategy]
        if guard.held is None and not guard.paused:
            raise await self._refuse(
                actor, "resume", strategy, reason, 409, f"strategy {strategy!r} is not paused"
            )
        detail = "was paused by errors" if guard.held is None else f"paused by {guard.held.by}"
        await asyncio.to_thread(self.bot.store.clear_pause, strategy)
        guard.release()
        self.hub.publish(
            "strategy_resumed", {"strategy": strategy, "by": actor.name, "reason": reason}
        )
        return await self._record(actor, "resume", strategy, reason, "done", detail)

    async def cancel(self, actor: Actor, client_order_id: str, reason: str) -> ActionOut:
        await self._check(actor, "cancel", client_order_id, reason)
        bot = self.bot
        async with bot.executor.lock:  # not between a signal's intent and its send
            order = bot.manager.live.get(client_order_id)
            if order is None:
                stored = await asyncio.to_thread(bot.store.get_order, client_order_id)
                if stored is None:
                    raise await self._refuse(
                        actor, "cancel", client_order_id, reason, 404, "no such order"
                    )
                order = stored
            if not order.status.is_open:
                raise await self._refuse(
                    actor,
                    "cancel",
                    client_order_id,
                    reason,
                    409,
                    f"the order is {order.status.value}, not open",
                )
            try:
                after = await bot.gateway.cancel(order)
            except Exception as exc:
                await self._record(actor, "cancel", client_order_id, reason, "failed", str(exc))
                raise ControlError(502, f"the cancel failed: {str(exc)[:200]}") from None
        outcome = (
            "done"
            if after.status in (OrderStatus.CANCELED, OrderStatus.PENDING_CANCEL)
            else "failed"
        )
        return await self._record(
            actor, "cancel", client_order_id, reason, outcome, f"status {after.status.value}"
        )

    async def close_position(
        self, actor: Actor, symbol: str, strategy: str, reason: str
    ) -> ActionOut:
        target = f"{symbol}/{strategy}"
        await self._check(actor, "close", target, reason)
        bot = self.bot
        symbol = symbol.upper()
        if strategy not in bot.guards:
            raise await self._refuse(
                actor, "close", target, reason, 404, f"no strategy {strategy!r} runs here"
            )
        if symbol not in bot.filters:
            raise await self._refuse(
                actor, "close", target, reason, 404, f"this bot does not trade {symbol}"
            )
        async with bot.executor.lock:
            position = bot.manager.positions.get((symbol, strategy))
            qty = position.qty if position is not None else ZERO
            held = {a: max(q, ZERO) for a, q in bot.account.balances.items()}
            steps = flatten_orders(
                {(symbol, strategy): qty}, bot.filters, None if bot.perp else held,
                ExitReason.MANUAL,
            )  # fmt: skip
            if not steps:
                why = "the position is flat" if not qty else "the position is below one lot"
                raise await self._refuse(actor, "close", target, reason, 409, why)
            signal_id = f"manual:{strategy}:{symbol}:{time.time_ns()}"
            order = steps[0].order(bot.ids.next(), signal_id)
            try:
                placed = await bot.gateway.submit(order)
            except Exception as exc:
                await self._record(actor, "close", target, reason, "failed", str(exc)[:300])
                raise ControlError(502, f"the close order failed: {str(exc)[:200]}") from None
        detail = f"{placed.client_order_id} {placed.side.value} {placed.qty} {placed.status.value}"
        if placed.status is OrderStatus.REJECTED:
            detail += f": {placed.reject_reason or 'rejected'}"
            await self._record(actor, "close", target, reason, "failed", detail[:500])
            raise ControlError(409, f"the close order was refused: {placed.reject_reason}")
        return await self._record(actor, "close", target, reason, "done", detail)


async def sample_equity(bot: TradingBot, interval_s: float = EQUITY_SAMPLE_S) -> None:
    """Every ``interval_s`` while the bot runs: the account's equity and drawdown published
    (``equity``) and stored (``equity_samples``, on a worker thread — off the trading path).
    Nothing before the first price: there is no equity to speak of yet."""
    while True:
        await asyncio.sleep(interval_s)
        if not bot.last_prices:
            continue
        ts = time.time_ns()
        equity = bot.equity()
        dd = bot.risk.drawdown_pct
        bot.hub.publish("equity", {"equity": _money(equity), "drawdown_pct": dd}, ts=ts)
        try:
            await asyncio.to_thread(bot.store.record_equity, ts, bot.o.run_id, equity, dd)
        except Exception as exc:  # the database is down: the order path deals with that
            bot._failed("equity sample", exc)
