"""The simulator's matching engine for our orders: balances, every spot order type, OCO lists.

Against the replayed market (trades and book, `tessera.sim.state.MarketState`):

* a **market** order (or the marketable part of a limit order) walks the current book level
  by level from the best price: taker fills at those prices. The replayed book is not
  depleted by our fills (our size is assumed small next to the market's), so two orders in a
  row may take the same level;
* a **resting limit** order fills, as maker, at its limit price when a replayed trade prints at
  or through it, up to that trade's quantity, in price-time priority among our orders;
* a **stop or take-profit** order (``STOP_LOSS``, ``STOP_LOSS_LIMIT``, ``TAKE_PROFIT``,
  ``TAKE_PROFIT_LIMIT``) waits, status NEW and not working (``isWorking`` false,
  ``workingTime`` -1), until a replayed trade prints at or through its ``stopPrice`` in its
  direction (up for a stop-loss buy and a take-profit sell, down for the others — Binance's
  rule, `OrderType.trigger_above`). Then it starts working: an executionReport NEW with
  ``w`` true and ``W`` the trigger time says so, a ``STOP_LOSS``/``TAKE_PROFIT`` walks the book
  as a market order and a ``*_LIMIT`` becomes a limit order at its price (taking what the book
  offers through it first). An order only meets trades printed after it reached the exchange.
  One whose stop is already reached when it arrives is refused: -2010 ``Order would trigger
  immediately.``, judged against the last traded price;
* an **OCO** (``POST /api/v3/orderList/oco``) places both legs under one ``orderListId``; the
  balance is held once, by the list. When either leg fills (even in part) or triggers, the
  other expires (executionReport EXPIRED) and the list is ALL_DONE (a ``listStatus`` event);
  canceling either leg cancels the list. Its prices must straddle the last traded price
  (SELL: limit/take-profit above, stop-loss below), else -2010 ``The relationship of the
  prices for the orders is not correct.``;
* IOC cancels what does not fill at once (status EXPIRED), FOK fills completely at once or
  expires without fills, LIMIT_MAKER is rejected if it would take (-2010);
* exchange filters (PRICE_FILTER — the stop price too —, LOT_SIZE, MIN_NOTIONAL/NOTIONAL,
  MAX_NUM_ORDERS, MAX_NUM_ALGO_ORDERS: stop and take-profit orders, an OCO counts 2 orders)
  reject with -1013 and the filter's name, balances with -2010; commissions are charged in
  the asset received.

A symbol replayed from bars only (no trades, no book) is matched in bar mode instead, by the
backtest's rules on each bar (`tessera.sim.bar_matching`).

Balance holds: a sell holds its quantity; a buy holds price x quantity, a buy ``STOP_LOSS`` /
``TAKE_PROFIT`` (no price) holds stop x quantity until it triggers, then what the book walk
costs (it expires unfilled if the account cannot pay that).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tessera.execution.filters import FilterViolationError, SymbolFilters
from tessera.execution.matching import SlippageModel
from tessera.execution.orders import OrderType
from tessera.sim import payloads as binance
from tessera.sim.bar_matching import BarMatcher
from tessera.sim.order_params import (
    NOT_SUPPORTED,
    OCO_BAD_PRICES,
    OCO_NOT_SUPPORTED,
    OrderRequest,
    oco_prices_ok,
    parse_new_order,
    parse_oco,
)
from tessera.sim.rest import BinanceError, server_time_ms
from tessera.sim.venue_orders import MARKET_ON_TRIGGER, SimFill, SimOrder, SimOrderList
from tessera.venues.binance_spot.instruments import filters_by_symbol

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator

ZERO = Decimal(0)
DUPLICATE_ORDER = binance.error(-2010, "Duplicate order sent.")
INSUFFICIENT_BALANCE = binance.error(
    -2010, "Account has insufficient balance for requested action."
)
WOULD_TAKE = binance.error(-2010, "Order would immediately match and take.")
WOULD_TRIGGER = binance.error(-2010, "Order would trigger immediately.")


def filter_failure(name: str) -> dict[str, object]:
    return binance.error(-1013, f"Filter failure: {name}")


@dataclass
class TradingConfig:
    api_key: str = "tessera-sim-key"
    api_secret: str = "tessera-sim-secret"
    balances: dict[str, str] = field(
        default_factory=lambda: {"USDT": "100000", "BTC": "1", "ETH": "10"}
    )
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    max_orders_10s: int = 50
    lose_responses: int = 0  # process the next K order requests, then drop the connection
    response_delay_s: float = 0.0  # place orders at once, answer this much later
    # bar mode (`tessera.sim.bar_matching`): the backtest's defaults, so that both fill alike
    bar_slippage: SlippageModel = field(default_factory=SlippageModel)
    bar_max_participation: float = 0.0
    bar_limit_fill: str = "touch"
    # bar mode: how long user-data events of a bar lead its kline (see `_user_data_sent`)
    bar_report_lead_s: float = 0.05


def _algo_limits(info: dict[str, Any]) -> dict[str, int]:
    """MAX_NUM_ALGO_ORDERS per symbol (`SymbolFilters` does not carry it)."""
    out: dict[str, int] = {}
    for s in info.get("symbols", []):
        for f in s.get("filters", []):
            if f.get("filterType") == "MAX_NUM_ALGO_ORDERS":
                # spot spells the count maxNumAlgoOrders, USDⓈ-M limit
                out[s["symbol"]] = int(f.get("maxNumAlgoOrders", f.get("limit", 0)))
    return out


class MatchingCore:
    """Accounts, our orders and order lists, and their matching (no HTTP: `TradingEngine`)."""

    def __init__(self, sim: ExchangeSimulator, config: TradingConfig | None = None) -> None:
        self.sim = sim
        self.config = config or TradingConfig()
        info = sim.market.exchange_info
        self.filters: dict[str, SymbolFilters] = self._symbol_filters(info)
        self._algo_limit = _algo_limits(info)
        self._oco_allowed = {s["symbol"]: bool(s.get("ocoAllowed", True)) for s in info["symbols"]}
        self.free: dict[str, Decimal] = defaultdict(Decimal)
        self.locked: dict[str, Decimal] = defaultdict(Decimal)
        for asset, amount in self.config.balances.items():
            self.free[asset] = Decimal(amount)
        self.orders: dict[int, SimOrder] = {}
        self.by_client: dict[tuple[str, str], SimOrder] = {}
        self.lists: dict[int, SimOrderList] = {}
        self.lists_by_client: dict[tuple[str, str], SimOrderList] = {}
        self.fills: list[SimFill] = []
        self._order_ids = itertools.count(1)
        self._list_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._seen_trades: dict[str, int] = defaultdict(int)
        # user-data stream: connected websockets get every event
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.bars = BarMatcher(self)  # symbols replayed as bars only are matched on bars

    def _symbol_filters(self, info: dict[str, Any]) -> dict[str, SymbolFilters]:
        """The filters orders are checked against (spot's exchangeInfo; USD-M overrides)."""
        return filters_by_symbol(info)

    # --- events ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return server_time_ms(self.sim)

    def _publish(self, *events: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            for event in events:
                listener(event)

    def _account_position(self) -> dict[str, Any]:
        now = self.now_ms()
        assets = sorted(set(self.free) | set(self.locked))
        return {
            "e": "outboundAccountPosition",
            "E": now,
            "u": now,
            "B": [
                {"a": a, "f": binance.fmt8(self.free[a]), "l": binance.fmt8(self.locked[a])}
                for a in assets
            ],
        }

    def _report(self, order: SimOrder, exec_type: str, fill: SimFill | None = None) -> None:
        self._publish(order.report(exec_type, self.now_ms(), fill), self._account_position())

    # --- the market -----------------------------------------------------------------------------

    def best(self, sym: str) -> tuple[Decimal | None, Decimal | None]:
        book = self.sim.state.books.get(sym)
        bid = max(book.bids) if book and book.bids else None
        ask = min(book.asks) if book and book.asks else None
        return bid, ask

    def last_price(self, sym: str) -> Decimal | None:
        """The last traded price (Binance judges stops and OCO prices by it): the last
        replayed trade, else the last bar's close, else the book's middle."""
        state = self.sim.state
        state.advance_to(self.sim.head)
        trades = state.trades(sym)
        if trades:
            return Decimal(trades[-1].price)
        bars = state.bars_1m(sym)
        if bars:
            return bars[-1].close
        bid, ask = self.best(sym)
        return (bid + ask) / 2 if bid and ask else (bid or ask)

    def _walk(
        self, sym: str, side: str, qty: Decimal, limit: Decimal | None
    ) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) taken from the book, best level first, up to ``limit`` if given."""
        book = self.sim.state.books.get(sym)
        if book is None:
            return []
        buy = side == "BUY"
        levels = sorted(book.asks.items()) if buy else sorted(book.bids.items(), reverse=True)
        out: list[tuple[Decimal, Decimal]] = []
        left = qty
        for p, q in levels:
            if left <= 0 or (limit is not None and (p > limit if buy else p < limit)):
                break
            take = min(left, Decimal(q))
            out.append((p, take))
            left -= take
        return out

    def _marketable(self, side: str, price: Decimal | None, sym: str) -> bool:
        bid, ask = self.best(sym)
        if price is None:
            return True
        return (
            (ask is not None and price >= ask)
            if side == "BUY"
            else (bid is not None and price <= bid)
        )

    # --- validation -----------------------------------------------------------------------------

    def _check(self, req: OrderRequest, new_orders: int = 1, maker_check: bool = True) -> None:
        """Everything Binance checks against the symbol and the account's open orders."""
        flt = self.filters[req.symbol]
        if flt.order_types and req.type not in flt.order_types:
            raise BinanceError(binance.error(-2010, NOT_SUPPORTED[req.type]))
        cid = req.client_order_id
        if cid:
            existing = self.by_client.get((req.symbol, cid))
            if existing is not None and existing.is_open:
                raise BinanceError(DUPLICATE_ORDER)
        bid, ask = self.best(req.symbol)
        ref = (bid + ask) / 2 if bid and ask else (bid or ask or self.last_price(req.symbol))
        try:
            flt.check(OrderType(req.type), req.qty, req.price, ref, req.stop_price)
        except FilterViolationError as exc:
            raise BinanceError(filter_failure(exc.filter_type)) from exc
        open_here = [o for o in self.orders.values() if o.is_open and o.symbol == req.symbol]
        if flt.max_num_orders and len(open_here) + new_orders > flt.max_num_orders:
            raise BinanceError(filter_failure("MAX_NUM_ORDERS"))
        algo = self._algo_limit.get(req.symbol, 0)
        stops_open = sum(1 for o in open_here if o.has_stop)
        if req.stop_price is not None and algo and stops_open + 1 > algo:
            raise BinanceError(filter_failure("MAX_NUM_ALGO_ORDERS"))
        if maker_check:
            self._check_maker(req)

    def _check_maker(self, req: OrderRequest) -> None:
        if req.type != "LIMIT_MAKER":
            return
        if self.bars.trades_on_bars(req.symbol):
            takes = self.bars.would_take(req)
        else:
            takes = self._marketable(req.side, req.price, req.symbol)
        if takes:
            raise BinanceError(WOULD_TAKE)

    def _would_trigger(self, req: OrderRequest) -> bool:
        if req.stop_price is None:
            return False
        last = self.last_price(req.symbol)
        if last is None:
            return False
        probe = SimOrder(0, "", req.symbol, req.side, req.type, "GTC", ZERO, req.qty, 0)
        probe.stop_price = req.stop_price
        return probe.would_trigger(last)

    def _hold(self, req: OrderRequest) -> tuple[Decimal, str]:
        """What the order holds while open: (amount, asset)."""
        flt = self.filters[req.symbol]
        if req.side == "SELL":
            return req.qty, flt.base_asset
        if req.type == "MARKET":
            walk = self._walk(req.symbol, "BUY", req.qty, None)
            cost = sum((p * q for p, q in walk), ZERO)
            short = req.qty - sum((q for _, q in walk), ZERO)
            _, ask = self.best(req.symbol)
            return cost + short * (ask or ZERO), flt.quote_asset
        level = req.price if req.price is not None else req.stop_price
        assert level is not None
        return level * req.qty, flt.quote_asset

    def _lock(self, asset: str, amount: Decimal) -> None:
        if self.free[asset] < amount:
            raise BinanceError(INSUFFICIENT_BALANCE)
        self.free[asset] -= amount
        self.locked[asset] += amount

    def _new(self, req: OrderRequest, list_id: int = -1) -> SimOrder:
        now = self.now_ms()
        oid = next(self._order_ids)
        cid = req.client_order_id or f"sim{oid}x"
        order = SimOrder(
            oid,
            cid,
            req.symbol,
            req.side,
            req.type,
            req.time_in_force,
            req.price if req.price is not None else ZERO,
            req.qty,
            now,
            stop_price=req.stop_price if req.stop_price is not None else ZERO,
            list_id=list_id,
            working_ms=-1 if req.stop_price is not None else now,
            active_from=len(self.sim.state.trades(req.symbol)),
        )
        self.orders[oid] = order
        self.by_client[(req.symbol, cid)] = order
        return order

    # --- placing --------------------------------------------------------------------------------

    def symbol(self, params: dict[str, str]) -> str:
        sym = params.get("symbol", "")
        if not sym:
            raise BinanceError(binance.missing_param("symbol"))
        if sym not in self.sim.market.symbols or sym not in self.filters:
            raise BinanceError(binance.INVALID_SYMBOL)
        return sym

    def place(self, params: dict[str, str]) -> tuple[SimOrder, list[SimFill]]:
        """Validate and place an order; returns it and its immediate fills."""
        req = parse_new_order(params, self.symbol(params))
        self._check(req)
        if self._would_trigger(req):
            raise BinanceError(WOULD_TRIGGER)
        if self.bars.trades_on_bars(req.symbol):
            return self._place_on_bars(req)
        amount, asset = self._hold(req)
        self._lock(asset, amount)
        order = self._new(req)
        order.locked = amount
        self._report(order, "NEW")
        if order.has_stop:
            return order, []  # waits for its trigger
        return order, self._execute(order, order.price if order.type != "MARKET" else None)

    def _place_on_bars(self, req: OrderRequest) -> tuple[SimOrder, list[SimFill]]:
        """Bar mode (`tessera.sim.bar_matching`): what the order does at once is decided on the
        forming bar before it is placed, so that a market buy holds what it pays."""
        result = self.bars.arrival(req)
        if result is not None and result.reject is not None:
            raise BinanceError(WOULD_TAKE)
        paid = self.bars.hold_for(req, result)
        if paid is None:
            amount, asset = self._hold(req)
        else:
            amount, asset = paid, self.filters[req.symbol].quote_asset
        self._lock(asset, amount)
        order = self._new(req)
        order.locked = amount
        self._report(order, "NEW")
        return order, self.bars.start(order, result)

    def place_oco(self, params: dict[str, str]) -> SimOrderList:
        symbol = self.symbol(params)
        req = parse_oco(params, symbol)
        if not self._oco_allowed.get(symbol, True):
            raise BinanceError(OCO_NOT_SUPPORTED)
        if req.client_list_id:
            known = self.lists_by_client.get((symbol, req.client_list_id))
            if known is not None and known.is_open:
                raise BinanceError(DUPLICATE_ORDER)
        ids = [leg.client_order_id for leg in (req.above, req.below) if leg.client_order_id]
        if len(set(ids)) < len(ids):
            raise BinanceError(DUPLICATE_ORDER)
        self._check(req.above, new_orders=2, maker_check=False)
        self._check(req.below, new_orders=2, maker_check=False)
        algo = self._algo_limit.get(symbol, 0)
        stops = sum(1 for leg in (req.above, req.below) if leg.stop_price is not None)
        open_algo = sum(1 for o in self.orders.values() if o.is_open and o.symbol == symbol
                        and o.has_stop)  # fmt: skip
        if algo and open_algo + stops > algo:
            raise BinanceError(filter_failure("MAX_NUM_ALGO_ORDERS"))
        last = self.last_price(symbol)
        if last is not None and not oco_prices_ok(req, last):
            raise BinanceError(OCO_BAD_PRICES)
        self._check_maker(req.above)
        self._check_maker(req.below)
        amount, asset = max(self._hold(req.above), self._hold(req.below))
        self._lock(asset, amount)
        list_id = next(self._list_ids)
        # Binance numbers the stop-loss leg first (see the orderList/oco example response)
        loss, profit = (req.below, req.above) if req.side == "SELL" else (req.above, req.below)
        first, second = self._new(loss, list_id), self._new(profit, list_id)
        above, below = (second, first) if req.side == "SELL" else (first, second)
        lst = SimOrderList(
            list_id,
            req.client_list_id or f"simlist{list_id}x",
            symbol,
            above,
            below,
            self.now_ms(),
            locked=amount,
            lock_asset=asset,
        )
        self.lists[list_id] = lst
        self.lists_by_client[(symbol, lst.client_list_id)] = lst
        for leg in lst.legs:
            self._report(leg, "NEW")
        self._publish(lst.event(self.now_ms()))
        if self.bars.trades_on_bars(symbol):
            self.bars.start_list(lst)
        return lst

    def _execute(self, order: SimOrder, limit: Decimal | None) -> list[SimFill]:
        """Take from the book now, up to ``limit`` (None: a market order); what remains rests
        (GTC limits) or expires (market orders, IOC; FOK when it cannot fill completely)."""
        walk = self._walk(order.symbol, order.side, order.remaining, limit)
        available = sum((q for _, q in walk), ZERO)
        if order.time_in_force == "FOK" and limit is not None and available < order.remaining:
            self._close(order, "EXPIRED")
            return []
        fills = [self._fill(order, p, q, is_maker=False) for p, q in walk]
        market = limit is None
        if order.is_open and (market or order.time_in_force in ("IOC", "FOK")):
            self._close(order, "EXPIRED")
        return fills

    # --- state changes --------------------------------------------------------------------------

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, is_maker: bool) -> SimFill:
        self._activate(order)
        flt = self.filters[order.symbol]
        base, quote = flt.base_asset, flt.quote_asset
        rate = self.config.maker_fee if is_maker else self.config.taker_fee
        quote_amt = price * qty
        if order.side == "BUY":
            # pay quote from what this order holds, receive base minus commission
            order.locked -= quote_amt
            self.locked[quote] -= quote_amt
            commission, asset = (qty * rate).quantize(Decimal("1e-8")), base
            self.free[base] += qty - commission
        else:
            order.locked -= qty
            self.locked[base] -= qty
            commission, asset = (quote_amt * rate).quantize(Decimal("1e-8")), quote
            self.free[quote] += quote_amt - commission
        order.executed_qty += qty
        order.cum_quote += quote_amt
        order.update_ms = self.now_ms()
        fill = SimFill(
            next(self._trade_ids), order, price, qty, commission, asset, order.update_ms, is_maker
        )
        self.fills.append(fill)
        if order.remaining == 0:
            order.status = "FILLED"
            self._release(order)
        else:
            order.status = "PARTIALLY_FILLED"
        self._report(order, "TRADE", fill)
        return fill

    def _release(self, order: SimOrder) -> None:
        """Return what an order still holds to the free balance."""
        if order.locked:
            flt = self.filters[order.symbol]
            asset = flt.quote_asset if order.side == "BUY" else flt.base_asset
            self.locked[asset] -= order.locked
            self.free[asset] += order.locked
            order.locked = ZERO

    def _close(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.update_ms = self.now_ms()
        self._release(order)
        self.bars.forget(order)
        self._report(order, status)

    # the bar matcher's handles
    def fill(self, order: SimOrder, price: Decimal, qty: Decimal, is_maker: bool) -> SimFill:
        return self._fill(order, price, qty, is_maker)

    def expire(self, order: SimOrder) -> None:
        self._close(order, "EXPIRED")

    def hold_at_least(self, order: SimOrder, amount: Decimal) -> bool:
        """Make a buy hold ``amount`` of quote (from the free balance); False if it cannot."""
        self._activate(order)  # an OCO leg takes its list's hold over first
        extra = amount - order.locked
        if extra <= 0:
            return True
        quote = self.filters[order.symbol].quote_asset
        if extra > self.free[quote]:
            return False
        self.free[quote] -= extra
        self.locked[quote] += extra
        order.locked += extra
        return True

    def start_working(self, order: SimOrder) -> None:
        """A stop reached its trigger: it starts working (an OCO partner expires); the stream
        says so with an executionReport NEW whose ``w`` is true."""
        self._activate(order)
        order.working_ms = order.update_ms = self.now_ms()
        self._report(order, "NEW")

    def _end_list(self, lst: SimOrderList) -> None:
        lst.status_type = lst.order_status = "ALL_DONE"
        lst.update_ms = self.now_ms()
        if lst.locked:
            self.locked[lst.lock_asset] -= lst.locked
            self.free[lst.lock_asset] += lst.locked
            lst.locked = ZERO
        self._publish(lst.event(self.now_ms()))

    def _activate(self, order: SimOrder) -> None:
        """An OCO leg fills or triggers: the other leg expires, this one takes the list's hold
        over, and the list is done."""
        lst = self.lists.get(order.list_id)
        if lst is None or not lst.is_open:
            return
        other = lst.other(order)
        if other.is_open:
            self._close(other, "EXPIRED")
        order.locked += lst.locked
        lst.locked = ZERO
        self._end_list(lst)

    def cancel(self, order: SimOrder) -> None:
        """Cancel an open order; a leg of an open OCO cancels the whole list (as Binance)."""
        lst = self.lists.get(order.list_id)
        if lst is not None and lst.is_open:
            self.cancel_list(lst)
        else:
            self._close(order, "CANCELED")

    def cancel_list(self, lst: SimOrderList) -> None:
        for leg in lst.legs:
            if leg.is_open:
                self._close(leg, "CANCELED")
        self._end_list(lst)

    def _trigger(self, order: SimOrder, trade_index: int) -> None:
        """The stop is reached: the order starts working (see the module docstring)."""
        self.start_working(order)
        order.active_from = trade_index + 1  # as a limit, it meets the prints after this one
        if order.type not in MARKET_ON_TRIGGER:
            if self._marketable(order.side, order.price, order.symbol):
                self._execute(order, order.price)
            elif order.time_in_force in ("IOC", "FOK"):
                self._close(order, "EXPIRED")
            return
        if order.side == "BUY" and not self._rehold_for_market_buy(order):
            self._close(order, "EXPIRED")
            return
        self._execute(order, None)

    def _rehold_for_market_buy(self, order: SimOrder) -> bool:
        """A triggered market buy holds what its book walk costs instead of its estimate."""
        walk = self._walk(order.symbol, "BUY", order.remaining, None)
        need = sum((p * q for p, q in walk), ZERO)
        return self.hold_at_least(order, need)

    # --- replayed trades meet resting orders ----------------------------------------------------

    def match_resting(self) -> int:
        """Trigger stops and fill resting limits against replayed trades released since the
        last call; returns the number of fills."""
        state = self.sim.state
        state.advance_to(self.sim.head)
        filled = 0
        for sym in {o.symbol for o in self.orders.values() if o.is_open}:
            trades = state.trades(sym)
            start = self._seen_trades[sym]
            if start > len(trades):  # the replay started over with a fresh market
                start = 0
                for o in self.orders.values():
                    if o.symbol == sym:
                        o.active_from = 0
            self._seen_trades[sym] = len(trades)
            mine = [o for o in self.orders.values() if o.is_open and o.symbol == sym]
            for i in range(start, len(trades)):
                t = trades[i]
                filled += self._on_trade(mine, i, Decimal(t.price), Decimal(t.qty))
        # symbols without open orders: nothing rests, just move the cursor on
        for sym in self.sim.market.symbols:
            if not any(o.is_open and o.symbol == sym for o in self.orders.values()):
                self._seen_trades[sym] = len(state.trades(sym))
        return filled

    def _on_trade(self, mine: list[SimOrder], i: int, price: Decimal, left: Decimal) -> int:
        for o in sorted(mine, key=lambda o: o.order_id):
            if o.is_open and not o.is_working and o.active_from <= i and o.would_trigger(price):
                self._trigger(o, i)
        buys = sorted(
            (o for o in mine if o.rests_as_limit and o.active_from <= i and o.side == "BUY"
             and o.price >= price),
            key=lambda o: (-o.price, o.order_id),
        )  # fmt: skip
        sells = sorted(
            (o for o in mine if o.rests_as_limit and o.active_from <= i and o.side == "SELL"
             and o.price <= price),
            key=lambda o: (o.price, o.order_id),
        )  # fmt: skip
        n = 0
        for o in buys + sells:
            if left <= 0:
                break
            if not o.is_open:  # expired by its OCO partner on this print
                continue
            q = min(left, o.remaining)
            self._fill(o, o.price, q, is_maker=True)
            left -= q
            n += 1
        return n
