"""Strategy code isolated: the live guard pauses a failing strategy, the backtest stops naming
the bar and the line."""

from __future__ import annotations

from typing import Any

import pytest

from tessera import metrics
from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.config import BacktestConfig, RiskConfig
from tessera.strategies import SmaCross, Strategy
from tessera.strategies.base import Bar, StrategyContext
from tessera.strategies.guard import StrategyError, StrategyGuard


class FailsOnBar(Strategy):
    """Raises on the bars whose index is in ``bad``; counts the calls it got."""

    name = "fails_on_bar"

    def __init__(self, symbols: list[str], bad: set[int], **kw: Any) -> None:
        super().__init__(symbols, **kw)
        self.bad = bad
        self.seen = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        i = self.seen
        self.seen += 1
        if i in self.bad:
            raise ZeroDivisionError(f"bar {i}")


def _bar(i: int) -> Bar:
    t = 1_700_000_000_000_000_000 + i * 60_000_000_000
    return Bar("BTCUSDT", t, t + 60_000_000_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5)


def errors(sid: str) -> float:
    return metrics.STRATEGY_ERRORS.labels(strategy=sid, hook="on_bar")._value.get()


def test_the_guard_pauses_a_strategy_after_consecutive_errors_and_says_why() -> None:
    paused: list[str] = []
    strat = FailsOnBar(["BTCUSDT"], bad={2, 4, 5, 6, 7}, strategy_id="guard-a")
    guard = StrategyGuard(strat, 3, lambda s, why: paused.append(why))
    before = errors("guard-a")
    results = [guard.call("on_bar", _bar(i), None, bar=_bar(i)) for i in range(10)]
    # bar 2 fails alone (the count resets on bar 3), bars 4, 5, 6 fail in a row: paused
    assert results[:7] == [True, True, False, True, False, False, False]
    assert guard.paused and len(paused) == 1
    assert "paused after 3 consecutive errors" in paused[0]
    assert "ZeroDivisionError: bar 6" in paused[0]
    assert not any(results[7:]), "a paused strategy is not called"
    assert strat.seen == 7
    assert errors("guard-a") - before == 4
    assert metrics.STRATEGY_PAUSED.labels(strategy="guard-a")._value.get() == 1


def test_a_backtest_stops_naming_the_strategy_the_bar_and_the_line() -> None:
    bars = BarSeries.from_frame("BTCUSDT", read_bar_file(SAMPLE_BARS).head(500))
    engine = BacktestEngine(BacktestConfig(), RiskConfig())
    bad = FailsOnBar([bars.symbol], bad={123}, strategy_id="fails")
    with pytest.raises(StrategyError) as err:
        engine.run([bars], [bad, SmaCross([bars.symbol], strategy_id="sma")])
    message = str(err.value)
    assert "strategy 'fails' raised in on_bar on the BTCUSDT bar opened" in message
    assert "ZeroDivisionError: bar 123" in message
    assert "test_strategy_guard.py" in message and "in on_bar" in message
    assert err.value.bar is not None
    assert err.value.bar.open_time == int(bars.open_time[123])
