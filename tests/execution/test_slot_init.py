"""`slot_init` (the cheaper ``__init__`` of the hot frozen dataclasses) must change nothing but
the cost: the same parameters and defaults, the same values stored, ``__post_init__`` run, still
frozen, equal and hashable as before. And `Position.qty`'s shortcut for one lot gives what the
sum over the lots gives, to the last digit and exponent."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.backtest.results import FillRecord
from tessera.execution.fastinit import slot_init
from tessera.execution.matching import BarView, Match, MatchEvent, MatchResult
from tessera.execution.orders import ExitReason, Fill, Liquidity, Order, OrderSide, OrderType
from tessera.execution.position import Position
from tessera.execution.sizing import SizedOrder, SizingPlan
from tessera.execution.state import OrderEvent, OrderEventKind
from tessera.risk.engine import AccountView, OrderIntent

D = Decimal
HOT = [
    Fill,
    FillRecord,
    BarView,
    Match,
    MatchResult,
    MatchEvent,
    OrderIntent,
    AccountView,
    SizedOrder,
    SizingPlan,
    OrderEvent,
]


def reference(cls: type) -> type:
    """The same dataclass as `dataclasses` builds it, with the generated ``__init__``."""
    ns: dict[str, Any] = {"__annotations__": {f.name: f.type for f in dataclasses.fields(cls)}}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            ns[f.name] = f.default
    if hasattr(cls, "__post_init__"):
        ns["__post_init__"] = cls.__post_init__
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), ns))


@pytest.mark.parametrize("cls", HOT, ids=lambda c: c.__name__)
def test_the_fast_init_takes_the_parameters_and_defaults_the_dataclass_init_takes(
    cls: type,
) -> None:
    mine = inspect.signature(cls).parameters
    theirs = inspect.signature(reference(cls)).parameters
    assert [(p.name, p.default, p.kind) for p in mine.values()] == [
        (p.name, p.default, p.kind) for p in theirs.values()
    ]


def fill(**kw: Any) -> Fill:
    args: dict[str, Any] = {
        "trade_id": "7",
        "client_order_id": "backtest-1",
        "symbol": "BTCUSDT",
        "side": OrderSide.SELL,
        "price": D("40123.45"),
        "qty": D("0.01"),
        "fee": D("0.401"),
        "fee_asset": "USDT",
        "liquidity": Liquidity.TAKER,
        "ts_event": 5,
    }
    return Fill(**(args | kw))


def test_a_fill_holds_what_it_was_given_and_stays_frozen_equal_and_hashable() -> None:
    f = fill(strategy="s")
    ref = reference(Fill)(**{k.name: getattr(f, k.name) for k in dataclasses.fields(Fill)})
    assert [getattr(f, k.name) for k in dataclasses.fields(Fill)] == [
        getattr(ref, k.name) for k in dataclasses.fields(Fill)
    ]
    assert fill().strategy == ""  # the default
    assert f == fill(strategy="s") and hash(f) == hash(fill(strategy="s"))
    assert f != fill(strategy="t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.qty = D(1)  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(f)) == f
    assert dataclasses.replace(f, qty=D("0.02")).qty == D("0.02")
    assert repr(f).startswith("Fill(trade_id='7', client_order_id='backtest-1'")


@pytest.mark.parametrize(
    ("field", "value"), [("qty", D(0)), ("price", D("-1")), ("fee", D("-0.1"))]
)
def test_a_fill_still_checks_itself_on_creation(field: str, value: Decimal) -> None:
    with pytest.raises(ValueError, match=field):
        fill(**{field: value})


def test_the_other_hot_values_build_as_before() -> None:
    m = Match(D("0.01"), D("100.5"), Liquidity.TAKER, D("100"))
    r = MatchResult(m, expire=True)
    assert (r.match, r.expire, r.reject, r.triggered) == (m, True, None, False)
    o = Order("c1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, D("0.01"))
    assert MatchEvent(o, r).terminal
    assert OrderEvent(OrderEventKind.ACCEPTED, 3).fill is None
    assert FillRecord(fill(), D("40123"), D(0)).reason is ExitReason.SIGNAL
    intent = OrderIntent("BTCUSDT", OrderSide.BUY, D(1))
    assert (intent.order_type, intent.price, intent.reduce_only) == (OrderType.MARKET, None, False)
    assert AccountView({}, {}).open_orders == 0
    assert SizingPlan(D(0), D(1)).orders == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.qty = D(2)  # type: ignore[misc]


def test_slot_init_refuses_a_class_it_cannot_serve() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        x: list[int] = dataclasses.field(default_factory=list)

    for cls in (Mutable, WithFactory):
        with pytest.raises(TypeError, match="slot_init"):
            slot_init(cls)


quantities = st.decimals(
    min_value=D("-1000"), max_value=D("1000"), places=4, allow_nan=False
).filter(lambda q: q != 0)
scaled = st.sampled_from([D("1E+1"), D("1"), D("0.10"), D("1E-3")])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(quantities, scaled), min_size=1, max_size=8))
def test_a_positions_quantity_is_the_sum_of_its_lots(fills: list[tuple[Decimal, Decimal]]) -> None:
    pos = Position("BTCUSDT")
    for q, scale in fills:
        pos.apply(q * scale, D("100.25"))
        expected = sum((lot for lot, _ in pos.lots), D(0))
        assert str(pos.qty) == str(expected)  # the same value and the same exponent


sides = st.sampled_from([1, -1])
prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2, allow_nan=False)


base_fees = st.sampled_from([None, D("0.0000001"), D("0.001"), D("1E-5")])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(quantities, scaled, sides, prices, base_fees), min_size=1, max_size=40))
def test_a_positions_kept_sums_are_the_sums_over_its_lots_after_any_fills(
    fills: list[tuple[Decimal, Decimal, int, Decimal, Decimal | None]],
) -> None:
    """`Position` keeps its quantity and cost across fills instead of summing all lots again
    (a position that only grows cost O(lots) per fill): a lot appended or the oldest cut (a
    base-asset fee) moves them, a lot closed whole drops them. Read after every fill — adds,
    fee cuts, partial closes, flips — they are what summing the lots gives, to the last digit
    and exponent."""
    pos = Position("BTCUSDT")
    for q, scale, side, price, fee in fills:
        pos.apply(abs(q * scale) * side, price)
        if fee is not None and pos.lots:  # what a base-asset fee does (`apply_fill`)
            pos.apply(-fee if pos.lots[0][0] > 0 else fee, price)
        qty = sum((lot for lot, _ in pos.lots), D(0))
        cost = sum((lot * p for lot, p in pos.lots), D(0))
        assert (str(pos.qty), str(pos.cost)) == (str(qty), str(cost))


def test_a_position_that_only_grows_is_not_summed_again_per_fill() -> None:
    """The sums are moved, not recomputed: a thousand buys, each with a base-asset fee that
    cuts the oldest lot, each read back."""
    pos = Position("BTCUSDT")
    for i in range(1, 1001):
        pos.apply(D("0.001"), D(60000 + i))
        pos.apply(D("-0.0000001"), D(60000 + i))
        assert pos.qty == D("0.0009999") * i
    sums = pos._sums
    assert sums is not None and sums[2] == 1000
    pos.lots.append((D("1"), D("1")))  # a lot added from outside (the store's load): seen
    assert pos.qty == D("0.9999") + D("1")
