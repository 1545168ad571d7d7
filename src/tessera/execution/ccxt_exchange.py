"""`CcxtExchange`: ccxt's async Binance client behind our `Exchange` interface.

ccxt signs requests and speaks the REST API; we keep the parts where mistakes lose orders:

* **Error mapping.** ccxt picks exception classes from Binance's error codes by URL prefix, so
  pointed at the simulator or a proxy it only has its generic mappings. We read Binance's
  ``{"code": ..., "msg": ...}`` body out of the exception ourselves and map the codes that
  matter (-1013, -2010 -> rejected; -2011, -2013 -> unknown order; -1021 -> clock skew; -1022,
  -2014, -2015 -> auth; -1003, -1015, 429, 418 -> rate limited; the whole table is the venue's,
  `tessera.venues.binance_spot.errors`). Anything without an exchange answer — a timeout, a
  dropped connection, a 5xx — is `OutcomeUnknownError`, never a rejection.
* **Exact numbers.** Quantities and prices come from the raw Binance payload (``info``) as
  ``Decimal``, not from ccxt's floats.
* **Every order type, and OCO lists.** ``submit`` sends each `OrderType` as Binance's own type
  (``stopPrice``, ``timeInForce`` where the type takes them); ``submit_list`` places an OCO
  through ``POST /api/v3/orderList/oco`` (ccxt has no unified call for it) and answers both
  legs, parsed like any order; the OCO placement codes (-1158, -1165 ... -1199) are rejections.
* **Idempotent submits.** Orders carry our deterministic ``newClientOrderId``; `submit_resolved`
  turns an unknown outcome into a known one by querying that id, and resubmits (same id) only
  when the exchange says the order does not exist.
* **The exchange's clock.** Requests are signed with `tessera.live.clock.ExchangeClock`'s time
  (ccxt's ``nonce``), synchronised before the first signed request and refreshed in the
  background as it ages; ccxt's own ``adjustForTimeDifference`` stays off (it measures once,
  at ``load_markets``, without correcting for the round trip, and never again). On -1021 the
  clock is resynchronised at once and a request that is safe to repeat (queries, balances,
  trades, cancels) is sent once more. An order submit is not: -1021 is the exchange's
  definitive refusal (it never saw the order), and the recvWindow exists so that an order late
  in transit is not executed late; resending it would defeat that, with a signal that is older
  by a round trip and a resync. It is reported as `OrderRejectedError` (code -1021) and the
  order manager decides what the strategy still wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt_async

from tessera.config.errors import ConfigError
from tessera.config.settings import require_supported_exchange
from tessera.execution.exchange import (
    SENDING,
    AuthError,
    Balance,
    ClockSkewError,
    ExchangeError,
    ExchangeOrder,
    ExchangeTrade,
    OrderRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
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
from tessera.live.clock import ClockSyncError, ExchangeClock
from tessera.logging import get_logger
from tessera.venues.binance.errors import ErrorAction, binance_error, exception_for
from tessera.venues.binance_spot.errors import classify as classify_spot
from tessera.venues.binance_spot.status import SPOT_STATUS
from tessera.venues.binance_usdm.errors import classify as classify_usdm
from tessera.venues.binance_usdm.status import USDM_STATUS

if TYPE_CHECKING:
    from tessera.live.ratelimit import RateLimiter

log = get_logger(__name__)

MS = 1_000_000
STATUS = SPOT_STATUS
# (request weight, orders) of each ccxt call on Binance spot, as the exchange meters them
REQUEST_COST: dict[str, tuple[int, int]] = {
    "load_markets": (20, 0),  # GET /api/v3/exchangeInfo
    "create_order": (1, 1),
    "private_post_orderlist_oco": (1, 2),  # an OCO is two orders
    "cancel_order": (1, 0),
    "fetch_order": (4, 0),
    "fetch_open_orders": (6, 0),  # one symbol; 80 for all, see open_orders
    "fetch_balance": (20, 0),
    "fetch_my_trades": (20, 0),
    "fetch_time": (1, 0),  # GET /api/v3/time
}


def map_error(
    exc: Exception,
    last_json: Any = None,
    classify: Callable[[int], ErrorAction | None] = classify_spot,
) -> Exception:
    """A ccxt exception -> ours (see the module docstring); ``classify`` is the venue's code
    table (spot's by default). A code the venue calls `ErrorAction.NO_CHANGE` ("already so")
    comes back as a plain `ExchangeError` with its code, for the caller that asked for the
    change to read as success."""
    body = binance_error(exc, last_json)
    if body is not None:
        code, msg = body
        action = classify(code)
        mapped = exception_for(action, code, msg) if action is not None else None
        if mapped is not None:
            return mapped
        if action is ErrorAction.NO_CHANGE:
            return ExchangeError(msg, code)
    # ccxt matched the message text instead (its "broad" table) and kept no body
    if isinstance(exc, ccxt_async.InsufficientFunds):
        return OrderRejectedError(str(exc)[:300], -2010)
    if isinstance(exc, ccxt_async.OrderNotFound):
        return UnknownOrderError(str(exc)[:300], -2013)
    if isinstance(exc, ccxt_async.InvalidOrder):
        return OrderRejectedError(str(exc)[:300])
    if isinstance(exc, ccxt_async.RateLimitExceeded | ccxt_async.DDoSProtection):
        return RateLimitedError(str(exc)[:300])
    if isinstance(exc, ccxt_async.AuthenticationError | ccxt_async.PermissionDenied):
        return AuthError(str(exc)[:300])
    if isinstance(exc, ccxt_async.NetworkError):  # timeouts, disconnects, 5xx
        return OutcomeUnknownError(str(exc)[:300])
    if body is not None:
        return ExchangeError(body[1], body[0])
    return ExchangeError(str(exc)[:300])


class CcxtExchange:
    """Binance spot through ccxt; ``rest_url`` points it at the simulator, testnet or Binance.

    `UsdmCcxtExchange` is the USDⓈ-M perpetuals adapter; `open_exchange` picks the class from
    the ``exchange.name`` setting."""

    # the venue's exchange.name (SUPPORTED_EXCHANGES), and what it costs to call
    VENUE = "binance"
    COST = REQUEST_COST

    def __init__(
        self,
        rest_url: str | None = None,
        api_key: str = "",
        api_secret: str = "",
        *,
        exchange_id: str | None = None,
        timeout_ms: int = 10_000,
        recv_window_ms: int = 5_000,
        limiter: RateLimiter | None = None,
        clock: ExchangeClock | None = None,
    ) -> None:
        """``exchange_id``: the ``exchange.name`` setting (default: this class's venue); a
        name not in `SUPPORTED_EXCHANGES` is a `ConfigError`, and a supported venue this class
        does not speak is one too (`open_exchange` picks the class).
        ``timeout_ms``: how long a request may go unanswered before its outcome is unknown (the
        bot passes ``live.order_timeout_s``). ``recv_window_ms``: sent as ``recvWindow`` with
        every signed request (``exchange.recv_window_ms``). ``clock``: the exchange clock to
        sign with (shared with the bot); None builds one on this client's server-time request,
        paced by ``limiter`` and closed with this client."""
        name = self.VENUE if exchange_id is None else exchange_id
        ccxt_id = require_supported_exchange(name)
        if ccxt_id != require_supported_exchange(self.VENUE):
            raise ConfigError(
                f"exchange.name {name!r}: {type(self).__name__} speaks {self.VENUE}'s API; "
                "open the adapter with tessera.execution.ccxt_exchange.open_exchange"
            )
        cls = getattr(ccxt_async, ccxt_id)
        self.limiter = limiter
        self.client: Any = cls(
            {
                "apiKey": api_key,
                "secret": api_secret,
                "timeout": timeout_ms,
                "enableRateLimit": False,  # our own limiter (tessera.live.ratelimit) paces us
                # keep the last body: ccxt drops Binance's code when it matches by message
                "enableLastJsonResponse": True,
                "options": self._ccxt_options(recv_window_ms),
            }
        )
        self._owns_clock = clock is None
        self._startup_sync_failed = False
        self.clock = (
            clock if clock is not None else ExchangeClock(self._server_time, pace=self._pace_time)
        )
        # ccxt stamps every signed request with ``self.nonce()`` (binance: ``timestamp``)
        self.client.nonce = self.clock.now_ms
        if rest_url:
            self._point_at(rest_url.rstrip("/"))
        self._markets_loaded = False
        self._ccxt_symbols: dict[str, str] = {}

    @staticmethod
    def _ccxt_options(recv_window_ms: int) -> dict[str, Any]:
        return {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,  # spot only: no sapi margin-pair lookups
            "recvWindow": recv_window_ms,
            "adjustForTimeDifference": False,  # see "The exchange's clock" above
        }

    def _point_at(self, base: str) -> None:
        for key in ("public", "private"):
            self.client.urls["api"][key] = f"{base}/api/v3"
        self.client.urls["api"]["v1"] = f"{base}/api/v1"

    def _map_error(self, exc: Exception) -> Exception:
        return map_error(exc, getattr(self.client, "last_json_response", None))

    async def close(self) -> None:
        if self._owns_clock:
            await self.clock.close()
        await self.client.close()

    async def _call(self, method: str, *args: Any, repeatable: bool = True) -> Any:
        """A signed request. After -1021 the clock is resynchronised; a ``repeatable`` request
        is then sent once more, any other is refused as `OrderRejectedError` (see the module
        docstring). A second -1021 in a row is raised as `ClockSkewError`."""
        if not self._markets_loaded:
            await self._metered("load_markets")
            self._ccxt_symbols = {m["id"]: m["symbol"] for m in self.client.markets.values()}
            self._markets_loaded = True
        if not self.clock.synced and not self._startup_sync_failed:
            try:
                await self.clock.sync("startup")
            except ClockSyncError:  # logged and counted by the clock; -1021 will retry it
                self._startup_sync_failed = True
        self.clock.refresh_if_due()
        try:
            return await self._metered(method, *args)
        except ClockSkewError as exc:
            log.warning(
                "exchange refused our timestamp (-1021): resynchronising the clock",
                method=method,
                offset_ms=round(self.clock.offset_ms, 1),
                repeat=repeatable,
            )
            await self._sync_clock("recv_window")
            if not repeatable:
                raise OrderRejectedError(
                    f"{exc} (refused for its timestamp; the clock is resynchronised)", exc.code
                ) from exc
        return await self._metered(method, *args)

    async def _sync_clock(self, reason: str) -> None:
        """Synchronise; if the exchange does not answer, go on with the last offset (the
        failure is logged and counted by the clock, and a skew shows as -1021 next)."""
        with contextlib.suppress(ClockSyncError):
            await self.clock.sync(reason)

    async def _server_time(self) -> int:
        """``GET /api/v3/time`` through ccxt (its URL, proxy and session); paced separately."""
        return int(await self._request("fetch_time"))

    async def _pace_time(self) -> None:
        if self.limiter is not None:
            await self.limiter.acquire(*self.COST["fetch_time"])

    async def _metered(self, method: str, *args: Any, **kw: Any) -> Any:
        """One request, paced by the shared limiter (see `_request`)."""
        weight, orders = self.COST.get(method, (1, 0))
        sending = SENDING.get() if orders else None
        if sending is not None:
            sending.held = True  # a cancel from here until the request leaves: never sent
        if self.limiter is not None:
            await self.limiter.acquire(weight, orders)
        if sending is not None:  # a new order: trading may have halted while it waited
            refused = sending.refused()
            if refused is not None:
                raise refused
            sending.held = False
        return await self._request(method, *args, **kw)

    async def _request(self, method: str, *args: Any, **kw: Any) -> Any:
        """One request: errors mapped, usage headers fed back to the limiter, a 429 or 418
        turned into a back-off or a stop that every process sharing the key obeys."""
        try:
            result = await getattr(self.client, method)(*args, **kw)
        except Exception as exc:
            mapped = self._map_error(exc)
            if isinstance(mapped, RateLimitedError):
                await self._throttled(mapped)
            raise mapped from exc
        finally:
            headers = getattr(self.client, "last_response_headers", None)
            if self.limiter is not None and headers:
                await self.limiter.observe_headers(headers)
        return result

    async def _throttled(self, err: RateLimitedError) -> None:
        headers = getattr(self.client, "last_response_headers", None) or {}
        retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if retry is not None:
            err.retry_after_s = float(retry)
        banned = "banned" in str(err).lower() or err.status == 418
        log.error("exchange rate limit hit", banned=banned, retry_after_s=err.retry_after_s)
        if self.limiter is None:
            return
        if banned:
            await self.limiter.on_418(err.retry_after_s)
        else:
            await self.limiter.on_429(err.retry_after_s)

    def unified(self, symbol: str) -> str:
        return self._ccxt_symbols.get(symbol, symbol)

    # --- orders ---------------------------------------------------------------------------------

    async def submit(self, order: Order) -> ExchangeOrder:
        """Place ``order`` (raises `OrderRejectedError`, `OutcomeUnknownError`, ...).

        Every `OrderType` goes out as Binance's own type: ccxt passes ``STOP_LOSS``,
        ``STOP_LOSS_LIMIT``, ``TAKE_PROFIT``, ``TAKE_PROFIT_LIMIT`` and ``LIMIT_MAKER`` through
        with ``stopPrice`` from the params (``market``/``limit`` are its unified names)."""
        try:
            raw = await self._create_order(order)
        except OrderRejectedError as exc:
            if "Duplicate order" not in str(exc):
                raise
            # An order with this client id exists: ours, sent before (a retry of a request
            # whose answer was lost, possibly by the HTTP client itself). Not a rejection.
            found = await self.query(order.symbol, order.client_order_id)
            if found is None:
                raise OutcomeUnknownError(
                    f"{order.client_order_id}: duplicate, yet not found"
                ) from exc
            log.warning("submit was a duplicate; the order exists", cid=order.client_order_id)
            return found
        return self._parse(raw, order.side)

    async def _create_order(self, order: Order) -> Any:
        """ccxt's ``create_order`` for ``order`` with `_order_args` (sent once, never retried:
        a lost answer is resolved by the caller's duplicate check)."""
        otype, price, params = self._order_args(order)
        return await self._call(
            "create_order",
            self.unified(order.symbol),
            otype,
            order.side.value.lower(),
            float(order.qty),
            price,
            params,
            repeatable=False,
        )

    @staticmethod
    def _order_args(order: Order) -> tuple[str, float | None, dict[str, Any]]:
        """ccxt's (type, price, params) for one order."""
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id}
        if order.type is OrderType.MARKET:
            return "market", None, params
        # Binance's own name for the others: ccxt passes it through
        otype = "limit" if order.type is OrderType.LIMIT else order.type.value
        if order.type in (OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
            params["timeInForce"] = order.time_in_force.value
        if order.stop_price is not None:
            params["stopPrice"] = _plain(order.stop_price)
        return otype, float(order.price) if order.price is not None else None, params

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        """Place an OCO through ``POST /api/v3/orderList/oco`` (ccxt's implicit
        ``private_post_orderlist_oco``); both legs, above first. A duplicate list (a resend
        after a lost answer) is looked up leg by leg instead."""
        a, b = orders.legs
        params: dict[str, Any] = {
            "symbol": orders.symbol,
            "side": a.side.value,
            "quantity": _plain(a.qty),
            "listClientOrderId": orders.list_id,
            "newOrderRespType": "FULL",
        }
        for name, leg in (("above", a), ("below", b)):
            params[f"{name}Type"] = leg.type.value
            params[f"{name}ClientOrderId"] = leg.client_order_id
            if leg.price is not None:
                params[f"{name}Price"] = _plain(leg.price)
            if leg.stop_price is not None:
                params[f"{name}StopPrice"] = _plain(leg.stop_price)
            if leg.type in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
                params[f"{name}TimeInForce"] = leg.time_in_force.value
        try:
            raw = await self._call("private_post_orderlist_oco", params, repeatable=False)
        except OrderRejectedError as exc:
            if "Duplicate order" not in str(exc):
                raise
            found = [await self.query(orders.symbol, leg.client_order_id) for leg in (a, b)]
            if found[0] is None or found[1] is None:
                raise OutcomeUnknownError(f"{orders.list_id}: duplicate, yet not found") from exc
            log.warning("OCO submit was a duplicate; the list exists", list_id=orders.list_id)
            return [found[0], found[1]]
        by_cid = {str(r.get("clientOrderId")): r for r in raw.get("orderReports", [])}
        missing = [leg.client_order_id for leg in (a, b) if leg.client_order_id not in by_cid]
        if missing:
            raise ExchangeError(f"{orders.list_id}: the answer lacks legs {missing}")
        return [self._parse(by_cid[leg.client_order_id], leg.side) for leg in (a, b)]

    async def submit_resolved(self, order: Order, attempts: int = 5) -> ExchangeOrder:
        """Submit; after an unknown outcome, find out by client order id (resubmit only on a
        definite "does not exist"), so that one intent gives exactly one exchange order."""
        delay = 0.2
        for attempt in range(attempts):
            try:
                return await self.submit(order)
            except OutcomeUnknownError as exc:
                log.warning(
                    "order outcome unknown; querying",
                    client_order_id=order.client_order_id,
                    error=str(exc)[:200],
                    attempt=attempt,
                )
            await asyncio.sleep(delay)
            found = await self._query_until_known(order)
            if found is not None:
                return found
            delay = min(delay * 2, 5.0)
        raise OutcomeUnknownError(
            f"{order.client_order_id}: still unknown after {attempts} attempts"
        )

    async def _query_until_known(self, order: Order) -> ExchangeOrder | None:
        for _ in range(5):
            try:
                return await self.query(order.symbol, order.client_order_id)
            except OutcomeUnknownError:
                await asyncio.sleep(0.2)
        raise OutcomeUnknownError(f"{order.client_order_id}: the exchange does not answer queries")

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        raw = await self._call(
            "cancel_order", None, self.unified(symbol), {"origClientOrderId": client_order_id}
        )
        return self._parse(raw, None)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order by client id, or None if the exchange says it does not exist."""
        try:
            raw = await self._call(
                "fetch_order", None, self.unified(symbol), {"origClientOrderId": client_order_id}
            )
        except UnknownOrderError:
            return None
        except ExchangeError as exc:
            if "does not exist" in str(exc) or isinstance(exc, OrderRejectedError):
                return None
            raise
        return self._parse(raw, None)

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        raw = await self._call("fetch_open_orders", self.unified(symbol) if symbol else None)
        return [self._parse(r, None) for r in raw]

    async def balances(self) -> dict[str, Balance]:
        raw = await self._call("fetch_balance")
        out: dict[str, Balance] = {}
        for b in raw["info"].get("balances", []):
            out[b["asset"]] = Balance(b["asset"], Decimal(b["free"]), Decimal(b["locked"]))
        return out

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        params = {"fromId": from_id} if from_id is not None else {}
        raw = await self._call("fetch_my_trades", self.unified(symbol), None, 1000, params)
        fills: list[ExchangeTrade] = []
        for t in raw:
            info = t["info"]
            fill = Fill(
                trade_id=str(info["id"]),
                client_order_id="",  # Binance lists trades by orderId only
                symbol=info["symbol"],
                side=OrderSide.BUY if info["isBuyer"] else OrderSide.SELL,
                price=Decimal(info["price"]),
                qty=Decimal(info["qty"]),
                fee=Decimal(info["commission"]),
                fee_asset=info["commissionAsset"],
                liquidity=Liquidity.MAKER if info["isMaker"] else Liquidity.TAKER,
                ts_event=int(info["time"]) * MS,
            )
            fills.append(ExchangeTrade(str(info["orderId"]), fill))
        return fills

    # --- parsing --------------------------------------------------------------------------------

    def _parse(self, raw: dict[str, Any], side: OrderSide | None) -> ExchangeOrder:
        info = raw.get("info") or raw
        status = STATUS.get(str(info.get("status", "NEW")), OrderStatus.ACCEPTED)
        order_side = side or (OrderSide.BUY if info.get("side") == "BUY" else OrderSide.SELL)
        cid = str(info.get("clientOrderId") or "")
        if info.get("origClientOrderId"):  # a cancel answers with the original id here
            cid = str(info["origClientOrderId"])
        ts_ms = info.get("transactTime") or info.get("updateTime") or info.get("time") or 0
        fills = []
        for f in info.get("fills", []) or []:
            fills.append(
                Fill(
                    trade_id=str(f["tradeId"]),
                    client_order_id=cid,
                    symbol=str(info["symbol"]),
                    side=order_side,
                    price=Decimal(f["price"]),
                    qty=Decimal(f["qty"]),
                    fee=Decimal(f["commission"]),
                    fee_asset=str(f["commissionAsset"]),
                    liquidity=Liquidity.TAKER,  # immediate fills of a new order take
                    ts_event=int(ts_ms) * MS,
                )
            )
        price = Decimal(str(info["price"])) if info.get("price") not in (None, "") else None
        stop = Decimal(str(info["stopPrice"])) if info.get("stopPrice") not in (None, "") else None
        otype = str(info.get("type") or "")
        return ExchangeOrder(
            client_order_id=cid,
            exchange_order_id=str(info.get("orderId", "")),
            symbol=str(info.get("symbol", "")),
            status=status,
            qty=Decimal(str(info.get("origQty", "0"))),
            filled_qty=Decimal(str(info.get("executedQty", "0"))),
            filled_notional=Decimal(str(info.get("cummulativeQuoteQty", "0"))),
            price=price if price else None,
            ts_update=int(ts_ms) * MS,
            fills=fills,
            type=OrderType(otype) if otype in OrderType.__members__ else None,
            stop_price=stop if stop else None,
        )


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
            "adjustForTimeDifference": False,  # see "The exchange's clock" above
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


def open_exchange(
    rest_url: str | None = None,
    api_key: str = "",
    api_secret: str = "",
    *,
    exchange_id: str = "binance",
    timeout_ms: int = 10_000,
    recv_window_ms: int = 5_000,
    limiter: RateLimiter | None = None,
    clock: ExchangeClock | None = None,
) -> CcxtExchange:
    """The adapter of ``exchange_id`` (the ``exchange.name`` setting): `CcxtExchange` for
    ``binance``, `UsdmCcxtExchange` for ``binance-usdm``; anything else is a `ConfigError`."""
    require_supported_exchange(exchange_id)
    cls = UsdmCcxtExchange if exchange_id == UsdmCcxtExchange.VENUE else CcxtExchange
    return cls(
        rest_url,
        api_key,
        api_secret,
        exchange_id=exchange_id,
        timeout_ms=timeout_ms,
        recv_window_ms=recv_window_ms,
        limiter=limiter,
        clock=clock,
    )


def _plain(value: Decimal) -> str:
    """A decimal as Binance takes it: no exponent, no trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
