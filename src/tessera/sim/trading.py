"""The simulator's private API: signed order endpoints over the matching engine for our orders.

Requests are authenticated as Binance does: the ``X-MBX-APIKEY`` header names the key, and
``signature`` is the HMAC-SHA256 (hex) of every parameter — query string then body — under the
key's secret; ``timestamp`` must be within ``recvWindow`` (default 5000 ms) of the server
clock (`server_time_ms`: the host's, moved by the ``clock_skew_ms`` fault). Failures answer
with Binance's own codes and bodies (-2014, -2015, -1022, -1021).

Endpoints: ``POST/GET/DELETE /api/v3/order`` (every spot order type), ``GET/DELETE
/api/v3/openOrders``, ``GET /api/v3/allOrders``, OCO order lists (``POST
/api/v3/orderList/oco``, ``GET/DELETE /api/v3/orderList``, ``GET /api/v3/openOrderList``),
``GET /api/v3/account``, ``GET /api/v3/myTrades`` and the user-data stream (listen keys,
``/ws/<listenKey>``). New orders are
counted per 10 s window as Binance counts them (an OCO counts 2): past the limit, 429 with
-1015 and ``Retry-After``; every answer carries ``X-MBX-ORDER-COUNT-10S``. The deprecated
``POST /api/v3/order/oco`` is not served: ccxt's unified API never calls it.

How orders are matched is `tessera.sim.matching_core` (and `tessera.sim.bar_matching` for a
market replayed from bars); order and trade responses follow the
real payloads (see ``samples/binance-api/spot-http``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from tessera.sim import payloads as binance
from tessera.sim.matching_core import MatchingCore, TradingConfig
from tessera.sim.payloads import fmt8
from tessera.sim.rest import BinanceError, json_response, server_time_ms
from tessera.sim.venue_orders import ZERO, SimOrder, SimOrderList
from tessera.sim.ws import BinancePings

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator

__all__ = ["ORDER_COUNT_HEADER", "TradingConfig", "TradingEngine", "with_order_limit"]

ORDER_COUNT_HEADER = "X-MBX-ORDER-COUNT-10S"

BAD_API_KEY_FORMAT = binance.error(-2014, "API-key format invalid.")
REJECTED_API_KEY = binance.error(-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = binance.error(-1022, "Signature for this request is not valid.")
OUTSIDE_RECV_WINDOW = binance.error(
    -1021, "Timestamp for this request is outside of the recvWindow."
)
UNKNOWN_ORDER_CANCEL = binance.error(-2011, "Unknown order sent.")
NO_SUCH_ORDER = binance.error(-2013, "Order does not exist.")
NO_SUCH_LIST = binance.error(-2013, "Order list does not exist.")
TOO_MANY_ORDERS = binance.error(
    -1015, "Too many new orders; current limit is %d orders per TEN_SECONDS."
)


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


Signed = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


class TradingEngine(MatchingCore):
    """Accounts, our orders and their matching, served over Binance's private API; registered
    on an `ExchangeSimulator`."""

    def __init__(self, sim: ExchangeSimulator, config: TradingConfig | None = None) -> None:
        super().__init__(sim, config)
        self._order_times: list[float] = []
        self.rate_limited = 0  # new orders answered 429 / -1015
        self._matcher: asyncio.Task[None] | None = None
        # user-data stream: listen key -> expiry (unix s); the queues of connected sockets
        self.listen_keys: dict[str, float] = {}
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._user_sockets: set[web.WebSocketResponse] = set()
        sim.add_routes(self._register)
        # bar mode: bars are matched as they close, and the fills go out before the bar does
        sim.release_hooks.append(self.bars.on_release)
        sim.release_stops.append(self.bars.next_close)
        sim.release_flushes.append(self._user_data_sent)

    # --- wiring ---------------------------------------------------------------------------------

    def _register(self, app: web.Application) -> None:
        routes: tuple[tuple[str, str, Signed, int], ...] = (
            ("POST", "/api/v3/order", self.new_order, 1),
            ("GET", "/api/v3/order", self.query_order, 4),
            ("DELETE", "/api/v3/order", self.cancel_order, 1),
            ("GET", "/api/v3/openOrders", self.open_orders, 6),
            ("GET", "/api/v3/allOrders", self.all_orders, 20),
            ("DELETE", "/api/v3/openOrders", self.cancel_all, 1),
            ("POST", "/api/v3/orderList/oco", self.new_oco, 1),
            ("GET", "/api/v3/orderList", self.query_list, 4),
            ("DELETE", "/api/v3/orderList", self.cancel_order_list, 1),
            ("GET", "/api/v3/openOrderList", self.open_lists, 6),
            ("GET", "/api/v3/account", self.account, 20),
            ("GET", "/api/v3/myTrades", self.my_trades, 20),
        )
        self._add_routes(app, routes, "/api/v3/userDataStream", 2)
        app.router.add_get("/ws/{listen_key:[A-Za-z0-9]{60}}", self.user_data_ws)
        app.on_startup.append(self._start_matcher)
        app.on_cleanup.append(self._stop_matcher)

    def _add_routes(
        self,
        app: web.Application,
        routes: tuple[tuple[str, str, Signed, int], ...],
        listen_key_path: str,
        listen_key_weight: int,
    ) -> None:
        """The signed ``routes`` (method, path, handler, weight) and the listen key's
        POST/PUT/DELETE at ``listen_key_path``, each with its request weight."""
        rest = self.sim.rest
        for method, path, handler, weight in routes:
            rest.weights[path] = weight
            app.router.add_route(method, path, self._signed(handler))
        rest.weights[listen_key_path] = listen_key_weight
        for method, keyed in (
            ("POST", self.new_listen_key),
            ("PUT", self.keepalive_listen_key),
            ("DELETE", self.close_listen_key),
        ):
            app.router.add_route(method, listen_key_path, self._keyed(keyed))

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
        # /ws/<listenKey>, or USDⓈ-M's /private/ws?listenKey=<listenKey>
        key = request.match_info.get("listen_key") or request.query.get("listenKey", "")
        if self.listen_keys.get(key, 0.0) < time.time():
            raise web.HTTPNotFound(text="unknown or expired listen key")
        ws = web.WebSocketResponse(autoping=False)  # keepalive as Binance's (`BinancePings`)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues.append(queue)
        self._user_sockets.add(ws)
        self.listeners.append(queue.put_nowait)
        loop = asyncio.get_running_loop()
        sender = loop.create_task(self._send_events(ws, queue))
        pings = BinancePings(ws, self.sim.ping_interval_s, self.sim.pong_timeout_s)
        pinger = loop.create_task(pings.run())
        try:
            async for msg in ws:  # the client sends nothing we act on but pings and pongs
                await pings.saw(msg)
        finally:
            self._user_sockets.discard(ws)
            self.listeners.remove(queue.put_nowait)
            self._queues.remove(queue)
            self.sim.stats.pong_timeouts += pings.timed_out
            pinger.cancel()
            sender.cancel()
            while not queue.empty():  # nobody will send these: nobody waits for them
                queue.get_nowait()
                queue.task_done()
        return ws

    async def drop_user_streams(self) -> int:
        """Close every user-data websocket (code 1001, going away), as Binance does when it
        restarts a stream server: the clients reconnect, and what happened meanwhile reaches
        them only through REST. Answers how many were closed."""
        sockets = list(self._user_sockets)
        for ws in sockets:
            await ws.close(code=1001, message=b"going away")
        return len(sockets)

    @staticmethod
    async def _send_events(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await queue.get()
            try:
                await ws.send_str(orjson.dumps(event).decode())
            finally:
                queue.task_done()

    async def _user_data_sent(self) -> None:
        """Until every connected user-data socket has sent what was published (at most 2 s:
        a stuck client does not hold the replay), then ``bar_report_lead_s`` more: on an
        exchange a fill happens inside its bar and its report arrives long before the bar's
        close, while here both leave at the close. Without the lead a client busy with one
        report (a database write) may read the kline from its market socket before the next
        report from its user-data socket: two sockets keep no order between them."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), 2.0)
        if self.config.bar_report_lead_s > 0:
            await asyncio.sleep(self.config.bar_report_lead_s)

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

    def _find_list(self, params: dict[str, str], symbol: str | None) -> SimOrderList | None:
        """By ``orderListId``, else by the list's client id (``listClientOrderId``; the query
        endpoint calls it ``origClientOrderId``)."""
        if params.get("orderListId"):
            lst = self.lists.get(int(params["orderListId"]))
            return lst if lst is not None and symbol in (None, lst.symbol) else None
        cid = params.get("listClientOrderId") or params.get("origClientOrderId")
        if not cid:
            raise BinanceError(
                binance.error(
                    -1128,
                    "Combination of optional parameters invalid. "
                    "Recommendation: 'orderListId' should also be sent.",
                )
            )
        found = [
            lst
            for (sym, c), lst in self.lists_by_client.items()
            if c == cid and symbol in (None, sym)
        ]
        return found[-1] if found else None

    # --- endpoints ------------------------------------------------------------------------------

    def _count_new_orders(self, n: int) -> tuple[int, web.Response | None]:
        """Count ``n`` new orders in this 10 s window; a 429 answer when past the limit."""
        now = time.time()
        # fixed 10 s windows aligned to the epoch, as Binance counts (and our limiter meters)
        window = now - now % 10
        self._order_times = [t for t in self._order_times if t >= window] + [now] * n
        count = len(self._order_times)
        if count <= self.config.max_orders_10s:
            return count, None
        self.rate_limited += 1
        body = dict(TOO_MANY_ORDERS)
        body["msg"] = str(body["msg"]) % self.config.max_orders_10s
        resp = json_response(body, 429)
        resp.headers["Retry-After"] = "10"
        resp.headers[ORDER_COUNT_HEADER] = str(count)
        return count, resp

    async def _answer_order(self, request: web.Request, body: object, count: int) -> web.Response:
        """The configured faults of an order answer: held back, or lost after the order
        stands."""
        if self.config.response_delay_s:
            # hold the answer back; stop waiting if the client goes away meanwhile
            loop = asyncio.get_running_loop()
            until = loop.time() + self.config.response_delay_s
            while loop.time() < until:
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.05)
        if self.config.lose_responses > 0:
            self.config.lose_responses -= 1
            self.sim.stats.faults["lost_order_response"] += 1
            if request.transport is not None:
                request.transport.abort()  # the order stands; the client never hears of it
            raise web.HTTPInternalServerError()
        resp = json_response(body)
        resp.headers[ORDER_COUNT_HEADER] = str(count)
        return resp

    async def new_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        count, refused = self._count_new_orders(1)
        if refused is not None:
            return refused
        order, fills = self.place(params)
        # Binance: MARKET and LIMIT answer FULL by default, every other type ACK
        resp_type = params.get("newOrderRespType") or (
            "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
        )
        return await self._answer_order(request, order.ack(resp_type, fills), count)

    async def new_oco(self, request: web.Request, params: dict[str, str]) -> web.Response:
        count, refused = self._count_new_orders(2)  # an OCO is two orders
        if refused is not None:
            return refused
        lst = self.place_oco(params)
        resp_type = params.get("newOrderRespType") or "FULL"
        return await self._answer_order(request, lst.ack(resp_type), count)

    async def query_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        order = self._find(params, sym)
        if order is None:
            raise BinanceError(NO_SUCH_ORDER)
        return json_response(order.rest())

    async def cancel_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = self.symbol(params)
        order = self._find(params, sym)
        if order is None or not order.is_open:
            raise BinanceError(UNKNOWN_ORDER_CANCEL)
        self.cancel(order)  # a leg of an OCO cancels the list
        return json_response(order.cancel_ack(params.get("newClientOrderId") or ""))

    async def open_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sym = params.get("symbol")
        if sym:
            self.symbol(params)
        return json_response(
            [o.rest() for o in self.orders.values() if o.is_open and (not sym or o.symbol == sym)]
        )

    async def all_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """Every order of the symbol, open or not: from ``orderId`` (ascending), else the
        newest ``limit`` (default 500, at most 1000), within ``startTime``/``endTime`` by
        creation time (Binance refuses a window over 24 hours)."""
        sym = self.symbol(params)
        from_id = _int_param(params, "orderId")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        limit = max(1, min(_int_param(params, "limit") or 500, 1000))
        if start is not None and end is not None:
            if start > end:
                raise BinanceError(binance.START_AFTER_END)
            if end - start > 86_400_000:
                raise BinanceError(
                    binance.error(-1127, "More than 24 hours between startTime and endTime.")
                )
        rows = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.order_id)
            if o.symbol == sym
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time_ms >= start)
            and (end is None or o.time_ms <= end)
        ]
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
        return json_response([o.rest() for o in rows])

    async def cancel_all(self, request: web.Request, params: dict[str, str]) -> web.Response:
        """Every open order of the symbol; an OCO answers as its list with both legs."""
        sym = self.symbol(params)
        out: list[dict[str, Any]] = []
        for o in [o for o in self.orders.values() if o.is_open and o.symbol == sym]:
            if not o.is_open:  # canceled meanwhile with its list
                continue
            lst = self.lists.get(o.list_id)
            if lst is not None and lst.is_open:
                self.cancel_list(lst)
                out.append(lst.ack("RESULT", canceled=True))
                continue
            self.cancel(o)
            out.append(o.cancel_ack())
        if not out:
            raise BinanceError(UNKNOWN_ORDER_CANCEL)
        return json_response(out)

    async def query_list(self, request: web.Request, params: dict[str, str]) -> web.Response:
        lst = self._find_list(params, None)
        if lst is None:
            raise BinanceError(NO_SUCH_LIST)
        return json_response(lst.rest())

    async def cancel_order_list(self, request: web.Request, params: dict[str, str]) -> web.Response:
        lst = self._find_list(params, self.symbol(params))
        if lst is None or not lst.is_open:
            raise BinanceError(UNKNOWN_ORDER_CANCEL)
        self.cancel_list(lst)
        return json_response(lst.ack("RESULT", canceled=True))

    async def open_lists(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response([lst.rest() for lst in self.lists.values() if lst.is_open])

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
        sym = self.symbol(params)
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
        # Binance: from ``fromId`` on, or else the most recent ones
        return json_response(rows[:limit] if from_id is not None else rows[-limit:])


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BinanceError(binance.illegal_chars(name, "^[0-9]{1,20}$"))
    return int(raw)


def _without_signature(total: str) -> str:
    """The signed text: every parameter but ``signature`` (which clients append last)."""
    for sep in ("&signature=", "signature="):
        i = total.find(sep)
        if i >= 0:
            end = total.find("&", i + len(sep))
            rest = total[end:] if end >= 0 else ""
            return total[:i] + (rest if sep.startswith("&") else rest.lstrip("&"))
    return total
