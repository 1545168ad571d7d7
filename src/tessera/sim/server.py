"""`ExchangeSimulator`: a local Binance spot exchange on one port (REST and websockets).

REST (``/api/v3/...``): ping, time, exchangeInfo, klines, depth, trades, historicalTrades,
aggTrades — Binance's field names, string decimals, ``X-MBX-USED-WEIGHT-1M`` headers, and its
error bodies (``{"code": -1121, "msg": "Invalid symbol."}``).

Websockets: ``/ws/<stream>`` and ``/ws`` (raw payloads), ``/stream?streams=a/b`` (combined
envelope ``{"stream", "data"}``), ``/stream/ws/...`` (raw; the path ccxt.pro uses when pointed here,
since it recognises spot endpoints by ``/stream`` in the URL); ``SUBSCRIBE``, ``UNSUBSCRIBE`` and
``LIST_SUBSCRIPTIONS`` with ``id``; websocket ping/pong.

The replay walks the recorded frames once, at ``speed`` x real time (None = as fast as the
slowest subscriber takes them), broadcasting each frame to the connections subscribed to its
stream; REST answers from the state the replay has reached. It starts when the first client
subscribes (so that a test sees every frame) or at ``start_replay()``.

`FaultPlan` breaks things on purpose for tests: drop a connection after N messages, stall,
send a malformed frame, skip sequence ids, answer REST with 429 + Retry-After or 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tessera.logging import get_logger
from tessera.sim.market import MarketState, derive_streams
from tessera.sim.recording import BUNDLED_RECORDINGS, REPO_ROOT, Recording, load_recording

log = get_logger(__name__)

EXCHANGE_INFO_FILE = REPO_ROOT / "samples" / "cryptofeed" / "BINANCE.0.gz"
JSON = "application/json;charset=UTF-8"


@dataclass
class FaultPlan:
    """Faults to inject; change fields at any time (tests set them between steps)."""

    drop_after: int | None = None  # close each new WS connection after N data messages
    stall_after: int | None = None  # stop sending (socket open) after N messages ...
    stall_s: float = 0.0  # ... for this long
    malformed_at: int | None = None  # send one malformed frame after N messages
    skip_depth_at: int | None = None  # drop the N-th depth diff of the replay (a U/u gap)
    skip_trades_at: int | None = None  # drop trades number N..N+k-1 from the WS (ids jump) ...
    skip_trades_count: int = 3  # ... they stay available over REST
    rest_429: int = 0  # answer the next K REST requests with 429 + Retry-After
    rest_5xx: int = 0  # answer the next K REST requests with 503
    retry_after_s: int = 1


@dataclass
class SimStats:
    messages: Counter[str] = field(default_factory=Counter)  # per stream kind
    bytes: int = 0
    connections: int = 0
    rest_requests: Counter[str] = field(default_factory=Counter)
    replay_done: bool = False


def load_exchange_info(symbols: Iterable[str]) -> dict[str, Any]:
    """The real Binance spot exchangeInfo (2021-10-12) reduced to ``symbols``."""
    with gzip.open(EXCHANGE_INFO_FILE, "rt", encoding="utf-8") as fh:
        line = fh.readline()
    info: dict[str, Any] = orjson.loads(line.split(": ", 1)[1])
    wanted = set(symbols)
    info["symbols"] = [s for s in info["symbols"] if s["symbol"] in wanted]
    return info


class _Conn:
    def __init__(self, ws: web.WebSocketResponse, combined: bool, faults: FaultPlan) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: set[str] = set()
        self.queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=4096)
        self.sent = 0
        self.drop_after = faults.drop_after
        self.malformed_at = faults.malformed_at
        self.stall_after = faults.stall_after


class ExchangeSimulator:
    def __init__(
        self,
        recording: Recording | None = None,
        speed: float | None = 1.0,
        faults: FaultPlan | None = None,
        autostart: bool = True,
        loop_replay: bool = False,
    ) -> None:
        self.recording = recording or load_recording(BUNDLED_RECORDINGS)
        if not any(f.kind == "aggTrade" for f in self.recording.frames):
            derive_streams(self.recording)
        self.speed = speed
        self.faults = faults or FaultPlan()
        self.autostart = autostart
        self.loop_replay = loop_replay
        self.stats = SimStats()
        self.state = MarketState(self.recording)
        self.exchange_info = load_exchange_info(self.recording.symbols)
        self._conns: set[_Conn] = set()
        self._by_stream: dict[str, set[_Conn]] = defaultdict(set)
        self._runner: web.AppRunner | None = None
        self._site_port = 0
        self._replay_task: asyncio.Task[None] | None = None
        self._weight: dict[int, int] = defaultdict(int)
        self.replay_position = 0
        self.replay_finished = asyncio.Event()
        # Pre-built envelopes: combined-stream clients get the recorded data text, untouched.
        self._envelopes = [
            f'{{"stream":"{f.stream}","data":{f.data}}}' for f in self.recording.frames
        ]

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._site_port

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/depth", self._depth)
        r.add_get("/api/v3/trades", self._trades)
        r.add_get("/api/v3/historicalTrades", self._historical_trades)
        r.add_get("/api/v3/aggTrades", self._agg_trades)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/ws", self._ws)
        r.add_get("/ws/{tail:.*}", self._ws)
        r.add_get("/stream", self._ws)
        r.add_get("/stream/{tail:.*}", self._ws)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> ExchangeSimulator:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self._site_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info(
            "exchange simulator listening",
            rest=self.rest_url,
            ws=self.ws_url,
            frames=len(self.recording.frames),
            speed=self.speed or "max",
        )
        return self

    async def stop(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        for c in list(self._conns):
            await c.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> ExchangeSimulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_replay(self) -> None:
        if self._replay_task is None:
            self._replay_task = asyncio.get_running_loop().create_task(self._replay())

    async def wait_replayed(self) -> None:
        await self.replay_finished.wait()

    # --- replay ---------------------------------------------------------------------------------

    async def _replay(self) -> None:
        frames = self.recording.frames
        while True:
            t0_wall = time.monotonic()
            t0_rec = frames[0].recv_ns if frames else 0
            depth_seen = trades_seen = 0
            for i, f in enumerate(frames):
                self.replay_position = i
                if self.speed:
                    due = t0_wall + (f.recv_ns - t0_rec) / 1e9 / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                fp = self.faults
                if f.kind == "depth":
                    depth_seen += 1
                    if fp.skip_depth_at is not None and depth_seen == fp.skip_depth_at:
                        continue  # the diff happened (book has it) but nobody hears about it
                if f.kind == "trade":
                    trades_seen += 1
                    s = fp.skip_trades_at
                    if s is not None and s <= trades_seen < s + fp.skip_trades_count:
                        continue
                subs = self._by_stream.get(f.stream)
                if subs:
                    for c in list(subs):
                        await c.queue.put((f.stream, self._envelopes[i] if c.combined else f.data))
                elif self.speed is None:
                    await asyncio.sleep(0)  # stay responsive when nobody listens
            self.replay_position = len(frames) - 1
            self.stats.replay_done = True
            self.replay_finished.set()
            if not self.loop_replay:
                return
            self.state = MarketState(self.recording)

    async def _sender(self, c: _Conn) -> None:
        ws = c.ws
        while True:
            item = await c.queue.get()
            if item is None:
                return
            stream, text = item
            if c.malformed_at is not None and c.sent == c.malformed_at:
                c.malformed_at = None
                await ws.send_str('{"stream":"' + stream + '","data":{"e":"trade","E":')
                await ws.send_str('{"e":"trade","E":"not-a-number","s":42}')
            if c.stall_after is not None and c.sent == c.stall_after:
                c.stall_after = None
                await asyncio.sleep(self.faults.stall_s)
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            c.sent += 1
            self.stats.messages[stream.split("@", 1)[1]] += 1
            self.stats.bytes += len(text)
            if c.drop_after is not None and c.sent >= c.drop_after:
                await ws.close()
                return

    # --- websocket ------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        path = request.path
        combined = path == "/stream" or (path.startswith("/stream/") and "/ws" not in path)
        c = _Conn(ws, combined, self.faults)
        self._conns.add(c)
        self.stats.connections += 1
        initial: list[str] = []
        if path == "/stream" and "streams" in request.query:
            initial = [s for s in request.query["streams"].split("/") if s]
        else:
            tail = request.match_info.get("tail", "")
            initial = [s for s in tail.split("/") if "@" in s]
        self._subscribe(c, initial)
        sender = asyncio.get_running_loop().create_task(self._sender(c))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._control(c, msg.data)
        finally:
            self._conns.discard(c)
            for subs in self._by_stream.values():
                subs.discard(c)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    def _subscribe(self, c: _Conn, streams: list[str]) -> None:
        for s in streams:
            sym, at, rest = s.partition("@")  # symbols are lower case; stream kinds keep case
            name = sym.lower() + at + rest
            c.streams.add(name)
            self._by_stream[name].add(c)
        if streams and self.autostart:
            self.start_replay()

    async def _control(self, c: _Conn, text: str) -> None:
        try:
            req = orjson.loads(text)
            method, rid = req.get("method"), req.get("id")
        except (orjson.JSONDecodeError, AttributeError):
            await c.ws.send_str('{"error":{"code":3,"msg":"Invalid JSON"}}')
            return
        params = req.get("params") or []
        if method == "SUBSCRIBE":
            self._subscribe(c, [p for p in params if isinstance(p, str)])
            await c.ws.send_str(orjson.dumps({"result": None, "id": rid}).decode())
        elif method == "UNSUBSCRIBE":
            for p in params:
                c.streams.discard(p)
                self._by_stream[p].discard(c)
            await c.ws.send_str(orjson.dumps({"result": None, "id": rid}).decode())
        elif method == "LIST_SUBSCRIPTIONS":
            await c.ws.send_str(orjson.dumps({"result": sorted(c.streams), "id": rid}).decode())
        else:
            await c.ws.send_str(
                orjson.dumps(
                    {"error": {"code": 1, "msg": f"Unknown method {method!r}"}, "id": rid}
                ).decode()
            )

    # --- REST -----------------------------------------------------------------------------------

    def _json(
        self, body: object, weight: int, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        minute = int(time.time() // 60)
        self._weight[minute] += weight
        hdrs = {"X-MBX-USED-WEIGHT-1M": str(self._weight[minute]), **(headers or {})}
        return web.Response(
            body=orjson.dumps(body),
            status=status,
            content_type="application/json",
            charset="UTF-8",
            headers=hdrs,
        )

    def _fault(self, request: web.Request) -> web.Response | None:
        self.stats.rest_requests[request.path] += 1
        self.state.catch_up(self.replay_position if self._replay_task is not None else -1)
        fp = self.faults
        if fp.rest_429 > 0:
            fp.rest_429 -= 1
            return self._json(
                {
                    "code": -1003,
                    "msg": "Too much request weight used; current "
                    "limit is 1200 request weight per 1 MINUTE. Please use WebSocket "
                    "Streams for live updates to avoid polling the API.",
                },
                1,
                429,
                {"Retry-After": str(fp.retry_after_s)},
            )
        if fp.rest_5xx > 0:
            fp.rest_5xx -= 1
            return web.Response(status=503, text="Service Unavailable")
        return None

    def _symbol(self, request: web.Request) -> str | web.Response:
        sym = request.query.get("symbol")
        if not sym:
            return self._json(
                {
                    "code": -1102,
                    "msg": "Mandatory parameter 'symbol' was not sent, "
                    "was empty/null, or malformed.",
                },
                1,
                400,
            )
        if sym not in self.state.trades:
            return self._json({"code": -1121, "msg": "Invalid symbol."}, 1, 400)
        return sym

    def _int(
        self, request: web.Request, name: str, default: int | None, lo: int = 1, hi: int = 1000
    ) -> int | web.Response | None:
        raw = request.query.get(name)
        if raw is None:
            return default
        try:
            v = int(raw)
        except ValueError:
            return self._json(
                {
                    "code": -1100,
                    "msg": f"Illegal characters found in parameter "
                    f"'{name}'; legal range is '^[0-9]{{1,20}}$'.",
                },
                1,
                400,
            )
        return max(lo, min(v, hi)) if name == "limit" else v

    async def _ping(self, request: web.Request) -> web.Response:
        return self._fault(request) or self._json({}, 1)

    async def _time(self, request: web.Request) -> web.Response:
        return self._fault(request) or self._json({"serverTime": int(time.time() * 1000)}, 1)

    async def _exchange_info(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        info = dict(self.exchange_info)
        info["serverTime"] = int(time.time() * 1000)
        wanted = request.query.get("symbol")
        if wanted:
            info["symbols"] = [s for s in info["symbols"] if s["symbol"] == wanted]
            if not info["symbols"]:
                return self._json({"code": -1121, "msg": "Invalid symbol."}, 20, 400)
        return self._json(info, 20)

    async def _depth(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        sym = self._symbol(request)
        if isinstance(sym, web.Response):
            return sym
        limit = self._int(request, "limit", 100, 1, 5000)
        if isinstance(limit, web.Response):
            return limit
        assert limit is not None
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        book = self.state.books.get(sym)
        if book is None:
            return self._json({"lastUpdateId": 0, "bids": [], "asks": []}, weight)
        return self._json(book.rest(limit), weight)

    async def _trades(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        sym = self._symbol(request)
        if isinstance(sym, web.Response):
            return sym
        limit = self._int(request, "limit", 500)
        if isinstance(limit, web.Response):
            return limit
        assert limit is not None
        return self._json([t.rest() for t in self.state.recent_trades(sym, limit)], 25)

    async def _historical_trades(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        sym = self._symbol(request)
        if isinstance(sym, web.Response):
            return sym
        limit = self._int(request, "limit", 500)
        from_id = self._int(request, "fromId", None)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(from_id, web.Response):
            return from_id
        assert limit is not None
        trades = (
            self.state.trades_from(sym, from_id, limit)
            if from_id is not None
            else self.state.recent_trades(sym, limit)
        )
        return self._json([t.rest() for t in trades], 25)

    async def _agg_trades(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        sym = self._symbol(request)
        if isinstance(sym, web.Response):
            return sym
        limit = self._int(request, "limit", 500)
        from_id = self._int(request, "fromId", None)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(from_id, web.Response):
            return from_id
        assert limit is not None
        trades = (
            self.state.trades_from(sym, from_id, limit)
            if from_id is not None
            else self.state.recent_trades(sym, limit)
        )
        start, end = request.query.get("startTime"), request.query.get("endTime")
        if start is not None or end is not None:
            lo, hi = int(start or 0), int(end or 2**62)
            trades = [t for t in self.state.trades[sym] if lo <= t.time <= hi][:limit]
        return self._json([t.agg() for t in trades], 2)

    async def _klines(self, request: web.Request) -> web.Response:
        if (f := self._fault(request)) is not None:
            return f
        sym = self._symbol(request)
        if isinstance(sym, web.Response):
            return sym
        if request.query.get("interval") != "1m":
            return self._json({"code": -1120, "msg": "Invalid interval."}, 2, 400)
        limit = self._int(request, "limit", 500)
        if isinstance(limit, web.Response):
            return limit
        assert limit is not None
        start, end = request.query.get("startTime"), request.query.get("endTime")
        ks = self.state.klines_between(
            sym, int(start) if start else None, int(end) if end else None, limit
        )
        return self._json([k.rest() for k in ks], 2)


class SimulatorThread:
    """Run a simulator on its own event loop in a background thread (sync callers, benches)."""

    def __init__(self, sim: ExchangeSimulator, port: int = 0) -> None:
        self.sim = sim
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-sim", daemon=True
        )

    def __enter__(self) -> ExchangeSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(port=self._port), self._loop).result(30)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def recording_paths(paths: Iterable[Path] | None) -> list[Path]:
    chosen = list(paths or []) or BUNDLED_RECORDINGS
    missing = [p for p in chosen if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"recording not found: {', '.join(map(str, missing))}")
    return [Path(p) for p in chosen]
