"""`CcxtExchange`: ccxt's async Binance client behind our `Exchange` interface.

ccxt signs requests and speaks the REST API; we keep the parts where mistakes lose orders:

* **Error mapping.** ccxt picks exception classes from Binance's error codes by URL prefix, so
  pointed at the simulator or a proxy it only has its generic mappings. We read Binance's
  ``{"code": ..., "msg": ...}`` body out of the exception ourselves and map the codes that
  matter (-1013, -2010 -> rejected; -2011, -2013 -> unknown order; -1021 -> clock skew; -1022,
  -2014, -2015 -> auth; -1003, -1015, 429, 418 -> rate limited; the whole table is the venue's,
  `tessera.venues.binance_spot.errors`; the reading is `tessera.venues.binance.ccxt_errors.
  map_error`, shared with USDⓈ-M). Anything without an exchange answer — a timeout, a
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

Why here: the adapter reads Binance spot's REST answers (ccxt's ``info``: order status, fills,
balances, OCO reports), and each venue's wire format lives in its folder. The USDⓈ-M adapter
(`tessera.venues.binance_usdm.exchange.UsdmCcxtExchange`) extends this class, so what both
adapters' order code shares (`MS`, `_plain`) stays here with the base; how a ccxt exception
becomes ours is Binance's, not spot's (`tessera.venues.binance.ccxt_errors`). The factory that
picks the class from ``exchange.name`` is `tessera.execution.ccxt_exchange.open_exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt_async

from tessera.config.errors import ConfigError
from tessera.config.settings import require_supported_exchange
from tessera.execution.exchange import (
    SENDING,
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
from tessera.live.clock import ClockSyncError, ExchangeClock
from tessera.logging import get_logger
from tessera.venues.binance.ccxt_errors import map_error
from tessera.venues.binance_spot.status import SPOT_STATUS

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


def _plain(value: Decimal) -> str:
    """A decimal as Binance takes it: no exponent, no trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
