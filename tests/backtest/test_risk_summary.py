"""What the risk limits did to a backtest is in the result, result.json and the summary lines:
on the real bundled hourly Coinbase BTC/USD bars (2017-07 .. 2019-10, 20,111 bars)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.results import BacktestResult, risk_summary_lines
from tessera.config import BacktestConfig, RiskConfig
from tessera.data.barfile import read_bar_file
from tessera.execution.orders import OrderSide
from tessera.strategies import SmaCross, Strategy
from tessera.strategies.base import Bar, StrategyContext

D = Decimal
HOURLY = Path(__file__).resolve().parents[2] / "samples" / "bars" / "Coinbase_BTCUSD_1h.csv.gz"
CFG = BacktestConfig.model_validate(
    {"symbols": ["BTCUSD"], "quote_currency": "USD", "interval": "1h"}
)
# caps that follow the equity, as a compounding strategy needs them
FOLLOWING = {
    "max_order_notional": "100%",
    "max_position_notional": "100%",
    "max_gross_exposure": "100%",
}


@pytest.fixture(scope="module")
def hourly() -> BarSeries:
    return BarSeries.from_frame("BTCUSD", read_bar_file(HOURLY), interval="1h")


def sma(series: BarSeries, risk: RiskConfig | None) -> BacktestResult:
    return BacktestEngine(CFG, risk).run([series], [SmaCross(["BTCUSD"], fast=10, slow=30)])


def risk(**kw: Any) -> RiskConfig:
    return RiskConfig.model_validate({**FOLLOWING, **kw})


def test_a_halt_its_bar_its_denials_and_both_returns_are_in_result_json(
    hourly: BarSeries, tmp_path: Path
) -> None:
    res = sma(hourly, risk(max_drawdown_pct=3.0))
    assert res.halted_at is not None
    doc = json.loads(res.save(tmp_path)["metrics"].read_text())
    r = doc["risk"]
    assert r["halted_at_ns"] == res.halted_at and r["halt_reason"] == "kill_switch"
    bar = r["halt_bar"]
    assert int(res.times[bar]) == res.halted_at
    peak = np.maximum.accumulate(res.equity)
    assert (peak[bar] - res.equity[bar]) / peak[bar] * 100 >= 3.0
    assert r["halt_drawdown_pct"] >= 3.0
    assert r["limits"]["max_order_notional"] == "100%" and r["limits"]["max_drawdown_pct"] == 3.0

    kills = [d for d in res.denials if d[2] == "kill_switch"]
    assert kills and all(ts > res.halted_at for ts, _, _ in kills)
    assert r["denials"] == {"kill_switch": len(kills)}
    assert r["denials_after_halt"] == len(kills)
    assert doc["denials"] == dict(Counter(d[2] for d in res.denials))

    assert r["return_as_traded"] == pytest.approx(res.metrics["total_return"])
    assert r["return_at_halt"] == pytest.approx(res.equity[bar] / 10_000 - 1)
    # the frozen return from the fills alone: the position and cash at the halt, the position
    # marked at the last close
    initial = CFG.initial_cash
    before = [f.fill for f in res.fills if f.fill.ts_event <= res.halted_at]
    cash = initial - sum((f.qty * f.price * f.side.sign + f.fee for f in before), D(0))
    held = sum((f.qty * f.side.sign for f in before), D(0))
    frozen = cash + held * D(repr(float(hourly.close[-1])))
    assert held > 0  # the halt found a long (a drawdown needs one)
    assert r["return_frozen_marked"] == pytest.approx(float(frozen / initial - 1), rel=1e-12)
    assert r["return_frozen_marked"] != pytest.approx(r["return_as_traded"])

    lines = risk_summary_lines(res)
    assert lines[0].startswith("HALTED by the drawdown kill-switch (max_drawdown_pct 3.0)")
    assert f"bar {bar:,} of {len(res.times):,}" in lines[0]
    assert f"{len(kills):,} orders denied after it" in lines[0]
    assert f"{r['return_as_traded']:+.1%}" in lines[1]
    assert f"{r['return_frozen_marked']:+.1%}" in lines[1]
    assert any(line.startswith(f"risk limits denied {len(kills):,} orders") for line in lines)


def test_with_max_drawdown_pct_null_the_backtest_never_halts(hourly: BarSeries) -> None:
    res = sma(hourly, risk(max_drawdown_pct=None))
    assert res.halted_at is None and res.risk.halted_at_ns is None
    assert res.metrics["max_drawdown"] > 0.3  # deep drawdowns, and no halt
    assert not res.denials and res.risk.denials == {} and risk_summary_lines(res) == []


def test_a_compounding_strategy_keeps_trading_with_caps_written_as_fractions(
    hourly: BarSeries,
) -> None:
    free = sma(hourly, None)
    following = sma(hourly, risk(max_drawdown_pct=None))
    assert following.metrics["trades"] == free.metrics["trades"] > 300
    assert following.final_equity == free.final_equity
    assert following.final_equity > 2 * CFG.initial_cash  # the equity outgrew any fixed 10000

    fixed = sma(hourly, RiskConfig(max_drawdown_pct=None))  # 10000 USD caps, the default
    assert fixed.metrics["trades"] < free.metrics["trades"] / 10
    assert fixed.risk.denials["max_order_notional"] > 100
    lines = risk_summary_lines(fixed)
    assert lines[0].startswith("risk limits denied ")
    assert "max_order_notional " in lines[0] and "(limit 10000)" in lines[0]
    assert '"100%"' in lines[1]


def test_without_a_risk_config_the_summary_is_empty_and_says_so(hourly: BarSeries) -> None:
    res = sma(hourly.slice(0, 2_000), None)
    assert res.risk.limits == {} and not res.risk.acted and risk_summary_lines(res) == []
    assert res.risk.return_as_traded == pytest.approx(res.metrics["total_return"])
    assert json.loads(res.to_json())["risk"]["limits"] == {}


class HandStop(Strategy):
    """Buys once with most of its cash, then exits with a plain market sell (not flagged
    reduce-only) once the close is 15 % under the entry: a strategy's own stop-loss."""

    name = "hand_stop"

    def __init__(self, symbols: list[str]) -> None:
        super().__init__(symbols)
        self.entry: float | None = None
        self.exit_sent_at: int | None = None

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        held = ctx.position(bar.symbol)
        if self.entry is None:
            qty = (ctx.equity() * D("0.9") / D(repr(bar.close))).quantize(D("0.0001"), ROUND_DOWN)
            if ctx.submit_order(bar.symbol, OrderSide.BUY, qty) is not None:
                self.entry = bar.close
        elif (
            held > 0
            and self.exit_sent_at is None
            and bar.close < self.entry * 0.85
            and ctx.submit_order(bar.symbol, OrderSide.SELL, held) is not None
        ):
            self.exit_sent_at = bar.close_time


def test_the_strategys_own_stop_loss_leaves_after_the_kill_switch(hourly: BarSeries) -> None:
    strat = HandStop(["BTCUSD"])
    res = BacktestEngine(CFG, risk(max_drawdown_pct=5.0)).run([hourly], [strat])
    assert res.halted_at is not None
    assert strat.exit_sent_at is not None and strat.exit_sent_at > res.halted_at
    sells = [f.fill for f in res.fills if f.fill.side is OrderSide.SELL]
    assert len(sells) == 1 and sells[0].ts_event > res.halted_at
    assert res.final_equity == res.final_cash  # out, at the strategy's stop
    assert res.risk.denials == {}  # the exit was not denied, and nothing else was sent
    assert res.risk.return_as_traded is not None and res.risk.return_frozen_marked is not None
    assert res.risk.return_as_traded != pytest.approx(res.risk.return_frozen_marked)
