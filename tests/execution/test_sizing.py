"""`execution.sizing`: orders for a target and flatten orders (pure; properties with hypothesis)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import ExitReason, OrderSide
from tessera.execution.sizing import flatten_orders, orders_for_target

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
STEP = D("0.001")
FILTERS = SymbolFilters("BTCUSDT", "BTC", "USDT", step_size=D("0.0001"), market_step_size=STEP)


def test_a_flip_is_two_orders_the_reduce_only_close_first() -> None:
    plan = orders_for_target(D(2), D(-3), filters=None, can_short=True, sellable=None)
    assert [(o.side, o.qty, o.reduce_only, o.note) for o in plan.orders] == [
        (SELL, D(2), True, "close"),
        (SELL, D(3), False, "open"),
    ]
    assert plan.reaches == D(-3) and plan.cut == 0 and plan.denied is None


def test_on_spot_a_short_target_is_cut_to_flat_and_said() -> None:
    plan = orders_for_target(D(2), D(-3), filters=None, can_short=False, sellable=D(2))
    assert [(o.side, o.qty, o.reduce_only) for o in plan.orders] == [(SELL, D(2), True)]
    assert plan.reaches == 0 and plan.cut == D(3) and plan.denied == "no_borrow"


def test_a_spot_short_from_flat_sends_nothing_and_is_denied() -> None:
    plan = orders_for_target(D(0), D(-1), filters=None, can_short=False, sellable=D(0))
    assert plan.orders == () and plan.denied == "no_borrow" and plan.cut == D(1)


def test_a_sell_is_capped_at_what_the_account_holds() -> None:
    # the strategy thinks it holds 1 BTC; the account has 0.9985 after a fee taken in BTC
    plan = orders_for_target(D(1), D(0), filters=FILTERS, can_short=False, sellable=D("0.9985"))
    assert [(o.side, o.qty) for o in plan.orders] == [(SELL, D("0.998"))]
    assert plan.cut == D("0.0015") and plan.denied == "no_borrow"


def test_a_buy_is_rounded_down_to_the_market_step_and_not_cut() -> None:
    plan = orders_for_target(D(0), D("0.12345"), filters=FILTERS, can_short=False, sellable=D(0))
    assert [(o.side, o.qty, o.reduce_only) for o in plan.orders] == [(BUY, D("0.123"), False)]
    assert plan.cut == 0 and plan.denied is None


def test_at_the_target_there_is_nothing_to_do() -> None:
    plan = orders_for_target(D("0.5"), D("0.5"), filters=FILTERS, can_short=False, sellable=None)
    assert plan.orders == () and plan.reaches == D("0.5")


qtys = st.integers(-5000, 5000).map(lambda n: D(n) / 1000)


@settings(max_examples=500, deadline=None)
@given(
    qtys,
    qtys,
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 6000).map(lambda n: D(n) / 1000)),
    st.booleans(),
)
def test_a_plan_reaches_its_target_or_says_what_it_cut(
    position: Decimal, target: Decimal, can_short: bool, sellable: Decimal | None, rounded: bool
) -> None:
    filters = FILTERS if rounded else None
    plan = orders_for_target(
        position, target, filters=filters, can_short=can_short, sellable=sellable
    )
    sold = sum((o.qty for o in plan.orders if o.side is SELL), D(0))
    if sellable is not None:
        assert sold <= sellable  # never sells more than is held
    assert all(o.qty > 0 for o in plan.orders)
    assert (plan.denied == "no_borrow") == (plan.cut > 0)
    goal = target if can_short or target >= 0 else D(0)
    if not can_short:
        assert plan.cut >= max(-target, D(0))
    # every leg moves towards the goal; what is missing is the cut (sells), or rounding
    missing = goal - plan.reaches
    if filters is None:
        assert abs(missing) == (plan.cut - max(-target, D(0)) if not can_short else plan.cut)
    else:
        unexplained = abs(missing) - (plan.cut - (max(-target, D(0)) if not can_short else 0))
        assert D(0) <= unexplained < 2 * STEP  # at most one step per leg is rounded away
    if len(plan.orders) == 2:  # a flip: the close first, reduce-only, the same side twice
        close, open_ = plan.orders
        assert close.reduce_only and close.note == "close" and not open_.reduce_only
        assert close.side is open_.side
        assert close.qty <= abs(position)
    for o in plan.orders:
        if o.reduce_only:
            assert o.qty <= abs(position) and o.side.sign * position < 0


def test_flatten_sends_reduce_only_market_orders_per_strategy_with_the_reason() -> None:
    positions = {("BTCUSDT", "a"): D("0.5"), ("BTCUSDT", "b"): D("-0.2"), ("ETHUSDT", "a"): D(0)}
    steps = flatten_orders(positions)
    assert [(s.symbol, s.strategy, s.side, s.qty, s.reduce_only) for s in steps] == [
        ("BTCUSDT", "a", SELL, D("0.5"), True),
        ("BTCUSDT", "b", BUY, D("0.2"), True),
    ]
    assert {s.reason for s in steps} == {ExitReason.KILL_SWITCH}
    manual = flatten_orders(positions, reason=ExitReason.MANUAL)
    assert {s.reason for s in manual} == {ExitReason.MANUAL}


def test_flatten_caps_the_sells_of_one_base_asset_at_what_is_held_together() -> None:
    positions = {("BTCUSDT", "a"): D("0.5"), ("BTCUSDT", "b"): D("0.4")}
    steps = flatten_orders(positions, {"BTCUSDT": FILTERS}, {"BTC": D("0.7005")})
    assert [(s.strategy, s.qty, s.cut) for s in steps] == [
        ("a", D("0.5"), D(0)),
        ("b", D("0.2"), D("0.1995")),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(qtys, min_size=1, max_size=5), st.integers(0, 8000).map(lambda n: D(n) / 1000))
def test_flatten_never_sells_more_than_held_and_only_reduces(
    sizes: list[Decimal], held: Decimal
) -> None:
    positions = {("BTCUSDT", f"s{i}"): q for i, q in enumerate(sizes)}
    steps = flatten_orders(positions, {"BTCUSDT": FILTERS}, {"BTC": held})
    assert sum((s.qty for s in steps if s.side is SELL), D(0)) <= held
    for s in steps:
        pos = positions[(s.symbol, s.strategy)]
        assert s.reduce_only and s.side.sign * pos < 0 and s.qty <= abs(pos)
