"""The simulator's REST API: Binance spot's public market-data endpoints under ``/api/v3``.

Every ``/api/`` response goes through one middleware that behaves like Binance's gateway: it
counts request weight per client IP per minute (``X-MBX-USED-WEIGHT-1M`` on every answer, 429
with ``Retry-After`` and code -1003 past the limit of the served exchangeInfo), injects the faults
of the plan (429s, 5xx), turns `BinanceError` into Binance's ``{"code", "msg"}`` bodies and sends
``Content-Type: application/json;charset=UTF-8``. New endpoints (orders, later) register with
:meth:`RestApi.add_route` and get all of that.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tessera.sim import payloads as binance
from tessera.sim import tickers
from tessera.sim.payloads import INTERVAL_MS, Kline, bucket_close, bucket_open, finer

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_SYMBOL = re.compile(r"^[A-Z0-9-_.]{1,20}$")
_SYMBOLS = re.compile(r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$')
HOUR_MS = 3_600_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Weight = int | Callable[[web.Request], int]


def server_time_ms(sim: ExchangeSimulator) -> int:
    """The exchange's wall clock (ms): the host's, moved by the ``clock_skew_ms`` fault.

    Everything the server stamps with "now" (serverTime, the recvWindow check, order and fill
    times, user-data events) reads this, so a skew looks the same from every endpoint."""
    return int(time.time() * 1000) + sim.faults.clock_skew_ms


def with_forming_bars(
    bars: list[Kline],
    interval: str,
    now_ms: int,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[Kline]:
    """``bars`` continued up to the bar that contains ``now_ms`` (the replay clock), as Binance
    answers: intervals without trades are empty bars at the previous close, and the newest row
    is the bar still forming, whose close time lies in the future. Bars are built from trades,
    so without this the newest row would be the bar of the last trade, which may be long over.
    A bar appears once the clock is past its first millisecond: a frame stamped exactly at a
    boundary is the final event of the bar before it (how kline tables are replayed).
    """
    if not bars:
        return bars
    out = list(bars)
    last = out[-1]
    upto = now_ms if end is None else min(now_ms, end)
    nxt = bucket_close(last.open_time, interval) + 1
    while nxt < upto and bucket_open(nxt, interval) == nxt:
        if start is not None and len(out) >= limit:
            break  # a page from ``start`` is full; the client asks for the next one
        out.append(Kline.empty(nxt, interval, out[-1].close))
        nxt = bucket_close(nxt, interval) + 1
    return out if start is not None else out[-limit:]


class BinanceError(Exception):
    """Raised by handlers; the middleware answers with Binance's error body."""

    def __init__(self, body: dict[str, object], status: int = 400) -> None:
        super().__init__(body.get("msg"))
        self.body = body
        self.status = status


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers={"Content-Type": JSON_CONTENT_TYPE}
    )


def depth_weight(request: web.Request) -> int:
    """Binance: limit 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250."""
    raw = request.query.get("limit", "100")
    limit = int(raw) if _DIGITS.match(raw) else 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _symbol_count(request: web.Request) -> int | None:
    """How many symbols a ticker request names (None: every symbol)."""
    if "symbol" in request.query:
        return 1
    many = request.query.get("symbols")
    if many is None:
        return None
    return many.count(",") + 1 if _SYMBOLS.match(many) and many != "[]" else 1


def ticker_24hr_weight(request: web.Request) -> int:
    """Binance: 1-20 symbols -> 2, 21-100 -> 40, more or none -> 80."""
    n = _symbol_count(request)
    return 80 if n is None or n > 100 else 40 if n > 20 else 2


def ticker_weight(request: web.Request) -> int:
    """``ticker/price`` and ``ticker/bookTicker``: one symbol 2, several or all 4."""
    return 2 if "symbol" in request.query else 4


def exchange_info_limit(info: dict[str, Any]) -> int | None:
    for rl in info.get("rateLimits", []):
        if (rl.get("rateLimitType"), rl.get("interval"), rl.get("intervalNum")) == (
            "REQUEST_WEIGHT",
            "MINUTE",
            1,
        ):
            return int(rl["limit"])
    return None


class RestApi:
    """Routes, weights and Binance's parameter rules; answers from ``sim.state``."""

    BAN_S = 120.0  # Binance's first ban lasts 2 minutes (and grows for repeat offenders)

    def __init__(self, sim: ExchangeSimulator, weight_limit: int | None) -> None:
        self.sim = sim
        self.weight_limit = weight_limit
        self.weights: dict[str, Weight] = {}
        self._routes: list[tuple[str, str, Handler]] = []
        self._used: dict[tuple[str, int], int] = {}
        self._told_until: dict[str, float] = {}  # ip -> end of its last Retry-After
        self._banned_until: dict[str, float] = {}  # ip -> end of its 418 ban
        for path, handler, weight in (
            ("/api/v3/ping", self.ping, 1),
            ("/api/v3/time", self.server_time, 1),
            ("/api/v3/exchangeInfo", self.exchange_info, 20),
            ("/api/v3/depth", self.depth, depth_weight),
            ("/api/v3/trades", self.trades, 25),
            ("/api/v3/historicalTrades", self.historical_trades, 25),
            ("/api/v3/aggTrades", self.agg_trades, 4),
            ("/api/v3/klines", self.klines, 2),
            ("/api/v3/uiKlines", self.ui_klines, 2),
            ("/api/v3/ticker/24hr", self.ticker_24hr, ticker_24hr_weight),
            ("/api/v3/ticker/price", self.ticker_price, ticker_weight),
            ("/api/v3/ticker/bookTicker", self.book_ticker, ticker_weight),
            ("/api/v3/avgPrice", self.avg_price, 2),
        ):
            self.add_route("GET", path, handler, weight)

    def add_route(self, method: str, path: str, handler: Handler, weight: Weight) -> None:
        """Register an endpoint (before the simulator starts) with its Binance request weight."""
        self._routes.append((method, path, handler))
        self.weights[path] = weight

    def register(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)

    # --- the gateway ----------------------------------------------------------------------------

    def used_weight(self, ip: str) -> int:
        return self._used.get((ip, int(time.time() // 60)), 0)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(("/api/", "/fapi/")):
            return await handler(request)
        sim = self.sim
        resp: web.StreamResponse
        sim.stats.rest_requests[request.path] += 1
        now = time.time()
        minute = int(now // 60)
        ip = request.remote or "?"
        plan = sim.faults
        if plan.rest_429 > 0:
            plan.rest_429 -= 1
            sim.stats.faults["rest_429"] += 1
            resp = json_response(binance.too_much_weight(self.weight_limit or 1200), 429)
            resp.headers["Retry-After"] = str(plan.retry_after_s)
            resp.headers[WEIGHT_HEADER] = str(self._used.get((ip, minute), 0))
            return resp
        if plan.rest_5xx > 0:
            plan.rest_5xx -= 1
            sim.stats.faults["rest_5xx"] += 1
            return json_response(binance.INTERNAL_ERROR, plan.rest_5xx_status)
        w = self.weights.get(request.path, 1)
        weight = w(request) if callable(w) else w
        used = self._used[(ip, minute)] = self._used.get((ip, minute), 0) + weight
        if len(self._used) > 1024:  # forget past minutes
            self._used = {k: v for k, v in self._used.items() if k[1] == minute}
        over = self.weight_limit is not None and used > self.weight_limit
        if over and self._told_until.get(ip, 0.0) > now:  # inside its Retry-After window
            self._banned_until[ip] = max(self._banned_until.get(ip, 0.0), now + self.BAN_S)
        banned = self._banned_until.get(ip, 0.0)
        if banned > now:
            # kept calling after being told to back off: Binance bans the IP (418)
            until_ms = int(banned * 1000)
            resp = json_response(
                binance.error(-1003, f"Way too much request weight used; IP banned until "
                              f"{until_ms}. Please use WebSocket Streams for live updates to "
                              "avoid bans."),
                418,
            )  # fmt: skip
            resp.headers["Retry-After"] = str(max(1, math.ceil(banned - now)))
        elif over:
            retry = max(1, math.ceil((minute + 1) * 60 - now))
            self._told_until[ip] = now + retry
            resp = json_response(binance.too_much_weight(self.weight_limit or 0), 429)
            resp.headers["Retry-After"] = str(retry)
        else:
            sim.state.advance_to(sim.head)
            try:
                resp = await handler(request)
            except BinanceError as exc:
                resp = json_response(exc.body, exc.status)
        resp.headers[WEIGHT_HEADER] = str(used)
        return resp

    # --- parameters -----------------------------------------------------------------------------

    def symbol(self, request: web.Request) -> str:
        sym = request.query.get("symbol", "")
        if not sym:
            raise BinanceError(binance.missing_param("symbol"))
        if not _SYMBOL.match(sym):
            raise BinanceError(binance.illegal_chars("symbol", "^[A-Z0-9-_.]{1,20}$"))
        if sym not in self.sim.market.symbols:
            raise BinanceError(binance.INVALID_SYMBOL)
        return sym

    def symbols_param(self, request: web.Request) -> tuple[list[str], bool]:
        """``symbol`` or ``symbols=["A","B"]`` or neither (every symbol); whether one was
        asked for alone (the answer is then an object, not a list)."""
        one, many = request.query.get("symbol"), request.query.get("symbols")
        if one is not None and many is not None:
            raise BinanceError(binance.error(-1128, "Combination of optional parameters invalid."))
        if one is not None:
            return [self.symbol(request)], True
        if many is None:
            return list(self.sim.market.symbols), False
        if not _SYMBOLS.match(many):
            raise BinanceError(binance.illegal_chars("symbols", _SYMBOLS.pattern))
        wanted = list(orjson.loads(many))
        if not wanted:  # "[]" passes the pattern; Binance refuses an empty list
            raise BinanceError(binance.illegal_chars("symbols", _SYMBOLS.pattern))
        if any(w not in self.sim.market.symbols for w in wanted):
            raise BinanceError(binance.INVALID_SYMBOL)
        return wanted, False

    @staticmethod
    def integer(request: web.Request, name: str) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        if not _DIGITS.match(raw):
            raise BinanceError(binance.illegal_chars(name, "^[0-9]{1,20}$"))
        return int(raw)

    def limit(self, request: web.Request, default: int, maximum: int) -> int:
        value = self.integer(request, "limit")
        # Binance truncates an oversized limit to the maximum rather than refusing it.
        return default if value is None else max(1, min(value, maximum))

    # --- endpoints ------------------------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": server_time_ms(self.sim)})

    async def exchange_info(self, request: web.Request) -> web.Response:
        info = dict(self.sim.market.exchange_info)
        info["serverTime"] = server_time_ms(self.sim)
        one, many = request.query.get("symbol"), request.query.get("symbols")
        if one is not None and many is not None:
            raise BinanceError(binance.error(-1128, "Combination of optional parameters invalid."))
        wanted: list[str] | None = None
        if one is not None:
            if not _SYMBOL.match(one):
                raise BinanceError(binance.illegal_chars("symbol", "^[A-Z0-9-_.]{1,20}$"))
            wanted = [one]
        elif many is not None:
            if not _SYMBOLS.match(many):
                raise BinanceError(binance.illegal_chars("symbols", _SYMBOLS.pattern))
            wanted = list(orjson.loads(many))
        if wanted is not None:
            by_name = {s["symbol"]: s for s in info["symbols"]}
            if any(w not in by_name for w in wanted):
                raise BinanceError(binance.INVALID_SYMBOL)
            info["symbols"] = [by_name[w] for w in wanted]
        return json_response(info)

    async def depth(self, request: web.Request) -> web.Response:
        sym = self.symbol(request)
        limit = self.limit(request, 100, 5000)
        book = self.sim.state.books.get(sym)
        if book is None:  # data without depth (trades/klines only): an empty book
            return json_response({"lastUpdateId": 0, "bids": [], "asks": []})
        return json_response(book.rest(limit))

    async def trades(self, request: web.Request) -> web.Response:
        sym = self.symbol(request)
        limit = self.limit(request, 500, 1000)
        return json_response([t.rest() for t in self.sim.state.recent_trades(sym, limit)])

    async def historical_trades(self, request: web.Request) -> web.Response:
        sym = self.symbol(request)
        limit = self.limit(request, 500, 1000)
        from_id = self.integer(request, "fromId")
        state = self.sim.state
        trades = (
            state.trades_from(sym, from_id, limit)
            if from_id is not None
            else state.recent_trades(sym, limit)
        )
        return json_response([t.rest() for t in trades])

    async def agg_trades(self, request: web.Request) -> web.Response:
        sym = self.symbol(request)
        limit = self.limit(request, 500, 1000)
        from_id = self.integer(request, "fromId")
        start, end = self.integer(request, "startTime"), self.integer(request, "endTime")
        if start is not None and end is not None:
            if start > end:
                raise BinanceError(binance.START_AFTER_END)
            if end - start > HOUR_MS:
                raise BinanceError(binance.AGG_WINDOW_TOO_WIDE)
        aggs = self.sim.state.aggregates(sym, limit, from_id, start, end)
        return json_response([a.rest() for a in aggs])

    def _per_symbol(
        self, request: web.Request, render: Callable[[str], dict[str, object]]
    ) -> web.Response:
        symbols, alone = self.symbols_param(request)
        rows = [render(s) for s in symbols]
        return json_response(rows[0] if alone else rows)

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        kind = request.query.get("type", "FULL")
        if kind not in ("FULL", "MINI"):
            raise BinanceError(binance.error(-1130, "Data sent for parameter 'type' is not valid."))
        state = self.sim.state
        return self._per_symbol(request, lambda s: tickers.ticker_24hr(state, s, kind == "FULL"))

    async def ticker_price(self, request: web.Request) -> web.Response:
        state = self.sim.state
        return self._per_symbol(request, lambda s: tickers.price_ticker(state, s))

    async def book_ticker(self, request: web.Request) -> web.Response:
        state = self.sim.state
        return self._per_symbol(request, lambda s: tickers.book_ticker(state, s))

    async def avg_price(self, request: web.Request) -> web.Response:
        return json_response(tickers.avg_price(self.sim.state, self.symbol(request)))

    async def ui_klines(self, request: web.Request) -> web.Response:
        """``uiKlines``: Binance's klines "for presentation"; the same bars here. Only UTC
        (``timeZone`` 0) is served: a shifted day boundary is not implemented, so refused."""
        tz = request.query.get("timeZone", "0")
        if tz not in ("0", "+0", "-0", "0:00", "+00:00", "-00:00", "00:00"):
            raise BinanceError(
                binance.error(-1130, "Data sent for parameter 'timeZone' is not valid.")
            )
        return await self.klines(request)

    async def klines(self, request: web.Request) -> web.Response:
        sym = self.symbol(request)
        interval = request.query.get("interval", "")
        if not interval:
            raise BinanceError(binance.missing_param("interval"))
        if interval not in INTERVAL_MS:
            raise BinanceError(binance.INVALID_INTERVAL)
        given = self.sim.market.given_bars(sym)
        if given is not None and finer(interval, given.interval):
            raise BinanceError(
                binance.error(
                    -1120,
                    f"Invalid interval. The simulator replays {given.interval} bars of {sym}: "
                    f"it has no {interval} bars.",
                )
            )
        limit = self.limit(request, 500, 1000)
        start, end = self.integer(request, "startTime"), self.integer(request, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(binance.START_AFTER_END)
        state = self.sim.state
        bars = with_forming_bars(
            state.klines(sym, interval, start, end, limit),
            interval,
            state.last_event_ms,  # the replay's clock: the exchange's "now" of this market
            start,
            end,
            limit,
        )
        return json_response([b.rest() for b in bars])
