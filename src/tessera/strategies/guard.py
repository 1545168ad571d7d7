"""Strategy code isolated from the system that runs it.

A strategy is user code: it can raise on any bar. In the backtest that ends the run with a
`StrategyError` naming the strategy, the hook, the bar and the line of the strategy's code that
raised — a backtest that skipped bars silently would report results it did not compute. In the
live bot one strategy's error must not stop the others (they share the bar, the account and
the process): `StrategyGuard` calls each hook, logs an error once per kind, counts every one
(``tessera_strategy_errors_total``), and pauses the strategy after ``max_consecutive_errors``
failures in a row (``tessera_strategy_paused``); the bot then ends non-zero. The idea is
freqtrade's ``strategy_wrapper``; the policy (count, pause, surface) is ours.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tessera import metrics
from tessera.logging import get_logger
from tessera.strategies.base import Bar, Strategy

log = get_logger(__name__)


def where_raised(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: the strategy's line, usually."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def describe_bar(bar: Bar | None) -> str:
    if bar is None:
        return "no bar"
    opened = datetime.fromtimestamp(bar.open_time / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{bar.symbol} bar opened {opened} UTC"


class StrategyError(RuntimeError):
    """A strategy raised: which one, in which hook, on which bar, and where in its code."""

    def __init__(self, strategy_id: str, hook: str, bar: Bar | None, error: BaseException) -> None:
        self.strategy_id = strategy_id
        self.hook = hook
        self.bar = bar
        self.error = error
        on_bar = f" on the {describe_bar(bar)}" if bar is not None else ""
        super().__init__(
            f"strategy {strategy_id!r} raised in {hook}{on_bar}: "
            f"{type(error).__name__}: {error} (at {where_raised(error)})"
        )


@dataclass(frozen=True, slots=True)
class OperatorHold:
    """A pause an operator asked for: who, why, when (ns)."""

    by: str
    reason: str
    ts: int


class StrategyGuard:
    """Calls one strategy's hooks for the live bot; see the module docstring."""

    def __init__(
        self,
        strategy: Strategy,
        max_consecutive_errors: int = 3,
        on_paused: Callable[[Strategy, str], None] | None = None,
    ) -> None:
        if max_consecutive_errors < 1:
            raise ValueError("max_consecutive_errors must be at least 1")
        self.strategy = strategy
        self.max_consecutive_errors = max_consecutive_errors
        self.on_paused = on_paused
        self.errors = 0
        self.consecutive = 0
        self.paused = False  # by its own errors (for the rest of the process)
        # by an operator (`hold`): who, why and when; persisted by the bot until resumed
        self.held: OperatorHold | None = None
        self._logged: set[tuple[str, str]] = set()
        metrics.STRATEGY_PAUSED.labels(strategy=strategy.strategy_id).set(0)
        for hook in metrics.STRATEGY_HOOKS:
            metrics.STRATEGY_ERRORS.labels(strategy=strategy.strategy_id, hook=hook)

    def call(
        self, hook: str, *args: Any, bar: Bar | None = None, fn: Callable[..., Any] | None = None
    ) -> bool:
        """Run ``strategy.<hook>(*args)`` — or ``fn(*args)``, code run for the strategy in that
        hook (the order helpers of its context) — False if the strategy is paused or raised."""
        if self.paused or self.held is not None:
            return False
        try:
            (fn or getattr(self.strategy, hook))(*args)
        except Exception as exc:
            self._failed(hook, bar, exc)
            return False
        if fn is None:  # only the strategy's own code succeeding ends a run of its errors
            self.consecutive = 0
        return True

    def hold(self, by: str, reason: str, ts: int) -> None:
        """An operator's pause: no hook is called (so the strategy decides and places nothing)
        until `release`. Apart from a pause by errors, which only a restart or `resume` ends."""
        self.held = OperatorHold(by, reason, ts)

    def release(self) -> None:
        """Resume after an operator's pause, or after a pause by errors (its error run
        starts again from nothing)."""
        self.held = None
        if self.paused:
            self.paused = False
            self.consecutive = 0
            metrics.STRATEGY_PAUSED.labels(strategy=self.strategy.strategy_id).set(0)

    def _failed(self, hook: str, bar: Bar | None, exc: Exception) -> None:
        sid = self.strategy.strategy_id
        self.errors += 1
        self.consecutive += 1
        metrics.STRATEGY_ERRORS.labels(
            strategy=sid, hook=metrics.bounded(hook, metrics.STRATEGY_HOOKS)
        ).inc()
        kind = (hook, type(exc).__name__)
        if kind not in self._logged:  # once per kind: a strategy failing every bar must not
            self._logged.add(kind)  # flood the log; the counter has every one
            log.error(
                "strategy raised",
                strategy_id=sid,
                hook=hook,
                bar=describe_bar(bar),
                error=f"{type(exc).__name__}: {exc}"[:300],
                at=where_raised(exc),
            )
        if self.consecutive >= self.max_consecutive_errors:
            self.paused = True
            metrics.STRATEGY_PAUSED.labels(strategy=sid).set(1)
            on_bar = f" on the {describe_bar(bar)}" if bar is not None else ""
            reason = (
                f"strategy {sid!r} paused after {self.consecutive} consecutive errors "
                f"(last in {hook}{on_bar}: {type(exc).__name__}: {exc})"
            )
            log.error("strategy paused", strategy_id=sid, reason=reason[:400])
            if self.on_paused is not None:
                self.on_paused(self.strategy, reason)
