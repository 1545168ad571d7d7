from __future__ import annotations

from decimal import Decimal

import pytest

from tessera import metrics
from tessera.config import RiskConfig
from tessera.execution.orders import OrderSide, OrderType
from tessera.metrics import RISK_DENIAL_REASONS
from tessera.risk import (
    AccountView,
    DenialReason,
    HaltRecord,
    OrderIntent,
    RiskAction,
    RiskEngine,
    TradingState,
)
from tessera.risk.listeners import MetricsRiskListener

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def cfg(**kw: object) -> RiskConfig:
    base: dict[str, object] = {
        "max_order_notional": 1000,
        "max_position_notional": 2000,
        "max_gross_exposure": 3000,
        "price_band_pct": 2.0,
        "max_open_orders": 3,
        "max_orders_per_second": 2,
        "max_drawdown_pct": 10.0,
    }
    base.update(kw)
    return RiskConfig.model_validate(base)


def acct(pos: dict[str, str] | None = None, open_orders: int = 0) -> AccountView:
    return AccountView(
        positions={k: D(v) for k, v in (pos or {}).items()},
        last_prices={"BTCUSDT": D("100"), "ETHUSDT": D("10")},
        open_orders=open_orders,
    )


def intent(
    side: OrderSide = BUY, qty: str = "1", price: str | None = None, symbol: str = "BTCUSDT"
) -> OrderIntent:
    return OrderIntent(
        symbol,
        side,
        D(qty),
        OrderType.LIMIT if price else OrderType.MARKET,
        D(price) if price else None,
    )


@pytest.mark.parametrize(
    ("order", "account", "reason"),
    [
        (intent(qty="5"), acct(), None),
        (intent(qty="11"), acct(), DenialReason.MAX_ORDER_NOTIONAL),
        (intent(qty="1", price="103"), acct(), DenialReason.PRICE_BAND),
        (intent(qty="1", price="101.5"), acct(), None),
        (intent(qty="6"), acct({"BTCUSDT": "15"}), DenialReason.MAX_POSITION),
        (intent(qty="9"), acct({"ETHUSDT": "250"}), DenialReason.MAX_GROSS_EXPOSURE),
        (intent(SELL, qty="6"), acct({"BTCUSDT": "25"}), None),  # reducing passes the limits
        (intent(SELL, qty="20"), acct({"BTCUSDT": "25"}), None),  # an exit above the order cap
        (intent(SELL, qty="30"), acct({"BTCUSDT": "25"}), DenialReason.MAX_ORDER_NOTIONAL),
        (intent(qty="1"), acct(open_orders=3), DenialReason.MAX_OPEN_ORDERS),
        (intent(symbol="XRPUSDT"), acct(), DenialReason.PRICE_BAND),  # no price known
    ],
)
def test_pre_trade_checks(
    order: OrderIntent, account: AccountView, reason: DenialReason | None
) -> None:
    decision = RiskEngine(cfg()).check(order, account, now_ns=0)
    assert decision.allowed is (reason is None)
    assert decision.reason is reason
    if reason is not None:
        assert reason.value in RISK_DENIAL_REASONS and decision.detail


def test_order_rate_window() -> None:
    eng = RiskEngine(cfg())
    for t in (0, 100_000_000):
        assert eng.check(intent(), acct(), t).allowed
        eng.record_sent(t)
    assert eng.check(intent(), acct(), 500_000_000).reason is DenialReason.ORDER_RATE
    assert eng.check(intent(), acct(), 1_000_000_001).allowed  # first one left the window


def test_kill_switch_halts_cancels_and_stays_halted() -> None:
    eng = RiskEngine(cfg(flatten_on_halt=True))
    assert eng.update_equity(D("10000"), 1) == []
    assert eng.update_equity(D("9500"), 2) == []
    assert eng.drawdown_pct == pytest.approx(5.0)
    actions = eng.update_equity(D("9000"), 3)  # exactly 10%: breach
    assert actions == [RiskAction.CANCEL_ALL, RiskAction.FLATTEN]
    assert eng.state is TradingState.HALTED and eng.halt == HaltRecord("kill_switch", 3, 10.0)
    assert eng.check(intent(), acct(), 4).reason is DenialReason.KILL_SWITCH
    # recovering does not re-enable trading; only a person does
    assert eng.update_equity(D("11000"), 5) == []
    assert eng.state is TradingState.HALTED
    eng.reset(equity=D("11000"))
    assert eng.state is TradingState.ACTIVE and eng.check(intent(), acct(), 6).allowed


def test_halt_survives_restart_via_restore() -> None:
    eng = RiskEngine(cfg())
    eng.update_equity(D("100"), 1)
    eng.update_equity(D("80"), 2)
    saved = (eng.halt, eng.equity_peak)
    fresh = RiskEngine(cfg())
    fresh.restore(*saved)
    assert fresh.state is TradingState.HALTED
    assert fresh.check(intent(), acct(), 3).reason is DenialReason.KILL_SWITCH


def test_reducing_state() -> None:
    eng = RiskEngine(cfg(reduce_only_drawdown_pct=5.0))
    eng.update_equity(D("1000"), 1)
    eng.update_equity(D("940"), 2)
    assert eng.state is TradingState.REDUCING
    assert eng.check(intent(BUY), acct({"BTCUSDT": "2"}), 3).reason is DenialReason.REDUCING_ONLY
    assert eng.check(intent(SELL), acct({"BTCUSDT": "2"}), 3).allowed
    assert (
        eng.check(intent(SELL, "3"), acct({"BTCUSDT": "2"}), 3).reason is DenialReason.REDUCING_ONLY
    )
    eng.update_equity(D("990"), 4)
    assert eng.state is TradingState.ACTIVE


def reduce_only(side: OrderSide, qty: str) -> OrderIntent:
    return OrderIntent("BTCUSDT", side, D(qty), OrderType.MARKET, reduce_only=True)


def test_a_halt_lets_a_reduce_only_order_through_when_it_reduces() -> None:
    eng = RiskEngine(cfg(max_orders_per_second=1, max_open_orders=1))
    eng.manual_halt("exchange incident", 1)
    eng.record_sent(1)  # the rate and open-order caps are full: a flatten still passes
    long_25 = acct({"BTCUSDT": "25"}, open_orders=5)
    assert eng.check(reduce_only(SELL, "25"), long_25, 2).allowed  # above the order cap too
    assert eng.check(intent(SELL, "25"), long_25, 2).reason is DenialReason.HALTED
    # reduce-only in name is not enough: it must shrink the position
    assert eng.check(reduce_only(SELL, "26"), long_25, 2).reason is DenialReason.HALTED
    assert eng.check(reduce_only(BUY, "1"), long_25, 2).reason is DenialReason.HALTED
    assert eng.check(reduce_only(SELL, "1"), acct(), 2).reason is DenialReason.HALTED


def test_a_reduce_only_exit_is_exempt_from_the_exposure_caps_when_active() -> None:
    eng = RiskEngine(cfg())
    over = acct({"BTCUSDT": "25", "ETHUSDT": "250"})  # gross exposure above its cap already
    assert eng.check(reduce_only(SELL, "20"), over, 1).allowed


def test_manual_halt_needs_reason() -> None:
    eng = RiskEngine(cfg())
    with pytest.raises(ValueError, match="needs a reason"):
        eng.manual_halt(" ", 1)
    assert eng.manual_halt("exchange incident", 1) == [RiskAction.CANCEL_ALL]
    assert eng.check(intent(), acct(), 2).reason is DenialReason.HALTED


def test_metrics_listener_feeds_the_gauges() -> None:
    metrics.KILL_SWITCH_ENGAGED.set(0)  # gauges are process-wide: start from a known state
    metrics.set_trading_state("ACTIVE")
    eng = RiskEngine(cfg(), listener=MetricsRiskListener())
    eng.update_equity(D("1000"), 1)
    eng.update_equity(D("950"), 2)
    assert metrics.DRAWDOWN_PCT._value.get() == pytest.approx(5.0)
    assert metrics.KILL_SWITCH_ENGAGED._value.get() == 0.0
    before = metrics.RISK_DENIALS.labels(reason="max_order_notional")._value.get()
    eng.check(intent(qty="100"), acct(), 3)
    assert metrics.RISK_DENIALS.labels(reason="max_order_notional")._value.get() == before + 1
    eng.update_equity(D("850"), 4)
    assert metrics.KILL_SWITCH_ENGAGED._value.get() == 1.0
    assert metrics.TRADING_STATE.labels(state="HALTED")._value.get() == 1.0
