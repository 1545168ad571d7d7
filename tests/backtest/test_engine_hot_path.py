"""What the engine's speed work must not change: the garbage collector is handed back as the
caller had it (even when a strategy raises), and the orders an idle risk engine lets through
are booked exactly as with no risk engine (the account view is only built for a risk engine)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from loose_risk import LOOSE_RISK as LOOSE

from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig, RiskConfig
from tessera.strategies import SmaCross, Strategy
from tessera.strategies.base import Bar, StrategyContext
from tessera.strategies.guard import StrategyError


class Boom(Strategy):
    name = "boom"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        raise RuntimeError("a strategy bug")


class SeesTheCollector(Strategy):
    """Records whether the collector is on while the bars run."""

    name = "sees_gc"
    enabled: bool | None = None

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.enabled = gc.isenabled()


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def cfg() -> BacktestConfig:
    return BacktestConfig.model_validate({"initial_cash": 10_000})


def test_the_collector_is_off_during_the_bars_and_on_again_after(
    btc_series: BarSeries, collector_restored: None
) -> None:
    gc.enable()
    seen = SeesTheCollector(["BTCUSDT"])
    BacktestEngine(cfg()).run([btc_series], [seen])
    assert seen.enabled is False
    assert gc.isenabled()


def test_a_strategy_error_leaves_the_collector_on(
    btc_series: BarSeries, collector_restored: None
) -> None:
    gc.enable()
    with pytest.raises(StrategyError):
        BacktestEngine(cfg()).run([btc_series], [Boom(["BTCUSDT"])])
    assert gc.isenabled()


def test_a_caller_who_turned_the_collector_off_finds_it_off(
    btc_series: BarSeries, collector_restored: None
) -> None:
    gc.disable()
    BacktestEngine(cfg()).run([btc_series], [SeesTheCollector(["BTCUSDT"])])
    assert not gc.isenabled()


@pytest.mark.parametrize("qty", [None, "0.01"])
def test_a_risk_engine_that_never_binds_books_exactly_what_no_risk_engine_books(
    btc_series: BarSeries, qty: str | None
) -> None:
    def run(risk: RiskConfig | None) -> tuple[list[str], str, bytes]:
        params = {"fast": 10, "slow": 30} | ({"qty": qty} if qty else {})
        res = BacktestEngine(cfg(), risk).run([btc_series], [SmaCross(["BTCUSDT"], **params)])
        fills = [
            f"{r.fill.ts_event} {r.fill.side} {r.fill.qty} {r.fill.price} {r.fill.fee} "
            f"{r.realized_pnl}"
            for r in res.fills
        ]
        return fills, str(res.final_equity), res.equity.tobytes()

    without, with_risk = run(None), run(LOOSE)
    assert len(without[0]) > 1000
    assert with_risk == without


def test_caps_written_as_a_fraction_of_equity_are_given_the_accounts_equity(
    btc_series: BarSeries,
) -> None:
    """The pre-trade check builds the exact equity only when a cap is a fraction of it; when
    one is, it must be there from the first order (flat: the risk engine has seen no equity of
    its own yet and would refuse every entry)."""
    fraction = RiskConfig.model_validate(
        {
            "max_order_notional": "100%",
            "max_position_notional": "100%",
            "max_gross_exposure": "150%",
            "max_drawdown_pct": 100,
            "max_orders_per_second": 1000,
        }
    )

    def run(risk: RiskConfig) -> tuple[list[str], str]:
        strategy = SmaCross(["BTCUSDT"], fast=10, slow=30, qty="0.01")
        res = BacktestEngine(cfg(), risk).run([btc_series], [strategy])
        assert not res.risk.denials
        return [f"{r.fill.ts_event} {r.fill.side} {r.fill.price}" for r in res.fills], str(
            res.final_equity
        )

    fills, equity = run(fraction)
    assert len(fills) > 1000
    assert (fills, equity) == run(LOOSE)
