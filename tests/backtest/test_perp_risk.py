"""The leverage limits of `RiskConfig` applied by the perpetual backtest, on the real Binance
XRP/USDT perpetual bars bundled from freqtrade's test data (samples/SOURCES.md; 100 hourly
bars from 2021-11-17 01:00 UTC, marked from the 1h mark candles for the first 57).

The engine's pre-trade check gives the risk engine the `PerpAccount` as a
`PerpAccountSnapshot`, so ``max_leverage`` & co. deny as live; at each mark it calls
`RiskEngine.mark_perp`: the drawdown on the equity at the mark, the monitor's cuts sent as
reduce-only orders (reason ``liq_distance``), its margin-ratio alerts counted. On spot these
settings cannot bind and the summary says they were not applied.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tessera.backtest import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.perp_inputs import PerpInputs, load_perp_inputs
from tessera.backtest.results import BacktestResult, perp_summary_lines, risk_summary_lines
from tessera.config.models import BacktestConfig, RiskConfig
from tessera.data.barfile import read_bar_file
from tessera.data.futures_files import SAMPLE_FUNDING, SAMPLE_FUTURES, SAMPLE_MARK_1H
from tessera.execution.orders import ExitReason
from tessera.strategies.base import Bar, Strategy, StrategyContext

D = Decimal
SYM = "XRPUSDT"
BARS_1H = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"
QTY = D(3000)  # about 3,240 USDT of XRP at the first open, on a 10,000 USDT wallet


@pytest.fixture(scope="module")
def xrp_1h() -> BarSeries:
    return BarSeries.from_frame(SYM, read_bar_file(BARS_1H), "1h")


@pytest.fixture(scope="module")
def inputs_1h(xrp_1h: BarSeries) -> PerpInputs:
    return load_perp_inputs(
        [xrp_1h], mark_files={SYM: SAMPLE_MARK_1H}, funding_files={SYM: SAMPLE_FUNDING}
    )


class LongAtStart(Strategy):
    """Sets a leverage, goes long QTY at the first bar and holds."""

    name = "long_at_start"

    def __init__(self, symbols: list[str], leverage: int) -> None:
        super().__init__(symbols)
        self.leverage = leverage
        self.sent = False

    def on_start(self, ctx: StrategyContext) -> None:
        ctx.set_leverage(self.symbols[0], self.leverage)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.sent:
            self.sent = True
            ctx.target_position(bar.symbol, QTY)


def run(
    series: BarSeries, inputs: PerpInputs | None, leverage: int, **risk: Any
) -> tuple[BacktestEngine, BacktestResult]:
    config = BacktestConfig.model_validate(
        {"initial_cash": "10000", "perp": {"margin_mode": "isolated"}}
    )
    risk_config = RiskConfig.model_validate({"max_drawdown_pct": None, **risk}) if risk else None
    engine = BacktestEngine(config, risk_config, perp=inputs)
    return engine, engine.run([series], [LongAtStart([series.symbol], leverage)])


def test_max_leverage_2_denies_a_3x_entry_and_lets_a_2x_one_through(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    # isolated: at entry the position's leverage (notional / its margin) is its setting
    _, denied = run(xrp_1h, inputs_1h, 3, max_leverage=2)
    assert denied.fills == []
    assert [reason for _, _, reason in denied.denials] == ["max_leverage"]
    assert denied.risk.denials == {"max_leverage": 1}
    assert "risk limits denied 1 orders: max_leverage 1 (limit 2)" in risk_summary_lines(denied)
    _, allowed = run(xrp_1h, inputs_1h, 2, max_leverage=2)
    assert [f.fill.qty for f in allowed.fills] == [QTY]
    assert allowed.risk.denials == {}


def test_the_monitor_cuts_a_20x_long_that_the_real_drop_would_liquidate(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    # unguarded, the 20x long is liquidated on 2021-11-18 (the mark falls to 1.0403)
    _, bare = run(xrp_1h, inputs_1h, 20)
    assert bare.perp is not None and len(bare.perp.liquidations) == 1
    # with a 3 % minimum the monitor sends a reduce-only cut at the first mark closer than
    # that, which fills at the next open; the position never reaches its liquidation price
    engine, cut = run(xrp_1h, inputs_1h, 20, min_liquidation_distance_pct=3)
    assert cut.perp is not None and cut.perp.liquidations == ()
    assert [f.reason for f in cut.fills] == [ExitReason.SIGNAL, ExitReason.LIQ_DISTANCE]
    exit_fill = cut.fills[1].fill
    assert exit_fill.qty == QTY  # isolated: only the whole position restores the distance
    assert cut.fills[1].fill.ts_event < bare.perp.liquidations[0].ts
    assert cut.perp.liq_distance_cuts == 1
    # the mark that decided it (the bar before the fill) was under 3 % from liquidation
    assert cut.perp.min_liq_distance is not None and cut.perp.min_liq_distance < 0.03
    assert cut.final_equity > bare.final_equity
    assert any("1 reduce-only cut (reason liq_distance)" in x for x in perp_summary_lines(cut))
    assert engine.perp_account is not None and engine.perp_account.positions == {}


def test_margin_ratio_alerts_are_counted_in_the_result(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    _, quiet = run(xrp_1h, inputs_1h, 20, min_liquidation_distance_pct=3, margin_ratio_alert=0.9)
    assert quiet.perp is not None and quiet.perp.margin_ratio_alerts == 0
    _, alerted = run(xrp_1h, inputs_1h, 20, min_liquidation_distance_pct=3, margin_ratio_alert=0.15)
    p = alerted.perp
    assert p is not None and p.margin_ratio_alerts >= 1
    assert p.peak_margin_ratio is not None and p.peak_margin_ratio >= 0.15
    assert p.to_dict()["margin_ratio_alerts"] == p.margin_ratio_alerts
    assert any(x.startswith("margin ratio alerts: ") for x in perp_summary_lines(alerted))


# margin_ratio_alert set: every mark builds the snapshot for RiskEngine.mark_perp; unset, the
# engine feeds update_equity the account's exact equity at the mark (the monitor cannot act)
@pytest.mark.parametrize("monitor", [{}, {"margin_ratio_alert": 0.99}])
def test_the_drawdown_halt_is_measured_on_the_equity_at_the_mark(
    xrp_1h: BarSeries, inputs_1h: PerpInputs, monitor: dict[str, float]
) -> None:
    engine, result = run(xrp_1h, inputs_1h, 10, max_drawdown_pct=3, **monitor)
    halt = engine.halt
    acct = engine.perp_account
    assert halt is not None and acct is not None and result.risk.halt_bar is not None
    bar = result.risk.halt_bar
    mark = D(repr(float(inputs_1h.symbols[SYM].mark_close[bar])))
    close = D(repr(float(xrp_1h.close[bar])))
    entry = result.fills[0]
    # by hand: wallet (cash - entry fee + funding booked by then) + qty x (mark - entry)
    wallet = (
        D(10000)
        - entry.fill.fee
        + sum((e.amount for e in acct.funding if e.ts_ns <= halt.ts), D(0))
    )
    assert halt.equity == wallet + QTY * (mark - entry.fill.price)
    assert mark != close  # the trade close would give another equity
    assert result.risk.halt_reason == "kill_switch"


def test_a_spot_backtest_lists_the_leverage_limits_as_not_applied(xrp_1h: BarSeries) -> None:
    config = BacktestConfig.model_validate({"initial_cash": "10000"})
    risk = RiskConfig.model_validate(
        {"max_drawdown_pct": None, "max_leverage": 2, "min_liquidation_distance_pct": 5}
    )

    class Buy(Strategy):
        name = "buy"

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            ctx.target_position(bar.symbol, QTY)

    result = BacktestEngine(config, risk).run([xrp_1h], [Buy([SYM])])
    assert result.risk.not_applied == ("max_leverage 2", "min_liquidation_distance_pct 5.0")
    assert risk_summary_lines(result)[0] == (
        "perpetuals only, not applied on spot: max_leverage 2, min_liquidation_distance_pct "
        "5.0 (a spot account has no leverage, margin or liquidation)"
    )
    assert result.risk.to_dict()["not_applied"] == list(result.risk.not_applied)
