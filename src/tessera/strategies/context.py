"""`OrderHelpers`: bracket orders and trailing stops, written once for every venue.

Both strategy contexts — the backtest's `BacktestContext` and the live bot's `LiveContext` —
inherit this class. It implements `StrategyContext.submit_bracket` and
`StrategyContext.trail_stop` purely on top of the primitives every context has
(``submit_order``, ``submit_oco``, ``cancel_order``, ``position``, ``last_price``), so a
strategy's brackets and trailing stops behave the same in research and in production. The venue
calls three hooks, each *before* the strategy's own callback of the same event:

* ``_sdk_on_fill(fill)`` — before ``on_fill``: a fill of a bracket's entry places the exit OCO
  for the quantity just filled (take-profit leg reason ``take_profit``, stop leg
  ``stop_loss``); a partly filled entry gets one OCO per fill;
* ``_sdk_on_bar(bar)`` — before ``on_bar``: trailing stops follow the bar's high;
* ``_sdk_on_order(order)`` — before ``on_order``: a trailing stop that the strategy cancelled,
  or that expired or was refused, stops trailing; a bracket entry that ended stops waiting;
* ``_sdk_catch_up(bar)`` and ``_sdk_resume()`` — a live bot's warm-up bars, then its end.

How the trailing stop is emulated (Binance spot has no trailing order we use): an exchange-side
STOP_LOSS sell rests at ``hwm * (1 - trail_pct/100)``, where ``hwm`` is the highest high since
it was placed (starting from the last price), rounded *down* to the symbol's tick. After each
closed bar whose high lifts that level, the resting stop is cancelled and a new one placed for
what is left (at most the position). Consequences worth knowing:

* the stop moves once per closed bar, never inside a bar: a bar that rises and falls back
  through the would-be stop does not trigger it on that bar;
* between the cancel and the new stop there is a window (the latency of one order round trip)
  with no stop on the exchange; the cancel goes first because a spot account cannot lock the
  same coins for two sell orders;
* the stop is a stop-market (STOP_LOSS): a gap through it fills at the open, not at the stop.
  On a symbol that takes no stop-market order (Binance spot BTCUSDT's ``orderTypes`` list
  STOP_LOSS_LIMIT only) it is a STOP_LOSS_LIMIT whose limit sits ``STOP_LIMIT_OFFSET_PCT``
  (0.5 %) below the stop: a fall through the stop fills down to that limit, a gap beyond it
  leaves the order resting unfilled — the price of a guaranteed limit. OCO stop legs follow the
  same rule (`stop_limit_for`);
* it stops trailing when the stop fills, when the strategy cancels it (or it expires or is
  refused), or when the position is gone;
* a bar the venue cannot act on (a live bot's late bar) raises the high-water mark and sends
  nothing; the next bar it acts on moves the stop. A restarted bot's warm-up bars that closed
  after the newest bar a trail had seen (`_sdk_catch_up`) count too, and the stop moves as soon
  as the warm-up is over (`_sdk_resume`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from tessera.execution.orders import (
    ExitReason,
    Fill,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.strategies.base import Bar

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# where the limit of a stop-limit sits beyond its stop, in percent, on a symbol that takes no
# stop-market order: room for the market to move past the stop and still fill (freqtrade's
# stoploss_on_exchange_limit_ratio is the same idea); a gap beyond it leaves the order resting
STOP_LIMIT_OFFSET_PCT = Decimal("0.5")


@dataclass(slots=True)
class _Bracket:
    symbol: str
    exit_side: OrderSide
    qty: Decimal
    take_profit: Decimal
    stop_loss: Decimal
    filled: Decimal = ZERO


@dataclass(slots=True)
class _Trail:
    symbol: str
    qty: Decimal
    trail_pct: Decimal
    hwm: Decimal
    stop: Decimal
    order: Order  # the resting stop
    # open time of the newest bar whose high is in ``hwm`` (0: not known, e.g. state written
    # before this was kept): a restarted bot raises ``hwm`` by the bars after it
    seen: int = 0


class OrderHelpers(ABC):
    """Base of every strategy context: `submit_bracket` and `trail_stop` on the primitives.

    ``round_price(symbol, price)`` rounds a stop price down to the symbol's tick; without it the
    context's `tick_size` is used (None: no rounding)."""

    def __init__(self, round_price: Callable[[str, Decimal], Decimal] | None = None) -> None:
        self._round_price = round_price
        self._brackets: dict[str, _Bracket] = {}  # entry client id -> its exits
        # resting stop client id -> its trail; re-keyed (before the cancel) when the stop moves,
        # so the cancel of a moved stop is not taken for the strategy's
        self._trails: dict[str, _Trail] = {}
        # symbol -> open time of the newest bar the helpers were shown (`_sdk_on_bar`,
        # `_sdk_catch_up`): where a new trailing stop's own bars start
        self._bar_seen: dict[str, int] = {}
        # the strategy's own state, kept across restarts by the live bot (`strategies.state`)
        self.state: dict[str, Any] = {}

    # --- state across restarts -------------------------------------------------------------------

    def _sdk_snapshot(self) -> dict[str, Any]:
        """What the helpers manage, as `strategies.state` can store it."""
        return {
            "brackets": {
                cid: {
                    "symbol": b.symbol,
                    "exit_side": b.exit_side.value,
                    "qty": b.qty,
                    "take_profit": b.take_profit,
                    "stop_loss": b.stop_loss,
                    "filled": b.filled,
                }
                for cid, b in self._brackets.items()
            },
            "trails": {
                cid: {
                    "symbol": t.symbol,
                    "qty": t.qty,
                    "trail_pct": t.trail_pct,
                    "hwm": t.hwm,
                    "stop": t.stop,
                    "seen": t.seen,
                }
                for cid, t in self._trails.items()
            },
        }

    def _sdk_restore(self, data: dict[str, Any]) -> None:
        """The helpers as `_sdk_snapshot` left them (in a restarted bot)."""
        self._brackets = {
            cid: _Bracket(
                b["symbol"],
                OrderSide(b["exit_side"]),
                b["qty"],
                b["take_profit"],
                b["stop_loss"],
                b["filled"],
            )
            for cid, b in data.get("brackets", {}).items()
        }
        self._trails = {}
        for cid, t in data.get("trails", {}).items():
            stop = Order(
                client_order_id=cid,
                symbol=t["symbol"],
                side=OrderSide.SELL,
                type=OrderType.STOP_LOSS,
                qty=t["qty"],
                stop_price=t["stop"],
                reason=ExitReason.TRAILING_STOP,
                reduce_only=True,
            )
            self._trails[cid] = _Trail(
                t["symbol"], t["qty"], t["trail_pct"], t["hwm"], t["stop"], stop, t.get("seen", 0)
            )

    # --- the primitives a venue's context provides ---------------------------------------------

    @abstractmethod
    def position(self, symbol: str) -> Decimal: ...

    @abstractmethod
    def last_price(self, symbol: str) -> float | None: ...

    @abstractmethod
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
    ) -> Order | None: ...

    @abstractmethod
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
        """``take_profit_reason`` / ``stop_loss_reason`` name one leg's reason (default
        ``reason``, else ``oco``)."""

    @abstractmethod
    def cancel_order(self, client_order_id: str) -> None: ...

    @property
    def warming(self) -> bool:
        """See `StrategyContext.warming` (False unless the venue warms strategies up)."""
        return False

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """The leverage of ``symbol``'s next exposure (perpetuals only). The backtest
        implements it (`BacktestContext.set_leverage`: refused above the leverage bracket's
        maximum for the position's notional, and on spot symbols); the live context will
        later. Here: refused, so a strategy never believes a leverage was set that was not."""
        raise NotImplementedError(
            f"set_leverage({symbol!r}, {leverage}): this context does not set leverage yet"
        )

    def tick_size(self, symbol: str) -> Decimal | None:
        """The symbol's price tick, when the venue knows it."""
        return None

    def order_types(self, symbol: str) -> frozenset[str]:
        """The order types the symbol takes (exchangeInfo ``orderTypes``); empty: unknown."""
        return frozenset()

    def stop_limit_for(self, symbol: str, side: OrderSide, stop: Decimal) -> Decimal | None:
        """The limit price of a stop-loss on a symbol that takes no stop-market order (Binance
        spot BTCUSDT lists STOP_LOSS_LIMIT, not STOP_LOSS): ``STOP_LIMIT_OFFSET_PCT`` beyond the
        stop, rounded away from the market to the tick; None when STOP_LOSS is available."""
        types = self.order_types(symbol)
        if not types or "STOP_LOSS" in types or "STOP_LOSS_LIMIT" not in types:
            return None
        offset = stop * STOP_LIMIT_OFFSET_PCT / HUNDRED
        raw = stop - offset if side is OrderSide.SELL else stop + offset
        tick = self.tick_size(symbol)
        if not tick:
            return raw
        rounding = ROUND_DOWN if side is OrderSide.SELL else ROUND_UP
        return (raw / tick).to_integral_value(rounding=rounding) * tick

    # --- the helpers ----------------------------------------------------------------------------

    def submit_bracket(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        stop_loss: Decimal,
        take_profit: Decimal,
        entry_price: Decimal | None = None,
    ) -> Order | None:
        """Entry (MARKET, or LIMIT at ``entry_price``) and, on each of its fills, an OCO that
        exits the filled quantity at ``take_profit`` or ``stop_loss``."""
        above, below = (
            (take_profit, stop_loss) if side is OrderSide.BUY else (stop_loss, take_profit)
        )
        if not below < above:
            want = "stop_loss < take_profit" if side is OrderSide.BUY else "take_profit < stop_loss"
            raise ValueError(
                f"bracket {side} {symbol}: needs {want} (stop_loss={stop_loss}, "
                f"take_profit={take_profit})"
            )
        if entry_price is not None and not below < entry_price < above:
            raise ValueError(
                f"bracket {side} {symbol}: entry_price {entry_price} must lie between the stop "
                f"and the take-profit"
            )
        entry = self.submit_order(
            symbol,
            side,
            qty,
            OrderType.MARKET if entry_price is None else OrderType.LIMIT,
            price=entry_price,
        )
        if entry is not None:
            self._brackets[entry.client_order_id] = _Bracket(
                symbol, side.opposite, qty, take_profit, stop_loss
            )
        return entry

    def trail_stop(self, symbol: str, qty: Decimal, *, trail_pct: Decimal) -> Order | None:
        """A trailing stop for a long of ``qty``; see the module docstring for the emulation."""
        pct = Decimal(trail_pct)
        if not ZERO < pct < HUNDRED:
            raise ValueError(f"trail_stop {symbol}: trail_pct must be in (0, 100), got {pct}")
        if qty <= 0:
            raise ValueError(f"trail_stop {symbol}: qty must be > 0, got {qty}")
        last = self.last_price(symbol)
        if last is None:
            raise ValueError(f"trail_stop {symbol}: no price yet to trail from")
        hwm = Decimal(repr(last))
        stop = self._stop_level(symbol, hwm, pct)
        order = self._place_stop(symbol, qty, stop)
        if order is not None:
            seen = self._bar_seen.get(symbol, 0)
            self._trails[order.client_order_id] = _Trail(symbol, qty, pct, hwm, stop, order, seen)
        return order

    # --- hooks the venue calls ------------------------------------------------------------------

    def _sdk_on_fill(self, fill: Fill) -> None:
        """Before the strategy's ``on_fill``."""
        bracket = self._brackets.get(fill.client_order_id)
        if bracket is not None:
            bracket.filled += fill.qty
            if bracket.filled >= bracket.qty:
                del self._brackets[fill.client_order_id]
            self.submit_oco(
                bracket.symbol,
                bracket.exit_side,
                fill.qty,
                take_profit=bracket.take_profit,
                stop_loss=bracket.stop_loss,
                take_profit_reason=ExitReason.TAKE_PROFIT,
                stop_loss_reason=ExitReason.STOP_LOSS,
            )
        # the trailing stop filled (even in part): it is done moving
        self._trails.pop(fill.client_order_id, None)

    def _sdk_on_bar(self, bar: Bar) -> None:
        """Before the strategy's ``on_bar``: move the trailing stops of ``bar.symbol`` up."""
        self._bar_seen[bar.symbol] = bar.open_time
        for cid, trail in list(self._trails.items()):
            if trail.symbol != bar.symbol:
                continue
            trail.hwm = max(trail.hwm, Decimal(repr(bar.high)))
            trail.seen = bar.open_time
            self._move_stop(cid, trail)

    def _sdk_catch_up(self, bar: Bar) -> None:
        """A bar seen while not trading (a restarted bot's warm-up): the trailing stops of
        ``bar.symbol`` take in its high if it closed after the newest bar they had — a bar
        that closed while the bot was down (or arrived as it stopped) counts, as it does in an
        uninterrupted run. Nothing is sent here; `_sdk_resume` moves the stops afterwards."""
        self._bar_seen[bar.symbol] = max(self._bar_seen.get(bar.symbol, 0), bar.open_time)
        for trail in self._trails.values():
            if trail.symbol == bar.symbol and 0 < trail.seen < bar.open_time:
                trail.hwm = max(trail.hwm, Decimal(repr(bar.high)))
                trail.seen = bar.open_time

    def _sdk_resume(self) -> None:
        """Once trading again after `_sdk_catch_up`: each trailing stop whose level rose with
        the bars it caught up on moves now, not a bar later."""
        for cid, trail in list(self._trails.items()):
            self._move_stop(cid, trail)

    def _move_stop(self, cid: str, trail: _Trail) -> None:
        """Cancel the resting stop and place one at the level ``trail.hwm`` gives, if higher.

        If the venue takes no order now (a live bot on a bar that arrived too late to trade
        on, or stopping), the trail stays on the resting stop with its raised ``hwm``: the
        next bar it can act on moves it. If the cancel went out, its confirmation ends the
        trail (`_sdk_on_order`), as a cancel always does."""
        stop = self._stop_level(trail.symbol, trail.hwm, trail.trail_pct)
        if stop <= trail.stop:
            return
        del self._trails[cid]
        self.cancel_order(cid)
        qty = min(trail.qty, self.position(trail.symbol))
        if qty <= 0:
            return  # nothing left to protect
        order = self._place_stop(trail.symbol, qty, stop)
        if order is None:
            self._trails[cid] = trail
            return
        trail.order, trail.stop, trail.qty = order, stop, qty
        self._trails[order.client_order_id] = trail

    def _sdk_on_order(self, order: Order) -> None:
        """Before the strategy's ``on_order``."""
        cid = order.client_order_id
        if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
            self._brackets.pop(cid, None)
            self._trails.pop(cid, None)  # cancelled by the strategy, expired or refused

    # --- internals ------------------------------------------------------------------------------

    def _stop_level(self, symbol: str, hwm: Decimal, pct: Decimal) -> Decimal:
        raw = hwm * (1 - pct / HUNDRED)
        if self._round_price is not None:
            return self._round_price(symbol, raw)
        tick = self.tick_size(symbol)
        if tick:
            return (raw / tick).to_integral_value(rounding=ROUND_DOWN) * tick
        return raw

    def _place_stop(self, symbol: str, qty: Decimal, stop: Decimal) -> Order | None:
        limit = self.stop_limit_for(symbol, OrderSide.SELL, stop)
        return self.submit_order(
            symbol,
            OrderSide.SELL,
            qty,
            OrderType.STOP_LOSS if limit is None else OrderType.STOP_LOSS_LIMIT,
            price=limit,
            stop_price=stop,
            reason=ExitReason.TRAILING_STOP,
            reduce_only=True,
        )
