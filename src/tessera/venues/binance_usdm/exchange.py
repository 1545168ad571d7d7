"""`UsdmCcxtExchange`: ccxt's async Binance USDⓈ-M client behind our `Exchange` interface.

Spot's adapter (`tessera.venues.binance_spot.exchange.CcxtExchange`) with what USDⓈ-M answers
differently: its error table, its order types and reduce-only orders, conditional orders of
the algo order service, order answers without fills, and the account a perpetual has
(``positionRisk``, ``/fapi/v3/account``, leverage, margin mode, leverage brackets, funding
income). The class docstring says what differs and why.

Why here: the adapter reads USDⓈ-M's REST answers (ccxt's ``info``: order and algo order
status, ``userTrades``, ``positionRisk``, ``account``, ``income``), and each venue's wire format
lives in its folder. It extends spot's adapter (signing, the exchange clock, pacing, the
duplicate and unknown-outcome handling are the same), so it imports that module; how a ccxt
exception becomes ours is Binance's (`tessera.venues.binance.ccxt_errors`), called with this
venue's table. `tessera.execution.ccxt_exchange.open_exchange` picks this class for
``exchange.name: binance-usdm``.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from tessera.execution.exchange import (
    Balance,
    ExchangeError,
    ExchangeOrder,
    ExchangeTrade,
    OrderRejectedError,
    UnknownOrderError,
)
from tessera.execution.orders import (
    Fill,
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tessera.execution.perp.margin import LeverageBrackets, MarginMode
from tessera.execution.perp_reconcile import PerpBalance, VenuePosition
from tessera.logging import get_logger
from tessera.venues.binance.ccxt_errors import map_error
from tessera.venues.binance.errors import ErrorAction
from tessera.venues.binance_spot.exchange import MS, CcxtExchange, _plain
from tessera.venues.binance_usdm.errors import classify as classify_usdm
from tessera.venues.binance_usdm.status import USDM_STATUS

log = get_logger(__name__)

# (request weight, orders) of each ccxt call on Binance USDⓈ-M (fapi), as the exchange meters them
USDM_REQUEST_COST: dict[str, tuple[int, int]] = {
    "load_markets": (1, 0),  # GET /fapi/v1/exchangeInfo
    "create_order": (0, 1),  # POST /fapi/v1/order: no IP weight, one order
    "cancel_order": (1, 0),
    "fetch_order": (1, 0),
    "fetch_open_orders": (1, 0),  # one symbol; 40 for all
    "fetch_my_trades": (5, 0),  # GET /fapi/v1/userTrades
    "fetch_time": (1, 0),  # GET /fapi/v1/time
    "fapiPrivateV3GetAccount": (5, 0),
    "fapiPrivateV2GetPositionRisk": (5, 0),
    "fapiPrivateGetPositionSideDual": (30, 0),
    "fapiPrivateGetAllAlgoOrders": (5, 0),
    "fapiPrivatePostLeverage": (1, 0),
    "fapiPrivatePostMarginType": (1, 0),
    "fapiPrivateGetLeverageBracket": (1, 0),  # all symbols
    "fapiPrivateGetIncome": (30, 0),  # GET /fapi/v1/income: Binance weighs it 30
}
# the domain's order types -> USDⓈ-M's (type, takes a price, takes timeInForce); a stop-loss
# that becomes a market order on trigger is USDⓈ-M's STOP_MARKET, its limit kind is STOP
USDM_TYPES: dict[OrderType, str] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.LIMIT_MAKER: "LIMIT",  # with timeInForce GTX (post-only)
    OrderType.STOP_LOSS: "STOP_MARKET",
    OrderType.STOP_LOSS_LIMIT: "STOP",
    OrderType.TAKE_PROFIT: "TAKE_PROFIT_MARKET",
    OrderType.TAKE_PROFIT_LIMIT: "TAKE_PROFIT",
}
FROM_USDM_TYPES: dict[str, OrderType] = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP_MARKET": OrderType.STOP_LOSS,
    "STOP": OrderType.STOP_LOSS_LIMIT,
    "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT,
    "TAKE_PROFIT": OrderType.TAKE_PROFIT_LIMIT,
}
# a client order id the exchange already has: a resend of an order whose answer was lost
USDM_DUPLICATE_CODES = frozenset({-4015, -4116})
# a conditional's ``algoStatus`` (Binance's algo order service) -> ours, while it has not
# become an order of the matching engine (TRIGGERED/FINISHED: its ``actualOrderId`` is)
USDM_ALGO_STATUS: dict[str, OrderStatus] = {
    "NEW": OrderStatus.ACCEPTED,
    "TRIGGERING": OrderStatus.ACCEPTED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


class UsdmCcxtExchange(CcxtExchange):
    """Binance USDⓈ-M perpetuals through ccxt ``binanceusdm`` (``exchange.name:
    binance-usdm``): the same `Exchange` calls as spot, plus what a perpetual account has.

    What differs from spot, and why:

    * **Errors** go through USDⓈ-M's table (`tessera.venues.binance_usdm.errors`): -2019
      (margin), -2022 (reduce-only refused), -4164 (notional) are rejections, -1006/-1007
      (backend timeout) leave the outcome unknown, -4046 ("no need to change margin type")
      is success.
    * **Orders** carry ``reduceOnly`` (`Order.reduce_only`: an exit can only close, never
      flip the position) and go out as USDⓈ-M's types (`USDM_TYPES`: a stop-loss is
      ``STOP_MARKET``/``STOP``, a take-profit ``TAKE_PROFIT_MARKET``/``TAKE_PROFIT``, a
      post-only limit is ``LIMIT`` with ``timeInForce=GTX``). There are no OCO lists on
      USDⓈ-M: `submit_list` refuses them. An order answer has no fills (``cumQuote`` and
      ``avgPrice`` instead): `submit` and `query` add the order's trades to an answer with an
      executed quantity (`_with_fills`), so the ledger learns a fill with the answer, as on
      spot.
    * **Stops and take-profits** are conditional orders of Binance's algo order service
      (``/fapi/v1/algoOrder``, where ccxt sends them; our client id is their
      ``clientAlgoId``): until the trigger only the algo endpoints know them, after it the
      order it became (``actualOrderId``) is a matching-engine order. So `query` and
      `cancel` try the order by client id first, then the conditional. A conditional keeps
      ``exchange_order_id`` ``algo-<algoId>`` throughout: not triggered yet it is ACCEPTED;
      triggered, it is reported in the state of the order it became, with that order's
      fills under our client id, and `my_trades` attributes that order's trades to the
      conditional (``/fapi/v1/allAlgoOrders`` names it), so the ledger's order and the
      exchange's trades keep matching. `open_orders` lists both kinds.
    * **A duplicate client order id** is -4015/-4116 (spot: "Duplicate order"): the order is
      looked up by that id, as on spot. USDⓈ-M refuses a client id only while its order is
      open, so `submit_resolved` looks the id up before it sends anything.
    * **The account**: `positions` (signed quantity, entry, leverage, margin mode,
      liquidation price from ``/fapi/v2/positionRisk``, which reports flat symbols'
      settings too), `set_leverage`, `set_margin_mode`, `hedge_mode`, `perp_balances`
      (wallet, unrealized, available from ``/fapi/v3/account``); `balances` answers each
      margin asset with ``free`` = available and ``free + locked`` = wallet + unrealized.
    """

    VENUE = "binance-usdm"
    COST = USDM_REQUEST_COST

    @staticmethod
    def _ccxt_options(recv_window_ms: int) -> dict[str, Any]:
        return {
            "fetchMarkets": {"types": ["linear"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "recvWindow": recv_window_ms,
            "adjustForTimeDifference": False,  # see binance_spot.exchange's docstring
        }

    def _point_at(self, base: str) -> None:
        for key, url in list(self.client.urls["api"].items()):
            if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
                self.client.urls["api"][key] = url.replace("https://fapi.binance.com", base)

    def _map_error(self, exc: Exception) -> Exception:
        return map_error(exc, getattr(self.client, "last_json_response", None), classify_usdm)

    # --- orders ---------------------------------------------------------------------------------

    async def submit(self, order: Order) -> ExchangeOrder:
        """Place ``order`` as USDⓈ-M's type, reduce-only when `Order.reduce_only`; a stop or
        take-profit goes to the algo order service (ccxt routes it there by its trigger
        price; our client id becomes its ``clientAlgoId``)."""
        try:
            raw = await self._create_order(order)
        except ExchangeError as exc:
            if exc.code not in USDM_DUPLICATE_CODES:
                raise
            found = await self.query(order.symbol, order.client_order_id)
            if found is None:
                raise
            log.warning("submit was a duplicate; the order exists", cid=order.client_order_id)
            return found
        return await self._with_fills(self._parse(raw, order.side))

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order by client id with its fills (see `_with_fills`); else the conditional of
        that ``clientAlgoId`` (as the order it became once triggered); None if the exchange
        knows neither."""
        found = await super().query(symbol, client_order_id)
        if found is not None and not (found.type is not None and found.type.has_stop):
            return await self._with_fills(found)
        algo = await self._algo(symbol, client_order_id)
        if algo is None:
            return await self._with_fills(found) if found is not None else None
        actual = str(algo.get("actualOrderId") or "")
        if not actual:
            return self._parse_algo(algo)
        if found is None or found.exchange_order_id != actual:
            raw = await self._call("fetch_order", actual, self.unified(symbol))
            found = self._parse(raw, None)
        became = await self._with_fills(dataclasses.replace(found, client_order_id=client_order_id))
        # the conditional keeps its identity (see the class docstring)
        return dataclasses.replace(became, exchange_order_id=f"algo-{algo['algoId']}")

    async def _algo(self, symbol: str, client_algo_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/algoOrder?clientAlgoId=``: the raw conditional, None if unknown."""
        try:
            raw = await self._call(
                "fetch_order",
                None,
                self.unified(symbol),
                {"trigger": True, "clientAlgoId": client_algo_id},
            )
        except UnknownOrderError:
            return None
        except ExchangeError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        info = raw.get("info") or raw
        return dict(info)

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        """Cancel the order of that client id; if the matching engine does not know it (-2011),
        the conditional of that ``clientAlgoId`` (``DELETE /fapi/v1/algoOrder``), answered as
        `query` then sees it."""
        try:
            return await super().cancel(symbol, client_order_id)
        except UnknownOrderError:
            if await self._algo(symbol, client_order_id) is None:
                raise
        await self._call(
            "cancel_order",
            None,
            self.unified(symbol),
            {"trigger": True, "clientAlgoId": client_order_id},
        )
        found = await self.query(symbol, client_order_id)
        if found is None:
            raise UnknownOrderError(f"{client_order_id}: canceled, then not found", -2013)
        return found

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """The matching engine's open orders, then the conditionals not triggered yet."""
        orders = await super().open_orders(symbol)
        unified = self.unified(symbol) if symbol else None
        raw = await self._call("fetch_open_orders", unified, None, None, {"trigger": True})
        return orders + [self._parse(r, None) for r in raw]

    async def _with_fills(self, ack: ExchangeOrder) -> ExchangeOrder:
        """A USDⓈ-M order answer has no fills (spot's FULL answer has them): an answer with an
        executed quantity gets the order's trades (``/fapi/v1/userTrades?orderId=``, weight 5),
        so the order manager records the fills with the answer, as on spot, instead of holding
        a filled order whose position it does not know until the user-data stream speaks (a
        target signal meanwhile would trade the same difference again)."""
        if ack.filled_qty <= 0 or ack.fills:
            return ack
        raw = await self._call(
            "fetch_my_trades",
            self.unified(ack.symbol),
            None,
            1000,
            {"orderId": ack.exchange_order_id},
        )
        ack.fills = [
            dataclasses.replace(t.fill, client_order_id=ack.client_order_id)
            for t in (self._trade(r["info"]) for r in raw)
            if t.exchange_order_id == ack.exchange_order_id
        ]
        got = sum((f.qty for f in ack.fills), Decimal(0))
        if got != ack.filled_qty:
            log.warning(
                "the order's trades do not add up to its executed quantity yet",
                cid=ack.client_order_id,
                executed=str(ack.filled_qty),
                trades=str(got),
            )
        return ack

    async def submit_resolved(self, order: Order, attempts: int = 5) -> ExchangeOrder:
        """As spot's, but the client id is looked up *before* the first send: USDⓈ-M keeps a
        client order id unique among open orders only, so resending an order that was placed
        and has filled (a caller's earlier submit whose outcome was unknown) would be a second
        order, not a duplicate refused."""
        found = await self._query_until_known(order)
        if found is not None:
            return found
        return await super().submit_resolved(order, attempts)

    @staticmethod
    def _order_args(order: Order) -> tuple[str, float | None, dict[str, Any]]:
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id}
        if order.reduce_only:
            params["reduceOnly"] = True
        otype = USDM_TYPES[order.type]
        if otype in ("LIMIT", "STOP", "TAKE_PROFIT"):
            tif = "GTX" if order.type is OrderType.LIMIT_MAKER else order.time_in_force.value
            params["timeInForce"] = tif
        if order.stop_price is not None:
            params["stopPrice"] = _plain(order.stop_price)
        price = float(order.price) if order.price is not None else None
        return otype.lower() if otype in ("MARKET", "LIMIT") else otype, price, params

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        """USDⓈ-M has no OCO lists: refused before anything is sent (neither leg exists)."""
        raise OrderRejectedError(
            f"{orders.list_id}: Binance USDⓈ-M has no OCO order lists; send the legs as "
            "separate reduce-only orders"
        )

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        """``GET /fapi/v1/userTrades``: our fills of ``symbol`` (exact numbers from the raw
        rows; ``realizedPnl`` is the exchange's and is not kept here)."""
        params = {"fromId": from_id} if from_id is not None else {}
        raw = await self._call("fetch_my_trades", self.unified(symbol), None, 1000, params)
        trades = [self._trade(t["info"]) for t in raw]
        if not trades:
            return trades
        # a triggered conditional's trades belong to it (``algo-<algoId>``), not to the order
        # it became: ``/fapi/v1/allAlgoOrders`` (weight 5) names that order
        algos = await self._call("fapiPrivateGetAllAlgoOrders", {"symbol": symbol})
        became = {str(a["actualOrderId"]): f"algo-{a['algoId']}"
                  for a in algos if a.get("actualOrderId")}  # fmt: skip
        return [
            dataclasses.replace(t, exchange_order_id=became[t.exchange_order_id])
            if t.exchange_order_id in became
            else t
            for t in trades
        ]

    @staticmethod
    def _trade(info: dict[str, Any]) -> ExchangeTrade:
        """One ``userTrades`` row (exact numbers from the raw row)."""
        fill = Fill(
            trade_id=str(info["id"]),
            client_order_id="",  # Binance lists trades by orderId only
            symbol=str(info["symbol"]),
            side=OrderSide.BUY if info["buyer"] else OrderSide.SELL,
            price=Decimal(str(info["price"])),
            qty=Decimal(str(info["qty"])),
            fee=Decimal(str(info["commission"])),
            fee_asset=str(info["commissionAsset"]),
            liquidity=Liquidity.MAKER if info["maker"] else Liquidity.TAKER,
            ts_event=int(info["time"]) * MS,
        )
        return ExchangeTrade(str(info["orderId"]), fill)

    # --- the account ----------------------------------------------------------------------------

    async def _account(self) -> dict[str, Any]:
        raw = await self._call("fapiPrivateV3GetAccount")
        if not isinstance(raw, dict):
            raise ExchangeError(f"/fapi/v3/account answered {type(raw).__name__}, not an object")
        return raw

    async def perp_balances(self) -> dict[str, PerpBalance]:
        """Each margin asset of the futures wallet (``/fapi/v3/account``)."""
        out: dict[str, PerpBalance] = {}
        for a in (await self._account()).get("assets", []):
            out[str(a["asset"])] = PerpBalance(
                asset=str(a["asset"]),
                wallet=Decimal(str(a["walletBalance"])),
                unrealized=Decimal(str(a["unrealizedProfit"])),
                available=Decimal(str(a["availableBalance"])),
            )
        return out

    async def balances(self) -> dict[str, Balance]:
        """``free`` = available, ``free + locked`` = wallet + unrealized (the equity)."""
        return {
            k: Balance(k, b.available, b.equity - b.available)
            for k, b in (await self.perp_balances()).items()
        }

    async def positions(self, symbols: list[str]) -> list[VenuePosition]:
        """Each symbol's one-way position and its leverage and margin mode (flat symbols too),
        from ``/fapi/v2/positionRisk``. A hedge-mode row (LONG/SHORT) is an `ExchangeError`:
        the bot trades one-way mode only (see `hedge_mode`)."""
        out: list[VenuePosition] = []
        for symbol in symbols:
            rows = await self._call("fapiPrivateV2GetPositionRisk", {"symbol": symbol})
            for r in rows:
                if str(r.get("positionSide", "BOTH")) != "BOTH":
                    raise ExchangeError(
                        f"{symbol}: a {r['positionSide']} position: the account is in hedge "
                        "mode; Tessera trades one-way mode only"
                    )
                qty = Decimal(str(r["positionAmt"]))
                liq = Decimal(str(r["liquidationPrice"]))
                out.append(
                    VenuePosition(
                        symbol=str(r["symbol"]),
                        qty=qty,
                        entry_price=Decimal(str(r["entryPrice"])),
                        leverage=int(r["leverage"]),
                        mode=(
                            MarginMode.ISOLATED
                            if str(r["marginType"]).lower() == "isolated"
                            else MarginMode.CROSS
                        ),
                        liquidation_price=liq if qty and liq else None,
                        unrealized_pnl=Decimal(str(r["unRealizedProfit"])),
                        isolated_wallet=Decimal(str(r.get("isolatedWallet") or "0")),
                    )
                )
        return out

    async def hedge_mode(self) -> bool:
        """Whether the account is in hedge (dual-side) position mode."""
        raw = await self._call("fapiPrivateGetPositionSideDual")
        return bool(raw.get("dualSidePosition"))

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        """Set ``symbol``'s leverage (raises `OrderRejectedError`: -4028 invalid, -2027 the
        position is too large for it); answers the leverage the exchange set."""
        raw = await self._call(
            "fapiPrivatePostLeverage", {"symbol": symbol, "leverage": str(leverage)}
        )
        return int(raw["leverage"])

    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> bool:
        """Set ``symbol``'s margin mode; False when it already was (-4046). Raises
        `OrderRejectedError` when Binance refuses (-4048 a position is open, -4047 open
        orders)."""
        wire = "ISOLATED" if mode is MarginMode.ISOLATED else "CROSSED"
        try:
            await self._call("fapiPrivatePostMarginType", {"symbol": symbol, "marginType": wire})
        except ExchangeError as exc:
            if classify_usdm(exc.code) is ErrorAction.NO_CHANGE:
                return False
            raise
        return True

    # --- parsing --------------------------------------------------------------------------------

    def _parse(self, raw: dict[str, Any], side: OrderSide | None) -> ExchangeOrder:
        info = raw.get("info") or raw
        if "algoId" in info:
            return self._parse_algo(info)
        status = USDM_STATUS.get(str(info.get("status", "NEW")), OrderStatus.ACCEPTED)
        cid = str(info.get("clientOrderId") or "")
        ts_ms = info.get("updateTime") or info.get("time") or 0
        price = Decimal(str(info["price"])) if info.get("price") not in (None, "") else None
        stop = Decimal(str(info["stopPrice"])) if info.get("stopPrice") not in (None, "") else None
        wire_type = str(info.get("origType") or info.get("type") or "")
        otype = FROM_USDM_TYPES.get(wire_type)
        if otype is OrderType.LIMIT and info.get("timeInForce") == "GTX":
            otype = OrderType.LIMIT_MAKER
        return ExchangeOrder(
            client_order_id=cid,
            exchange_order_id=str(info.get("orderId", "")),
            symbol=str(info.get("symbol", "")),
            status=status,
            qty=Decimal(str(info.get("origQty", "0"))),
            filled_qty=Decimal(str(info.get("executedQty", "0"))),
            filled_notional=Decimal(str(info.get("cumQuote", "0"))),
            price=price if price else None,
            ts_update=int(ts_ms) * MS,
            fills=[],
            type=otype,
            stop_price=stop if stop else None,
        )

    @staticmethod
    def _parse_algo(info: dict[str, Any]) -> ExchangeOrder:
        """A conditional of the algo service not triggered yet (a cancel's answer has only the
        ids: `cancel` queries the order after it)."""
        wire = str(info.get("algoStatus", ""))
        status = USDM_ALGO_STATUS.get(wire)
        if status is None:
            raise ExchangeError(
                f"algo order {info.get('clientAlgoId')}: algoStatus {wire!r} without the order "
                "it became (actualOrderId)"
            )
        price = Decimal(str(info["price"])) if info.get("price") not in (None, "") else None
        stop = Decimal(str(info.get("triggerPrice") or "0"))
        ts_ms = info.get("updateTime") or info.get("createTime") or 0
        return ExchangeOrder(
            client_order_id=str(info.get("clientAlgoId") or ""),
            exchange_order_id=f"algo-{info['algoId']}",
            symbol=str(info.get("symbol", "")),
            status=status,
            qty=Decimal(str(info.get("quantity") or "0")),
            filled_qty=Decimal(0),
            filled_notional=Decimal(0),
            price=price if price else None,
            ts_update=int(ts_ms) * MS,
            type=FROM_USDM_TYPES.get(str(info.get("orderType") or "")),
            stop_price=stop if stop else None,
        )

    # --- leverage brackets (tessera.live.perp_risk) -------------------------------------------

    async def leverage_brackets(self) -> dict[str, LeverageBrackets]:
        """Every symbol's leverage brackets from ``GET /fapi/v1/leverageBracket`` (signed),
        parsed by the venue layer (a malformed answer raises, naming the field)."""
        from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

        return parse_leverage_brackets(await self._call("fapiPrivateGetLeverageBracket"))

    # --- funding payments (the ledger's ``funding_payments``) ------------------------------------

    async def funding_income(
        self, since_ms: int | None = None, symbol: str | None = None
    ) -> list[dict[str, Any]]:
        """The funding fees ``/fapi/v1/income`` lists (``incomeType=FUNDING_FEE``) as Binance's
        rows, oldest first, each once (by ``tranId``; `binance_usdm.rest.funding_record` reads one):
        from ``since_ms`` on (inclusive) when given, else what Binance answers without a start
        time (its last 7 days). Full pages of 1000 are followed from their newest time."""
        found: dict[str, dict[str, Any]] = {}
        start = since_ms
        while True:
            params: dict[str, Any] = {"incomeType": "FUNDING_FEE", "limit": 1000}
            if start is not None:
                params["startTime"] = start
            if symbol:
                params["symbol"] = symbol
            rows = await self._call("fapiPrivateGetIncome", params)
            for r in rows:
                if r.get("incomeType") != "FUNDING_FEE":
                    raise ExchangeError(f"/fapi/v1/income answered a non-funding row: {r}")
                found[str(r.get("tranId"))] = r
            newest = max((int(r["time"]) for r in rows), default=start)
            if len(rows) < 1000 or newest is None or newest == start:
                break
            start = newest
        return sorted(found.values(), key=lambda r: (int(r["time"]), str(r.get("symbol"))))
