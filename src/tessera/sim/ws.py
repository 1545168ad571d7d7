"""Binance's websocket market streams: endpoints, subscriptions and the per-connection sender.

Endpoints: ``/ws`` and ``/ws/<stream>[/<stream>...]`` send raw payloads; ``/stream?streams=a/b``
sends the combined envelope ``{"stream": ..., "data": ...}``; ``/stream/ws[/<anything>]`` is
raw too: ccxt.pro recognises a spot endpoint by ``/stream`` in its URL and then opens
``<urls.api.ws.spot>/<n>``, so pointing ``urls['api']['ws']['spot']`` at ``<ws_url>/stream/ws``
gives it exactly what it gets from Binance. Control requests as Binance documents them:
``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``/``GET_PROPERTY``
``combined``; websocket ping/pong (and a server ping every ``ping_interval_s``).

Speed: frames are pre-built websocket frames (`StreamData.wire`); a sender writes everything
released since its last step in one ``writelines`` call and then awaits the transport's drain,
so the per-message cost is a list slice, not a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from tessera.logging import get_logger
from tessera.sim.faults import FaultPlan, malformed_frames
from tessera.sim.market import StreamData, normalize_stream

if TYPE_CHECKING:
    from tessera.sim.server import ExchangeSimulator

log = get_logger(__name__)

BATCH_FRAMES = 4096  # base frames a sender looks at per step
_ids = itertools.count(1)


@dataclass(slots=True)
class _Batch:
    frames: list[bytes]
    owners: list[str] | None  # stream of each frame (several streams), else None
    totals: list[tuple[str, int, int]]  # per stream: messages, bytes


class Connection:
    """One client websocket. Set ``faults`` to give it a plan of its own."""

    def __init__(
        self,
        sim: ExchangeSimulator,
        ws: web.WebSocketResponse,
        request: web.Request,
        writer: AbstractStreamWriter,
        combined: bool,
    ) -> None:
        self.id = next(_ids)
        self.sim = sim
        self.ws = ws
        self.path = request.path_qs
        self.remote = request.remote
        self.transport = request.transport
        self.writer = writer
        self.combined = combined
        self.streams: dict[str, StreamData | None] = {}
        self.faults: FaultPlan | None = None
        self.sent = 0
        self.cursor = sim.head
        self.closed = False
        self._fired: set[tuple[str, int]] = set()

    @property
    def plan(self) -> FaultPlan:
        return self.faults if self.faults is not None else self.sim.faults

    @property
    def has_data(self) -> bool:
        return any(sd is not None for sd in self.streams.values())

    def subscribe(self, names: list[str]) -> None:
        had_data = self.has_data
        for name in names:
            norm = normalize_stream(name)
            if norm is not None and norm not in self.streams:
                self.streams[norm] = self.sim.market.stream(norm)
        if not had_data:
            self.cursor = self.sim.head  # a new subscriber hears what happens from now on
        self.sim.on_subscription(self)

    def unsubscribe(self, names: list[str]) -> None:
        for name in names:
            norm = normalize_stream(name)
            if norm is not None:
                self.streams.pop(norm, None)
        self.sim.on_subscription(self)

    # --- control requests -----------------------------------------------------------------------

    async def reply(self, body: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(body).decode())

    async def control(self, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            await self.reply({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}})
            return
        if not isinstance(req, dict):
            await self.reply({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}})
            return
        rid = req.get("id")
        if set(req) - {"method", "params", "id"}:
            await self.reply({"error": {"code": 2, "msg": "Invalid request: unknown variable"}})
            return
        if not (rid is None or isinstance(rid, str) or (isinstance(rid, int) and rid >= 0)):
            await self.reply(
                {
                    "error": {
                        "code": 2,
                        "msg": "Invalid request: request ID must be an unsigned integer",
                    }
                }
            )
            return
        method, params = req.get("method"), req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(
                isinstance(p, str) and normalize_stream(p) for p in params
            ):
                await self.reply(
                    {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": rid}
                )
                return
            if method == "SUBSCRIBE":
                self.subscribe(params)
            else:
                self.unsubscribe(params)
            await self.reply({"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            await self.reply({"result": list(self.streams), "id": rid})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            await self._property(method, params, rid)
        else:
            await self.reply(
                {"error": {"code": 2, "msg": "Invalid request: unknown variable"}, "id": rid}
            )

    async def _property(self, method: str, params: Any, rid: Any) -> None:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            await self.reply(
                {
                    "error": {"code": 2, "msg": "Invalid request: property name must be a string"},
                    "id": rid,
                }
            )
        elif params[0] != "combined":
            await self.reply({"error": {"code": 0, "msg": "Unknown property"}, "id": rid})
        elif method == "GET_PROPERTY":
            await self.reply({"result": self.combined, "id": rid})
        elif len(params) != 2 or not isinstance(params[1], bool):
            await self.reply(
                {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": rid}
            )
        else:
            self.combined = params[1]
            await self.reply({"result": None, "id": rid})

    # --- sending --------------------------------------------------------------------------------

    async def run_sender(self) -> None:
        sim = self.sim
        try:
            while not self.closed:
                head = sim.head
                data = [sd for sd in self.streams.values() if sd is not None]
                if not data or self.cursor > head:
                    self.cursor = head
                if self.cursor >= head:
                    await sim.wait_head_change(head)
                    continue
                end = min(head, self.cursor + BATCH_FRAMES)
                batch = self._collect(data, self.cursor, end)
                self.cursor = end
                if batch.frames and not await self._send(batch):
                    return
                sim.on_progress()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("websocket sender stopped", conn=self.id, error=str(exc))
        finally:
            self.closed = True
            sim.on_progress()

    def _collect(self, data: list[StreamData], lo: int, hi: int) -> _Batch:
        plan = self.plan
        skips = (
            plan.skips(self.sim.market)
            if plan.skip_depth_at is not None or plan.skip_trades_at is not None
            else None
        )
        parts: list[tuple[StreamData, list[int], list[bytes]]] = []
        for sd in data:
            a = bisect_left(sd.anchors, lo)
            b = bisect_left(sd.anchors, hi, a)
            if a == b:
                continue
            anchors = sd.anchors[a:b]
            wire = sd.wire(self.combined)[a:b]
            gone = skips.get(sd.kind) if skips else None
            if gone and not gone.isdisjoint(anchors):
                keep = [j for j, x in enumerate(anchors) if x not in gone]
                anchors = [anchors[j] for j in keep]
                wire = [wire[j] for j in keep]
            if wire:
                parts.append((sd, anchors, wire))
        totals = [(sd.name, len(w), sum(map(len, w))) for sd, _, w in parts]
        if len(parts) <= 1:
            return _Batch(parts[0][2] if parts else [], None, totals)
        keys: list[int] = []
        frames: list[bytes] = []
        owners: list[str] = []
        for sd, anchors, wire in parts:
            keys.extend(anchors)
            frames.extend(wire)
            owners.extend([sd.name] * len(wire))
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: ties keep stream order
        return _Batch([frames[i] for i in order], [owners[i] for i in order], totals)

    def _account(self, batch: _Batch, lo: int, hi: int) -> None:
        stats = self.sim.stats
        if lo == 0 and hi == len(batch.frames):
            for name, n, size in batch.totals:
                stats.messages[name] += n
                stats.bytes[name] += size
            return
        if batch.owners is None:
            name = batch.totals[0][0]
            stats.messages[name] += hi - lo
            stats.bytes[name] += sum(map(len, batch.frames[lo:hi]))
            return
        for name, frame in zip(batch.owners[lo:hi], batch.frames[lo:hi], strict=True):
            stats.messages[name] += 1
            stats.bytes[name] += len(frame)

    async def _send(self, batch: _Batch) -> bool:
        """Write a batch, firing this connection's faults at their message counts."""
        frames = batch.frames
        n = len(frames)
        pos = 0
        while pos < n:
            plan = self.plan
            room = n - pos
            fire: tuple[str, int] | None = None
            for kind, threshold in (
                ("drop", plan.drop_after),
                ("stall", plan.stall_after),
                ("malformed", plan.malformed_at),
            ):
                if threshold is None or (kind, threshold) in self._fired:
                    continue
                k = max(0, threshold - self.sent)
                if k <= room and (fire is None or k < room):
                    fire, room = (kind, threshold), k
            if room:
                transport = self.transport
                if transport is None or transport.is_closing():
                    return False
                transport.writelines(frames[pos : pos + room] if room < n else frames)
                self.sent += room
                self._account(batch, pos, pos + room)
                pos += room
            if fire is not None and not await self._fire(fire, batch, pos):
                return False
            await self.writer.drain()
        return True

    async def _fire(self, fire: tuple[str, int], batch: _Batch, pos: int) -> bool:
        kind = fire[0]
        plan = self.plan
        stats = self.sim.stats
        self._fired.add(fire)
        if kind == "drop":
            stats.faults["drop"] += 1
            log.info("fault: dropping connection", conn=self.id, after=self.sent)
            if plan.drop_mode == "abort" and self.transport is not None:
                self.transport.abort()
            else:
                await self.ws.close()
            return False
        if kind == "stall":
            stats.faults["stall"] += 1
            await asyncio.sleep(plan.stall_s)
            return True
        owner = batch.owners[pos] if batch.owners and pos < len(batch.owners) else None
        name = owner or batch.totals[0][0]
        sd = self.streams.get(name)
        if sd is None:
            return True
        i = min(bisect_left(sd.anchors, self.cursor), len(sd.payloads) - 1)
        for text in malformed_frames(plan.malformed, sd.name, sd.payloads[i], self.combined):
            await self.ws.send_str(text)
            stats.faults["malformed"] += 1
        return True


def limit_buffers(request: web.Request, size: int | None) -> None:
    """Keep little in flight, so that at max speed the replay (and the REST state with it)
    stays close to what the client has actually read, instead of megabytes ahead in buffers."""
    transport = request.transport
    if size is None or transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    transport.set_write_buffer_limits(high=size)


class BinancePings:
    """The server side of Binance's websocket keepalive: a ping every ``interval_s``, and the
    connection closed once no pong has arrived for ``timeout_s`` (Binance: "within a 1 minute
    period"). Client pings are answered at once.

    Not aiohttp's ``heartbeat``: that closes a connection whose pong is ``heartbeat / 2``
    (10 s) late, and a client reading a backlog behind a busy minute reads the ping — and
    answers it — only after the frames before it. Binance lets it catch up; so does this.

    The socket must be opened with ``autoping=False`` and every message it receives passed to
    `saw` (which answers pings and notes pongs); run `run` beside the receive loop."""

    def __init__(
        self, ws: web.WebSocketResponse, interval_s: float | None, timeout_s: float
    ) -> None:
        self.ws = ws
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.last_pong = asyncio.get_running_loop().time()
        self.timed_out = False

    async def saw(self, msg: Any) -> None:
        """Answers a ping (not on a socket already closing: the client is gone), notes a pong;
        anything else is not ours."""
        if msg.type is WSMsgType.PING:
            with contextlib.suppress(ConnectionError):
                await self.ws.pong(msg.data)
        elif msg.type is WSMsgType.PONG:
            self.last_pong = asyncio.get_running_loop().time()

    async def run(self) -> None:
        if not self.interval_s:
            return
        loop = asyncio.get_running_loop()
        while not self.ws.closed:
            await asyncio.sleep(self.interval_s)
            if loop.time() - self.last_pong > max(self.timeout_s, self.interval_s):
                self.timed_out = True
                log.info("websocket closed: no pong in time", after_s=self.timeout_s)
                with contextlib.suppress(Exception):
                    await self.ws.close()
                return
            with contextlib.suppress(Exception):
                await self.ws.ping()


def initial_streams(request: web.Request) -> tuple[bool, list[str]]:
    """(combined?, streams named in the URL) for a websocket request."""
    path = request.path
    if path in ("/stream", "/public/stream", "/market/stream"):
        return True, [s for s in request.query.get("streams", "").split("/") if s]
    tail = request.match_info.get("tail", "")
    return False, [s for s in tail.split("/") if "@" in s]


async def handle(sim: ExchangeSimulator, request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(
        autoping=False,  # `BinancePings`: Binance's minute for a pong, not aiohttp's 10 s
        compress=False,  # frames are pre-built; Binance does not compress either
        max_msg_size=1 << 16,
    )
    writer = await ws.prepare(request)
    limit_buffers(request, sim.send_buffer_bytes)
    combined, names = initial_streams(request)
    conn = Connection(sim, ws, request, writer, combined)
    sim.register(conn)
    if names:
        conn.subscribe(names)
    loop = asyncio.get_running_loop()
    sender = loop.create_task(conn.run_sender())
    pings = BinancePings(ws, sim.ping_interval_s, sim.pong_timeout_s)
    pinger = loop.create_task(pings.run())
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await conn.control(msg.data)
            else:
                await pings.saw(msg)
    finally:
        conn.closed = True
        sim.unregister(conn)
        sim.stats.pong_timeouts += pings.timed_out
        for task in (sender, pinger):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return ws
