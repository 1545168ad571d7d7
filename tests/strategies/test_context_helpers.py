"""`OrderHelpers` (brackets, trailing stops) on a fake context: pure, no venue."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.strategies.base import Bar
from tessera.strategies.context import OrderHelpers

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
SYM = "BTCUSDT"
TICK = D("0.01")


class FakeContext(OrderHelpers):
    """Records what the helpers send; positions and prices are set by the test."""

    def __init__(self, tick: Decimal | None = TICK, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.tick = tick
        self.pos: dict[str, Decimal] = {}
        self.last: dict[str, float] = {SYM: 100.0}
        self.sent: list[Order] = []
        self.lists: list[tuple[OrderList, dict[str, object]]] = []
        self.cancelled: list[str] = []
        self._ids = itertools.count(1)

    def position(self, symbol: str) -> Decimal:
        return self.pos.get(symbol, D(0))

    def last_price(self, symbol: str) -> float | None:
        return self.last.get(symbol)

    def tick_size(self, symbol: str) -> Decimal | None:
        return self.tick

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        reason: ExitReason | None = None,
        reduce_only: bool = False,
    ) -> Order | None:
        order = Order(
            f"c{next(self._ids)}",
            symbol,
            side,
            order_type,
            qty,
            price=price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            reason=reason or ExitReason.for_type(order_type),
            reduce_only=reduce_only,
        )
        self.sent.append(order)
        return order

    def submit_oco(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        take_profit: Decimal,
        stop_loss: Decimal,
        stop_limit: Decimal | None = None,
        reason: ExitReason | None = None,
        take_profit_reason: ExitReason | None = None,
        stop_loss_reason: ExitReason | None = None,
    ) -> OrderList | None:
        lid = f"L{next(self._ids)}"
        tp = Order(
            f"c{next(self._ids)}",
            symbol,
            side,
            OrderType.LIMIT_MAKER,
            qty,
            price=take_profit,
            reason=take_profit_reason or reason or ExitReason.OCO,
            list_id=lid,
        )
        sl = Order(
            f"c{next(self._ids)}",
            symbol,
            side,
            OrderType.STOP_LOSS,
            qty,
            stop_price=stop_loss,
            reason=stop_loss_reason or reason or ExitReason.OCO,
            list_id=lid,
        )
        above, below = (tp, sl) if side is SELL else (sl, tp)
        orders = OrderList(lid, above, below)
        self.lists.append((orders, {"take_profit": take_profit, "stop_loss": stop_loss}))
        return orders

    def cancel_order(self, client_order_id: str) -> None:
        self.cancelled.append(client_order_id)


def fill(order: Order, qty: str, price: str = "100") -> Fill:
    return Fill(
        f"t{order.client_order_id}-{qty}",
        order.client_order_id,
        order.symbol,
        order.side,
        D(price),
        D(qty),
        D(0),
        "USDT",
        Liquidity.TAKER,
        ts_event=1,
    )


def bar(high: float, symbol: str = SYM) -> Bar:
    return Bar(symbol, 0, 60, high - 1, high, high - 2, high - 1, 10.0)


# --- brackets --------------------------------------------------------------------------------


def test_a_filled_bracket_entry_places_the_exit_oco_with_its_reasons() -> None:
    ctx = FakeContext()
    entry = ctx.submit_bracket(SYM, BUY, D("1"), stop_loss=D("95"), take_profit=D("110"))
    assert entry is not None and entry.type is OrderType.MARKET and entry.side is BUY
    assert ctx.lists == []  # nothing to protect before the entry fills
    ctx._sdk_on_fill(fill(entry, "1"))
    ((oco, levels),) = ctx.lists
    assert levels == {"take_profit": D("110"), "stop_loss": D("95")}
    assert oco.above.side is SELL and oco.above.qty == D("1")
    assert oco.above.reason is ExitReason.TAKE_PROFIT
    assert oco.below.reason is ExitReason.STOP_LOSS


def test_each_partial_fill_of_a_bracket_entry_gets_its_own_oco_then_the_bracket_is_done() -> None:
    ctx = FakeContext()
    entry = ctx.submit_bracket(
        SYM, BUY, D("1"), stop_loss=D("95"), take_profit=D("110"), entry_price=D("99")
    )
    assert entry is not None and entry.type is OrderType.LIMIT and entry.price == D("99")
    ctx._sdk_on_fill(fill(entry, "0.4"))
    ctx._sdk_on_fill(fill(entry, "0.6"))
    assert [o.above.qty for o, _ in ctx.lists] == [D("0.4"), D("0.6")]
    ctx._sdk_on_fill(fill(entry, "0.1"))  # an overfill: the bracket is already complete
    assert len(ctx.lists) == 2


def test_a_short_bracket_exits_with_a_buy_oco() -> None:
    ctx = FakeContext()
    entry = ctx.submit_bracket(SYM, SELL, D("2"), stop_loss=D("105"), take_profit=D("90"))
    assert entry is not None
    ctx._sdk_on_fill(fill(entry, "2"))
    ((oco, _),) = ctx.lists
    assert oco.below.side is BUY and oco.below.type is OrderType.LIMIT_MAKER


def test_a_cancelled_bracket_entry_is_forgotten() -> None:
    ctx = FakeContext()
    entry = ctx.submit_bracket(
        SYM, BUY, D("1"), stop_loss=D("95"), take_profit=D("110"), entry_price=D("99")
    )
    assert entry is not None
    entry.status = OrderStatus.CANCELED
    ctx._sdk_on_order(entry)
    ctx._sdk_on_fill(fill(entry, "1"))
    assert ctx.lists == []


@pytest.mark.parametrize(
    ("side", "stop", "tp", "entry"),
    [
        (BUY, "110", "95", None),  # the stop above the take-profit of a long
        (SELL, "95", "110", None),
        (BUY, "95", "110", "120"),  # an entry outside the bracket
    ],
)
def test_a_bracket_with_levels_the_wrong_way_round_is_refused(
    side: OrderSide, stop: str, tp: str, entry: str | None
) -> None:
    ctx = FakeContext()
    with pytest.raises(ValueError, match="bracket"):
        ctx.submit_bracket(
            SYM,
            side,
            D(1),
            stop_loss=D(stop),
            take_profit=D(tp),
            entry_price=D(entry) if entry else None,
        )
    assert ctx.sent == []


# --- trailing stops ---------------------------------------------------------------------------


def test_a_trailing_stop_starts_below_the_last_price_rounded_down_to_the_tick() -> None:
    ctx = FakeContext()
    ctx.last[SYM] = 100.07
    stop = ctx.trail_stop(SYM, D("1"), trail_pct=D("3"))
    assert stop is not None
    assert stop.type is OrderType.STOP_LOSS and stop.side is SELL and stop.reduce_only
    assert stop.stop_price == D("97.06")  # 97.0679 down to the tick
    assert stop.reason is ExitReason.TRAILING_STOP


def test_a_new_high_moves_the_stop_up_by_cancel_then_replace() -> None:
    ctx = FakeContext()
    ctx.pos[SYM] = D("1")
    first = ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    assert first is not None and first.stop_price == D("95")
    ctx._sdk_on_bar(bar(99.0))  # below the mark: nothing moves
    assert ctx.cancelled == [] and len(ctx.sent) == 1
    ctx._sdk_on_bar(bar(110.0))
    assert ctx.cancelled == [first.client_order_id]
    second = ctx.sent[-1]
    assert second.stop_price == D("104.5") and second.qty == D("1")
    assert second.reason is ExitReason.TRAILING_STOP
    # the helper's own cancel, confirmed later, does not end the trail
    first.status = OrderStatus.CANCELED
    ctx._sdk_on_order(first)
    ctx._sdk_on_bar(bar(120.0))
    assert ctx.cancelled[-1] == second.client_order_id and ctx.sent[-1].stop_price == D("114")


def test_other_symbols_bars_do_not_move_the_stop() -> None:
    ctx = FakeContext()
    ctx.pos[SYM] = D("1")
    ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    ctx._sdk_on_bar(bar(500.0, symbol="ETHUSDT"))
    assert ctx.cancelled == []


def test_the_new_stop_covers_only_what_is_left_of_the_position() -> None:
    ctx = FakeContext()
    ctx.pos[SYM] = D("1")
    ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    ctx.pos[SYM] = D("0.3")  # the strategy sold part of it
    ctx._sdk_on_bar(bar(110.0))
    assert ctx.sent[-1].qty == D("0.3")
    ctx.pos[SYM] = D(0)
    before = len(ctx.sent)
    ctx._sdk_on_bar(bar(130.0))  # nothing left: the stop is cancelled and not replaced
    assert len(ctx.sent) == before and len(ctx.cancelled) == 2
    ctx._sdk_on_bar(bar(150.0))
    assert len(ctx.cancelled) == 2  # and it stopped trailing


def test_a_filled_trailing_stop_stops_trailing() -> None:
    ctx = FakeContext()
    ctx.pos[SYM] = D("1")
    stop = ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    assert stop is not None
    ctx._sdk_on_fill(fill(stop, "1", price="95"))
    ctx._sdk_on_bar(bar(200.0))
    assert ctx.cancelled == [] and len(ctx.sent) == 1


def test_a_trailing_stop_cancelled_by_the_strategy_stops_trailing() -> None:
    ctx = FakeContext()
    ctx.pos[SYM] = D("1")
    stop = ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    assert stop is not None
    stop.status = OrderStatus.CANCELED
    ctx._sdk_on_order(stop)
    ctx._sdk_on_bar(bar(200.0))
    assert ctx.cancelled == [] and len(ctx.sent) == 1


def test_a_round_price_callable_overrides_the_tick() -> None:
    ctx = FakeContext(round_price=lambda symbol, p: p.quantize(D("1")))
    stop = ctx.trail_stop(SYM, D("1"), trail_pct=D("2.5"))
    assert stop is not None and stop.stop_price == D("98")  # 97.5 to the unit


def test_without_a_tick_the_stop_is_not_rounded() -> None:
    ctx = FakeContext(tick=None)
    ctx.last[SYM] = 100.07
    stop = ctx.trail_stop(SYM, D("1"), trail_pct=D("3"))
    assert stop is not None and stop.stop_price == D("100.07") * D("0.97")


@pytest.mark.parametrize("pct", ["0", "100", "-1"])
def test_a_trail_pct_outside_0_100_is_refused(pct: str) -> None:
    with pytest.raises(ValueError, match="trail_pct"):
        FakeContext().trail_stop(SYM, D(1), trail_pct=D(pct))


def test_a_trailing_stop_needs_a_price_to_start_from() -> None:
    ctx = FakeContext()
    ctx.last.clear()
    with pytest.raises(ValueError, match="no price"):
        ctx.trail_stop(SYM, D(1), trail_pct=D(1))


class ClosedContext(FakeContext):
    """A venue that takes no order now (a live bot on a late bar, or stopping): nothing goes
    out, neither a new order nor a cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.open = True

    def submit_order(self, *args: object, **kw: object) -> Order | None:  # type: ignore[override]
        return super().submit_order(*args, **kw) if self.open else None  # type: ignore[arg-type]

    def cancel_order(self, client_order_id: str) -> None:
        if self.open:
            super().cancel_order(client_order_id)


def test_a_bar_the_venue_cannot_act_on_raises_the_mark_and_the_next_bar_moves_the_stop() -> None:
    ctx = ClosedContext()
    ctx.pos[SYM] = D("1")
    first = ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
    assert first is not None
    ctx.open = False
    ctx._sdk_on_bar(bar(120.0))  # too late to trade on: nothing is sent
    assert ctx.cancelled == [] and ctx.sent == [first]
    ctx.open = True
    ctx._sdk_on_bar(bar(101.0))  # the trail kept trailing: its high of 120 moves the stop now
    assert ctx.cancelled == [first.client_order_id]
    assert ctx.sent[-1].stop_price == D("114")
