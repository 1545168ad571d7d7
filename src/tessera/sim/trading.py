"""The simulator's private API: signed order endpoints and a matching engine for our orders.

Requests are authenticated as Binance does: the ``X-MBX-APIKEY`` header names the key, and
``signature`` is the HMAC-SHA256 (hex) of every parameter — query string then body — under the
key's secret; ``timestamp`` must be within ``recvWindow`` (default 5000 ms) of the server
clock (`server_time_ms`: the host's, moved by the ``clock_skew_ms`` fault). Failures answer
with Binance's own codes and bodies (-2014, -2015, -1022, -1021).

Matching, against the replayed market:

* a **market** order (or the marketable part of a limit order) walks the current book level
  by level from the best price: taker fills at those prices. The replayed book is not
  depleted by our fills (our size is assumed small next to the market's), so two orders in a
  row may take the same level;
* a **resting limit** order fills, as maker, at its limit price when a replayed trade prints at
  or through it, up to that trade's quantity, in price-time priority among our orders;
* IOC cancels what does not fill at once (status EXPIRED), FOK fills completely at once or
  expires without fills, LIMIT_MAKER is rejected if it would take (-2010);
* exchange filters (PRICE_FILTER, LOT_SIZE, MIN_NOTIONAL/NOTIONAL) reject with -1013 and the
  filter's name, balances with -2010; commissions are charged in the asset received.

Order and trade responses follow the real payloads (see ``samples/binance-api/spot-http``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from tessera.execution.filters import FilterViolationError, SymbolFilters, filters_by_symbol
from tessera.execution.orders import OrderType
from tessera.sim import payloads as binance
from tessera.sim.payloads import fmt8
from tessera.sim.rest import BinanceError, json_response, server_time_ms

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator

ZERO = Decimal(0)
ORDER_COUNT_HEADER = "X-MBX-ORDER-COUNT-10S"

BAD_API_KEY_FORMAT = binance.error(-2014, "API-key format invalid.")
REJECTED_API_KEY = binance.error(-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = binance.error(-1022, "Signature for this request is not valid.")
OUTSIDE_RECV_WINDOW = binance.error(
    -1021, "Timestamp for this request is outside of the recvWindow."
)
UNKNOWN_ORDER_CANCEL = binance.error(-2011, "Unknown order sent.")
NO_SUCH_ORDER = binance.error(-2013, "Order does not exist.")
DUPLICATE_ORDER = binance.error(-2010, "Duplicate order sent.")
INSUFFICIENT_BALANCE = binance.error(
    -2010, "Account has insufficient balance for requested action."
)
WOULD_TAKE = binance.error(-2010, "Order would immediately match and take.")
TOO_MANY_ORDERS = binance.error(
    -1015, "Too many new orders; current limit is %d orders per TEN_SECONDS."
)


def filter_failure(name: str) -> dict[str, object]:
    return binance.error(-1013, f"Filter failure: {name}")


@dataclass
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT / LIMIT_MAKER
    time_in_force: str  # GTC / IOC / FOK
    price: Decimal
    orig_qty: Decimal
    time_ms: int
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    locked: Decimal = ZERO  # balance held for the open remainder (quote for BUY, base for SELL)

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def rest(self) -> dict[str, Any]:
        """``GET /api/v3/order`` form."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt8(self.price),
            "origQty": fmt8(self.orig_qty),
            "executedQty": fmt8(self.executed_qty),
            "cummulativeQuoteQty": fmt8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt8(ZERO),
            "icebergQty": fmt8(ZERO),
            "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms,
            "isWorking": True,
            "workingTime": self.time_ms,
            "origQuoteOrderQty": "0.000000",
            "selfTradePreventionMode": "NONE",
        }

    def ack(self, resp_type: str, fills: list[SimFill]) -> dict[str, Any]:
        """``POST /api/v3/order`` response: ACK, RESULT or FULL."""
        body: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.update_ms or self.time_ms,
        }
        if resp_type == "ACK":
            return body
        body.update(
            {
                "price": fmt8(self.price),
                "origQty": fmt8(self.orig_qty),
                "executedQty": fmt8(self.executed_qty),
                "origQuoteOrderQty": "0.000000",
                "cummulativeQuoteQty": fmt8(self.cum_quote),
                "status": self.status,
                "timeInForce": self.time_in_force,
                "type": self.type,
                "side": self.side,
                "workingTime": self.time_ms,
                "selfTradePreventionMode": "NONE",
            }
        )
        if resp_type == "FULL":
            body["fills"] = [f.short() for f in fills]
        return body


@dataclass
class SimFill:
    trade_id: int
    order: SimOrder
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    def short(self) -> dict[str, Any]:
        return {
            "price": fmt8(self.price),
            "qty": fmt8(self.qty),
            "commission": fmt8(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }

    def my_trade(self) -> dict[str, Any]:
        """``GET /api/v3/myTrades`` form."""
        return {
            "symbol": self.order.symbol,
            "id": self.trade_id,
            "orderId": self.order.order_id,
            "orderListId": -1,
            "price": fmt8(self.price),
            "qty": fmt8(self.qty),
            "quoteQty": fmt8(self.price * self.qty),
            "commission": fmt8(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


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


def with_order_limit(info: dict[str, Any], max_orders_10s: int) -> dict[str, Any]:
    """A copy of ``exchangeInfo`` that advertises ``max_orders_10s`` as its ORDERS limit per
    10 seconds: what the trading engine enforces is what clients read (as on Binance)."""
    limits = [
        {**rl, "limit": max_orders_10s}
        if (rl.get("rateLimitType"), rl.get("interval"), rl.get("intervalNum"))
        == ("ORDERS", "SECOND", 10)
        else dict(rl)
        for rl in info.get("rateLimits", [])
    ]
    return {**info, "rateLimits": limits}


class TradingEngine:
    """Accounts, our orders and their matching; registered on an `ExchangeSimulator`."""

    def __init__(self, sim: ExchangeSimulator, config: TradingConfig | None = None) -> None:
        self.sim = sim
        self.config = config or TradingConfig()
        self.filters: dict[str, SymbolFilters] = filters_by_symbol(sim.market.exchange_info)
        self.free: dict[str, Decimal] = defaultdict(Decimal)
        self.locked: dict[str, Decimal] = defaultdict(Decimal)
        for asset, amount in self.config.balances.items():
            self.free[asset] = Decimal(amount)
        self.orders: dict[int, SimOrder] = {}
        self.by_client: dict[tuple[str, str], SimOrder] = {}
        self.fills: list[SimFill] = []
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._seen_trades: dict[str, int] = defaultdict(int)
        self._order_times: list[float] = []
        self.rate_limited = 0  # new orders answered 429 / -1015
        self._matcher: asyncio.Task[None] | None = None
        # user-data stream: listen key -> expiry (unix s); connected websockets get every event
        self.listen_keys: dict[str, float] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        sim.add_routes(self._register)

    # --- wiring ---------------------------------------------------------------------------------

    def _register(self, app: web.Application) -> None:
        rest = self.sim.rest
        for method, path, handler, weight in (
            ("POST", "/api/v3/order", self.new_order, 1),
            ("GET", "/api/v3/order", self.query_order, 4),
            ("DELETE", "/api/v3/order", self.cancel_order, 1),
            ("GET", "/api/v3/openOrders", self.open_orders, 6),
            ("DELETE", "/api/v3/openOrders", self.cancel_all, 1),
            ("GET", "/api/v3/account", self.account, 20),
            ("GET", "/api/v3/myTrades", self.my_trades, 20),
        ):
            rest.weights[path] = weight
            app.router.add_route(method, path, self._signed(handler))
        rest.weights["/api/v3/userDataStream"] = 2
        for method, handler in (
            ("POST", self.new_listen_key),
            ("PUT", self.keepalive_listen_key),
            ("DELETE", self.close_listen_key),
        ):
            app.router.add_route(method, "/api/v3/userDataStream", self._keyed(handler))
        app.router.add_get("/ws/{listen_key:[A-Za-z0-9]{60}}", self.user_data_ws)
        app.on_startup.append(self._start_matcher)
        app.on_cleanup.append(self._stop_matcher)

    async def _start_matcher(self, app: web.Application) -> None:
        self._matcher = asyncio.get_running_loop().create_task(self._match_loop())

    async def _stop_matcher(self, app: web.Application) -> None:
        if self._matcher is not None:
            self._matcher.cancel()

    async def _match_loop(self) -> None:
        """Resting orders meet the replayed trades as the replay moves on."""
        while True:
            await asyncio.sleep(0.02)
            self.match_resting()

    # --- the user-data stream --------------------------------------------------------------------

    LISTEN_KEY_TTL_S = 3600.0  # Binance: a listen key expires 60 minutes after its last keepalive

    def _keyed(self, handler: Any) -> Any:
        """API key only, no signature: how Binance guards the listen-key endpoints."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            params, _ = await self._keyed_params(request)
            return await handler(request, params)  # type: ignore[no-any-return]

        return wrapped

    def _listen_key(self, params: dict[str, str]) -> str:
        key = params.get("listenKey", "")
        if not key:
            raise BinanceError(binance.missing_param("listenKey"))
        if self.listen_keys.get(key, 0.0) < time.time():
            raise BinanceError(binance.error(-1125, "This listenKey does not exist."))
        return key

    async def new_listen_key(self, request: web.Request, params: dict[str, str]) -> web.Response:
        # Binance answers an account's existing key while it is valid
        live = [k for k, exp in self.listen_keys.items() if exp > time.time()]
        key = (
            live[0] if live else secrets.token_urlsafe(45).replace("-", "a").replace("_", "b")[:60]
        )
        self.listen_keys[key] = time.time() + self.LISTEN_KEY_TTL_S
        return json_response({"listenKey": key})

    async def keepalive_listen_key(
        self, request: web.Request, params: dict[str, str]
    ) -> web.Response:
        key = self._listen_key(params)
        self.listen_keys[key] = time.time() + self.LISTEN_KEY_TTL_S
        return json_response({})

    async def close_listen_key(self, request: web.Request, params: dict[str, str]) -> web.Response:
        key = self._listen_key(params)
        del self.listen_keys[key]
        return json_response({})

    async def user_data_ws(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["listen_key"]
        if self.listen_keys.get(key, 0.0) < time.time():
            raise web.HTTPNotFound(text="unknown or expired listen key")
        ws = web.WebSocketResponse(heartbeat=self.sim.ping_interval_s)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.listeners.append(queue.put_nowait)
        sender = asyncio.get_running_loop().create_task(self._send_events(ws, queue))
        try:
            async for _ in ws:  # the client sends nothing we act on; pings are automatic
                pass
        finally:
            self.listeners.remove(queue.put_nowait)
            sender.cancel()
        return ws

    @staticmethod
    async def _send_events(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await queue.get()
            await ws.send_str(orjson.dumps(event).decode())

    def _report(
        self, order: SimOrder, exec_type: str, fill: SimFill | None = None
    ) -> dict[str, Any]:
        """An ``executionReport`` as Binance sends it (see samples/binance-api/spot-user-data)."""
        now = server_time_ms(self.sim)
        return {
            "e": "executionReport",
            "E": now,
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": fmt8(order.orig_qty),
            "p": fmt8(order.price),
            "P": fmt8(ZERO),
            "F": fmt8(ZERO),
            "g": -1,
            "C": order.client_order_id if exec_type == "CANCELED" else "",
            "x": exec_type,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": fmt8(fill.qty if fill else ZERO),
            "z": fmt8(order.executed_qty),
            "L": fmt8(fill.price if fill else ZERO),
            "n": fmt8(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": fill.time_ms if fill else (order.update_ms or order.time_ms),
            "t": fill.trade_id if fill else -1,
            "I": 0,
            "w": order.is_open,
            "m": fill.is_maker if fill else False,
            "M": False,
            "O": order.time_ms,
            "Z": fmt8(order.cum_quote),
            "Y": fmt8(fill.price * fill.qty) if fill else fmt8(ZERO),
            "Q": fmt8(ZERO),
            "W": order.time_ms,
            "V": "NONE",
        }

    def _account_position(self) -> dict[str, Any]:
        now = server_time_ms(self.sim)
        assets = sorted(set(self.free) | set(self.locked))
        return {
            "e": "outboundAccountPosition",
            "E": now,
            "u": now,
            "B": [{"a": a, "f": fmt8(self.free[a]), "l": fmt8(self.locked[a])} for a in assets],
        }

    def _publish(self, *events: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            for event in events:
                listener(event)

    # --- authentication -------------------------------------------------------------------------

    def _signed(self, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            params = await self._authenticate(request)
            return await handler(request, params)  # type: ignore[no-any-return]

        return wrapped

    async def _keyed_params(self, request: web.Request) -> tuple[dict[str, str], str]:
        """Check the ``X-MBX-APIKEY`` header; the parameters (query, then body) and their text."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(BAD_API_KEY_FORMAT, 401)
        if not hmac.compare_digest(key, self.config.api_key):
            raise BinanceError(REJECTED_API_KEY, 401)
        body = (await request.text()) if request.can_read_body else ""
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        return params, request.query_string + body

    async def _authenticate(self, request: web.Request) -> dict[str, str]:
        params, total = await self._keyed_params(request)
        signature = params.pop("signature", "")
        signed_part = _without_signature(total)
        want = hmac.new(
            self.config.api_secret.encode(), signed_part.encode(), hashlib.sha256
        ).hexdigest()
        if not signature or not hmac.compare_digest(signature, want):
            raise BinanceError(BAD_SIGNATURE)
        try:
            ts = int(params.get("timestamp", ""))
            window = int(params.get("recvWindow", "5000"))
        except ValueError as exc:
            raise BinanceError(binance.missing_param("timestamp")) from exc
        if window > 60_000:
            raise BinanceError(binance.error(-1131, "recvWindow must be less than 60000"))
        now = server_time_ms(self.sim)
        if not (ts < now + 1000 and now - ts <= window):
            raise BinanceError(OUTSIDE_RECV_WINDOW)
        return params

    # --- parameters -----------------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> str:
        sym = params.get("symbol", "")
        if not sym:
            raise BinanceError(binance.missing_param("symbol"))
        if sym not in self.sim.market.symbols or sym not in self.filters:
            raise BinanceError(binance.INVALID_SYMBOL)
        return sym

    @staticmethod
    def _decimal(params: dict[str, str], name: str) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation as exc:
            raise BinanceError(
                binance.error(
                    -1100,
                    f"Illegal characters found in parameter '{name}'; "
                    "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
                )
            ) from exc
        return value

    def _find(self, params: dict[str, str], symbol: str) -> SimOrder | None:
        if "orderId" in params:
            o = self.orders.get(int(params["orderId"]))
            return o if o is not None and o.symbol == symbol else None
        cid = params.get("origClientOrderId")
        if cid is None:
            raise BinanceError(
                binance.error(
                    -1102,
                    "Param 'origClientOrderId' or 'orderId' must be sent, "
                    "but both were empty/null!",
                )
            )
        return self.by_client.get((symbol, cid))

    # --- endpoints ------------------------------------------------------------------------------

    async def new_order(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        now = time.time()
        # fixed 10 s windows aligned to the epoch, as Binance counts (and our limiter meters)
        window = now - now % 10
        self._order_times = [t for t in self._order_times if t >= window] + [now]
        count = len(self._order_times)
        if count > self.config.max_orders_10s:
            self.rate_limited += 1
            body = dict(TOO_MANY_ORDERS)
            body["msg"] = str(body["msg"]) % self.config.max_orders_10s
            resp = json_response(body, 429)
            resp.headers["Retry-After"] = "10"
            resp.headers[ORDER_COUNT_HEADER] = str(count)
            return resp
        order, fills = self.place(params)
        if self.config.response_delay_s:
            # hold the answer back; stop waiting if the client goes away meanwhile
            loop = asyncio.get_running_loop()
            until = loop.time() + self.config.response_delay_s
            while loop.time() < until:
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.05)
        resp_type = params.get("newOrderRespType") or (
            "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
        )
        if self.config.lose_responses > 0:
            self.config.lose_responses -= 1
            self.sim.stats.faults["lost_order_response"] += 1
            if request.transport is not None:
                request.transport.abort()  # the order stands; the client never hears of it
            raise web.HTTPInternalServerError()
        resp = json_response(order.ack(resp_type, fills))
        resp.headers[ORDER_COUNT_HEADER] = str(count)
        return resp

    async def query_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self._symbol(params)
        order = self._find(params, sym)
        if order is None:
            raise BinanceError(NO_SUCH_ORDER)
        return json_response(order.rest())

    async def cancel_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self._symbol(params)
        order = self._find(params, sym)
        if order is None or not order.is_open:
            raise BinanceError(UNKNOWN_ORDER_CANCEL)
        self._close(order, "CANCELED")
        body = order.ack("RESULT", [])
        body["origClientOrderId"] = order.client_order_id
        body["clientOrderId"] = params.get("newClientOrderId") or order.client_order_id
        return json_response(body)

    async def open_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = params.get("symbol")
        if sym:
            self._symbol(params)
        return json_response(
            [o.rest() for o in self.orders.values() if o.is_open and (not sym or o.symbol == sym)]
        )

    async def cancel_all(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self._symbol(params)
        out = []
        for o in [o for o in self.orders.values() if o.is_open and o.symbol == sym]:
            self._close(o, "CANCELED")
            body = o.ack("RESULT", [])
            body["origClientOrderId"] = o.client_order_id
            out.append(body)
        if not out:
            raise BinanceError(UNKNOWN_ORDER_CANCEL)
        return json_response(out)

    async def account(self, request: web.Request, params: dict[str, str]) -> web.Response:
        assets = sorted(set(self.free) | set(self.locked))
        fee_bps = int(self.config.taker_fee * 10_000)
        return json_response(
            {
                "makerCommission": int(self.config.maker_fee * 10_000),
                "takerCommission": fee_bps,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": fmt8(self.config.maker_fee),
                    "taker": fmt8(self.config.taker_fee),
                    "buyer": fmt8(ZERO),
                    "seller": fmt8(ZERO),
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": server_time_ms(self.sim),
                "accountType": "SPOT",
                "balances": [
                    {"asset": a, "free": fmt8(self.free[a]), "locked": fmt8(self.locked[a])}
                    for a in assets
                ],
                "permissions": ["SPOT"],
                "uid": 354937868,
            }
        )

    async def my_trades(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self._symbol(params)
        from_id = int(params["fromId"]) if params.get("fromId") else None
        order_id = int(params["orderId"]) if params.get("orderId") else None
        limit = min(int(params.get("limit") or 500), 1000)
        rows = [
            f.my_trade()
            for f in self.fills
            if f.order.symbol == sym
            and (from_id is None or f.trade_id >= from_id)
            and (order_id is None or f.order.order_id == order_id)
        ]
        return json_response(rows[:limit])

    # --- the matching engine --------------------------------------------------------------------

    def place(self, params: dict[str, str]) -> tuple[SimOrder, list[SimFill]]:
        """Validate and place an order; returns it and its immediate fills."""
        sym = self._symbol(params)
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(
                binance.error(
                    -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
                )
            )
        otype = params.get("type", "")
        if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise BinanceError(binance.error(-1116, "Invalid orderType."))
        qty = self._decimal(params, "quantity")
        if qty is None:
            raise BinanceError(binance.missing_param("quantity"))
        price = self._decimal(params, "price")
        tif = params.get("timeInForce") or "GTC"
        if otype in ("LIMIT", "LIMIT_MAKER") and price is None:
            raise BinanceError(binance.missing_param("price"))
        if otype == "LIMIT" and "timeInForce" not in params:
            raise BinanceError(binance.missing_param("timeInForce"))
        if tif not in ("GTC", "IOC", "FOK"):
            raise BinanceError(binance.error(-1115, "Invalid timeInForce."))
        cid = params.get("newClientOrderId") or f"sim{next(self._order_ids)}x"
        existing = self.by_client.get((sym, cid))
        if existing is not None and existing.is_open:
            raise BinanceError(DUPLICATE_ORDER)
        flt = self.filters[sym]
        book = self.sim.state.books.get(sym)
        best_bid = max(book.bids) if book and book.bids else None
        best_ask = min(book.asks) if book and book.asks else None
        ref = (best_bid + best_ask) / 2 if best_bid and best_ask else (best_bid or best_ask)
        try:
            flt.check(OrderType(otype), qty, price, reference_price=ref)
        except FilterViolationError as exc:
            raise BinanceError(filter_failure(exc.filter_type)) from exc
        takes = self._marketable(side, otype, price, best_bid, best_ask)
        if otype == "LIMIT_MAKER" and takes:
            raise BinanceError(WOULD_TAKE)
        # funds: a buy holds quote at its limit (or the book's cost), a sell holds base
        walk = self._walk(sym, side, qty, price if otype != "MARKET" else None)
        if side == "BUY":
            need = price * qty if price is not None else sum((p * q for p, q in walk), ZERO)
            if otype == "MARKET" and sum((q for _, q in walk), ZERO) < qty:
                need = need + (qty - sum((q for _, q in walk), ZERO)) * (best_ask or ZERO)
            asset = flt.quote_asset
        else:
            need, asset = qty, flt.base_asset
        if self.free[asset] < need:
            raise BinanceError(INSUFFICIENT_BALANCE)
        now_ms = server_time_ms(self.sim)
        oid = next(self._order_ids)
        order = SimOrder(
            oid,
            cid,
            sym,
            side,
            otype,
            tif if otype != "MARKET" else "GTC",
            price if price is not None else ZERO,
            qty,
            now_ms,
        )
        self.orders[oid] = order
        self.by_client[(sym, cid)] = order
        order.locked = need
        self.free[asset] -= need
        self.locked[asset] += need
        self._publish(self._report(order, "NEW"), self._account_position())
        fills: list[SimFill] = []
        available = sum((q for _, q in walk), ZERO)
        if otype == "LIMIT" and tif == "FOK" and available < qty:
            self._close(order, "EXPIRED")
            return order, fills
        for p, q in walk:
            fills.append(self._fill(order, p, q, is_maker=False))
        if order.remaining > 0 and (otype == "MARKET" or tif == "IOC"):
            self._close(order, "EXPIRED")
        return order, fills

    @staticmethod
    def _marketable(
        side: str, otype: str, price: Decimal | None, bid: Decimal | None, ask: Decimal | None
    ) -> bool:
        if otype == "MARKET":
            return True
        if price is None:
            return False
        return (
            (ask is not None and price >= ask)
            if side == "BUY"
            else (bid is not None and price <= bid)
        )

    def _walk(
        self, sym: str, side: str, qty: Decimal, limit: Decimal | None
    ) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) taken from the book, best level first, up to ``limit`` if given."""
        book = self.sim.state.books.get(sym)
        if book is None:
            return []
        buy = side == "BUY"
        levels = sorted(book.asks.items()) if buy else sorted(book.bids.items(), reverse=True)

        def ok(p: Decimal) -> bool:
            return limit is None or (p <= limit if buy else p >= limit)

        out: list[tuple[Decimal, Decimal]] = []
        left = qty
        for p, q in levels:
            if left <= 0 or not ok(p):
                break
            take = min(left, Decimal(q))
            out.append((p, take))
            left -= take
        return out

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, is_maker: bool) -> SimFill:
        flt = self.filters[order.symbol]
        base, quote = flt.base_asset, flt.quote_asset
        rate = self.config.maker_fee if is_maker else self.config.taker_fee
        quote_amt = price * qty
        if order.side == "BUY":
            # pay quote from what this order holds, receive base minus commission
            cost = quote_amt
            order.locked -= cost
            self.locked[quote] -= cost
            commission, asset = (qty * rate).quantize(Decimal("1e-8")), base
            self.free[base] += qty - commission
        else:
            order.locked -= qty
            self.locked[base] -= qty
            commission, asset = (quote_amt * rate).quantize(Decimal("1e-8")), quote
            self.free[quote] += quote_amt - commission
        order.executed_qty += qty
        order.cum_quote += quote_amt
        order.update_ms = server_time_ms(self.sim)
        fill = SimFill(
            next(self._trade_ids), order, price, qty, commission, asset, order.update_ms, is_maker
        )
        self.fills.append(fill)
        if order.remaining == 0:
            order.status = "FILLED"
            self._release(order)
        else:
            order.status = "PARTIALLY_FILLED"
        self._publish(self._report(order, "TRADE", fill), self._account_position())
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
        order.update_ms = server_time_ms(self.sim)
        self._release(order)
        self._publish(self._report(order, status), self._account_position())

    def match_resting(self) -> int:
        """Fill resting limit orders against replayed trades released since the last call."""
        state = self.sim.state
        state.advance_to(self.sim.head)
        filled = 0
        for sym in {o.symbol for o in self.orders.values() if o.is_open}:
            trades = state.trades(sym)
            start = self._seen_trades[sym]
            if start > len(trades):  # the replay started over with a fresh market
                start = 0
            self._seen_trades[sym] = len(trades)
            resting = [o for o in self.orders.values() if o.is_open and o.symbol == sym]
            for t in trades[start:]:
                price, left = Decimal(t.price), Decimal(t.qty)
                buys = sorted(
                    (o for o in resting if o.is_open and o.side == "BUY" and o.price >= price),
                    key=lambda o: (-o.price, o.order_id),
                )
                sells = sorted(
                    (o for o in resting if o.is_open and o.side == "SELL" and o.price <= price),
                    key=lambda o: (o.price, o.order_id),
                )
                for o in buys + sells:
                    if left <= 0:
                        break
                    q = min(left, o.remaining)
                    self._fill(o, o.price, q, is_maker=True)
                    left -= q
                    filled += 1
        # symbols without open orders: nothing rests, just move the cursor on
        for sym in self.sim.market.symbols:
            if not any(o.is_open and o.symbol == sym for o in self.orders.values()):
                self._seen_trades[sym] = len(state.trades(sym))
        return filled


def _without_signature(total: str) -> str:
    """The signed text: every parameter but ``signature`` (which clients append last)."""
    for sep in ("&signature=", "signature="):
        i = total.find(sep)
        if i >= 0:
            end = total.find("&", i + len(sep))
            rest = total[end:] if end >= 0 else ""
            return total[:i] + (rest if sep.startswith("&") else rest.lstrip("&"))
    return total
