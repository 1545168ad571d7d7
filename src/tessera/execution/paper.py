"""`PaperExchange`: our orders filled against live market data, with the backtest's rules.

The same `Exchange` interface as `CcxtExchange`, so the bot runs unchanged in paper mode. Market
data comes in through `on_quote` (best bid/ask) and `on_trade` (prints). Fills are decided by the
shared matcher (`tessera.execution.matching`: `match_order`, `WorkingOrders`) — the paper
exchange has no matching rules of its own:

* on submit, a MARKET order or a marketable LIMIT takes the quote (ask for a buy, bid for a sell)
  plus the configured slippage, as taker; IOC and FOK are decided there and then (a FOK fills
  completely or expires); a LIMIT_MAKER that would take is rejected (-2010); a stop or
  take-profit whose trigger the last price has already reached is rejected (-2010, "Stop price
  would trigger immediately.", as Binance);
* resting orders — limits, and stop-loss / take-profit orders until and after they trigger — are
  matched on every print as a one-print bar: a limit fills as maker at its price when a print
  reaches it (``touch``) or goes beyond it (``through``); a stop triggers when a print reaches
  its stop. One print fills at most its own size, shared by our resting orders in price
  priority (partial fills);
* `submit_list` places an OCO: both legs rest; when one fills (even in part) or triggers, the
  other expires, and an `ExecutionReport` is pushed for each leg, as Binance's stream does. Like
  Binance, the list holds its balance once: a SELL OCO holds its base quantity once (not once
  per leg), a BUY OCO holds quote for the leg that needs more (Binance does not say which amount
  it locks for a BUY list; the larger one can always pay for the leg that fills);
* a type the symbol's ``orderTypes`` does not list is refused (-2010, Binance's message: the
  recorded 2024 exchangeInfo of BTCUSDT has no STOP_LOSS or TAKE_PROFIT, only their *_LIMIT);
* fees come from the `FeeSchedule` in quote currency; exchange filters reject with -1013;
  balances are checked (-2010) and held while an order rests. A fill an order's held balance
  and the free balance cannot pay for (a stop-market buy that gapped up) expires the order.

What the exchange holds survives a restart, as a real exchange's does. The paper exchange's book
— every order it accepted, with its held balance, trigger state and trades — is in the store's
``paper_orders`` table, and its balances in ``balances`` (source ``paper``); both are written
in one transaction after every change and *before* the change is reported. A restarted paper
exchange loads the open orders and goes on matching them: resting stops, limits and OCOs still
fill; a report lost in a crash is found by the bot's recovery (query by client order id, trades
by ``my_trades``). The bot's own ``orders`` table is not used for this: it is the client's view
(it cannot know what the exchange held or whether a stop had triggered), and recovery must
compare that view with the exchange's, not with itself. A triggered stop is restored as the
order it became (a LIMIT at its price, or a MARKET order for the rest of a STOP_LOSS /
TAKE_PROFIT); the matcher then treats a later print through that limit as maker, where the
order before the restart would have been taker (fees differ by the maker/taker spread).

Two processes: a paper account's book has one owner, the newest paper exchange to start on the
database (``paper_accounts``, claimed on start). Every write of the book checks the owner under a
row lock, so an older paper exchange still running fails with `PaperBookTakenOverError` at its
next change — before anything of it is stored or reported — instead of filling the same orders
a second time. (The bot's trading lock already keeps two bots off one account.)

Order and trade ids are unique across restarts and across processes on one database, as a real
exchange's are: each paper exchange takes a session number from the store (a database sequence)
and numbers its ids from ``session * PAPER_ID_SPAN``. Restored orders keep their ids.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from tessera.execution.exchange import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    OrderRejectedError,
    OutcomeUnknownError,
    UnknownOrderError,
)
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import FilterViolationError, SymbolFilters
from tessera.execution.matching import (
    BarView,
    MatchEvent,
    MatchResult,
    SlippageKind,
    SlippageModel,
    WorkingOrders,
    match_order,
)
from tessera.execution.orders import (
    Fill,
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tessera.execution.perp.account import PerpAccount
from tessera.execution.perp.funding import FundingRate
from tessera.execution.perp.margin import LeverageBrackets, MarginMode
from tessera.execution.perp_reconcile import PerpBalance, VenuePosition
from tessera.execution.persistence import ExecutionStore, PaperBookTakenOverError
from tessera.execution.userdata import ExecutionReport
from tessera.logging import get_logger
from tessera.venues.binance_usdm.user_data import FuturesExecutionReport

log = get_logger(__name__)
ZERO = Decimal(0)
SOURCE = "paper"  # the paper account: its balances' source and its book's account
# ids per session: a trillion orders or trades each; sessions * span stays inside int64
PAPER_ID_SPAN = 10**12
NO_SLIPPAGE = SlippageModel(SlippageKind.NONE)
# a bar no order can act on (no volume): marks orders arrived, so that the matcher treats their
# first print as a print on a resting order (the submit's quote was their arrival)
ARRIVED = BarView(0.0, 0.0, 0.0, 0.0, 0.0)
# -2010 for a type the symbol's exchangeInfo ``orderTypes`` does not list (Binance's messages)
NOT_SUPPORTED = {
    OrderType.MARKET: "Market orders are not supported for this symbol.",
    OrderType.STOP_LOSS: "Stop loss orders are not supported for this symbol.",
    OrderType.STOP_LOSS_LIMIT: "Stop loss limit orders are not supported for this symbol.",
    OrderType.TAKE_PROFIT: "Take profit orders are not supported for this symbol.",
    OrderType.TAKE_PROFIT_LIMIT: "Take profit limit orders are not supported for this symbol.",
}

__all__ = [
    "PAPER_ID_SPAN",
    "SOURCE",
    "SOURCE_USDM",
    "PaperBookTakenOverError",
    "PaperExchange",
    "PaperPerpError",
    "PerpPaperExchange",
]


@dataclass
class _Hold:
    """Balance held for an order, or once for both legs of an OCO."""

    asset: str
    amount: Decimal
    legs: list[str] = field(default_factory=list)  # client ids of the orders it holds for


@dataclass
class _Resting:
    # the exchange's own record of the order (our `Order` objects belong to the caller); its
    # filled_qty / filled_notional are the exchange's
    order: Order
    exchange_order_id: str
    hold: _Hold
    status: OrderStatus = OrderStatus.ACCEPTED
    triggered: bool = False
    fills: list[Fill] = field(default_factory=list)
    ts_created: int = 0
    # the object the matcher works: ``order``, or after a restart what a triggered stop became
    working: Order | None = None


class PaperExchange:
    source = SOURCE  # the account of its book and balances in the store

    def __init__(
        self,
        filters: Mapping[str, SymbolFilters],
        store: ExecutionStore | None = None,
        initial_balances: Mapping[str, str] | None = None,
        fees: FeeSchedule | None = None,
        slippage: SlippageModel | None = None,
        limit_fill: str = "touch",
        on_report: Callable[[ExecutionReport], Any] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.filters = dict(filters)
        self.store = store
        self.fees = fees or FeeSchedule()
        self.slippage = slippage or SlippageModel()
        self.limit_fill = limit_fill
        self.on_report = on_report
        self.clock = clock
        self.quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self.last: dict[str, Decimal] = {}  # last print per symbol (stop triggers at submit)
        self.book: dict[str, _Resting] = {}  # every order of this session and the open restored
        self.trades: list[ExchangeTrade] = []  # this session's trades, in order
        # one `WorkingOrders` per resting order or OCO: a print is shared between them in price
        # priority, and an order's arrival is marked without touching the others
        self._units: dict[str, WorkingOrders] = {}
        self._unit_of: dict[str, str] = {}
        self._dirty: set[str] = set()  # orders changed since the last write
        self._reports: list[ExecutionReport] = []  # written, not yet pushed
        # without a store the account lives in memory only, and ids start at 1
        self.session = store.new_paper_session() if store is not None else 0
        rows = store.claim_paper_book(self.source, self.session) if store is not None else []
        restored = store.latest_balances(self.source) if store is not None else {}
        start = restored or {a: (Decimal(v), ZERO) for a, v in (initial_balances or {}).items()}
        self.free: dict[str, Decimal] = {a: f for a, (f, _) in start.items()}
        self.held: dict[str, Decimal] = {a: h for a, (_, h) in start.items()}
        if restored:
            log.info("paper balances restored", balances={a: str(f) for a, f in self.free.items()})
        base = self.session * PAPER_ID_SPAN
        self._ids = itertools.count(base + 1)
        self._trade_ids = itertools.count(base + 1)
        self._restore(rows)

    # --- market data ----------------------------------------------------------------------------

    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        self.quotes[symbol] = (bid, ask)

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal) -> int:
        """A market print: the resting orders it reaches act, up to its size in price priority.
        Returns the number of fills."""
        self.last[symbol] = price
        p = float(price)
        left = qty
        done = 0
        for key in self._by_priority(symbol):
            if left <= 0:
                break
            unit = self._units[key]
            bar = BarView(p, p, p, p, float(left))
            events = unit.match_bar(symbol, bar, 0, slippage=self.slippage,
                                    max_participation=1.0, limit_fill=self.limit_fill)  # fmt: skip
            for ev in events:
                filled = self._apply(ev)
                if filled:
                    left -= filled
                    done += 1
            self._drop_if_empty(key)
        if self._dirty or self._reports:
            self._commit()
        return done

    # --- the Exchange interface -----------------------------------------------------------------

    async def submit(self, order: Order) -> ExchangeOrder:
        flt = self._accept(order)
        own = _copy(order)
        buy = order.side is OrderSide.BUY
        first = MatchResult()
        if order.type.has_stop:
            if self._acts_at_once(own):
                raise OrderRejectedError("Stop price would trigger immediately.", -2010)
        else:
            bid, ask = self.quotes[order.symbol]
            touch = float(ask if buy else bid)
            quote = BarView(touch, touch, touch, touch, 1e18)
            first = match_order(own, quote, True, self.slippage)
            if first.reject:
                raise OrderRejectedError(first.reject, -2010)
        est = first.match.price if first.match is not None else self._price_to_hold(own)
        need = order.qty * est * (1 + self.fees.rate(Liquidity.TAKER)) if buy else order.qty
        hold = self._hold_for(flt, own, est, need)
        r = self._place(own, hold)
        if first.match is not None:
            self._fill(r, first.match.price, first.match.qty, first.match.liquidity)
        immediate = order.type is OrderType.MARKET or order.time_in_force is not TimeInForce.GTC
        if r.status.is_open and (first.expire or immediate):
            self._close(r, OrderStatus.EXPIRED)
        if r.status.is_open:
            self._rest([r])
        self._commit_request()
        return self._view(r)

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        """An OCO: both legs rest (a leg that would act at once refuses the list, -2010), the
        list holds its balance once; when one leg acts the other expires."""
        flt = self._accept(orders.above)
        self._accept(orders.below)
        legs = [_copy(leg) for leg in orders.legs]
        if any(self._acts_at_once(own) for own in legs):
            raise OrderRejectedError(
                "The relationship of the prices for the orders is not correct.", -2010
            )
        buy = orders.above.side is OrderSide.BUY
        rate = 1 + self.fees.rate(Liquidity.TAKER)
        needs = [leg.qty * self._price_to_hold(leg) * rate if buy else leg.qty for leg in legs]
        hold = self._hold(flt, orders.above.side, max(needs))
        placed = [self._place(own, hold) for own in legs]
        self._rest(placed)
        self._commit_request()
        return [self._view(r) for r in placed]

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        """Cancels the order; a leg of an OCO cancels the whole list, as Binance does."""
        r = self.book.get(client_order_id)
        if r is None or not r.status.is_open:
            raise UnknownOrderError("Unknown order sent.", -2011)
        for cid in list(r.hold.legs):
            leg = self.book.get(cid)
            if leg is not None and leg.status.is_open:
                self._unrest(cid)
                self._close(leg, OrderStatus.CANCELED)
        self._commit_request()
        return self._view(r)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        r = self.book.get(client_order_id)
        if r is None and self.store is not None:
            row = self.store.paper_order(self.source, client_order_id)
            if row is not None:
                r = _from_row(row, _Hold("", ZERO))
        return self._view(r) if r is not None else None

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return [
            self._view(r)
            for r in self.book.values()
            if r.status.is_open and (symbol is None or r.order.symbol == symbol)
        ]

    async def balances(self) -> dict[str, Balance]:
        assets = sorted(set(self.free) | set(self.held))
        return {a: Balance(a, self.free.get(a, ZERO), self.held.get(a, ZERO)) for a in assets}

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        """Our trades on ``symbol``: of every order the book ever held (the store's), or of this
        session's orders without a store."""
        orders: dict[str, _Resting] = {}
        if self.store is not None:
            for row in self.store.paper_book(self.source, symbol):
                orders[row["client_order_id"]] = _from_row(row, _Hold("", ZERO))
        orders.update({c: r for c, r in self.book.items() if r.order.symbol == symbol})
        trades = [
            ExchangeTrade(r.exchange_order_id, f)
            for r in orders.values()
            for f in r.fills
            if from_id is None or int(f.trade_id) >= from_id
        ]
        return sorted(trades, key=lambda t: int(t.fill.trade_id))

    async def close(self) -> None:
        self._commit()

    # --- placing and resting --------------------------------------------------------------------

    def _accept(self, order: Order) -> SymbolFilters:
        """What the exchange checks before anything else: symbol, id, market data, parameters,
        filters. Raises `OrderRejectedError` as Binance would answer."""
        flt = self.filters.get(order.symbol)
        if flt is None:
            raise OrderRejectedError("Invalid symbol.", -1121)
        if flt.order_types and order.type.value not in flt.order_types:
            why = NOT_SUPPORTED.get(order.type, "Unsupported order combination")
            raise OrderRejectedError(why, -2010)
        known = self.book.get(order.client_order_id)
        if known is not None and known.status.is_open:
            raise OrderRejectedError("Duplicate order sent.", -2010)
        quote = self.quotes.get(order.symbol)
        if quote is None:
            raise OrderRejectedError("no market data yet for this symbol", -2010)
        immediate = order.time_in_force is not TimeInForce.GTC
        if immediate and order.type is OrderType.LIMIT_MAKER:
            raise OrderRejectedError("Parameter 'timeInForce' sent when not required.", -1106)
        if immediate and order.type.has_stop:
            # the shared matcher gives IOC/FOK only their arrival bar: a stop would expire
            # before it could trigger
            raise OrderRejectedError(
                f"paper exchange: {order.type} with time in force {order.time_in_force} is not "
                "emulated (IOC/FOK act only on arrival); send it GTC",
                -1106,
            )
        bid, ask = quote
        try:
            flt.check(order.type, order.qty, order.price, reference_price=(bid + ask) / 2,
                      stop_price=order.stop_price)  # fmt: skip
        except FilterViolationError as exc:
            raise OrderRejectedError(f"Filter failure: {exc.filter_type}", -1013) from exc
        return flt

    def _acts_at_once(self, order: Order) -> bool:
        """Whether ``order`` would act on arrival: a stop whose trigger the last price (Binance's
        reference for triggers; the mid before the first print) has reached, or a limit the
        quote is already through."""
        bid, ask = self.quotes[order.symbol]
        if order.type.has_stop:
            px = float(self.last.get(order.symbol, (bid + ask) / 2))
        else:
            px = float(ask if order.side is OrderSide.BUY else bid)
        now = match_order(order, BarView(px, px, px, px, 1e18), True, NO_SLIPPAGE)
        return now.triggered or now.match is not None or now.reject is not None

    @staticmethod
    def _price_to_hold(order: Order) -> Decimal:
        """The price a buy's quote is held at: its limit, or the stop of a stop-market."""
        px = order.price if order.price is not None else order.stop_price
        assert px is not None, "a market order holds at its fill price"
        return px

    def _hold_for(self, flt: SymbolFilters, order: Order, price: Decimal, need: Decimal) -> _Hold:
        """What a new order holds (spot: ``need`` of the asset it spends; refused -2010 when
        the free balance is short); ``price`` is about what it fills at."""
        return self._hold(flt, order.side, need)

    def _hold(self, flt: SymbolFilters, side: OrderSide, need: Decimal) -> _Hold:
        asset = flt.quote_asset if side is OrderSide.BUY else flt.base_asset
        if self.free.get(asset, ZERO) < need:
            raise OrderRejectedError(
                "Account has insufficient balance for requested action.", -2010
            )
        self.free[asset] = self.free.get(asset, ZERO) - need
        self.held[asset] = self.held.get(asset, ZERO) + need
        return _Hold(asset, need)

    def _place(self, order: Order, hold: _Hold) -> _Resting:
        r = _Resting(order, str(next(self._ids)), hold, ts_created=self.clock())
        hold.legs.append(order.client_order_id)
        self.book[order.client_order_id] = r
        self._dirty.add(order.client_order_id)
        self._report(r, "NEW", None)
        return r

    def _rest(self, legs: list[_Resting]) -> None:
        """Hand resting orders (one, or an OCO's two legs) to the matcher, arrived."""
        unit = WorkingOrders()
        for r in legs:
            unit.add(r.working or r.order)
        unit.match_bar(legs[0].order.symbol, ARRIVED, 0, slippage=self.slippage,
                       max_participation=1.0)  # fmt: skip
        key = legs[0].order.list_id or legs[0].order.client_order_id
        self._units[key] = unit
        for r in legs:
            self._unit_of[r.order.client_order_id] = key

    def _unrest(self, cid: str) -> None:
        key = self._unit_of.pop(cid, None)
        if key is not None:
            self._units[key].remove(cid)
            self._drop_if_empty(key)

    def _drop_if_empty(self, key: str) -> None:
        unit = self._units.get(key)
        if unit is not None and not unit:
            del self._units[key]

    def _by_priority(self, symbol: str) -> list[str]:
        """Resting units of ``symbol``, best price first (then oldest): who gets a print."""

        def rank(key: str) -> tuple[int, Decimal, int]:
            kind, level = min(_priority(o) for o in self._units[key])
            oldest = min(int(self.book[o.client_order_id].exchange_order_id)
                         for o in self._units[key])  # fmt: skip
            return kind, level, oldest

        keys = [k for k, u in self._units.items() if u.orders(symbol)]
        return sorted(keys, key=rank)

    # --- applying what the matcher decided ------------------------------------------------------

    def _apply(self, ev: MatchEvent) -> Decimal:
        """One event of the matcher; returns the quantity filled."""
        cid = ev.order.client_order_id
        r = self.book[cid]
        res = ev.result
        if res.triggered and not r.triggered:
            r.triggered = True
            self._dirty.add(cid)
        filled = ZERO
        if res.match is not None:
            m = res.match
            if self._can_pay(r, m.price, m.qty, m.liquidity):
                self._fill(r, m.price, m.qty, m.liquidity)
                filled = m.qty
            else:
                log.warning("paper fill refused: balance too low", cid=cid, price=str(m.price))
                self._unrest(cid)
                self._close(r, OrderStatus.EXPIRED)
        if r.status.is_open and (res.expire or res.reject is not None):
            self._unit_of.pop(cid, None)  # the matcher has removed it
            self._close(r, OrderStatus.EXPIRED)
        elif not r.status.is_open:
            self._unit_of.pop(cid, None)
        return filled

    def _can_pay(self, r: _Resting, price: Decimal, qty: Decimal, liquidity: Liquidity) -> bool:
        if r.order.side is OrderSide.SELL:
            return True  # the base quantity is held
        cost = price * qty + self.fees.fee(price * qty, liquidity)
        return cost - r.hold.amount <= self.free.get(r.hold.asset, ZERO)

    def _fill(self, r: _Resting, price: Decimal, qty: Decimal, liquidity: Liquidity) -> None:
        quote = self.filters[r.order.symbol].quote_asset
        notional = price * qty
        fee = self.fees.fee(notional, liquidity)
        fill = Fill(
            trade_id=str(next(self._trade_ids)),
            client_order_id=r.order.client_order_id,
            symbol=r.order.symbol,
            side=r.order.side,
            price=price,
            qty=qty,
            fee=fee,
            fee_asset=quote,
            liquidity=liquidity,
            ts_event=self.clock(),
        )
        self._book(r, fill)
        r.fills.append(fill)
        self.trades.append(ExchangeTrade(r.exchange_order_id, fill))
        # the matcher reads the remaining quantity from the order it works
        worked = [r.order] if r.working is None else [r.order, r.working]
        for o in worked:
            o.filled_qty += qty
            o.filled_notional += notional
        if r.order.filled_qty >= r.order.qty:
            r.status = OrderStatus.FILLED
            self._release(r)
        else:
            r.status = OrderStatus.PARTIALLY_FILLED
        self._dirty.add(r.order.client_order_id)
        self._report(r, "TRADE", fill)

    def _book(self, r: _Resting, fill: Fill) -> None:
        """A fill's balance moves (spot: the asset bought in, the one sold out of its hold)."""
        flt = self.filters[r.order.symbol]
        base, quote = flt.base_asset, flt.quote_asset
        notional = fill.price * fill.qty
        hold = r.hold
        if r.order.side is OrderSide.BUY:
            cost = notional + fill.fee
            take = min(cost, hold.amount)
            hold.amount -= take
            self.held[quote] -= take
            self.free[quote] = self.free.get(quote, ZERO) - (cost - take)
            self.free[base] = self.free.get(base, ZERO) + fill.qty
        else:
            hold.amount -= fill.qty
            self.held[base] -= fill.qty
            self.free[quote] = self.free.get(quote, ZERO) + notional - fill.fee

    def _release(self, r: _Resting) -> None:
        """Free what the order holds — once no order sharing the holding (an OCO) is open."""
        hold = r.hold
        if any(self.book[c].status.is_open for c in hold.legs if c in self.book):
            return
        if hold.amount:
            self.held[hold.asset] -= hold.amount
            self.free[hold.asset] = self.free.get(hold.asset, ZERO) + hold.amount
            hold.amount = ZERO

    def _close(self, r: _Resting, status: OrderStatus) -> None:
        r.status = status
        self._release(r)
        self._dirty.add(r.order.client_order_id)
        self._report(r, status.value, None)

    # --- the record: written first, then reported -----------------------------------------------

    def _commit(self) -> None:
        """Write the changed orders and the balances (one transaction), then push the reports."""
        if self.store is not None and self._dirty:
            rows = [self._row(self.book[c]) for c in sorted(self._dirty)]
            items = {a: (self.free.get(a, ZERO), self.held.get(a, ZERO)) for a in self.free}
            self.store.save_paper_book(self.source, self.session, rows, items, self.clock(),
                                       self._state())  # fmt: skip
        self._dirty.clear()
        while self._reports:  # one at a time: a failing listener leaves the rest for later
            report = self._reports.pop(0)
            if self.on_report is not None:
                self.on_report(report)

    def _state(self) -> str | None:
        """The account's own books no other table holds (JSON), stored with every write; spot
        paper has none (its balances are all it holds)."""
        return None

    def _commit_request(self) -> None:
        """`_commit` inside a request: a write that failed leaves the order placed in memory
        but not on record — the answer is unknown, as a timeout's would be."""
        try:
            self._commit()
        except PaperBookTakenOverError:
            raise
        except Exception as exc:
            if self._dirty:
                raise OutcomeUnknownError(f"paper exchange: not recorded: {exc}") from exc
            raise

    def _row(self, r: _Resting) -> dict[str, Any]:
        o = r.order
        return {
            "client_order_id": o.client_order_id,
            "account": self.source,
            "exchange_order_id": r.exchange_order_id,
            "symbol": o.symbol,
            "side": o.side.value,
            "type": o.type.value,
            "time_in_force": o.time_in_force.value,
            "qty": o.qty,
            "price": o.price,
            "stop_price": o.stop_price,
            "list_id": o.list_id or None,
            "status": r.status.value,
            "held": r.hold.amount,
            "filled_qty": o.filled_qty,
            "filled_notional": o.filled_notional,
            "triggered": r.triggered,
            "fills": json.dumps([_fill_doc(f) for f in r.fills]),
            "ts_created": r.ts_created,
            "ts_update": self.clock(),
            "reduce_only": o.reduce_only,
        }

    def _restore(self, rows: Iterable[dict[str, Any]]) -> None:
        """The open orders of the book, resting again (an OCO's legs share one holding)."""
        groups: dict[str, list[_Resting]] = {}
        holds: dict[str, _Hold] = {}
        for row in rows:
            key = row["list_id"] or row["client_order_id"]
            hold = holds.setdefault(key, _Hold(self._held_asset(row), Decimal(row["held"])))
            r = _from_row(row, hold)
            hold.legs.append(r.order.client_order_id)
            if r.triggered:
                r.working = _as_triggered(r.order)
            self.book[r.order.client_order_id] = r
            groups.setdefault(key, []).append(r)
        for legs in groups.values():
            self._rest(legs)
        if groups:
            log.info("paper book restored", open_orders=sum(len(g) for g in groups.values()))

    def _held_asset(self, row: Mapping[str, Any]) -> str:
        flt = self.filters[row["symbol"]]
        return flt.quote_asset if row["side"] == OrderSide.BUY.value else flt.base_asset

    # --- answers and reports --------------------------------------------------------------------

    def _view(self, r: _Resting) -> ExchangeOrder:
        return ExchangeOrder(
            client_order_id=r.order.client_order_id,
            exchange_order_id=r.exchange_order_id,
            symbol=r.order.symbol,
            status=r.status,
            qty=r.order.qty,
            filled_qty=r.order.filled_qty,
            filled_notional=r.order.filled_notional,
            price=r.order.price,
            ts_update=self.clock(),
            fills=list(r.fills),
            type=r.order.type,
            stop_price=r.order.stop_price,
        )

    def _report(self, r: _Resting, exec_type: str, fill: Fill | None) -> None:
        self._reports.append(
            ExecutionReport(
                symbol=r.order.symbol,
                client_order_id=r.order.client_order_id,
                side=r.order.side,
                exec_type=exec_type,
                status=r.status,
                exchange_order_id=r.exchange_order_id,
                cum_qty=r.order.filled_qty,
                cum_quote=r.order.filled_notional,
                event_ms=self.clock() // 1_000_000,
                fill=fill,
                order_type=r.order.type,
                stop_price=r.order.stop_price,
                order_list_id=self._list_number(r),
                # on the book: not a stop before its trigger, not once done
                working=r.status.is_open and (r.triggered or not r.order.type.has_stop),
            )
        )

    def _list_number(self, r: _Resting) -> int:
        """The exchange's number of the order's list (``g``): its first leg's order id; -1
        for an order that stands alone."""
        if not r.order.list_id:
            return -1
        return min(int(self.book[c].exchange_order_id) for c in r.hold.legs if c in self.book)


def _priority(order: Order) -> tuple[int, Decimal]:
    """Market orders first, then the better price: higher for a buy, lower for a sell."""
    level = order.price if order.price is not None else order.stop_price
    if level is None:
        return (0, ZERO)
    return (1, -level if order.side is OrderSide.BUY else level)


def _copy(order: Order) -> Order:
    """The exchange's own record of the order (our `Order` objects belong to the caller)."""
    return Order(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        qty=order.qty,
        price=order.price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force,
        list_id=order.list_id,
        reduce_only=order.reduce_only,
    )


def _as_triggered(order: Order) -> Order:
    """What a triggered stop order is from its trigger on: a LIMIT at its price (*_LIMIT), or a
    MARKET order for the rest (STOP_LOSS, TAKE_PROFIT)."""
    market = order.type.is_market_on_trigger
    now = Order(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        type=OrderType.MARKET if market else OrderType.LIMIT,
        qty=order.qty,
        price=None if market else order.price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
    )
    now.filled_qty = order.filled_qty
    now.filled_notional = order.filled_notional
    return now


def _fill_doc(f: Fill) -> dict[str, Any]:
    return {"trade_id": f.trade_id, "price": str(f.price), "qty": str(f.qty), "fee": str(f.fee),
            "fee_asset": f.fee_asset, "liquidity": f.liquidity.value, "ts": f.ts_event}  # fmt: skip


def _from_row(row: Mapping[str, Any], hold: _Hold) -> _Resting:
    order = Order(
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=OrderSide(row["side"]),
        type=OrderType(row["type"]),
        qty=Decimal(row["qty"]),
        price=None if row["price"] is None else Decimal(row["price"]),
        stop_price=None if row["stop_price"] is None else Decimal(row["stop_price"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        list_id=row["list_id"] or "",
        reduce_only=bool(row.get("reduce_only") or False),
    )
    order.filled_qty = Decimal(row["filled_qty"])
    order.filled_notional = Decimal(row["filled_notional"])
    fills = [
        Fill(
            trade_id=d["trade_id"],
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=Decimal(d["price"]),
            qty=Decimal(d["qty"]),
            fee=Decimal(d["fee"]),
            fee_asset=d["fee_asset"],
            liquidity=Liquidity(d["liquidity"]),
            ts_event=int(d["ts"]),
        )
        for d in json.loads(row["fills"])
    ]
    return _Resting(
        order=order,
        exchange_order_id=row["exchange_order_id"],
        hold=hold,
        status=OrderStatus(row["status"]),
        triggered=bool(row["triggered"]),
        fills=fills,
        ts_created=int(row["ts_created"]),
    )


SOURCE_USDM = "paper-usdm"  # the paper USDⓈ-M account: its book and wallet in the store
FUNDING_INTERVAL_NS = 8 * 3_600 * 10**9  # Binance's USDⓈ-M funding times: 00, 08, 16 UTC
# how long after a funding time market data and orders go on before an unsettled time stops
# them: the settling task wakes at the funding time, in the same event loop as the prints
FUNDING_GRACE_NS = 60 * 10**9


class PaperPerpError(RuntimeError):
    """The paper USDⓈ-M account cannot go on without losing something (a funding payment no
    one booked, a position it cannot restore)."""


class PerpPaperExchange(PaperExchange):
    """`PaperExchange` on USDⓈ-M perpetuals: the same quotes, prints and `WorkingOrders`
    decide the fills; the fills are booked into a `PerpAccount` (the backtest's account) instead
    of spot balances.

    * an order that opens or increases exposure needs its initial margin (and taker fee) free:
      refused ``-2019 Margin is insufficient.`` at submit and expired at its fill when it is
      not; a ``reduce_only`` order that would open or increase is refused ``-2022 ReduceOnly
      Order is rejected.`` (and expired at a fill that would). A resting order reserves no
      margin: the check is at submit and again at each fill.
    * `positions`, `perp_balances`, `hedge_mode` (always one-way), `set_leverage`,
      `set_margin_mode` answer as `UsdmCcxtExchange` does; `balances` gives the margin asset
      with ``free`` = available and ``free + locked`` = wallet + unrealized.
    * the last print (or the quote's mid before one) is the mark.
    * funding: `settle_funding` books a funding time's rates (``premiumIndex``'s
      ``lastFundingRate`` and ``markPrice``). A print or an order more than a minute
      (`FUNDING_GRACE_NS`) past a funding time (every 8 h) while a position is open and that
      time was not settled raises `PaperPerpError`: paper never skips a payment silently.
      Settled late, the payment is on the position held when it is settled.
    * liquidation: a mark (the last print) through a position's liquidation price closes it at
      that price with the liquidation fee (`PerpAccount.liquidate`, as the backtest), cancels
      the symbol's open orders and reports the close as an order of the exchange
      (``autoclose-<id>``, ``by_exchange``), which the order manager books as a liquidation.
    * the store keeps the book (``paper_orders``, account ``paper-usdm``) and the wallet and
      signed positions (``balances``, source ``paper-usdm``; a position under its base asset).
      The account itself (`PerpAccount.to_state`: each position's signed qty, entry, leverage,
      margin mode and isolated margin, the wallet, funding booked, fees) and the next funding
      time are in ``paper_accounts.state``, written in the same transaction as the book and
      balances; each order's reduce-only flag is in its row. A restart rebuilds the account
      exactly and goes on matching the open orders.
    * no OCO lists: USDⓈ-M has none (-1116).
    """

    source = SOURCE_USDM

    def __init__(
        self,
        filters: Mapping[str, SymbolFilters],
        brackets: Mapping[str, LeverageBrackets],
        store: ExecutionStore | None = None,
        initial_balances: Mapping[str, str] | None = None,
        fees: FeeSchedule | None = None,
        slippage: SlippageModel | None = None,
        limit_fill: str = "touch",
        on_report: Callable[[ExecutionReport], Any] | None = None,
        clock: Callable[[], int] = time.time_ns,
        leverage: int = 1,
        margin_mode: MarginMode = MarginMode.CROSS,
    ) -> None:
        super().__init__(filters, store, initial_balances, fees, slippage, limit_fill,
                         on_report, clock)  # fmt: skip
        quotes = {f.quote_asset for s, f in self.filters.items() if s in brackets}
        if len(quotes) != 1:
            raise PaperPerpError(
                f"paper USDⓈ-M: one margin asset is modelled; the symbols with brackets are "
                f"margined in {sorted(quotes) or 'none'}"
            )
        self.quote_asset = quotes.pop()
        wallet = self.free.get(self.quote_asset, ZERO)
        self.account = PerpAccount(self.quote_asset, wallet, dict(brackets), self.fees,
                                   margin_mode)  # fmt: skip
        for symbol in self.account.brackets:  # ValueError naming symbol, leverage and cap
            self.account.set_leverage(symbol, leverage)
        self.next_funding_ns = (self.clock() // FUNDING_INTERVAL_NS + 1) * FUNDING_INTERVAL_NS
        self._load_state(store, leverage, margin_mode)
        self._sync_balances()

    def _load_state(self, store: ExecutionStore | None, leverage: int, mode: MarginMode) -> None:
        """The account as the last run stored it (``paper_accounts.state``): positions with
        their entry, leverage, margin mode and isolated margin, the wallet, funding booked, the
        next funding time. The configured leverage applies to what comes next, as the bot's
        `set_leverage` would on the venue; the configured margin mode only when flat (Binance
        refuses to change it under a position). The signed positions in ``balances`` (written
        in the same transaction) must agree, else `PaperPerpError` naming both."""
        saved = store.paper_state(self.source) if store is not None else None
        held = {a: q for a, q in self.free.items() if a != self.quote_asset and q}
        if saved is None:
            if held:
                raise PaperPerpError(
                    f"paper USDⓈ-M account {self.source!r} in the store has positions "
                    f"{sorted(held)} but no saved account (written before their entry and "
                    "margin were stored): the paper exchange does not start rather than lose "
                    "them. Start paper on a new database."
                )
            return
        try:
            doc = json.loads(saved)
            self.account.load_state(doc["account"])
            self.next_funding_ns = int(doc["next_funding_ns"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PaperPerpError(
                f"paper USDⓈ-M account {self.source!r}: paper_accounts.state cannot be read: "
                f"{exc!r}"
            ) from exc
        bases = {f.base_asset: s for s, f in self.filters.items() if s in self.account.brackets}
        stored = {bases.get(a, a): q for a, q in held.items()}
        booked = {s: q for s, q in self.account.net_positions().items() if q}
        if stored != booked:
            raise PaperPerpError(
                f"paper USDⓈ-M account {self.source!r}: the stored positions {stored} are not "
                f"the saved account's {booked}"
            )
        for symbol in self.account.brackets:  # ValueError naming symbol, leverage and cap
            self.account.set_leverage(symbol, leverage)
        if not self.account.positions:
            self.account.mode = mode
        log.info("paper USDⓈ-M account restored", wallet=str(self.account.wallet),
                 positions={s: str(q) for s, q in booked.items()},
                 open_orders=sum(r.status.is_open for r in self.book.values()))  # fmt: skip

    def _state(self) -> str | None:
        return json.dumps(
            {"account": self.account.to_state(), "next_funding_ns": self.next_funding_ns},
            sort_keys=True,
        )

    # --- market data: marks, funding times, liquidation ----------------------------------------

    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        super().on_quote(symbol, bid, ask)
        if symbol not in self.last:
            self.account.mark(symbol, (bid + ask) / 2)

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal) -> int:
        self.account.mark(symbol, price)
        self._check_account()
        return super().on_trade(symbol, price, qty)

    def _check_account(self) -> None:
        now = self.clock()
        while now >= self.next_funding_ns + FUNDING_GRACE_NS:
            held = {s: str(q) for s, q in self.account.net_positions().items() if q}
            if held:
                raise PaperPerpError(
                    f"paper USDⓈ-M: the funding time {self.next_funding_ns} ns passed with "
                    f"positions {held} and no funding settled for it (settle_funding from the "
                    "venue's premiumIndex); paper does not skip a funding payment silently"
                )
            self.next_funding_ns += FUNDING_INTERVAL_NS
        for symbol in list(self.account.positions):
            mark = self.account.marks.get(symbol)
            price = None if mark is None else self.account.crossed(symbol, mark, mark)
            if mark is not None and price is not None:
                self._liquidate(symbol, price, mark)

    def _liquidate(self, symbol: str, price: Decimal, mark: Decimal) -> None:
        """The exchange closes ``symbol``'s position, as Binance does: its open orders are
        canceled, the position is closed at the liquidation price with the liquidation fee
        (`PerpAccount.liquidate`, the backtest's), and the close is an order of the exchange's
        own (``autoclose-…``, reduce-only, one taker fill) stored in the book and reported
        with ``by_exchange`` like the venue's, so the bot books it as a liquidation."""
        for r in [r for r in self.book.values() if r.order.symbol == symbol]:
            if r.status.is_open:
                self._unrest(r.order.client_order_id)
                self._close(r, OrderStatus.CANCELED)
        pos = self.account.positions[symbol]
        now = self.clock()
        rec = self.account.liquidate(symbol, price, now, mark)
        side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        eid = str(next(self._ids))
        cid = f"autoclose-{eid}"
        order = Order(cid, symbol, side, OrderType.MARKET, pos.size,
                      time_in_force=TimeInForce.IOC, reduce_only=True)  # fmt: skip
        fill = Fill(str(next(self._trade_ids)), cid, symbol, side, price, pos.size, rec.fee,
                    self.quote_asset, Liquidity.TAKER, now)  # fmt: skip
        order.filled_qty, order.filled_notional = pos.size, pos.size * price
        r = _Resting(order, eid, _Hold(self.quote_asset, ZERO), OrderStatus.FILLED,
                     fills=[fill], ts_created=now)  # fmt: skip
        self.book[cid] = r
        self.trades.append(ExchangeTrade(eid, fill))
        self._dirty.add(cid)
        self._sync_balances()
        log.error("paper USDⓈ-M: position liquidated", symbol=symbol, qty=str(pos.qty),
                  price=str(price), mark=str(mark), fee=str(rec.fee))  # fmt: skip
        self._report(r, "TRADE", fill)
        self._commit()

    def _report(self, r: _Resting, exec_type: str, fill: Fill | None) -> None:
        """USDⓈ-M's order update: an order the exchange placed says ``by_exchange``."""
        super()._report(r, exec_type, fill)
        base = self._reports.pop()
        self._reports.append(
            FuturesExecutionReport(
                **{f.name: getattr(base, f.name) for f in fields(base)},
                reduce_only=r.order.reduce_only,
                by_exchange=r.order.client_order_id.startswith("autoclose-"),
            )
        )

    def settle_funding(self, ts_ns: int, rates: Mapping[str, tuple[Decimal, Decimal]]) -> None:
        """Book the funding time ``ts_ns``: ``rates`` maps symbol → (lastFundingRate,
        markPrice) of the venue's ``premiumIndex``. A held symbol without a rate raises
        `PaperPerpError`; settling a time before the next one due is refused the same way."""
        if ts_ns != self.next_funding_ns:
            raise PaperPerpError(
                f"paper USDⓈ-M: funding time {ts_ns} ns is not the one due ({self.next_funding_ns})"
            )
        held = [s for s, q in self.account.net_positions().items() if q]
        missing = [s for s in held if s not in rates]
        if missing:
            raise PaperPerpError(f"paper USDⓈ-M: no funding rate for held {missing} at {ts_ns}")
        due = {s: FundingRate(ts_ns, r, m) for s, (r, m) in rates.items()}
        self.account.settle_funding(due, {s: m for s, (_, m) in rates.items()})
        self.next_funding_ns += FUNDING_INTERVAL_NS
        self._sync_balances()
        self._commit_wallet()

    # --- the USDⓈ-M interface -------------------------------------------------------------------

    async def submit(self, order: Order) -> ExchangeOrder:
        self._check_account()
        return await super().submit(order)

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        raise OrderRejectedError("paper USDⓈ-M: USDⓈ-M has no OCO order lists", -1116)

    async def positions(self, symbols: list[str]) -> list[VenuePosition]:
        return self.position_list(symbols)

    def position_list(self, symbols: Sequence[str]) -> list[VenuePosition]:
        """`positions` without the await: each symbol's position as ``positionRisk`` says."""
        out = []
        for s in symbols:
            pos = self.account.positions.get(s)
            if pos is None:
                out.append(VenuePosition(s, ZERO, ZERO, self.account.leverage_of(s),
                                         self.account.mode, None))  # fmt: skip
                continue
            mark = self.account.marks.get(s, pos.entry_price)
            out.append(
                VenuePosition(
                    s, pos.qty, pos.entry_price, pos.leverage, pos.mode,
                    self.account.liquidation_price(s), pos.unrealized_pnl(mark),
                    pos.isolated_margin or ZERO,
                )
            )  # fmt: skip
        return out

    async def hedge_mode(self) -> bool:
        return False

    async def leverage_brackets(self) -> dict[str, LeverageBrackets]:
        """The brackets the paper account margins with (the bot's risk takes the same)."""
        return dict(self.account.brackets)

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        try:
            self.account.set_leverage(symbol, leverage)
        except ValueError as exc:
            raise OrderRejectedError(str(exc), -4028) from exc
        self._commit_wallet()
        return leverage

    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> bool:
        """One margin mode for the account (`PerpAccount`); refused -4048 with a position."""
        if mode is self.account.mode:
            return False
        if self.account.positions:
            raise OrderRejectedError("Margin type cannot be changed if there exists position.",
                                     -4048)  # fmt: skip
        self.account.mode = mode
        self._commit_wallet()
        return True

    async def perp_balances(self) -> dict[str, PerpBalance]:
        return self.wallets()

    def wallets(self) -> dict[str, PerpBalance]:
        """`perp_balances` without the await: the margin asset's wallet, unrealized, available."""
        a = self.account
        return {self.quote_asset: PerpBalance(self.quote_asset, a.wallet, a.unrealized(),
                                              a.available())}  # fmt: skip

    async def balances(self) -> dict[str, Balance]:
        a = self.account
        free = max(a.available(), ZERO)
        return {self.quote_asset: Balance(self.quote_asset, free, a.equity() - free)}

    # --- margin instead of balances -------------------------------------------------------------

    def _denial(self, order: Order, qty: Decimal, price: Decimal) -> OrderRejectedError | None:
        signed = qty if order.side is OrderSide.BUY else -qty
        held = self.account.net_positions().get(order.symbol, ZERO)
        if order.reduce_only and (
            held == 0 or (held > 0) == (signed > 0) or abs(signed) > abs(held)
        ):
            return OrderRejectedError("ReduceOnly Order is rejected.", -2022)
        if self.account.order_denial(order.symbol, signed, price) is not None:
            return OrderRejectedError("Margin is insufficient.", -2019)
        return None

    def _hold_for(self, flt: SymbolFilters, order: Order, price: Decimal, need: Decimal) -> _Hold:
        rejected = self._denial(order, order.qty, price)
        if rejected is not None:
            raise rejected
        return _Hold(self.quote_asset, ZERO)

    def _can_pay(self, r: _Resting, price: Decimal, qty: Decimal, liquidity: Liquidity) -> bool:
        return self._denial(r.order, qty, price) is None

    def _book(self, r: _Resting, fill: Fill) -> None:
        self.account.apply_fill(fill)
        self._sync_balances()

    def _sync_balances(self) -> None:
        """What the store keeps: the wallet under the margin asset, each position under its
        base asset (signed)."""
        self.free = {self.quote_asset: self.account.wallet}
        self.held = {self.quote_asset: ZERO}
        for s, f in self.filters.items():
            if s in self.account.brackets:
                self.free[f.base_asset] = self.account.net_positions().get(s, ZERO)
                self.held[f.base_asset] = ZERO

    def _commit_wallet(self) -> None:
        if self.store is not None:
            items = {a: (self.free[a], self.held.get(a, ZERO)) for a in self.free}
            self.store.save_paper_book(self.source, self.session, [], items, self.clock(),
                                       self._state())  # fmt: skip
