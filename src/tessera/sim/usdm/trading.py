"""Signed USDⓈ-M trading on the simulator: one-way positions, leverage, margin, user data.

Why a subclass of the spot engine: the matching of our orders against the replayed book and
trades (`tessera.sim.matching_core`: a market order walks the book, a resting limit fills as
maker when a replayed trade prints through it, IOC/FOK), the signature and recvWindow checks,
the order-rate limit, listen keys and the user-data socket (`tessera.sim.trading`) are the same
on Binance's futures API. What differs is the account: no balances are held per order; an order
needs initial margin, a fill moves a position (`PerpPosition`, one-way mode), realizes PnL and
pays its commission in USDT from the wallet. So this engine overrides the account hooks
(``_check``/``place``, ``_fill``, ``_release``, ``_report``, ``_new``) and serves the ``/fapi``
routes instead of ``/api/v3``.

Rules, as Binance USDⓈ-M (error codes in brackets):

* orders: MARKET and LIMIT (GTC, IOC, FOK, GTX = post-only, refused if it would take [-5022]);
  STOP and TAKE_PROFIT (limit on trigger), STOP_MARKET and TAKE_PROFIT_MARKET, triggered by a
  replayed trade at or through ``stopPrice`` (STOP buys rising, sells falling; TAKE_PROFIT the
  other way round), refused if the last price already triggers them [-2021]; only
  ``workingType`` CONTRACT_PRICE; ``closePosition`` on the two market kinds closes whatever
  position there is at the trigger (it expires when there is none); ``positionSide`` BOTH only
  (one-way mode; LONG/SHORT [-4061]); ``reduceOnly`` orders must reduce the position (else
  [-2022]) and never flip it: what exceeds the position when they fill expires; trailing stops
  are refused [-1130] rather than ignored;
* filters from the fapi exchangeInfo: price below min [-4013], above max [-4002], off tick
  [-4014], quantity below min [-4004], above max [-4005], off step [-4023] (LOT_SIZE for limits,
  MARKET_LOT_SIZE for market orders), notional under MIN_NOTIONAL unless reduce-only [-4164],
  a limit beyond PERCENT_PRICE of the mark [-4016/-4024];
* margin: an order needs ``price x qty / leverage`` of available balance for the part that
  opens or grows the position (market orders at the side of the book they take), else
  [-2019]; available = wallet + unrealized PnL of cross positions - position initial margins -
  open orders' margins;
* ``leverage`` 1..the symbol's bracket maximum [-4028], not below what the position needs
  [-2027]; ``marginType`` ISOLATED/CROSSED, not while a position or open orders exist
  [-4048/-4047], not to the current type [-4046].

The same conditionals placed through Binance's algo order service (``/fapi/v1/algoOrder``,
``openAlgoOrders``, ``allAlgoOrders``; ``ALGO_UPDATE`` on the user-data socket) are handles on
these orders: see `tessera.sim.usdm.algo`.

Positions are marked at `UsdmPublicApi.mark` (see `tessera.sim.usdm.market` for what the mark
is); ``positionRisk`` reports the liquidation price of `tessera.execution.perp.margin`.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tessera.execution.filters import SymbolFilters
from tessera.execution.perp.funding import FundingRate, funding_payment
from tessera.execution.perp.instrument import PerpetualInstrument
from tessera.execution.perp.margin import (
    LeverageBrackets,
    MarginMode,
    MarkedPosition,
    PerpPosition,
    liquidation_price,
)
from tessera.sim import payloads as binance
from tessera.sim.order_params import OrderRequest, decimal_param
from tessera.sim.rest import BinanceError, json_response
from tessera.sim.trading import Signed, TradingConfig, TradingEngine
from tessera.sim.usdm.algo import AlgoOrder
from tessera.sim.usdm.market import USDM_BRACKETS_FILE, bar_market, usdm_brackets
from tessera.sim.venue_orders import SimFill, SimOrder
from tessera.venues.binance_usdm.instruments import parse_exchange_info

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator
    from tessera.sim.usdm.bars import MarkBar
    from tessera.sim.usdm.rest import UsdmPublicApi

ZERO = Decimal(0)
CONDITIONAL_TYPES = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"})
PRICED_TYPES = frozenset({"LIMIT", "STOP", "TAKE_PROFIT"})  # rest as limits (once triggered)
CLOSE_POSITION_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})
SERVED_TYPES = frozenset({"MARKET", "LIMIT"}) | CONDITIONAL_TYPES
V3_ACCOUNT_POSITION_FIELDS = (
    "symbol",
    "positionSide",
    "positionAmt",
    "unrealizedProfit",
    "isolatedMargin",
    "notional",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "updateTime",
)
DEFAULT_LEVERAGE = 20  # Binance's default for a symbol never set
MARGIN_INSUFFICIENT = binance.error(-2019, "Margin is insufficient.")
REDUCE_ONLY_REJECTED = binance.error(-2022, "ReduceOnly Order is rejected.")
POSITION_SIDE_MISMATCH = binance.error(
    -4061, "Order's position side does not match user's setting."
)
GTX_REJECTED = binance.error(
    -5022,
    "Due to the order could not be executed as maker, the Post Only order will be rejected. "
    "The order will not be recorded in the order history",
)
NO_SUCH_ORDER = binance.error(-2013, "Order does not exist.")
UNKNOWN_ORDER = binance.error(-2011, "Unknown order sent.")


def usdm_trading_config(**kw: Any) -> TradingConfig:
    """A `TradingConfig` with USDⓈ-M's defaults: 10,000 USDT, 0.02 % maker, 0.05 % taker
    (Binance's base tier)."""
    base: dict[str, Any] = {
        "balances": {"USDT": "10000"},
        "maker_fee": Decimal("0.0002"),
        "taker_fee": Decimal("0.0005"),
    }
    return TradingConfig(**{**base, **kw})


@dataclass
class UsdmOrder(SimOrder):
    reduce_only: bool = False
    realized: Decimal = ZERO  # of the last fill (the event's "rp")
    liquidation: bool = False  # an ``autoclose-`` order of the liquidation engine
    close_position: bool = False  # closes whatever position there is when it triggers

    @property
    def has_stop(self) -> bool:
        return self.type in CONDITIONAL_TYPES

    def triggers_above(self) -> bool:
        """USDⓈ-M: STOP(_MARKET) buys on the way up and sells on the way down,
        TAKE_PROFIT(_MARKET) the other way round."""
        rising = self.side == "BUY"
        return rising if self.type.startswith("STOP") else not rising

    @property
    def rests_as_limit(self) -> bool:
        return self.is_working and self.is_open and self.type in PRICED_TYPES


@dataclass
class SymbolAccount:
    """One symbol's settings and one-way position (``qty`` 0 = flat)."""

    leverage: int = DEFAULT_LEVERAGE
    mode: MarginMode = MarginMode.CROSS
    qty: Decimal = ZERO
    entry: Decimal = ZERO
    update_ms: int = 0
    fees_paid: Decimal = ZERO  # since the position opened (break-even price)
    realized: Decimal = ZERO  # cumulative realized PnL of the symbol ("cr")


@dataclass(frozen=True, slots=True)
class IncomeRow:
    """One ``/fapi/v1/income`` row (Binance's fields; see the real row in
    ``samples/ccxt-fixtures/response-binance.json``, fetchFundingHistory)."""

    symbol: str
    kind: str  # incomeType
    amount: Decimal
    time_ms: int
    tran_id: int

    def payload(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "incomeType": self.kind,
            "income": f"{self.amount:.8f}",
            "asset": "USDT",
            "info": self.kind,
            "time": self.time_ms,
            "tranId": self.tran_id,
            "tradeId": "",
        }


def _error(code: int, msg: str) -> BinanceError:
    return BinanceError(binance.error(code, msg))


class UsdmTradingEngine(TradingEngine):
    """Signed ``/fapi`` endpoints over the matching core, with a USDⓈ-M margin account."""

    def __init__(
        self,
        sim: ExchangeSimulator,
        public: UsdmPublicApi,
        config: TradingConfig | None = None,
        brackets: dict[str, LeverageBrackets] | None = None,
    ) -> None:
        self.public = public
        info = parse_exchange_info(sim.market.exchange_info)
        self.instruments: dict[str, PerpetualInstrument] = dict(info.instruments)
        super().__init__(sim, config or usdm_trading_config())
        self.brackets = brackets if brackets is not None else usdm_brackets()
        missing = [s for s in sim.market.symbols if s not in self.brackets]
        if missing:
            raise ValueError(f"{USDM_BRACKETS_FILE}: no leverage brackets for {missing}")
        self.accounts: dict[str, SymbolAccount] = defaultdict(SymbolAccount)
        self.asset = "USDT"
        self.wallet = Decimal(self.config.balances.get(self.asset, "0"))
        self.fill_realized: dict[int, Decimal] = {}  # trade id -> realized PnL
        self.incomes: list[IncomeRow] = []  # funding fees booked (``/fapi/v1/income``)
        self._tran_ids = itertools.count(1)
        # conditional orders of the algo service (`tessera.sim.usdm.algo`)
        self.algos: dict[int, AlgoOrder] = {}
        self.algo_by_client: dict[str, AlgoOrder] = {}
        self.algo_of: dict[int, AlgoOrder] = {}  # orderId of the triggered order -> its algo
        self._algo_ids = itertools.count(1000001)
        # bar mode with mark and funding files: each released candle's mark range is checked
        # for liquidation, then each funding time it passes is settled (see `on_bars_released`)
        self._bar_market = bar_market(sim.market)
        self._bar_cursor = 0
        self._funding_next = 0
        if self._bar_market is not None:
            sim.release_hooks.append(self.on_bars_released)
            sim.release_stops.append(self._next_candle_stop)

    def _symbol_filters(self, info: dict[str, Any]) -> dict[str, SymbolFilters]:
        return {s: inst.filters() for s, inst in parse_exchange_info(info).instruments.items()}

    # --- wiring ---------------------------------------------------------------------------------

    def _register(self, app: web.Application) -> None:
        routes: tuple[tuple[str, str, Signed, int], ...] = (
            ("POST", "/fapi/v1/order", self.new_order, 0),
            ("GET", "/fapi/v1/order", self.query_order, 1),
            ("DELETE", "/fapi/v1/order", self.cancel_order, 1),
            ("GET", "/fapi/v1/openOrders", self.open_orders, 1),
            ("DELETE", "/fapi/v1/allOpenOrders", self.cancel_all, 1),
            ("GET", "/fapi/v1/allOrders", self.all_orders, 5),
            ("POST", "/fapi/v1/leverage", self.set_leverage, 1),
            ("POST", "/fapi/v1/marginType", self.set_margin_type, 1),
            ("GET", "/fapi/v1/positionSide/dual", self.position_mode, 30),
            ("GET", "/fapi/v1/leverageBracket", self.leverage_bracket, 1),
            ("GET", "/fapi/v2/positionRisk", self.position_risk, 5),
            ("GET", "/fapi/v3/positionRisk", self.position_risk_v3, 5),
            ("GET", "/fapi/v2/account", self.account, 5),
            ("GET", "/fapi/v3/account", self.account_v3, 5),
            ("GET", "/fapi/v2/balance", self.balance, 5),
            ("GET", "/fapi/v1/userTrades", self.my_trades, 5),
            ("GET", "/fapi/v1/income", self.income, 30),
            ("POST", "/fapi/v1/algoOrder", self.new_algo_order, 0),
            ("GET", "/fapi/v1/algoOrder", self.query_algo_order, 1),
            ("DELETE", "/fapi/v1/algoOrder", self.cancel_algo_order, 1),
            ("GET", "/fapi/v1/openAlgoOrders", self.open_algo_orders, 1),
            ("GET", "/fapi/v1/allAlgoOrders", self.all_algo_orders, 5),
        )
        self._add_routes(app, routes, "/fapi/v1/listenKey", 1)
        app.router.add_get("/ws/{listen_key:[A-Za-z0-9]{60}}", self.user_data_ws)
        app.router.add_get("/private/ws", self.user_data_ws)
        app.on_startup.append(self._start_matcher)
        app.on_cleanup.append(self._stop_matcher)

    async def keepalive_listen_key(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        """fapi: the key is the account's; a keepalive answers it (no listenKey parameter)."""
        if not params.get("listenKey") and self.listen_keys:
            newest = max(self.listen_keys, key=lambda k: self.listen_keys[k])
            params = {**params, "listenKey": newest}
        await super().keepalive_listen_key(request, params)
        return json_response({"listenKey": params["listenKey"]})

    async def close_listen_key(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if not params.get("listenKey") and self.listen_keys:
            newest = max(self.listen_keys, key=lambda k: self.listen_keys[k])
            params = {**params, "listenKey": newest}
        return await super().close_listen_key(request, params)

    # --- the account ----------------------------------------------------------------------------

    def mark(self, sym: str) -> Decimal:
        self.sim.state.advance_to(self.sim.head)
        return self.public.mark(sym)

    def position(self, sym: str) -> PerpPosition | None:
        acc = self.accounts[sym]
        if acc.qty == 0:
            return None
        iso = acc.qty.copy_abs() * acc.entry / acc.leverage if self._isolated(sym) else None
        return PerpPosition(sym, acc.qty, acc.entry, acc.leverage, acc.mode, iso)

    def _isolated(self, sym: str) -> bool:
        return self.accounts[sym].mode is MarginMode.ISOLATED

    def unrealized(self, sym: str) -> Decimal:
        pos = self.position(sym)
        return pos.unrealized_pnl(self.mark(sym)) if pos else ZERO

    def _order_margin(self, o: SimOrder) -> Decimal:
        """What an open order holds: its opening part at its price over the leverage."""
        if not o.is_open or getattr(o, "reduce_only", False) or not o.is_working:
            return ZERO
        opening = self._opening_qty(o.symbol, o.side, o.remaining)
        return opening * o.price / self.accounts[o.symbol].leverage

    def _opening_qty(self, sym: str, side: str, qty: Decimal) -> Decimal:
        pos = self.accounts[sym].qty
        sign = 1 if side == "BUY" else -1
        if pos == 0 or (pos > 0) == (sign > 0):
            return qty
        return max(ZERO, qty - pos.copy_abs())

    def position_margin(self) -> Decimal:
        return sum(
            (a.qty.copy_abs() * a.entry / a.leverage for a in self.accounts.values() if a.qty != 0),
            ZERO,
        )

    def open_order_margin(self) -> Decimal:
        return sum((self._order_margin(o) for o in self.orders.values()), ZERO)

    def cross_unrealized(self) -> Decimal:
        return sum(
            (self.unrealized(s) for s, a in list(self.accounts.items())
             if a.qty != 0 and a.mode is MarginMode.CROSS),
            ZERO,
        )  # fmt: skip

    def available(self) -> Decimal:
        return (
            self.wallet
            + self.cross_unrealized()
            - self.position_margin()
            - self.open_order_margin()
        )

    def liquidation(self, sym: str) -> Decimal:
        pos = self.position(sym)
        if pos is None:
            return ZERO
        brackets = self.brackets[sym]
        if pos.mode is MarginMode.ISOLATED:
            price = liquidation_price(pos, brackets)
        else:
            others = [
                MarkedPosition(p, self.brackets[s], self.mark(s))
                for s in self.accounts
                if s != sym and (p := self.position(s)) is not None and p.mode is MarginMode.CROSS
            ]
            iso_margin = sum(
                (
                    p.isolated_margin or ZERO
                    for s in self.accounts
                    if (p := self.position(s)) is not None and p.mode is MarginMode.ISOLATED
                ),
                ZERO,
            )
            price = liquidation_price(
                pos, brackets, cross_wallet_balance=self.wallet - iso_margin, others=others
            )
        return price if price is not None else ZERO

    # --- placing --------------------------------------------------------------------------------

    def place(self, params: dict[str, str], algo_id: int = 0) -> tuple[SimOrder, list[SimFill]]:
        """Place an order; with ``algo_id`` a conditional of the algo service (its trigger
        price in ``stopPrice``, its ``clientAlgoId`` in ``newClientOrderId``)."""
        sym = self.symbol(params)
        inst = self.instruments[sym]
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(binance.missing_param("side"))
        otype = params.get("type", "")
        if not otype:
            raise BinanceError(binance.missing_param("type"))
        if otype not in SERVED_TYPES:
            if otype in inst.order_types:
                raise _error(-1130, f"Order type {otype} is not implemented by the simulator.")
            raise _error(-1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise BinanceError(POSITION_SIDE_MISMATCH)
        if params.get("workingType", "CONTRACT_PRICE") != "CONTRACT_PRICE":
            raise _error(-1130, "Only workingType CONTRACT_PRICE is implemented by the simulator.")
        for name in ("activationPrice", "callbackRate", "priceMatch"):
            if params.get(name):
                raise _error(-1106, f"Parameter '{name}' sent when not required.")
        close_position = params.get("closePosition", "false").lower() == "true"
        if close_position and otype not in CLOSE_POSITION_TYPES:
            raise _error(-1106, "Parameter 'closePosition' sent when not required.")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        if close_position and reduce_only:
            raise _error(-1106, "Parameter 'reduceOnly' sent when not required.")
        qty = decimal_param(params, "quantity")
        if close_position and qty is not None:
            raise _error(-1106, "Parameter 'quantity' sent when not required.")
        if qty is None and not close_position:
            raise BinanceError(binance.missing_param("quantity"))
        stop = decimal_param(params, "stopPrice")
        if otype in CONDITIONAL_TYPES and stop is None:
            raise BinanceError(binance.missing_param("stopPrice"))
        if otype not in CONDITIONAL_TYPES and stop is not None:
            raise _error(-1106, "Parameter 'stopPrice' sent when not required.")
        price = decimal_param(params, "price")
        tif = params.get("timeInForce", "")
        if otype in PRICED_TYPES:
            if price is None:
                raise BinanceError(binance.missing_param("price"))
            if not tif and otype == "LIMIT":
                raise BinanceError(binance.missing_param("timeInForce"))
            tif = tif or "GTC"
            if tif not in inst.time_in_force:
                raise _error(-1115, "Invalid timeInForce.")
        elif price is not None:
            raise _error(-1106, "Parameter 'price' sent when not required.")
        cid = params.get("newClientOrderId", "")
        if cid:
            known = self.by_client.get((sym, cid))
            if known is not None and known.is_open:
                raise _error(-4015, "Client order id is not valid.")
        base_type = "LIMIT" if otype in PRICED_TYPES else "MARKET"
        pos = self.accounts[sym].qty
        if qty is not None:
            self._check_filters(inst, base_type, side, qty, price, reduce_only or close_position)
        if stop is not None:
            if inst.tick_size and (stop - inst.min_price) % inst.tick_size != 0:
                raise _error(-4014, "Price not increased by tick size.")
            probe = UsdmOrder(0, "", sym, side, otype, "GTC", ZERO, ZERO, 0, stop_price=stop)
            last = self.last_price(sym)
            if last is not None and probe.would_trigger(last):
                raise _error(-2021, "Order would immediately trigger.")
        if reduce_only and (pos == 0 or (pos > 0) == (side == "BUY")):
            raise BinanceError(REDUCE_ONLY_REJECTED)
        bid, ask = self.best(sym)
        if otype == "LIMIT" and tif == "GTX" and self._marketable(side, price, sym):
            raise BinanceError(GTX_REJECTED)
        if not reduce_only and qty is not None and stop is None:
            ref = price if price is not None else (ask if side == "BUY" else bid)
            opening = self._opening_qty(sym, side, qty)
            need = opening * (ref or self.mark(sym)) / self.accounts[sym].leverage
            if need > self.available():
                raise BinanceError(MARGIN_INSUFFICIENT)
        on_bars = self.bars.trades_on_bars(sym)
        result = None
        if on_bars:  # bar mode (`tessera.sim.bar_matching`): decided on the forming bar
            if stop is not None or tif == "GTX":
                kind = f"{otype} GTX" if tif == "GTX" else otype
                raise _error(-1130, f"{kind} is not implemented in the simulator's bar mode.")
            assert qty is not None
            result = self.bars.arrival(
                OrderRequest(sym, side, otype, qty, price, None, tif or "GTC", cid)
            )
        now = self.now_ms()
        oid = next(self._order_ids)
        order = UsdmOrder(
            oid,
            cid or f"sim{oid}x",
            sym,
            side,
            otype,
            tif if otype in PRICED_TYPES else "GTC",
            price if price is not None else ZERO,
            qty if qty is not None else ZERO,
            now,
            stop_price=stop if stop is not None else ZERO,
            working_ms=-1 if stop is not None else now,
            active_from=len(self.sim.state.trades(sym)),
            reduce_only=reduce_only or close_position,
            close_position=close_position,
        )
        self.orders[oid] = order
        self.by_client[(sym, order.client_order_id)] = order
        if algo_id:
            algo = AlgoOrder(algo_id, order.client_order_id, order, now)
            self.algos[algo_id] = self.algo_by_client[algo.client_algo_id] = algo
            self.algo_of[oid] = algo
        self._report(order, "NEW")
        if on_bars:
            return order, self.bars.start(order, result)
        if stop is not None or (otype == "LIMIT" and tif == "GTX"):
            return order, []  # waits for its trigger / rests as a maker
        return order, self._execute(order, price if otype == "LIMIT" else None)

    def _trigger(self, order: SimOrder, trade_index: int) -> None:
        """A replayed trade reached the stop: a ``closePosition`` order takes the position's
        size (it expires if there is none to close), an order that opens needs its margin
        now (else it expires), then it works as a market or limit order."""
        acc = self.accounts[order.symbol]
        if isinstance(order, UsdmOrder) and order.close_position:
            closing = acc.qty != 0 and (acc.qty > 0) != (order.side == "BUY")
            if not closing:
                self._close(order, "EXPIRED")
                return
            order.orig_qty = acc.qty.copy_abs()
        elif not (isinstance(order, UsdmOrder) and order.reduce_only):
            ref = order.price or self.last_price(order.symbol) or ZERO
            opening = self._opening_qty(order.symbol, order.side, order.remaining)
            if opening * ref / acc.leverage > self.available():
                self._close(order, "EXPIRED")
                return
        self.start_working(order)
        order.active_from = trade_index + 1
        if order.type in PRICED_TYPES:
            if self._marketable(order.side, order.price, order.symbol):
                self._execute(order, order.price)
            elif order.time_in_force in ("IOC", "FOK"):
                self._close(order, "EXPIRED")
            return
        self._execute(order, None)

    def _check_filters(
        self,
        inst: PerpetualInstrument,
        otype: str,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        reduce_only: bool,
    ) -> None:
        if price is not None:
            if inst.min_price and price < inst.min_price:
                raise _error(-4013, "Price less than min price.")
            if inst.max_price and price > inst.max_price:
                raise _error(-4002, "Price greater than max price.")
            if inst.tick_size and (price - inst.min_price) % inst.tick_size != 0:
                raise _error(-4014, "Price not increased by tick size.")
        market = otype == "MARKET"
        lo, hi, step = (
            (inst.market_min_qty, inst.market_max_qty, inst.market_step_size)
            if market
            else (inst.min_qty, inst.max_qty, inst.step_size)
        )
        if qty <= 0:
            raise _error(-4003, "Quantity less than or equal to zero.")
        if lo and qty < lo:
            raise _error(-4004, "Quantity less than min quantity.")
        if hi and qty > hi:
            raise _error(-4005, "Quantity greater than max quantity.")
        if step and (qty - lo) % step != 0:
            raise _error(-4023, "Qty not increased by step size.")
        mark = self.mark(inst.symbol)
        if price is not None and mark:
            if inst.percent_up and price > mark * inst.percent_up:
                raise _error(-4016, f"Limit price can't be higher than {mark * inst.percent_up}.")
            if inst.percent_down and price < mark * inst.percent_down:
                raise _error(-4024, f"Limit price can't be lower than {mark * inst.percent_down}.")
        bid, ask = self.best(inst.symbol)
        ref = price if price is not None else ((ask if side == "BUY" else bid) or mark)
        if not reduce_only and inst.min_notional and qty * ref < inst.min_notional:
            raise _error(
                -4164,
                f"Order's notional must be no smaller than {inst.min_notional:f} "
                "(unless you choose reduce only).",
            )

    # --- fills and events -----------------------------------------------------------------------

    def _release(self, order: SimOrder) -> None:
        """Nothing is held per order: an order's margin is counted while it is open."""

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, is_maker: bool) -> SimFill:
        acc = self.accounts[order.symbol]
        reduce_only = isinstance(order, UsdmOrder) and order.reduce_only
        if reduce_only:  # never grows or flips the position: the excess expires below
            closing = acc.qty != 0 and (acc.qty > 0) != (order.side == "BUY")
            qty = min(qty, acc.qty.copy_abs()) if closing else ZERO
        if qty == 0:  # a reduce-only order with nothing (left) to reduce
            if order.is_open:
                self._close(order, "EXPIRED")
            return SimFill(0, order, price, qty, ZERO, self.asset, self.now_ms(), is_maker)
        sign = Decimal(1) if order.side == "BUY" else Decimal(-1)
        realized = ZERO
        if acc.qty == 0 or (acc.qty > 0) == (sign > 0):
            new = acc.qty + sign * qty
            acc.entry = (acc.qty.copy_abs() * acc.entry + qty * price) / new.copy_abs()
            if acc.qty == 0:
                acc.fees_paid = ZERO
            acc.qty = new
        else:
            closed = min(qty, acc.qty.copy_abs())
            realized = closed * (price - acc.entry) * (1 if acc.qty > 0 else -1)
            new = acc.qty + sign * qty
            if new == 0:
                acc.entry = ZERO
            elif (new > 0) != (acc.qty > 0):  # flipped: the rest opens at this price
                acc.entry = price
                acc.fees_paid = ZERO
            acc.qty = new
        rate = self.config.maker_fee if is_maker else self.config.taker_fee
        if isinstance(order, UsdmOrder) and order.liquidation:
            rate = self.instruments[order.symbol].liquidation_fee
        commission = (price * qty * rate).quantize(Decimal("1e-8"))
        self.wallet += realized - commission
        acc.realized += realized
        acc.fees_paid += commission
        acc.update_ms = self.now_ms()
        order.executed_qty += qty
        order.cum_quote += price * qty
        order.update_ms = acc.update_ms
        if isinstance(order, UsdmOrder):
            order.realized = realized
        fill = SimFill(
            next(self._trade_ids),
            order,
            price,
            qty,
            commission,
            self.asset,
            order.update_ms,
            is_maker,
        )
        self.fills.append(fill)
        self.fill_realized[fill.trade_id] = realized
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        self._report(order, "TRADE", fill)
        self._publish(self._account_update("ORDER", [order.symbol]))
        if reduce_only and order.is_open and acc.qty == 0:
            self._close(order, "EXPIRED")  # nothing left to reduce
        return fill

    def _report(self, order: SimOrder, exec_type: str, fill: SimFill | None = None) -> None:
        """``ORDER_TRADE_UPDATE``; for a conditional of the algo service ``ALGO_UPDATE`` until
        it triggers, then both (see `tessera.sim.usdm.algo`)."""
        algo = self.algo_of.get(order.order_id)
        if algo is None:
            self._publish(self._order_update(order, exec_type, fill))
            return
        if not order.is_working:  # placed, or canceled/expired before its trigger
            self._publish(algo.event(self.public, self.now_ms()))
            return
        if exec_type == "NEW":  # `start_working`: the trigger hands it to the matching engine
            algo.trigger_ms = order.working_ms
            self._publish(algo.event(self.public, self.now_ms()))
        self._publish(self._order_update(order, exec_type, fill))
        if not order.is_open:
            self._publish(algo.event(self.public, self.now_ms()))

    def _hidden(self, order: SimOrder) -> bool:
        """An algo conditional not triggered yet: only the algo endpoints show it."""
        return order.order_id in self.algo_of and not order.is_working

    def _find(self, params: dict[str, str], symbol: str) -> SimOrder | None:
        order = super()._find(params, symbol)
        return None if order is None or self._hidden(order) else order

    def _order_update(
        self, order: SimOrder, exec_type: str, fill: SimFill | None
    ) -> dict[str, Any]:
        """``ORDER_TRADE_UPDATE`` with Binance's letters (see the module docstring)."""
        now = self.now_ms()
        sym = order.symbol
        px, qty = self.public.px, self.public.qty
        avg = order.cum_quote / order.executed_qty if order.executed_qty else ZERO
        reduce_only = isinstance(order, UsdmOrder) and order.reduce_only
        return {
            "e": "ORDER_TRADE_UPDATE",
            "T": now,
            "E": now,
            "o": {
                "s": sym,
                "c": order.client_order_id,
                "S": order.side,
                "o": order.type,
                "f": order.time_in_force,
                "q": qty(sym, order.orig_qty),
                "p": px(sym, order.price) if order.price else "0",
                "ap": f"{avg:f}" if order.executed_qty else "0",
                "sp": px(sym, order.stop_price) if order.stop_price else "0",
                "x": "CALCULATED" if getattr(order, "liquidation", False) else exec_type,
                "X": order.status,
                "i": order.order_id,
                "l": qty(sym, fill.qty) if fill else "0",
                "z": qty(sym, order.executed_qty),
                "L": px(sym, fill.price) if fill else "0",
                "N": self.asset,
                "n": f"{fill.commission:.8f}" if fill else "0",
                "T": order.update_ms or order.time_ms,
                "t": fill.trade_id if fill else 0,
                "b": "0",
                "a": "0",
                "m": fill.is_maker if fill else False,
                "R": reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": order.type,
                "ps": "BOTH",
                "cp": getattr(order, "close_position", False),
                "AP": "0",
                "cr": "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "rp": f"{order.realized:.8f}" if fill and isinstance(order, UsdmOrder) else "0",
                "V": "NONE",
            },
        }

    def _account_update(self, reason: str, symbols: list[str]) -> dict[str, Any]:
        """``ACCOUNT_UPDATE``: the wallet and the positions of ``symbols``."""
        now = self.now_ms()
        return {
            "e": "ACCOUNT_UPDATE",
            "T": now,
            "E": now,
            "a": {
                "m": reason,
                "B": [
                    {
                        "a": self.asset,
                        "wb": f"{self.wallet:.8f}",
                        "cw": f"{self.cross_wallet():.8f}",
                        "bc": "0",
                    }
                ],
                "P": [self._position_event(s) for s in symbols],
            },
        }

    def cross_wallet(self) -> Decimal:
        iso = sum(
            (a.qty.copy_abs() * a.entry / a.leverage for a in self.accounts.values()
             if a.qty != 0 and a.mode is MarginMode.ISOLATED),
            ZERO,
        )  # fmt: skip
        return self.wallet - iso

    def _position_event(self, sym: str) -> dict[str, Any]:
        acc = self.accounts[sym]
        pos = self.position(sym)
        return {
            "s": sym,
            "pa": self.public.qty(sym, acc.qty),
            "ep": f"{acc.entry:f}" if acc.qty else "0",
            "bep": f"{self.break_even(sym):f}" if acc.qty else "0",
            "cr": f"{acc.realized:.8f}",
            "up": f"{self.unrealized(sym):.8f}",
            "mt": "isolated" if self._isolated(sym) else "cross",
            "iw": f"{(pos.isolated_margin or ZERO) if pos else ZERO:.8f}",
            "ps": "BOTH",
        }

    def break_even(self, sym: str) -> Decimal:
        """The price at which closing pays back the position's fees (entry moved by them)."""
        acc = self.accounts[sym]
        if acc.qty == 0:
            return ZERO
        return acc.entry + acc.fees_paid / acc.qty

    # --- bar mode: the mark's range and funding -------------------------------------------------

    def hold_at_least(self, order: SimOrder, amount: Decimal) -> bool:
        """Bar mode asks this before a buy fills: nothing is held per order on USDⓈ-M (its
        margin was checked when it was placed)."""
        return True

    def _next_candle_stop(self, start: int, end: int) -> int:
        """While a position is open, the replay stops after each candle, so that the candle's
        liquidation check and funding come before the next candle's fills."""
        market = self._bar_market
        if market is None or self.accounts[market.symbol].qty == 0:
            return end
        given = market.given_bars(market.symbol)
        assert given is not None
        i = bisect_left(given.anchors, max(start, self._bar_cursor))
        return min(end, given.anchors[i] + 1) if i < len(given.anchors) else end

    def on_bars_released(self, n: int) -> bool:
        """The replay is about to release base frames up to ``n``: for each candle that closes
        in between (its fills already matched by the bar matcher), a position whose
        liquidation price the candle's mark range reached is liquidated at that price, then
        every funding time up to the candle's close is settled. True when events went out."""
        market = self._bar_market
        assert market is not None
        sym = market.symbol
        given = market.given_bars(sym)
        assert given is not None
        if n < self._bar_cursor:  # the replay started over
            self._bar_cursor, self._funding_next = n, 0
            return False
        lo, hi = bisect_left(given.anchors, self._bar_cursor), bisect_left(given.anchors, n)
        self._bar_cursor = n
        published = False
        for i in range(lo, hi):
            mark = market.mark_bars[i]
            published |= self._liquidate_on_mark(sym, mark)
            while (
                self._funding_next < len(market.funding)
                and market.funding[self._funding_next].ts_ns // 1_000_000 <= mark.close_ms + 1
            ):
                published |= self.settle_funding(sym, market.funding[self._funding_next], mark)
                self._funding_next += 1
        return published

    def _liquidate_on_mark(self, sym: str, mark: MarkBar) -> bool:
        pos = self.position(sym)
        if pos is None:
            return False
        price = self.liquidation(sym)
        if price <= 0:
            return False
        if (mark.low > price) if pos.qty > 0 else (mark.high < price):
            return False
        self._publish(self._margin_call([sym]))
        for o in [o for o in self.orders.values() if o.is_open and o.symbol == sym]:
            self.cancel(o)
        self._liquidate(sym)
        return True

    def settle_funding(self, sym: str, rate: FundingRate, mark: MarkBar) -> bool:
        """One funding time: the position pays or receives `funding_payment` at the mark at
        that time (the funding file's, else the candle's close), booked to 8 decimals as
        Binance books it; an ``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE`` goes out (the
        balance only for a cross position, with the position for an isolated one, as
        Binance's docs say). False when flat (nothing is paid)."""
        acc = self.accounts[sym]
        if acc.qty == 0:
            return False
        at = rate.mark_price if rate.mark_price is not None else mark.close
        amount = funding_payment(acc.qty, at, rate.rate).quantize(Decimal("1e-8"))
        self.wallet += amount
        ts = rate.ts_ns // 1_000_000
        self.incomes.append(IncomeRow(sym, "FUNDING_FEE", amount, ts, next(self._tran_ids)))
        event = self._account_update("FUNDING_FEE", [sym] if self._isolated(sym) else [])
        event["E"] = event["T"] = ts
        event["a"]["B"][0]["bc"] = f"{amount:.8f}"
        self._publish(event)
        return True

    async def income(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """``/fapi/v1/income``: the funding fees booked, newest last (the simulator books no
        other income type: other ``incomeType`` values answer an empty list)."""
        sym = params.get("symbol")
        if sym:
            self.symbol(params)
        kind = params.get("incomeType")
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        rows = [
            r.payload()
            for r in self.incomes
            if (not sym or r.symbol == sym)
            and (not kind or r.kind == kind)
            and (start is None or r.time_ms >= start)
            and (end is None or r.time_ms <= end)
        ]
        return json_response(rows[:limit] if start is not None else rows[-limit:])

    # --- liquidation ----------------------------------------------------------------------------

    def match_resting(self) -> int:
        """Resting orders meet the replayed trades, then every position is checked against
        its maintenance margin at the new mark."""
        filled = super().match_resting()
        self.check_margin()
        return filled

    def margin_ratio(self, sym: str) -> Decimal | None:
        """Maintenance margin over margin balance (Binance's "margin ratio"): of the position
        for an isolated one, of every cross position together for a cross one; None when the
        symbol has no position. 1 or more (or a margin balance at or under 0) liquidates."""
        pos = self.position(sym)
        if pos is None:
            return None
        if pos.mode is MarginMode.ISOLATED:
            balance = pos.margin_balance(self.mark(sym))
            maint = pos.maintenance_margin(self.mark(sym), self.brackets[sym])
        else:
            cross = [s for s in list(self.accounts) if (p := self.position(s)) and
                     p.mode is MarginMode.CROSS]  # fmt: skip
            balance = self.cross_wallet() + self.cross_unrealized()
            maint = sum(
                (self._maint(s) for s in cross),
                ZERO,
            )
        return maint / balance if balance > 0 else Decimal("Infinity")

    def _maint(self, sym: str) -> Decimal:
        pos = self.position(sym)
        return pos.maintenance_margin(self.mark(sym), self.brackets[sym]) if pos else ZERO

    def check_margin(self) -> list[str]:
        """Liquidate what reached a margin ratio of 100 %: a ``MARGIN_CALL`` first, then its
        open orders canceled and the position closed by an ``autoclose-`` IOC order that takes
        the book (``x`` CALCULATED), paying the symbol's ``liquidationFee``. Cross positions
        go together. Returns the symbols liquidated."""
        due = [
            s
            for s in list(self.accounts)
            if (ratio := self.margin_ratio(s)) is not None and ratio >= 1
        ]
        if not due:
            return []
        self._publish(self._margin_call(due))
        for sym in due:
            for o in [o for o in self.orders.values() if o.is_open and o.symbol == sym]:
                self.cancel(o)
            self._liquidate(sym)
        return due

    def _margin_call(self, symbols: list[str]) -> dict[str, Any]:
        rows = []
        for sym in symbols:
            pos = self.position(sym)
            assert pos is not None
            rows.append(
                {
                    "s": sym,
                    "ps": "BOTH",
                    "pa": self.public.qty(sym, pos.qty),
                    "mt": "ISOLATED" if pos.mode is MarginMode.ISOLATED else "CROSSED",
                    "iw": f"{pos.isolated_margin or ZERO:.8f}",
                    "mp": f"{self.mark(sym):.8f}",
                    "up": f"{self.unrealized(sym):.8f}",
                    "mm": f"{self._maint(sym):.8f}",
                }
            )
        return {
            "e": "MARGIN_CALL",
            "E": self.now_ms(),
            "cw": f"{self.cross_wallet():.8f}",
            "p": rows,
        }

    def _liquidate(self, sym: str) -> None:
        acc = self.accounts[sym]
        if acc.qty == 0:
            return
        now = self.now_ms()
        oid = next(self._order_ids)
        price = self.liquidation(sym)
        order = UsdmOrder(
            oid,
            f"autoclose-{now}",
            sym,
            "SELL" if acc.qty > 0 else "BUY",
            "LIMIT",
            "IOC",
            price,
            acc.qty.copy_abs(),
            now,
            working_ms=now,
            active_from=len(self.sim.state.trades(sym)),
            reduce_only=True,
            liquidation=True,
        )
        self.orders[oid] = order
        self.by_client[(sym, order.client_order_id)] = order
        if self.bars.trades_on_bars(sym):  # no book: closed at the liquidation price
            self._fill(order, price, order.orig_qty, is_maker=False)
            return
        self._execute(order, None)  # takes the book whatever its price: the position must go

    # --- rendering ------------------------------------------------------------------------------

    def render(self, o: SimOrder) -> dict[str, Any]:
        """The ``/fapi/v1/order`` form (see the real ``order_response.json``)."""
        sym = o.symbol
        px, qty = self.public.px, self.public.qty
        avg = o.cum_quote / o.executed_qty if o.executed_qty else ZERO
        return {
            "orderId": o.order_id,
            "symbol": sym,
            "status": o.status,
            "clientOrderId": o.client_order_id,
            "price": px(sym, o.price),
            "avgPrice": f"{avg:f}" if o.executed_qty else px(sym, ZERO),
            "origQty": qty(sym, o.orig_qty),
            "executedQty": qty(sym, o.executed_qty),
            "cumQuote": f"{o.cum_quote:f}",
            "timeInForce": o.time_in_force,
            "type": o.type,
            "reduceOnly": isinstance(o, UsdmOrder) and o.reduce_only,
            "closePosition": getattr(o, "close_position", False),
            "side": o.side,
            "positionSide": "BOTH",
            "stopPrice": px(sym, o.stop_price),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": o.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "time": o.time_ms,
            "updateTime": o.update_ms or o.time_ms,
        }

    # --- endpoints ------------------------------------------------------------------------------

    async def new_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        count, refused = self._count_new_orders(1)
        if refused is not None:
            return refused
        order, _ = self.place(params)
        return await self._answer_order(request, self.render(order), count)

    async def query_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        order = self._find(params, self.symbol(params))
        if order is None:
            raise BinanceError(NO_SUCH_ORDER)
        return json_response(self.render(order))

    async def cancel_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        order = self._find(params, self.symbol(params))
        if order is None or not order.is_open:
            raise BinanceError(UNKNOWN_ORDER)
        self.cancel(order)
        return json_response(self.render(order))

    async def open_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = params.get("symbol")
        if sym:
            self.symbol(params)
        return json_response(
            [self.render(o) for o in self.orders.values()
             if o.is_open and (not sym or o.symbol == sym) and not self._hidden(o)]
        )  # fmt: skip

    async def cancel_all(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        for o in [o for o in self.orders.values()
                  if o.is_open and o.symbol == sym and not self._hidden(o)]:  # fmt: skip
            self.cancel(o)
        return json_response(
            {"code": 200, "msg": "The operation of cancel all open order is done."}
        )

    async def all_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        from_id = int(params["orderId"]) if params.get("orderId") else None
        limit = max(1, min(int(params.get("limit") or 500), 1000))
        rows = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.order_id)
            if o.symbol == sym
            and (from_id is None or o.order_id >= from_id)
            and not self._hidden(o)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return json_response([self.render(o) for o in rows])

    async def set_leverage(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        raw = params.get("leverage", "")
        if not raw:
            raise BinanceError(binance.missing_param("leverage"))
        brackets = self.brackets[sym]
        lev = int(raw) if raw.isdigit() else 0
        top = brackets.tiers[0].max_leverage
        if not 1 <= lev <= top:
            raise _error(-4028, f"Leverage {raw} is not valid")
        acc = self.accounts[sym]
        notional = acc.qty.copy_abs() * self.mark(sym)
        if acc.qty and brackets.max_leverage(notional) < lev:
            raise _error(-2027, "Exceeded the maximum allowable position at current leverage.")
        acc.leverage = lev
        cap = next(t.notional_cap for t in reversed(brackets.tiers) if t.max_leverage >= lev)
        return json_response({"leverage": lev, "maxNotionalValue": f"{cap:f}", "symbol": sym})

    async def set_margin_type(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        raw = params.get("marginType", "")
        if not raw:
            raise BinanceError(binance.missing_param("marginType"))
        if raw not in ("ISOLATED", "CROSSED"):
            raise _error(-1130, "Data sent for parameter 'marginType' is not valid.")
        mode = MarginMode.ISOLATED if raw == "ISOLATED" else MarginMode.CROSS
        acc = self.accounts[sym]
        if acc.mode is mode:
            raise _error(-4046, "No need to change margin type.")
        if acc.qty != 0:
            raise _error(-4048, "Margin type cannot be changed if there exists position.")
        if any(o.is_open and o.symbol == sym for o in self.orders.values()):
            raise _error(-4047, "Margin type cannot be changed if there exists open orders.")
        acc.mode = mode
        return json_response({"code": 200, "msg": "success"})

    async def position_mode(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response({"dualSidePosition": False})

    async def leverage_bracket(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """The bundled real brackets, with JSON numbers as Binance sends them."""
        sym = params.get("symbol")
        wanted = [self.symbol(params)] if sym else sorted(self.brackets)

        def num(d: Decimal) -> int | float:
            return int(d) if d == d.to_integral_value() else float(d)

        rows = [
            {
                "symbol": s,
                "brackets": [
                    {
                        "bracket": i + 1,
                        "initialLeverage": t.max_leverage,
                        "notionalCap": num(t.notional_cap),
                        "notionalFloor": num(t.notional_floor),
                        "maintMarginRatio": float(t.maintenance_margin_rate),
                        "cum": float(t.cum),
                    }
                    for i, t in enumerate(self.brackets[s].tiers)
                ],
            }
            for s in wanted
        ]
        return json_response(rows[0] if sym else rows)

    def _risk_row(self, sym: str) -> dict[str, Any]:
        acc = self.accounts[sym]
        pos = self.position(sym)
        mark = self.mark(sym)
        brackets = self.brackets[sym]
        cap = next(
            t.notional_cap for t in reversed(brackets.tiers) if t.max_leverage >= acc.leverage
        )
        iso = pos.isolated_margin if pos and pos.isolated_margin is not None else ZERO
        return {
            "symbol": sym,
            "positionAmt": self.public.qty(sym, acc.qty),
            "entryPrice": f"{acc.entry:f}" if acc.qty else "0.0",
            "breakEvenPrice": f"{self.break_even(sym):f}" if acc.qty else "0.0",
            "markPrice": f"{mark:.8f}",
            "unRealizedProfit": f"{self.unrealized(sym):.8f}",
            "liquidationPrice": self.public.px(sym, self.liquidation(sym)),
            "leverage": str(acc.leverage),
            "maxNotionalValue": f"{cap:f}",
            "marginType": "isolated" if self._isolated(sym) else "cross",
            "isolatedMargin": f"{iso + self.unrealized(sym) if iso else ZERO:.8f}",
            "isAutoAddMargin": "false",
            "positionSide": "BOTH",
            "notional": f"{acc.qty * mark:f}",
            "isolatedWallet": f"{(pos.isolated_margin or ZERO) if pos else ZERO:f}",
            "updateTime": acc.update_ms,
        }

    async def position_risk_v3(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """v3: only symbols with a position or open orders, without leverage and margin type
        (Binance's v3 layout; ccxt's default)."""
        sym = params.get("symbol")
        symbols = [self.symbol(params)] if sym else list(self.sim.market.symbols)
        return json_response([self._risk_row_v3(s) for s in symbols if self._active(s)])

    def _active(self, sym: str) -> bool:
        return self.accounts[sym].qty != 0 or any(
            o.is_open and o.symbol == sym for o in self.orders.values()
        )

    def _risk_row_v3(self, sym: str) -> dict[str, Any]:
        v2 = self._risk_row(sym)
        pos = self.position(sym)
        im = pos.initial_margin() if pos else ZERO
        order_im = sum(
            (self._order_margin(o) for o in self.orders.values() if o.symbol == sym), ZERO
        )
        return {
            "symbol": sym,
            "positionSide": "BOTH",
            "positionAmt": v2["positionAmt"],
            "entryPrice": v2["entryPrice"],
            "breakEvenPrice": v2["breakEvenPrice"],
            "markPrice": v2["markPrice"],
            "unRealizedProfit": v2["unRealizedProfit"],
            "liquidationPrice": v2["liquidationPrice"],
            "isolatedMargin": v2["isolatedMargin"],
            "notional": v2["notional"],
            "marginAsset": self.asset,
            "isolatedWallet": v2["isolatedWallet"],
            "initialMargin": f"{im + order_im:.8f}",
            "maintMargin": f"{self._maint(sym):.8f}",
            "positionInitialMargin": f"{im:.8f}",
            "openOrderInitialMargin": f"{order_im:.8f}",
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": v2["updateTime"],
        }

    async def account_v3(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """v3: the v2 totals and assets; positions only where there is one (Binance's v3
        layout; ccxt's default for fetch_balance)."""
        resp = await self.account(request, params)
        assert isinstance(resp.body, bytes)
        v2 = orjson.loads(resp.body)
        positions = []
        for sym in self.sim.market.symbols:
            if self.accounts[sym].qty == 0:
                continue
            row = self._risk_row_v3(sym)
            row["unrealizedProfit"] = row.pop("unRealizedProfit")
            positions.append({k: row[k] for k in V3_ACCOUNT_POSITION_FIELDS})
        drop = ("feeTier", "canTrade", "canDeposit", "canWithdraw", "updateTime",
                "multiAssetsMargin", "tradeGroupId", "positions")  # fmt: skip
        body = {k: v for k, v in v2.items() if k not in drop}
        body["positions"] = positions
        return json_response(body)

    async def position_risk(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = params.get("symbol")
        symbols = [self.symbol(params)] if sym else list(self.sim.market.symbols)
        return json_response([self._risk_row(s) for s in symbols])

    def _totals(self) -> dict[str, str]:
        maint = sum(
            (p.maintenance_margin(self.mark(s), self.brackets[s])
             for s in list(self.accounts) if (p := self.position(s)) is not None),
            ZERO,
        )  # fmt: skip
        unreal = sum((self.unrealized(s) for s in list(self.accounts)), ZERO)
        pos_im = self.position_margin()
        ord_im = self.open_order_margin()
        avail = self.available()
        return {
            "totalInitialMargin": f"{pos_im + ord_im:.8f}",
            "totalMaintMargin": f"{maint:.8f}",
            "totalWalletBalance": f"{self.wallet:.8f}",
            "totalUnrealizedProfit": f"{unreal:.8f}",
            "totalMarginBalance": f"{self.wallet + unreal:.8f}",
            "totalPositionInitialMargin": f"{pos_im:.8f}",
            "totalOpenOrderInitialMargin": f"{ord_im:.8f}",
            "totalCrossWalletBalance": f"{self.cross_wallet():.8f}",
            "totalCrossUnPnl": f"{self.cross_unrealized():.8f}",
            "availableBalance": f"{avail:.8f}",
            "maxWithdrawAmount": f"{max(avail, ZERO):.8f}",
        }

    async def account(self, request: web.Request, params: dict[str, str]) -> web.Response:
        t = self._totals()
        now = self.now_ms()
        asset = {
            "asset": self.asset,
            "walletBalance": t["totalWalletBalance"],
            "unrealizedProfit": t["totalUnrealizedProfit"],
            "marginBalance": t["totalMarginBalance"],
            "maintMargin": t["totalMaintMargin"],
            "initialMargin": t["totalInitialMargin"],
            "positionInitialMargin": t["totalPositionInitialMargin"],
            "openOrderInitialMargin": t["totalOpenOrderInitialMargin"],
            "crossWalletBalance": t["totalCrossWalletBalance"],
            "crossUnPnl": t["totalCrossUnPnl"],
            "availableBalance": t["availableBalance"],
            "maxWithdrawAmount": t["maxWithdrawAmount"],
            "marginAvailable": True,
            "updateTime": now,
        }
        positions = []
        for sym in self.sim.market.symbols:
            acc = self.accounts[sym]
            pos = self.position(sym)
            im = pos.initial_margin() if pos else ZERO
            maint = pos.maintenance_margin(self.mark(sym), self.brackets[sym]) if pos else ZERO
            order_im = sum(
                (self._order_margin(o) for o in self.orders.values() if o.symbol == sym), ZERO
            )
            positions.append(
                {
                    "symbol": sym,
                    "initialMargin": f"{im:f}",
                    "maintMargin": f"{maint:f}",
                    "unrealizedProfit": f"{self.unrealized(sym):.8f}",
                    "positionInitialMargin": f"{im:f}",
                    "openOrderInitialMargin": f"{order_im:f}",
                    "leverage": str(acc.leverage),
                    "isolated": self._isolated(sym),
                    "entryPrice": f"{acc.entry:f}" if acc.qty else "0.0",
                    "maxNotional": self._risk_row(sym)["maxNotionalValue"],
                    "bidNotional": "0",
                    "askNotional": "0",
                    "positionSide": "BOTH",
                    "positionAmt": self.public.qty(sym, acc.qty),
                    "updateTime": acc.update_ms,
                }
            )
        return json_response(
            {
                "feeTier": 0,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "updateTime": 0,
                "multiAssetsMargin": False,
                "tradeGroupId": -1,
                **t,
                "assets": [asset],
                "positions": positions,
            }
        )

    async def balance(self, request: web.Request, params: dict[str, str]) -> web.Response:
        t = self._totals()
        return json_response(
            [
                {
                    "accountAlias": "SimT",
                    "asset": self.asset,
                    "balance": t["totalWalletBalance"],
                    "crossWalletBalance": t["totalCrossWalletBalance"],
                    "crossUnPnl": t["totalCrossUnPnl"],
                    "availableBalance": t["availableBalance"],
                    "maxWithdrawAmount": t["maxWithdrawAmount"],
                    "marginAvailable": True,
                    "updateTime": self.now_ms(),
                }
            ]
        )

    async def my_trades(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        from_id = int(params["fromId"]) if params.get("fromId") else None
        order_id = int(params["orderId"]) if params.get("orderId") else None
        limit = min(int(params.get("limit") or 500), 1000)
        rows = [
            {
                "buyer": f.order.side == "BUY",
                "commission": f"{f.commission:.8f}",
                "commissionAsset": f.commission_asset,
                "id": f.trade_id,
                "maker": f.is_maker,
                "orderId": f.order.order_id,
                "price": self.public.px(sym, f.price),
                "qty": self.public.qty(sym, f.qty),
                "quoteQty": f"{f.price * f.qty:f}",
                "realizedPnl": f"{self.fill_realized.get(f.trade_id, ZERO):.8f}",
                "side": f.order.side,
                "positionSide": "BOTH",
                "symbol": sym,
                "time": f.time_ms,
            }
            for f in self.fills
            if f.order.symbol == sym
            and (from_id is None or f.trade_id >= from_id)
            and (order_id is None or f.order.order_id == order_id)
        ]
        # Binance: from ``fromId`` on, or else the most recent ones
        return json_response(rows[:limit] if from_id is not None else rows[-limit:])

    # --- the algo service (``/fapi/v1/algoOrder``) ---------------------------------------------

    async def new_algo_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """Place a conditional: the ``/fapi/v1/order`` rules (`place`) with the algo
        service's parameter names (``triggerPrice``, ``clientAlgoId``, ``algoType``)."""
        algo_type = params.get("algoType", "")
        if not algo_type:
            raise BinanceError(binance.missing_param("algoType"))
        if algo_type != "CONDITIONAL":
            raise _error(-1130, "Data sent for parameter 'algoType' is not valid.")
        otype = params.get("type", "")
        if otype and otype not in CONDITIONAL_TYPES:
            if otype == "TRAILING_STOP_MARKET":
                raise _error(-1130, f"Order type {otype} is not implemented by the simulator.")
            raise _error(-1116, "Invalid orderType.")
        if params.get("stopPrice"):
            raise _error(-1106, "Parameter 'stopPrice' sent when not required.")
        if params.get("triggerPrice") is None:
            raise BinanceError(binance.missing_param("triggerPrice"))
        cid = params.get("clientAlgoId", "")
        known = self.algo_by_client.get(cid) if cid else None
        if known is not None and known.status in ("NEW", "TRIGGERED"):
            raise _error(-4015, "Client order id is not valid.")
        count, refused = self._count_new_orders(1)
        if refused is not None:
            return refused
        inner = {
            k: v
            for k, v in params.items()
            if k not in ("algoType", "triggerPrice", "clientAlgoId", "newClientOrderId")
        }
        inner["stopPrice"] = params["triggerPrice"]
        algo_id = next(self._algo_ids)
        inner["newClientOrderId"] = cid or f"simalgo{algo_id}"
        order, _ = self.place(inner, algo_id=algo_id)
        return await self._answer_order(request, self.algo_of[order.order_id].render(self.public),
                                        count)  # fmt: skip

    def _find_algo(self, params: dict[str, str]) -> AlgoOrder | None:
        if params.get("symbol"):
            self.symbol(params)
        if params.get("algoId"):
            raw = params["algoId"]
            return self.algos.get(int(raw)) if raw.isdigit() else None
        cid = params.get("clientAlgoId")
        if not cid:
            raise _error(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were "
                                "empty/null!")  # fmt: skip
        return self.algo_by_client.get(cid)

    async def query_algo_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        algo = self._find_algo(params)
        if algo is None:
            raise BinanceError(NO_SUCH_ORDER)
        return json_response(algo.render(self.public))

    async def cancel_algo_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """Cancel a conditional not triggered yet (a triggered one is the matching engine's
        order: cancel it on ``/fapi/v1/order``)."""
        algo = self._find_algo(params)
        if algo is None or algo.status != "NEW":
            raise BinanceError(UNKNOWN_ORDER)
        self.cancel(algo.order)
        return json_response({"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id,
                              "code": "200", "msg": "success"})  # fmt: skip

    async def open_algo_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params) if params.get("symbol") else None
        return json_response(
            [a.render(self.public) for a in self.algos.values()
             if a.status == "NEW" and (sym is None or a.order.symbol == sym)]
        )  # fmt: skip

    async def all_algo_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        limit = max(1, min(int(params.get("limit") or 500), 1000))
        rows = [a for a in self.algos.values() if a.order.symbol == sym]
        return json_response([a.render(self.public) for a in rows[-limit:]])
