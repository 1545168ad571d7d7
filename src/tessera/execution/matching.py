"""How an order meets a bar: fill price, quantity and liquidity — one set of rules for every
venue that matches our orders itself (the backtest, `PaperExchange`, the simulator's bar mode).

It lives in the domain (``execution``), not in ``backtest``: a venue must not import the
research stack to decide a fill, and two copies of these rules would drift apart.

Conventions (documented because every backtester picks its own):
- An order is active from the first bar that opens at or after its arrival time
  (decision time + latency). It never fills at prices from before it arrived.
- MARKET: fills at that bar's open, plus slippage against us (taker).
- LIMIT: if the open is already through the limit, fills at the open (marketable on arrival,
  taker); otherwise fills at the limit price when the bar trades at it ("touch": low <= limit
  for a buy), as a maker. ``limit_fill="through"`` needs the bar to trade strictly beyond the
  limit, a conservative stand-in for queue position.
- LIMIT_MAKER: rejected if marketable on arrival (Binance -2010), else like LIMIT.
- Stop orders (STOP_LOSS*, TAKE_PROFIT*) trigger when the bar reaches ``stop_price`` in the
  direction `OrderType.trigger_above` gives (a stop-loss sell below the market, a take-profit
  sell above it, buys the other way round). The trigger price is the stop, or the open when the
  bar opened already through it (a gap): for a stop-loss that is the worse of open and stop, for
  a take-profit the better. STOP_LOSS and TAKE_PROFIT then fill at once at the trigger price
  plus slippage (taker); STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT become a LIMIT at ``price``
  from the trigger on: filled at the trigger price if that is marketable, else resting. A limit
  that triggered but was not marketable does not fill on its trigger bar: the order of prices
  inside a bar is unknown, so the bar's later prices are not credited to it. The remainder of
  a triggered STOP_LOSS/TAKE_PROFIT (participation cap) is a market order from then on.
- IOC/FOK only get their arrival bar's open; FOK fills completely or not at all.
- Partial fills: with ``max_participation`` > 0, one bar fills at most that fraction of the
  bar's volume; the rest waits for the next bar (GTC) or expires (IOC).
- OCO (`WorkingOrders.match_bar`): when one leg fills (even in part) or triggers, the other
  expires on that bar, as Binance expires it. When both legs could act on one bar, the leg the
  open is already through wins; otherwise the stop-loss leg wins — pessimistic, since a bar does
  not tell whether its high or its low came first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tessera.execution.fastinit import slot_init
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


@slot_init
@dataclass(frozen=True, slots=True)
class BarView:
    open: float
    high: float
    low: float
    close: float
    volume: float


@slot_init
@dataclass(frozen=True, slots=True)
class Match:
    qty: Decimal
    price: Decimal
    liquidity: Liquidity
    reference_price: Decimal  # price before slippage (to report slippage paid)


@slot_init
@dataclass(frozen=True, slots=True)
class MatchResult:
    match: Match | None = None
    expire: bool = False  # the remainder ends (IOC/FOK, or the other leg of an OCO acted)
    reject: str | None = None  # rejected on arrival (e.g. LIMIT_MAKER would take)
    triggered: bool = False  # a stop order triggered on this bar

    @property
    def acted(self) -> bool:
        """Filled (in part) or triggered: what expires the other leg of an OCO."""
        return self.match is not None or self.triggered


NOTHING = MatchResult()


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
    """Decide what ``order`` does on ``bar``. ``first_bar``: the order arrived for this bar;
    ``triggered``: a stop order triggered on an earlier bar (it is now a limit order)."""
    buy = order.side is OrderSide.BUY
    o = _d(bar.open)
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
            return MatchResult(expire=True, triggered=trig)
        expire = immediate_only and qty < remaining
        return MatchResult(Match(qty, price, liquidity, ref), expire=expire, triggered=trig)

    otype = order.type
    if otype is OrderType.MARKET or (triggered and otype.is_market_on_trigger):
        # a stop-market triggered earlier whose remainder (participation cap) is still working
        return fill(slippage.adjust(order.side, o, bar_range), Liquidity.TAKER, o)
    # the high and the low matter from here on only (a market order reads the open alone)
    h, lo = _d(bar.high), _d(bar.low)

    if otype.has_stop and not triggered:
        assert order.stop_price is not None
        stop = order.stop_price
        above = otype.trigger_above(order.side)
        hit = h >= stop if above else lo <= stop
        if not hit:
            return MatchResult(expire=immediate_only)
        # the stop, or the open when the bar opened already through it
        trigger_px = max(o, stop) if above else min(o, stop)
        if otype.is_market_on_trigger:
            px = slippage.adjust(order.side, trigger_px, bar_range)
            return fill(px, Liquidity.TAKER, trigger_px, trig=True)
        # *_LIMIT: from the trigger on it is a limit order at ``price``.
        assert order.price is not None
        marketable = trigger_px <= order.price if buy else trigger_px >= order.price
        if marketable:
            return fill(trigger_px, Liquidity.TAKER, trigger_px, trig=True)
        return MatchResult(triggered=True, expire=immediate_only)

    # LIMIT, LIMIT_MAKER, or a triggered STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT
    assert order.price is not None
    limit = order.price
    marketable_at_open = o <= limit if buy else o >= limit
    if marketable_at_open and (first_bar or otype.has_stop):
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
    return NOTHING


def open_is_through(order: Order, bar: BarView) -> bool:
    """Whether the bar opened already at or beyond the order's trigger (stop orders) or limit:
    such an order acts at the open, before anything else the bar did."""
    o = _d(bar.open)
    if order.type.has_stop:
        assert order.stop_price is not None
        above = order.type.trigger_above(order.side)
        return o >= order.stop_price if above else o <= order.stop_price
    if order.price is None:
        return True  # a market order acts at the open
    return o <= order.price if order.side is OrderSide.BUY else o >= order.price


@slot_init
@dataclass(frozen=True, slots=True)
class MatchEvent:
    order: Order
    result: MatchResult  # the fill (result.match), expire, reject, triggered flags
    expired_by_list: bool = False  # an OCO partner expired because its sibling filled/triggered
    first_bar: bool = False  # the order arrived on this bar (the venue acknowledges it)

    @property
    def terminal(self) -> bool:
        """The order ends with this event (completely filled, expired or rejected)."""
        r = self.result
        if r.reject is not None or r.expire:
            return True
        return r.match is not None and r.match.qty >= self.order.remaining_qty


@dataclass(slots=True)
class _Entry:
    order: Order
    active_from: int
    seq: int
    first_bar_seen: bool = False
    triggered: bool = False


class WorkingOrders:
    """Orders resting at a venue, matched bar by bar with `match_order`; tracks per order the
    first-bar flag, the triggered flag and the OCO partner (legs share ``Order.list_id``).

    Does not change order state: `match_bar` returns events and the caller (backtest engine,
    PaperExchange, the simulator's bar mode) applies them through its own state machine and
    ledger, in the order returned, and books each fill into the `Order` (``filled_qty``) before
    the next `match_bar` — the remaining quantity is read from the order.

    Removal: `match_bar` removes an order itself when its event is terminal (filled completely,
    expired — IOC/FOK remainder or the OCO partner — or rejected), so the caller never has to.
    A caller that vetoes a fill it cannot pay for calls `remove` and expires the order; `remove`
    of an order already gone answers None. Because the events of one bar are computed before any
    is applied, a caller whose callbacks cancel orders (a strategy's ``on_fill``) skips the later
    events of orders that have become terminal meanwhile.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lists: dict[str, list[str]] = {}
        self._seq = 0

    def add(self, order: Order, active_from: int = 0) -> None:
        """Start matching ``order`` on the first bar opening at or after ``active_from`` (ns)."""
        cid = order.client_order_id
        if cid in self._entries:
            raise ValueError(f"order {cid} is already working")
        self._seq += 1
        self._entries[cid] = _Entry(order, active_from, self._seq)
        if order.list_id:
            legs = self._lists.setdefault(order.list_id, [])
            if len(legs) >= 2:
                raise ValueError(f"order list {order.list_id} has two legs already")
            legs.append(cid)

    def remove(self, client_order_id: str) -> Order | None:
        entry = self._entries.pop(client_order_id, None)
        if entry is None:
            return None
        list_id = entry.order.list_id
        if list_id:
            legs = self._lists.get(list_id, [])
            if client_order_id in legs:
                legs.remove(client_order_id)
            if not legs:
                self._lists.pop(list_id, None)
        return entry.order

    def get(self, client_order_id: str) -> Order | None:
        entry = self._entries.get(client_order_id)
        return entry.order if entry is not None else None

    def partner(self, client_order_id: str) -> Order | None:
        """The other working leg of the order's OCO, if any."""
        entry = self._entries.get(client_order_id)
        if entry is None or not entry.order.list_id:
            return None
        for cid in self._lists.get(entry.order.list_id, []):
            if cid != client_order_id:
                return self._entries[cid].order
        return None

    def is_triggered(self, client_order_id: str) -> bool:
        entry = self._entries.get(client_order_id)
        return entry is not None and entry.triggered

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[Order]:
        return iter([e.order for e in self._entries.values()])

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._entries

    def orders(self, symbol: str | None = None) -> list[Order]:
        return [
            e.order for e in self._entries.values() if symbol is None or e.order.symbol == symbol
        ]

    def match_bar(
        self,
        symbol: str,
        bar: BarView,
        open_time: int,
        *,
        slippage: SlippageModel,
        max_participation: float = 0.0,
        limit_fill: str = "touch",
    ) -> list[MatchEvent]:
        """Match the working orders of ``symbol`` that are active at ``open_time`` against
        ``bar``, by ``active_from`` then insertion. Returns an event for every order that
        arrived on this bar (``first_bar``) and for every order the bar acted on; orders whose
        event is terminal are removed."""
        due = [
            e
            for e in self._entries.values()
            if e.order.symbol == symbol and e.active_from <= open_time
        ]
        if not due:
            return []
        if len(due) == 1 and self._partner_entry(due[0]) is None:
            # one order alone (a strategy's market order, most bars that have any): what the
            # loop below does for it, without the ordering and the bookkeeping of many
            e = due[0]
            first = not e.first_bar_seen
            e.first_bar_seen = True
            r = match_order(
                e.order, bar, first, slippage, max_participation, limit_fill, e.triggered
            )
            event = self._event(e, r, first)
            if event.terminal:
                self.remove(e.order.client_order_id)
            return [event]
        due.sort(key=lambda e: (e.active_from, e.seq))
        results: dict[str, tuple[_Entry, MatchResult, bool]] = {}
        for e in due:
            first = not e.first_bar_seen
            e.first_bar_seen = True
            r = match_order(
                e.order, bar, first, slippage, max_participation, limit_fill, e.triggered
            )
            results[e.order.client_order_id] = (e, r, first)
        events: list[MatchEvent] = []
        decided: set[str] = set()
        for e in due:
            cid = e.order.client_order_id
            if cid in decided:
                continue
            decided.add(cid)
            _, r, first = results[cid]
            other = self._partner_entry(e)
            if other is None:
                events.append(self._event(e, r, first))
                continue
            # an OCO: decide both legs together
            ocid = other.order.client_order_id
            if ocid in results:
                decided.add(ocid)
                _, r2, first2 = results[ocid]
            else:  # the partner is not active on this bar yet (it cannot be, legs go together)
                r2, first2 = NOTHING, False
            events.extend(self._decide_list(bar, (e, r, first), (other, r2, first2)))
        for ev in events:
            if ev.terminal:
                self.remove(ev.order.client_order_id)
        return events

    # --- internals ------------------------------------------------------------------------------

    def _partner_entry(self, entry: _Entry) -> _Entry | None:
        if not entry.order.list_id:
            return None
        for cid in self._lists.get(entry.order.list_id, []):
            if cid != entry.order.client_order_id:
                return self._entries[cid]
        return None

    @staticmethod
    def _event(entry: _Entry, result: MatchResult, first: bool) -> MatchEvent:
        if result.triggered:
            entry.triggered = True
        return MatchEvent(entry.order, result, first_bar=first)

    def _decide_list(
        self,
        bar: BarView,
        a: tuple[_Entry, MatchResult, bool],
        b: tuple[_Entry, MatchResult, bool],
    ) -> list[MatchEvent]:
        (ea, ra, fa), (eb, rb, fb) = a, b
        if ra.reject is not None or rb.reject is not None:
            # a list is placed whole or not at all: one refused leg refuses the other
            why = ra.reject if ra.reject is not None else rb.reject
            return [
                MatchEvent(ea.order, ra if ra.reject else MatchResult(reject=why), first_bar=fa),
                MatchEvent(eb.order, rb if rb.reject else MatchResult(reject=why), first_bar=fb),
            ]
        if not ra.acted and not rb.acted:
            out = []
            for e, r, f in ((ea, ra, fa), (eb, rb, fb)):
                if f or r != NOTHING:
                    out.append(MatchEvent(e.order, r, first_bar=f))
            return out
        if ra.acted and rb.acted:
            winner_is_a = self._first_to_act(bar, ea.order, eb.order)
        else:
            winner_is_a = ra.acted
        (we, wr, wf), (le, _, lf) = (a, b) if winner_is_a else (b, a)
        if wr.triggered:
            we.triggered = True
        return [
            MatchEvent(we.order, wr, first_bar=wf),
            MatchEvent(le.order, MatchResult(expire=True), expired_by_list=True, first_bar=lf),
        ]

    @staticmethod
    def _first_to_act(bar: BarView, a: Order, b: Order) -> bool:
        """Both legs could act on this bar: True when ``a`` acted first. The leg the open is
        already through wins; otherwise the stop-loss leg (we cannot see inside the bar)."""
        a_open, b_open = open_is_through(a, bar), open_is_through(b, bar)
        if a_open != b_open:
            return a_open
        return a.type.is_stop_loss or not b.type.is_stop_loss
