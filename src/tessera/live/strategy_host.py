"""`StrategyHost`: the bot's strategies — built, isolated, fed, and kept across restarts.

It owns everything per strategy: the strategy object, its `LiveContext`, its `StrategyGuard`
(an error is logged, counted, and pauses the strategy after ``max_errors`` in a row; the others
trade on), which market events it subscribes to (defining ``on_trade`` / ``on_book`` is the
subscription), and its state across restarts (`tessera.strategies.state`: ``ctx.state`` and the
order helpers' brackets and trailing stops, written when they changed after each bar, each fill
and at stop, given back before ``on_start``).

Every event reaches a strategy in the order the backtest delivers it: the context's order
helpers first (a trailing stop follows the bar; a filled bracket entry places its exits), then
the strategy's own hook; ``on_fill`` before ``on_order`` for a fill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from tessera.config.models import StrategyRef
from tessera.execution.orders import Fill, Order
from tessera.execution.persistence import ExecutionStore
from tessera.live.context import LiveContext, LiveHost
from tessera.logging import get_logger
from tessera.strategies.base import Bar, BookTop, Strategy, TradeTick, strategy_class
from tessera.strategies.guard import StrategyGuard
from tessera.strategies.state import decode_state, encode_state

log = get_logger(__name__)


class StrategyStartError(ValueError):
    """A strategy cannot be built or its stored state cannot be read: the bot refuses to start."""


def _raise(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


def _defines(strategy: Strategy, hook: str) -> bool:
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)


class StrategyHost:
    def __init__(
        self,
        refs: Sequence[StrategyRef],
        symbols: Sequence[str],
        host: LiveHost,
        store: ExecutionStore,
        max_errors: int,
        on_paused: Callable[[Strategy, str], None],
        failed: Callable[[str, Exception], None],
        can_write: Callable[[], bool],
    ) -> None:
        self.store = store
        self.failed = failed
        self.can_write = can_write
        self.strategies: list[Strategy] = []
        self.contexts: dict[str, LiveContext] = {}
        self.guards: dict[str, StrategyGuard] = {}
        for ref in refs:
            sid = ref.name if ref.name not in self.contexts else f"{ref.name}-{len(self.contexts)}"
            try:
                strat = strategy_class(ref.name)(list(symbols), strategy_id=sid, **ref.params)
            except (KeyError, ValueError, TypeError) as exc:
                raise StrategyStartError(f"strategy {ref.name}: {exc}") from exc
            self.strategies.append(strat)
            self.contexts[sid] = LiveContext(host, sid)
            self.guards[sid] = StrategyGuard(strat, max_errors, on_paused)
        # a strategy subscribes to trades or book tops by defining on_trade / on_book
        self._subscribers = {
            hook: [s for s in self.strategies if _defines(s, hook)]
            for hook in ("on_trade", "on_book")
        }
        self._saved: dict[str, str] = {}  # strategy id -> the state text last written
        self.started = False
        self.stopped = False

    def __iter__(self) -> Iterator[Strategy]:
        return iter(self.strategies)

    @property
    def warmup_bars(self) -> int:
        return max([s.warmup_bars for s in self.strategies] + [0])

    # --- state across restarts -------------------------------------------------------------------

    def restore(self) -> None:
        """Each strategy's ``ctx.state`` and order helpers as the last run left them."""
        for sid, ctx in self.contexts.items():
            text = self.store.load_strategy_state(sid)
            if text is None:
                continue
            try:
                data = decode_state(text)
                ctx.state = data.get("strategy", {})
                ctx._sdk_restore(data.get("helpers", {}))
            except (ValueError, KeyError, TypeError) as exc:
                raise StrategyStartError(
                    f"strategy {sid}: its stored state cannot be read ({exc}); "
                    "fix or delete its row of strategy_state to start it afresh"
                ) from exc
            self._saved[sid] = text
            log.info("strategy state restored", strategy_id=sid)
        self.restore_pauses()

    def restore_pauses(self) -> None:
        """The operators' pauses (``strategy_pauses``) as the last run left them: a strategy
        paused from the console stays paused across restarts until a person resumes it."""
        for sid, pause in self.store.load_pauses().items():
            guard = self.guards.get(sid)
            if guard is None:
                continue  # a strategy this bot does not run
            guard.hold(str(pause["by"]), str(pause["reason"]), int(pause["ts"]))
            log.warning("strategy paused by an operator", strategy_id=sid, by=pause["by"],
                        reason=str(pause["reason"])[:300])  # fmt: skip

    def save(self, sid: str) -> None:
        """Written when it changed (one small row per strategy)."""
        ctx = self.contexts.get(sid)
        if ctx is None or not self.can_write():
            return
        try:
            text = encode_state({"strategy": ctx.state, "helpers": ctx._sdk_snapshot()})
        except TypeError as exc:  # the strategy put something JSON cannot hold in ctx.state
            self.guards[sid].call("on_bar", fn=_raise(exc))
            return
        if text == self._saved.get(sid):
            return
        try:
            self.store.save_strategy_state(sid, text, time.time_ns())
        except Exception as exc:
            self.failed("saving strategy state", exc)
            return
        self._saved[sid] = text

    # --- events ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.started = True
        for sid, guard in self.guards.items():
            guard.call("on_start", self.contexts[sid])

    def stop(self) -> None:
        """``on_stop`` once, and only after ``on_start``; the state written last."""
        if self.stopped or not self.started:
            return
        self.stopped = True
        for sid, guard in self.guards.items():
            guard.call("on_stop", self.contexts[sid])
            self.save(sid)

    def on_bar(self, bar: Bar, warming: bool) -> None:
        for strat in self.strategies:  # each isolated: one strategy's error stops no other
            if strat.symbols and bar.symbol not in strat.symbols:
                continue
            sid = strat.strategy_id
            ctx, guard = self.contexts[sid], self.guards[sid]
            # the order helpers first (a trailing stop follows the bar), as in the backtest;
            # a warm-up bar sends nothing: a restored trail takes in its high only if it closed
            # after the trail's newest bar (the bot was down, or stopped as it arrived)
            helpers = ctx._sdk_catch_up if warming else ctx._sdk_on_bar
            guard.call("on_bar", bar, bar=bar, fn=helpers)
            guard.call("on_bar", bar, ctx, bar=bar)
            self.save(sid)

    def warmed_up(self) -> None:
        """Trading again after the warm-up: the trailing stops that rose with the bars they
        caught up on move now (`OrderHelpers._sdk_resume`)."""
        for sid, ctx in self.contexts.items():
            if self.guards[sid].call("on_bar", fn=ctx._sdk_resume):
                self.save(sid)

    def on_tick(self, hook: str, symbol: str, event: TradeTick | BookTop) -> None:
        """``on_trade``/``on_book`` of the strategies that define it."""
        for strat in self._subscribers.get(hook, ()):
            if not strat.symbols or symbol in strat.symbols:
                sid = strat.strategy_id
                self.guards[sid].call(hook, event, self.contexts[sid])

    def on_fill(self, order: Order, fill: Fill) -> None:
        ctx, guard = self.contexts.get(order.strategy), self.guards.get(order.strategy)
        if ctx is None or guard is None:
            return
        guard.call("on_fill", fill, fn=ctx._sdk_on_fill)
        guard.call("on_fill", fill, ctx)
        self.save(order.strategy)

    def on_order(self, order: Order) -> None:
        """A state change of one of its orders (a refusal before sending included)."""
        ctx, guard = self.contexts.get(order.strategy), self.guards.get(order.strategy)
        if ctx is None or guard is None:
            return
        ctx.forget(order.client_order_id)
        guard.call("on_order", order, fn=ctx._sdk_on_order)
        guard.call("on_order", order, ctx)
