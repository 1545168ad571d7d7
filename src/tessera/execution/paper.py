"""`PaperExchange`: our orders filled against live market data, with the backtest's models.

The same `Exchange` interface as `CcxtExchange`, so the bot runs unchanged in paper mode. Market
data comes in through `on_quote` (best bid/ask) and `on_trade` (prints); orders are decided by
the backtest's `match_order` on a one-event "bar":

* on submit, a market order — or a limit order already through the quote — takes the quote
  (ask for a buy, bid for a sell) plus the configured slippage, as taker;
* a resting limit fills, as maker, at its limit when a print reaches it (``touch``) or goes
  beyond it (``through``), up to the print's size;
* fees come from the `FeeSchedule` in quote currency; exchange filters reject with -1013;
  balances are checked (-2010) and held while an order rests.

Balances are the paper account's own: snapshotted to the execution store after every change
(source ``paper``) and restored from it on start, so a restarted paper bot continues its
account. Fills are pushed to ``on_report`` as `ExecutionReport` objects, like the user-data
stream of a real exchange.

Order and trade ids are unique across restarts and across processes on one database, as a real
exchange's are: each paper exchange takes a session number from the store (a database sequence)
and numbers its ids from ``session * PAPER_ID_SPAN``. Ids that restarted at 1 collided with the
stored fills of the previous run, and the new fills were lost as "already recorded".
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tessera.execution.exchange import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    OrderRejectedError,
    UnknownOrderError,
)
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import FilterViolationError, SymbolFilters
from tessera.execution.matching import BarView, SlippageModel, match_order
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.userdata import ExecutionReport
from tessera.logging import get_logger

log = get_logger(__name__)
ZERO = Decimal(0)
SOURCE = "paper"
# ids per session: a trillion orders or trades each; sessions * span stays inside int64
PAPER_ID_SPAN = 10**12


@dataclass
class _Resting:
    order: Order
    exchange_order_id: str
    held: Decimal  # balance held for the remainder (quote for a buy, base for a sell)
    status: OrderStatus = OrderStatus.ACCEPTED
    filled_qty: Decimal = ZERO
    filled_notional: Decimal = ZERO
    fills: list[Fill] = field(default_factory=list)


class PaperExchange:
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
        restored = store.latest_balances(SOURCE) if store is not None else {}
        start = restored or {a: (Decimal(v), ZERO) for a, v in (initial_balances or {}).items()}
        self.free: dict[str, Decimal] = {a: f for a, (f, _) in start.items()}
        self.held: dict[str, Decimal] = {a: h for a, (_, h) in start.items()}
        if restored:
            log.info("paper balances restored", balances={a: str(f) for a, f in self.free.items()})
        self.quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self.orders: dict[str, _Resting] = {}
        self.trades: list[ExchangeTrade] = []
        # without a store the account lives in memory only, and ids start at 1
        self.session = store.new_paper_session() if store is not None else 0
        base = self.session * PAPER_ID_SPAN
        self._ids = itertools.count(base + 1)
        self._trade_ids = itertools.count(base + 1)

    # --- market data ----------------------------------------------------------------------------

    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        self.quotes[symbol] = (bid, ask)

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal) -> int:
        """A market print: resting orders it reaches fill (price-time priority). Returns fills."""
        p = float(price)
        bar = BarView(p, p, p, p, float(qty))
        left = qty
        done = 0
        live = [r for r in self.orders.values() if r.order.symbol == symbol and r.status.is_open]
        live.sort(key=lambda r: (-(r.order.price or ZERO) if r.order.side is OrderSide.BUY
                                 else (r.order.price or ZERO), r.exchange_order_id))  # fmt: skip
        for r in live:
            if left <= 0:
                break
            result = match_order(r.order, bar, False, self.slippage, limit_fill=self.limit_fill)
            if result.match is None:
                continue
            q = min(result.match.qty, left, r.order.qty - r.filled_qty)
            self._fill(r, result.match.price, q, Liquidity.MAKER)
            left -= q
            done += 1
        if done:
            self._persist()
        return done

    # --- the Exchange interface -----------------------------------------------------------------

    async def submit(self, order: Order) -> ExchangeOrder:
        flt = self.filters.get(order.symbol)
        if flt is None:
            raise OrderRejectedError("Invalid symbol.", -1121)
        if (
            order.client_order_id in self.orders
            and self.orders[order.client_order_id].status.is_open
        ):
            raise OrderRejectedError("Duplicate order sent.", -2010)
        quote = self.quotes.get(order.symbol)
        if quote is None:
            raise OrderRejectedError("no market data yet for this symbol", -2010)
        bid, ask = quote
        ref = (bid + ask) / 2
        try:
            flt.check(order.type, order.qty, order.price, reference_price=ref)
        except FilterViolationError as exc:
            raise OrderRejectedError(f"Filter failure: {exc.filter_type}", -1013) from exc
        buy = order.side is OrderSide.BUY
        touch = float(ask if buy else bid)
        first = match_order(order, BarView(touch, touch, touch, touch, 1e18), True, self.slippage)
        if first.reject:
            raise OrderRejectedError(first.reject, -2010)
        # funds: a buy holds quote (at its limit, or at the fill price), a sell holds base
        est = first.match.price if first.match is not None else (order.price or ask)
        need = order.qty * est * (1 + self.fees.rate(Liquidity.TAKER)) if buy else order.qty
        asset = flt.quote_asset if buy else flt.base_asset
        if self.free.get(asset, ZERO) < need:
            raise OrderRejectedError(
                "Account has insufficient balance for requested action.", -2010
            )
        self.free[asset] = self.free.get(asset, ZERO) - need
        self.held[asset] = self.held.get(asset, ZERO) + need
        r = _Resting(order=_copy(order), exchange_order_id=str(next(self._ids)), held=need)
        self.orders[order.client_order_id] = r
        self._report(r, "NEW", None)
        if first.match is not None:
            self._fill(r, first.match.price, first.match.qty, first.match.liquidity)
        if r.status.is_open and (first.expire or order.type is OrderType.MARKET):
            self._close(r, OrderStatus.EXPIRED)
        self._persist()
        return self._view(r)

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        r = self.orders.get(client_order_id)
        if r is None or not r.status.is_open:
            raise UnknownOrderError("Unknown order sent.", -2011)
        self._close(r, OrderStatus.CANCELED)
        self._persist()
        return self._view(r)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        r = self.orders.get(client_order_id)
        return self._view(r) if r is not None else None

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return [
            self._view(r)
            for r in self.orders.values()
            if r.status.is_open and (symbol is None or r.order.symbol == symbol)
        ]

    async def balances(self) -> dict[str, Balance]:
        assets = sorted(set(self.free) | set(self.held))
        return {a: Balance(a, self.free.get(a, ZERO), self.held.get(a, ZERO)) for a in assets}

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        return [
            t
            for t in self.trades
            if t.fill.symbol == symbol and (from_id is None or int(t.fill.trade_id) >= from_id)
        ]

    async def close(self) -> None:
        self._persist()

    # --- internals ------------------------------------------------------------------------------

    def _fill(self, r: _Resting, price: Decimal, qty: Decimal, liquidity: Liquidity) -> None:
        flt = self.filters[r.order.symbol]
        base, quote = flt.base_asset, flt.quote_asset
        notional = price * qty
        fee = self.fees.fee(notional, liquidity)
        if r.order.side is OrderSide.BUY:
            cost = notional + fee
            take = min(cost, r.held)
            r.held -= take
            self.held[quote] -= take
            self.free[quote] = self.free.get(quote, ZERO) - (cost - take)
            self.free[base] = self.free.get(base, ZERO) + qty
        else:
            r.held -= qty
            self.held[base] -= qty
            self.free[quote] = self.free.get(quote, ZERO) + notional - fee
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
        r.fills.append(fill)
        r.filled_qty += qty
        r.filled_notional += notional
        self.trades.append(ExchangeTrade(r.exchange_order_id, fill))
        if r.filled_qty >= r.order.qty:
            r.status = OrderStatus.FILLED
            self._release(r)
        else:
            r.status = OrderStatus.PARTIALLY_FILLED
        self._report(r, "TRADE", fill)

    def _release(self, r: _Resting) -> None:
        if r.held:
            flt = self.filters[r.order.symbol]
            asset = flt.quote_asset if r.order.side is OrderSide.BUY else flt.base_asset
            self.held[asset] -= r.held
            self.free[asset] = self.free.get(asset, ZERO) + r.held
            r.held = ZERO

    def _close(self, r: _Resting, status: OrderStatus) -> None:
        r.status = status
        self._release(r)
        self._report(r, status.value, None)

    def _persist(self) -> None:
        if self.store is not None:
            items = {a: (self.free.get(a, ZERO), self.held.get(a, ZERO)) for a in self.free}
            self.store.snapshot_balances(SOURCE, items, ts=self.clock())

    def _view(self, r: _Resting) -> ExchangeOrder:
        return ExchangeOrder(
            client_order_id=r.order.client_order_id,
            exchange_order_id=r.exchange_order_id,
            symbol=r.order.symbol,
            status=r.status,
            qty=r.order.qty,
            filled_qty=r.filled_qty,
            filled_notional=r.filled_notional,
            price=r.order.price,
            ts_update=self.clock(),
            fills=list(r.fills),
        )

    def _report(self, r: _Resting, exec_type: str, fill: Fill | None) -> None:
        if self.on_report is None:
            return
        self.on_report(
            ExecutionReport(
                symbol=r.order.symbol,
                client_order_id=r.order.client_order_id,
                side=r.order.side,
                exec_type=exec_type,
                status=r.status,
                exchange_order_id=r.exchange_order_id,
                cum_qty=r.filled_qty,
                cum_quote=r.filled_notional,
                event_ms=self.clock() // 1_000_000,
                fill=fill,
            )
        )


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
    )
