"""`sizing.orders_for_market`: a target on a perpetual is a signed position (a short is a
position), on spot a short is refused; pure, properties with hypothesis."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import OrderSide
from tessera.execution.sizing import MarketKind, orders_for_market, orders_for_target

D = Decimal
STEP = D("0.001")
FILTERS = SymbolFilters("BTCUSDT", "BTC", "USDT", step_size=STEP, market_step_size=STEP)
qtys = st.integers(-5000, 5000).map(lambda n: D(n) * STEP)


def test_on_a_perpetual_a_negative_target_is_a_short_and_the_flip_closes_first() -> None:
    plan = orders_for_market(D("0.02"), D("-0.03"), market=MarketKind.PERPETUAL, filters=FILTERS)
    assert [(o.side, o.qty, o.reduce_only) for o in plan.orders] == [
        (OrderSide.SELL, D("0.02"), True),
        (OrderSide.SELL, D("0.03"), False),
    ]
    assert (plan.reaches, plan.cut, plan.denied) == (D("-0.03"), 0, None)


def test_a_perpetual_has_no_sellable_balance() -> None:
    with pytest.raises(ValueError, match="sellable=None"):
        orders_for_market(D(0), D(1), market=MarketKind.PERPETUAL, filters=None, sellable=D(1))


@given(qtys, qtys)
def test_a_perpetual_reaches_every_target_and_exits_only_reduce_only(
    position: Decimal, target: Decimal
) -> None:
    plan = orders_for_market(position, target, market=MarketKind.PERPETUAL, filters=FILTERS)
    assert plan.reaches == target and plan.cut == 0
    # an order that brings the position toward zero is reduce-only, one that opens is not
    pos = position
    for o in plan.orders:
        after = pos + o.signed
        assert o.reduce_only == (pos != 0 and abs(after) < abs(pos) and after * pos >= 0)
        pos = after


@given(qtys, qtys, st.integers(0, 5000).map(lambda n: D(n) * STEP))
def test_spot_is_sized_as_before(position: Decimal, target: Decimal, held: Decimal) -> None:
    position = abs(position)
    assert orders_for_market(
        position, target, market=MarketKind.SPOT, filters=FILTERS, sellable=held
    ) == orders_for_target(position, target, filters=FILTERS, can_short=False, sellable=held)
