"""How an order meets a bar: fill price, quantity and liquidity — pure functions.

Conventions (documented because every backtester picks its own):
- An order is active from the first bar that opens at or after its arrival time
  (decision time + latency). It never fills at prices from before it arrived.
- MARKET: fills at that bar's open, plus slippage against us (taker).
- LIMIT: if the open is already through the limit, fills at the open (marketable on arrival,
  taker); otherwise fills at the limit price when the bar trades at it ("touch": low <= limit
  for a buy), as a maker. ``limit_fill="through"`` needs the bar to trade strictly beyond the
  limit, a conservative stand-in for queue position.
- LIMIT_MAKER: rejected if marketable on arrival (Binance -2010), else like LIMIT.
- STOP_LOSS (stop-market): triggers when the bar reaches the stop; fills at the worse of open
  and stop, plus slippage (taker). STOP_LOSS_LIMIT: triggers likewise, then acts as a LIMIT
  from the trigger price on.
- IOC/FOK only get their arrival bar's open; FOK fills completely or not at all.
- Partial fills: with ``max_participation`` > 0, one bar fills at most that fraction of the
  bar's volume; the rest waits for the next bar (GTC) or expires (IOC).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tessera.execution.orders import Liquidity, Order, OrderSide, OrderType, TimeInForce

ZERO = Decimal(0)
BPS = Decimal("0.0001")


class SlippageKind(StrEnum):
    NONE = "none"
    FIXED_BPS = "fixed_bps"
    VOLATILITY = "volatility"
    BOOK = "book"


@dataclass(frozen=True, slots=True)
class SlippageModel:
    kind: SlippageKind = SlippageKind.FIXED_BPS
    bps: Decimal = Decimal("1")
    vol_mult: float = 0.1  # volatility: fraction of the bar's high-low range

    def adjust(self, side: OrderSide, price: Decimal, bar_range: float) -> Decimal:
        """Price after slippage for a taker fill; always against the order."""
        if self.kind is SlippageKind.NONE:
            return price
        if self.kind is SlippageKind.FIXED_BPS:
            delta = price * self.bps * BPS
        elif self.kind is SlippageKind.VOLATILITY:
            delta = Decimal(repr(bar_range * self.vol_mult))
        else:
            raise ValueError("book slippage needs order-book data; bars have none")
        return price + delta if side is OrderSide.BUY else price - delta


@dataclass(frozen=True, slots=True)
class BarView:
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Match:
    qty: Decimal
    price: Decimal
    liquidity: Liquidity
    reference_price: Decimal  # price before slippage (to report slippage paid)


@dataclass(frozen=True, slots=True)
class MatchResult:
    match: Match | None = None
    expire: bool = False  # the remainder ends (IOC/FOK)
    reject: str | None = None  # rejected on arrival (e.g. LIMIT_MAKER would take)
    triggered: bool = False  # a stop order triggered on this bar


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def match_order(
    order: Order,
    bar: BarView,
    first_bar: bool,
    slippage: SlippageModel,
    max_participation: float = 0.0,
    limit_fill: str = "touch",
    triggered: bool = False,
) -> MatchResult:
    """Decide what ``order`` does on ``bar``. ``first_bar``: the order arrived for this bar."""
    buy = order.side is OrderSide.BUY
    o, h, lo = _d(bar.open), _d(bar.high), _d(bar.low)
    remaining = order.remaining_qty
    cap = remaining
    if max_participation > 0:
        cap = min(remaining, _d(bar.volume * max_participation))
        if cap <= 0:
            return MatchResult(expire=order.time_in_force is not TimeInForce.GTC)
    immediate_only = order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
    if immediate_only and not first_bar:
        return MatchResult(expire=True)
    bar_range = bar.high - bar.low

    def fill(price: Decimal, liquidity: Liquidity, ref: Decimal, trig: bool = False) -> MatchResult:
        qty = cap
        if order.time_in_force is TimeInForce.FOK and qty < remaining:
            return MatchResult(expire=True)
        expire = immediate_only and qty < remaining
        return MatchResult(Match(qty, price, liquidity, ref), expire=expire, triggered=trig)

    otype = order.type
    if otype is OrderType.MARKET:
        return fill(slippage.adjust(order.side, o, bar_range), Liquidity.TAKER, o)

    if otype in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT) and not triggered:
        assert order.stop_price is not None
        stop = order.stop_price
        hit = h >= stop if buy else lo <= stop
        if not hit:
            return MatchResult(expire=immediate_only)
        trigger_px = max(o, stop) if buy else min(o, stop)
        if otype is OrderType.STOP_LOSS:
            px = slippage.adjust(order.side, trigger_px, bar_range)
            return fill(px, Liquidity.TAKER, trigger_px, trig=True)
        # Stop-limit: from the trigger on it is a limit order.
        assert order.price is not None
        marketable = trigger_px <= order.price if buy else trigger_px >= order.price
        if marketable:
            return fill(trigger_px, Liquidity.TAKER, trigger_px, trig=True)
        return MatchResult(triggered=True, expire=immediate_only)

    # LIMIT, LIMIT_MAKER, or a triggered STOP_LOSS_LIMIT
    assert order.price is not None
    limit = order.price
    marketable_at_open = o <= limit if buy else o >= limit
    if marketable_at_open and (first_bar or otype is OrderType.STOP_LOSS_LIMIT):
        if otype is OrderType.LIMIT_MAKER:
            return MatchResult(reject="Order would immediately match and take.")
        return fill(o, Liquidity.TAKER, o)
    if marketable_at_open:
        # A resting limit the market opened through fills at the (better) open, as a maker.
        return fill(o, Liquidity.MAKER, o)
    if immediate_only:
        return MatchResult(expire=True)
    if limit_fill == "through":
        traded = lo < limit if buy else h > limit
    else:
        traded = lo <= limit if buy else h >= limit
    if traded:
        return fill(limit, Liquidity.MAKER, limit)
    return MatchResult()
