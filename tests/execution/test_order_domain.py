from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.execution import (
    ClientOrderIdGenerator,
    Fill,
    FillOutcome,
    InvalidTransitionError,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStateMachine,
    OrderStatus,
    OrderType,
    Position,
    TimeInForce,
    is_valid_client_order_id,
)
from tessera.execution.ids import synthetic_trade_id

K = OrderEventKind
S = OrderStatus
D = Decimal
SM = OrderStateMachine()


def order(qty: str = "1.0", **kw: object) -> Order:
    base: dict[str, object] = {
        "client_order_id": "t1-1",
        "symbol": "BTCUSDT",
        "side": OrderSide.BUY,
        "type": OrderType.LIMIT,
        "qty": D(qty),
        "price": D("50000"),
    }
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def fill(tid: str, qty: str, price: str = "50000", coid: str = "t1-1") -> Fill:
    return Fill(
        tid,
        coid,
        "BTCUSDT",
        OrderSide.BUY,
        D(price),
        D(qty),
        D("0.01"),
        "USDT",
        Liquidity.MAKER,
        ts_event=1,
    )


def ev(kind: OrderEventKind, **kw: object) -> OrderEvent:
    return OrderEvent(kind, ts=1, **kw)  # type: ignore[arg-type]


def test_happy_life_cycle_with_partial_fills() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    assert o.status is S.SUBMITTED and o.status.is_open
    SM.apply(o, ev(K.ACCEPTED, exchange_order_id="123"))
    assert o.status is S.ACCEPTED and o.exchange_order_id == "123"
    assert SM.apply(o, ev(K.FILLED, fill=fill("a", "0.4", "50000"))) is FillOutcome.APPLIED
    assert o.status is S.PARTIALLY_FILLED
    assert SM.apply(o, ev(K.FILLED, fill=fill("b", "0.6", "50010"))) is FillOutcome.APPLIED
    assert o.status is S.FILLED and o.status.is_terminal
    assert o.filled_qty == D("1.0")
    assert o.avg_price == D("50006")  # (0.4*50000 + 0.6*50010) / 1.0, exact
    assert o.fees == {"USDT": D("0.02")}


def test_duplicate_trade_id_is_ignored() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.FILLED, fill=fill("a", "0.5")))
    assert SM.apply(o, ev(K.FILLED, fill=fill("a", "0.5"))) is FillOutcome.DUPLICATE
    assert o.filled_qty == D("0.5") and o.status is S.PARTIALLY_FILLED


def test_fill_before_ack_then_late_ack_keeps_filled() -> None:
    o = order(type=OrderType.MARKET, price=None)
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.FILLED, fill=fill("a", "1.0")))
    assert o.status is S.FILLED
    SM.apply(o, ev(K.ACCEPTED, exchange_order_id="9"))
    assert o.status is S.FILLED and o.exchange_order_id == "9"


def test_fill_while_cancel_pending_then_canceled() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.ACCEPTED))
    SM.apply(o, ev(K.CANCEL_REQUESTED))
    assert o.status is S.PENDING_CANCEL
    SM.apply(o, ev(K.FILLED, fill=fill("a", "0.3")))
    assert o.status is S.PENDING_CANCEL and o.filled_qty == D("0.3")
    SM.apply(o, ev(K.CANCELED))
    assert o.status is S.CANCELED and o.filled_qty == D("0.3")


def test_fill_completing_order_while_cancel_pending_wins() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.CANCEL_REQUESTED))
    SM.apply(o, ev(K.FILLED, fill=fill("a", "1.0")))
    assert o.status is S.FILLED
    with pytest.raises(InvalidTransitionError):
        SM.apply(o, ev(K.CANCELED))


def test_fill_after_confirmed_cancel_is_recorded_as_late() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.ACCEPTED))
    SM.apply(o, ev(K.CANCEL_REQUESTED))
    SM.apply(o, ev(K.CANCELED))
    assert SM.apply(o, ev(K.FILLED, fill=fill("a", "0.2"))) is FillOutcome.LATE
    assert o.status is S.CANCELED and o.late_fill and o.filled_qty == D("0.2")


def test_cancel_rejected_returns_to_working_state() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.ACCEPTED))
    SM.apply(o, ev(K.FILLED, fill=fill("a", "0.2")))
    SM.apply(o, ev(K.CANCEL_REQUESTED))
    SM.apply(o, ev(K.CANCEL_REJECTED, reason="-2011"))
    assert o.status is S.PARTIALLY_FILLED


def test_overfill_is_flagged_not_dropped() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    SM.apply(o, ev(K.FILLED, fill=fill("a", "0.8")))
    assert SM.apply(o, ev(K.FILLED, fill=fill("b", "0.5"))) is FillOutcome.OVERFILL
    assert o.overfilled and o.filled_qty == D("1.3") and o.status is S.FILLED


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ([], K.ACCEPTED),  # ack for an order never sent
        ([], K.CANCEL_REQUESTED),
        ([K.SUBMITTED, K.ACCEPTED], K.REJECTED),  # a resting order cannot be rejected
        ([K.SUBMITTED, K.REJECTED], K.CANCELED),
        ([K.SUBMITTED, K.REJECTED], K.SUBMITTED),
        ([K.SUBMITTED, K.ACCEPTED, K.CANCELED], K.ACCEPTED.CANCEL_REQUESTED),
        ([K.SUBMITTED, K.EXPIRED], K.CANCELED),
        ([K.SUBMITTED], K.CANCEL_REJECTED),
    ],
)
def test_invalid_transitions_raise(setup: list[OrderEventKind], event: OrderEventKind) -> None:
    o = order()
    for kind in setup:
        SM.apply(o, ev(kind))
    before = o.status
    with pytest.raises(InvalidTransitionError):
        SM.apply(o, ev(event))
    assert o.status is before


def test_fill_on_unsent_or_rejected_order_raises() -> None:
    o = order()
    with pytest.raises(InvalidTransitionError):
        SM.apply(o, ev(K.FILLED, fill=fill("a", "0.1")))
    SM.apply(o, ev(K.REJECTED, reason="-2010"))
    assert o.reject_reason == "-2010"
    with pytest.raises(InvalidTransitionError):
        SM.apply(o, ev(K.FILLED, fill=fill("a", "0.1")))


def test_fill_of_another_order_raises() -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    with pytest.raises(InvalidTransitionError, match="belongs to"):
        SM.apply(o, ev(K.FILLED, fill=fill("a", "0.1", coid="other")))


def test_order_validation() -> None:
    with pytest.raises(ValueError, match="needs a price"):
        order(price=None)
    with pytest.raises(ValueError, match="takes no price"):
        order(type=OrderType.MARKET)
    with pytest.raises(ValueError, match="stop_price"):
        order(type=OrderType.STOP_LOSS_LIMIT)
    with pytest.raises(ValueError, match="qty must be > 0"):
        order(qty="0")
    o = order(type=OrderType.STOP_LOSS_LIMIT, stop_price=D("49000"), time_in_force=TimeInForce.IOC)
    assert o.remaining_qty == D("1.0")


# --- property: whatever the event order, no fill is lost or counted twice --------------------

fills_st = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["0.1", "0.25", "0.5"])),
    max_size=8,
)
events_st = st.lists(
    st.sampled_from([K.ACCEPTED, K.CANCEL_REQUESTED, K.CANCELED, K.EXPIRED, K.CANCEL_REJECTED]),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(fills_st, events_st, st.randoms(use_true_random=False))
def test_no_fill_lost_or_doubled_in_any_order(
    fills: list[tuple[str, str]], events: list[OrderEventKind], rnd: object
) -> None:
    o = order()
    SM.apply(o, ev(K.SUBMITTED))
    stream: list[object] = [("fill", f) for f in fills] + [("event", e) for e in events]
    rnd.shuffle(stream)  # type: ignore[attr-defined]
    first_qty: dict[str, Decimal] = {}
    for kind, item in stream:  # type: ignore[misc]
        if kind == "fill":
            tid, qty = item
            first_qty.setdefault(tid, D(qty))
            SM.apply(o, ev(K.FILLED, fill=fill(tid, first_qty[tid])))
        else:
            with contextlib.suppress(InvalidTransitionError):
                SM.apply(o, ev(item))
    assert o.trade_ids == set(first_qty)
    assert o.filled_qty == sum(first_qty.values(), D(0))
    assert o.overfilled == (o.filled_qty > o.qty)
    if o.filled_qty >= o.qty and not o.late_fill:
        assert o.status in (S.FILLED, S.CANCELED, S.EXPIRED)


# --- ids -----------------------------------------------------------------------------------


def test_client_order_ids_are_deterministic_valid_and_short() -> None:
    gen = ClientOrderIdGenerator("20261124T034627-a2ed")
    ids = [gen.next() for _ in range(3)]
    assert ids == ["t20261124T034627a2ed-1", "t20261124T034627a2ed-2", "t20261124T034627a2ed-3"]
    again = ClientOrderIdGenerator("20261124T034627-a2ed", next_seq=2)
    assert again.next() == ids[1]  # rebuilt from the persisted sequence: same id
    big = gen.format(9_999_999_999)
    assert len(big) <= 36 and is_valid_client_order_id(big)
    long_run = ClientOrderIdGenerator("x" * 80)
    assert len(long_run.format(9_999_999_999)) <= 36
    assert gen.owns(ids[0]) and not long_run.owns(ids[0])
    with pytest.raises(ValueError, match="out of range"):
        gen.format(10**10)


def test_synthetic_trade_id_is_stable() -> None:
    a = synthetic_trade_id("BTCUSDT", "42", "BUY", D("0.10"), D("50000.0"), 7)
    b = synthetic_trade_id("BTCUSDT", "42", "BUY", D("0.1"), D("50000"), 7)
    c = synthetic_trade_id("BTCUSDT", "42", "BUY", D("0.1"), D("50000"), 8)
    assert a == b and a != c


# --- positions -----------------------------------------------------------------------------


def test_position_add_reduce_flip() -> None:
    p = Position("BTCUSDT")
    assert p.apply(D("1"), D("100")) == 0
    assert p.apply(D("1"), D("110")) == 0
    assert p.qty == D("2") and p.avg_price == D("105")
    assert p.apply(D("-0.5"), D("120")) == D("10")  # FIFO: closes half of the 100 lot
    assert p.qty == D("1.5") and p.cost == D("160")
    assert p.apply(D("-2.5"), D("100")) == D("-10")  # closes 0.5@100 and 1@110, flips
    assert p.qty == D("-1") and p.avg_price == D("100")
    assert p.unrealized_pnl(D("90")) == D("10")
    assert p.apply(D("1"), D("95")) == D("5")
    assert p.is_flat and p.avg_price == 0 and p.realized_pnl == D("5")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=D("-5"), max_value=D("5"), places=3).filter(lambda q: q != 0),
            st.decimals(min_value=D("1"), max_value=D("1000"), places=2),
        ),
        min_size=1,
        max_size=30,
    ),
    st.decimals(min_value=D("1"), max_value=D("1000"), places=2),
)
def test_position_pnl_equals_cash_flows(
    trades: list[tuple[Decimal, Decimal]], mark: Decimal
) -> None:
    p = Position("X")
    cash = D(0)
    for qty, price in trades:
        p.apply(qty, price)
        cash -= qty * price
    # Total PnL by accounting == cash plus marked inventory, exactly.
    assert p.realized_pnl + p.unrealized_pnl(mark) == cash + p.qty * mark
