"""Risk limits that do not distort research: notional caps as a fraction of equity, a
kill-switch that can be off, and reducing exits that no entry limit denies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tessera.config.models import EquityFraction, RiskConfig
from tessera.execution.orders import OrderSide, OrderType
from tessera.risk import AccountView, DenialReason, OrderIntent, RiskEngine, TradingState

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
PRICE = D("100")


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        (10000, D("10000")),
        ("10000", D("10000")),
        (2500.5, D("2500.5")),
        ("0.01", D("0.01")),
        ("1e4", D("1e4")),
        ("50%", EquityFraction(D("0.5"))),
        (" 2.5 % ", EquityFraction(D("0.025"))),
        ("150%", EquityFraction(D("1.5"))),
        ("100%", EquityFraction(D("1"))),
    ],
)
def test_a_notional_limit_reads_as_an_amount_or_a_fraction_of_equity(
    written: object, parsed: Decimal | EquityFraction
) -> None:
    cfg = RiskConfig.model_validate({"max_order_notional": written})
    assert cfg.max_order_notional == parsed
    assert type(cfg.max_order_notional) is type(parsed)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (0, "above 0"),
        (-5, "above 0"),
        ("0%", "above 0%"),
        ("-10%", "above 0%"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("ten", "neither a quote amount"),
        ("50 percent", "neither a quote amount"),
        ("x%", "not a percentage"),
        ("50%%", "not a percentage"),
        (True, "quote amount (10000) or a fraction of equity"),
        ([50], "quote amount (10000) or a fraction of equity"),
    ],
)
def test_a_bad_notional_limit_is_an_error_that_says_what_is_allowed(
    written: object, message: str
) -> None:
    with pytest.raises(ValidationError, match="max_position_notional") as info:
        RiskConfig.model_validate({"max_position_notional": written})
    assert message in str(info.value)


@given(
    st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4, allow_nan=False).filter(
        lambda d: d > 0
    )
)
def test_a_percentage_parses_to_its_fraction_and_writes_back_the_same(pct: Decimal) -> None:
    fraction = EquityFraction.parse(f"{pct}%")
    assert fraction.fraction == pct / 100
    assert EquityFraction.parse(str(fraction)) == fraction
    assert fraction.limit(D("2000")) == D("2000") * pct / 100
    # the JSON dump ("config show", result.json) reads back to the same config
    cfg = RiskConfig.model_validate({"max_gross_exposure": f"{pct}%"})
    assert RiskConfig.model_validate(cfg.model_dump(mode="json")) == cfg


@given(st.text(max_size=12).filter(lambda t: not t.strip().endswith("%")))
def test_text_without_a_percent_sign_is_never_a_fraction(text: str) -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        EquityFraction.parse(text)


@pytest.mark.parametrize("written", [None, "null", "off", "None"])
def test_the_kill_switch_can_be_turned_off_explicitly(written: object) -> None:
    cfg = RiskConfig.model_validate({"max_drawdown_pct": written, "reduce_only_drawdown_pct": 50})
    assert cfg.max_drawdown_pct is None
    assert RiskConfig().max_drawdown_pct == 10.0  # live keeps its guard unless told otherwise


def test_with_the_kill_switch_off_no_drawdown_halts() -> None:
    eng = RiskEngine(RiskConfig(max_drawdown_pct=None))
    eng.update_equity(D("10000"), 1)
    assert eng.update_equity(D("1"), 2) == []  # a 99.99 % drawdown
    assert eng.state is TradingState.ACTIVE and eng.halt is None
    assert eng.drawdown_pct == pytest.approx(99.99)


def caps(**kw: object) -> RiskConfig:
    base: dict[str, object] = {
        "max_order_notional": "50%",
        "max_position_notional": "80%",
        "max_gross_exposure": "100%",
        "max_open_orders": 100,
        "max_orders_per_second": 100,
    }
    return RiskConfig.model_validate({**base, **kw})


def buy(qty: str, symbol: str = "BTCUSDT") -> OrderIntent:
    return OrderIntent(symbol, BUY, D(qty))


def account(equity: str | None, btc: str = "0", eth: str = "0") -> AccountView:
    return AccountView(
        positions={"BTCUSDT": D(btc), "ETHUSDT": D(eth)},
        last_prices={"BTCUSDT": PRICE, "ETHUSDT": PRICE},
        equity=D(equity) if equity is not None else None,
    )


@pytest.mark.parametrize(
    ("order", "acct", "reason"),
    [
        (buy("50"), account("10000"), None),  # 5000 = 50 % of 10000
        (buy("51"), account("10000"), DenialReason.MAX_ORDER_NOTIONAL),
        (buy("100"), account("20000"), None),  # equity doubled: so did the cap
        (buy("40"), account("10000", btc="50"), DenialReason.MAX_POSITION),  # 9000 > 8000
        (buy("30"), account("10000", btc="50"), None),  # 8000 = 80 %
        (buy("30"), account("10000", btc="50", eth="30"), DenialReason.MAX_GROSS_EXPOSURE),
    ],
)
def test_fractional_caps_resolve_against_the_equity_of_the_account(
    order: OrderIntent, acct: AccountView, reason: DenialReason | None
) -> None:
    decision = RiskEngine(caps()).check(order, acct, 0)
    assert decision.reason is reason
    if reason is not None:
        assert "of equity" in decision.detail


def test_without_an_account_equity_the_engine_uses_its_last_marked_equity() -> None:
    eng = RiskEngine(caps())
    # nobody told it an equity yet: a fractional cap cannot be resolved, so it denies
    unknown = eng.check(buy("1"), account(None), 0)
    assert unknown.reason is DenialReason.MAX_ORDER_NOTIONAL
    assert "no equity is known" in unknown.detail
    eng.update_equity(D("4000"), 1)
    assert eng.check(buy("20"), account(None), 2).allowed  # 2000 = 50 % of 4000
    assert eng.check(buy("21"), account(None), 2).reason is DenialReason.MAX_ORDER_NOTIONAL
    # the account's own equity, when given, wins over the last mark
    assert eng.check(buy("21"), account("5000"), 2).allowed


TIGHT = {
    "max_order_notional": 100,
    "max_position_notional": 100,
    "max_gross_exposure": 100,
    "price_band_pct": 2.0,
    "max_open_orders": 100,
    "max_orders_per_second": 100,
    "max_drawdown_pct": 10.0,
    "reduce_only_drawdown_pct": 5.0,
}


def engine_in(state: str) -> RiskEngine:
    """An engine whose every entry limit is breached by a long of 50 BTC at 100 (5000 USDT)."""
    eng = RiskEngine(RiskConfig.model_validate(TIGHT))
    eng.update_equity(D("10000"), 1)
    if state == "reducing":
        eng.update_equity(D("9400"), 2)
        assert eng.state is TradingState.REDUCING
    elif state == "kill_switch":
        eng.update_equity(D("8000"), 2)
        assert eng.state is TradingState.HALTED and eng.halt and eng.halt.reason == "kill_switch"
    return eng


LONG_50 = AccountView(
    positions={"BTCUSDT": D("50"), "ETHUSDT": D("30")},
    last_prices={"BTCUSDT": PRICE, "ETHUSDT": PRICE},
)


@pytest.mark.parametrize("state", ["active", "reducing", "kill_switch"])
@pytest.mark.parametrize("reduce_only", [True, False])
@pytest.mark.parametrize(
    ("order_type", "price"), [(OrderType.MARKET, None), (OrderType.LIMIT, D("99"))]
)
@pytest.mark.parametrize("qty", ["50", "10", "0.5"])
def test_an_exit_that_reduces_passes_every_entry_limit(
    state: str, reduce_only: bool, order_type: OrderType, price: Decimal | None, qty: str
) -> None:
    """Order notional (5000 > 100), position and gross exposure (over their caps already),
    the reduce-only zone and the drawdown halt: none denies an order that shrinks the long,
    flagged reduce-only or not."""
    eng = engine_in(state)
    exit_ = OrderIntent("BTCUSDT", SELL, D(qty), order_type, price, reduce_only=reduce_only)
    assert eng.check(exit_, LONG_50, 3).allowed
    # the same size the other way adds risk: it is denied, so the limits are really on
    entry = OrderIntent("BTCUSDT", BUY, D(qty), order_type, price, reduce_only=reduce_only)
    assert not eng.check(entry, LONG_50, 3).allowed


@pytest.mark.parametrize("state", ["active", "reducing", "kill_switch"])
def test_a_sell_larger_than_the_long_is_no_exit_and_meets_the_entry_limits(state: str) -> None:
    eng = engine_in(state)
    flip = OrderIntent("BTCUSDT", SELL, D("51"), reduce_only=False)
    assert not eng.check(flip, LONG_50, 3).allowed


def test_an_exit_after_the_kill_switch_still_meets_the_operational_checks() -> None:
    """The halt is lifted for exits, not the price band, open-order and rate guards (they
    catch a broken order, not risk) — except for a reduce-only flatten, which nothing stops."""
    eng = engine_in("kill_switch")
    far = OrderIntent("BTCUSDT", SELL, D("10"), OrderType.LIMIT, D("80"))
    assert eng.check(far, LONG_50, 3).reason is DenialReason.PRICE_BAND
    full = AccountView(LONG_50.positions, LONG_50.last_prices, open_orders=100)
    assert eng.check(OrderIntent("BTCUSDT", SELL, D("10")), full, 3).reason is (
        DenialReason.MAX_OPEN_ORDERS
    )
    flatten = OrderIntent("BTCUSDT", SELL, D("50"), OrderType.LIMIT, D("80"), reduce_only=True)
    assert eng.check(flatten, full, 3).allowed


def test_a_halt_by_a_person_lets_only_a_reduce_only_flatten_through() -> None:
    eng = RiskEngine(RiskConfig.model_validate(TIGHT))
    eng.manual_halt("exchange incident", 1)
    plain_exit = OrderIntent("BTCUSDT", SELL, D("10"))
    assert eng.check(plain_exit, LONG_50, 2).reason is DenialReason.HALTED
    flatten = OrderIntent("BTCUSDT", SELL, D("50"), reduce_only=True)
    assert eng.check(flatten, LONG_50, 2).allowed
