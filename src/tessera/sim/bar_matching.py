"""Bar mode: our orders matched on replayed 1m bars, by the backtest's rules, for markets that
have klines but no trades or book (a bar file: `tessera.sim.bars.market_from_bar_file`).

Why: a strategy backtested on bars and the same strategy run as a dev bot against the simulator
replaying those bars must get the same fills on the same bars, or the dev run proves nothing
about the backtest. So the simulator does not invent a book from bars; it uses the backtest's
matching (`tessera.execution.matching`, `WorkingOrders.match_bar`) with its timing:

* **Which bar.** The backtest activates an order decided at bar t's close, arriving latency
  later, from the first bar opening at or after its arrival: the bar that opens at t's close.
  In the simulator that is the bar *forming* when the order is received — the next bar whose
  closed kline the replay has not released yet. An order is matched from that bar on.
* **At once, on receipt**: what the backtest fills at that bar's open. A MARKET order, and a
  limit (GTC/IOC/FOK) the bar opens through (marketable on arrival), fill at the forming bar's
  open (taker, with slippage for market orders); IOC/FOK not marketable at the open expire; a
  LIMIT_MAKER the open would take is refused (-2010). The backtest fills a market order at the
  next bar's open: the same price, known to the replay though the bar is still forming.
* **At each bar's close, before its kline is released**: everything else (resting limits,
  stops and take-profits, OCO legs) is matched against the bar's OHLC with `match_bar`
  (limits at their price when the bar touches it, as makers; stops at the stop, or the open
  when the bar gapped through; an OCO leg acting expires the other). The user-data events
  (executionReport, listStatus) are published before the closed ``@kline_1m`` frame becomes
  visible, and the replay waits for them to be sent: a bot sees its fill before the bar close
  that would make it decide again.

Fees are the simulator's (`TradingConfig.maker_fee`/``taker_fee``, charged in the asset
received); slippage, participation cap and limit-fill rule are ``TradingConfig.bar_slippage``,
``bar_max_participation``, ``bar_limit_fill``, by default the backtest's defaults (1 bp fixed,
no cap, "touch"). A fill the account cannot pay (a buy stop whose trigger costs more than
it holds) expires the order, as the backtest vetoes it.

Limits of the analogy: the release position is the simulator's clock. At an unpaced replay
(``speed=None``) the release can run up to the websocket window ahead of a bot, so "forming"
is then the simulator's bar, not the bot's; paced replays keep them together.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from typing import TYPE_CHECKING

from tessera.execution.matching import (
    BarView,
    MatchEvent,
    MatchResult,
    WorkingOrders,
    match_order,
    open_is_through,
)
from tessera.execution.orders import Liquidity, Order, OrderSide, OrderType, TimeInForce
from tessera.sim.order_params import OrderRequest
from tessera.sim.payloads import Kline
from tessera.sim.venue_orders import SimFill, SimOrder, SimOrderList

if TYPE_CHECKING:
    from tessera.sim.matching_core import MatchingCore

ZERO = Decimal(0)
NEVER = 1 << 62  # active_from of an order received after the last bar: it is never matched


def view(bar: Kline) -> BarView:
    return BarView(
        float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume)
    )


def domain_order(req: OrderRequest, cid: str, list_id: str = "") -> Order:
    """The order as the shared matching rules read it."""
    return Order(
        cid,
        req.symbol,
        OrderSide(req.side),
        OrderType(req.type),
        req.qty,
        price=req.price,
        stop_price=req.stop_price,
        time_in_force=TimeInForce(req.time_in_force),
        list_id=list_id,
    )


class BarMatcher:
    """The bar-mode half of the engine: which symbols trade on bars, the forming bar, and the
    working orders matched with `WorkingOrders` (keyed by exchange order id)."""

    def __init__(self, core: MatchingCore) -> None:
        self.core = core
        self.sim = core.sim
        self.working = WorkingOrders()
        self._orders: dict[str, SimOrder] = {}  # working order's key -> our order
        self._cursor = 0  # base frames [0, cursor) have had their bars matched
        market = self.sim.market
        self.symbols = frozenset(
            sym
            for sym in market.symbols
            if market.given_bars(sym) is not None
            and not market.trades(sym).trades
            and sym not in self.sim.state.books
        )

    def trades_on_bars(self, symbol: str) -> bool:
        return symbol in self.symbols

    def forming(self, symbol: str) -> Kline | None:
        """The bar forming now: the next final bar the replay has not released."""
        given = self.sim.market.given_bars(symbol)
        if given is None:
            return None
        for i in range(bisect_left(given.anchors, self.sim.head), len(given.bars)):
            if given.closed[i]:
                return given.bars[i]
        return None

    def would_take(self, req: OrderRequest) -> bool:
        """A LIMIT_MAKER the forming bar opens through would take (Binance -2010)."""
        bar = self.forming(req.symbol)
        return bar is not None and open_is_through(domain_order(req, "probe"), view(bar))

    # --- arrival --------------------------------------------------------------------------------

    def arrival(self, req: OrderRequest) -> MatchResult | None:
        """What the order does at once on the forming bar, or None if it rests (see the module
        docstring). Decided before the order is placed, so that a buy holds what it pays."""
        if req.stop_price is not None:
            return None
        probe = domain_order(req, "probe")
        bar = self.forming(req.symbol)
        immediate = probe.type is OrderType.MARKET or probe.time_in_force is not TimeInForce.GTC
        if bar is None:  # the replay is over: nothing to trade against
            return MatchResult(expire=True) if immediate else None
        if immediate or open_is_through(probe, view(bar)):
            return match_order(
                probe,
                view(bar),
                True,
                self.core.config.bar_slippage,
                self.core.config.bar_max_participation,
                self.core.config.bar_limit_fill,
            )
        return None

    def hold_for(self, req: OrderRequest, result: MatchResult | None) -> Decimal | None:
        """What a buy filled at once must hold: what it pays (None: the usual hold)."""
        if req.side == "BUY" and req.type == "MARKET":
            if result is None or result.match is None:
                return ZERO
            return result.match.price * req.qty
        return None

    def start(self, order: SimOrder, result: MatchResult | None) -> list[SimFill]:
        """A new order of a bar symbol: apply what it did at once, rest the remainder."""
        mirror = self._mirror(order)
        bar = self.forming(order.symbol)
        fills: list[SimFill] = []
        if result is not None:
            fills = self._apply(order, mirror, result)
            if order.is_open:  # a GTC remainder (participation cap): from the next bar on
                self._add(order, mirror, (bar.open_time + 1) if bar else NEVER)
            return fills
        self._add(order, mirror, bar.open_time if bar else NEVER)
        return fills

    def start_list(self, lst: SimOrderList) -> None:
        bar = self.forming(lst.symbol)
        for leg in (lst.above, lst.below):
            self._add(leg, self._mirror(leg, f"list{lst.list_id}"), bar.open_time if bar else NEVER)

    def forget(self, order: SimOrder) -> None:
        """The order ended outside the matching (canceled, or expired by its list)."""
        key = str(order.order_id)
        if self._orders.pop(key, None) is not None:
            self.working.remove(key)

    # --- bar closes -----------------------------------------------------------------------------

    def next_close(self, start: int, end: int) -> int:
        """Where a replay going from ``start`` to ``end`` must stop: just after the first bar
        that closes with orders working on its symbol (else ``end``)."""
        stop = end
        for sym in self.symbols:
            if not self.working.orders(sym):
                continue
            given = self.sim.market.given_bars(sym)
            assert given is not None
            i = bisect_left(given.anchors, max(start, self._cursor))
            while i < len(given.anchors) and given.anchors[i] < stop:
                if given.closed[i]:
                    stop = given.anchors[i] + 1
                    break
                i += 1
        return stop

    def on_release(self, n: int) -> bool:
        """The replay is about to release base frames up to ``n``: match every bar that closes
        in between, in frame order. True when user-data events were published."""
        if n < self._cursor:  # the replay started over
            self._cursor = n
            return False
        due: list[tuple[int, str, Kline]] = []
        for sym in self.symbols:
            given = self.sim.market.given_bars(sym)
            assert given is not None
            lo, hi = bisect_left(given.anchors, self._cursor), bisect_left(given.anchors, n)
            due.extend(
                (given.anchors[i], sym, given.bars[i]) for i in range(lo, hi) if given.closed[i]
            )
        self._cursor = max(self._cursor, n)
        published = False
        for _, sym, bar in sorted(due, key=lambda x: x[0]):
            if not self.working.orders(sym):
                continue
            c = self.core.config
            events = self.working.match_bar(
                sym,
                view(bar),
                bar.open_time,
                slippage=c.bar_slippage,
                max_participation=c.bar_max_participation,
                limit_fill=c.bar_limit_fill,
            )
            for event in events:
                published |= self._on_event(event)
        return published

    def _on_event(self, event: MatchEvent) -> bool:
        key = event.order.client_order_id
        order = self._orders.get(key)
        if order is None or not order.is_open:  # ended meanwhile (its list partner acted)
            self.working.remove(key)
            self._orders.pop(key, None)
            return False
        r = event.result
        if r == MatchResult() and not event.expired_by_list:
            return False  # arrived on this bar; nothing happened
        self._apply(order, event.order, r)
        if not order.is_open:
            self._orders.pop(key, None)
        return True

    # --- internals ------------------------------------------------------------------------------

    def _mirror(self, order: SimOrder, list_id: str = "") -> Order:
        req = OrderRequest(
            order.symbol,
            order.side,
            order.type,
            order.orig_qty,
            order.price if order.price else None,
            order.stop_price if order.stop_price else None,
            order.time_in_force,
            order.client_order_id,
        )
        return domain_order(req, str(order.order_id), list_id)

    def _add(self, order: SimOrder, mirror: Order, active_from: int) -> None:
        self._orders[mirror.client_order_id] = order
        self.working.add(mirror, active_from)

    def _apply(self, order: SimOrder, mirror: Order, r: MatchResult) -> list[SimFill]:
        core = self.core
        fills: list[SimFill] = []
        if r.triggered and not order.is_working:
            core.start_working(order)
        if r.match is not None and order.is_open:
            m = r.match
            if order.side == "BUY" and not core.hold_at_least(order, m.price * m.qty):
                self.forget(order)
                core.expire(order)  # the account cannot pay it: the backtest's veto
                return fills
            fills.append(core.fill(order, m.price, m.qty, is_maker=m.liquidity is Liquidity.MAKER))
            mirror.filled_qty += m.qty
            mirror.filled_notional += m.price * m.qty
        if (r.expire or r.reject is not None) and order.is_open:
            self.forget(order)
            core.expire(order)
        return fills
