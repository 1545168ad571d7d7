"""`ExchangeSimulator`: a local Binance spot exchange on one port (REST and websockets).

One ``aiohttp.web.Application`` serves the REST API (`tessera.sim.rest`) and the websocket
streams (`tessera.sim.ws`). The replay releases the market's base frames in order, paced by their
exchange event times scaled by ``speed`` (``None`` = as fast as the slowest subscribed socket takes
them, with backpressure); websocket senders write what has been released, REST answers from the
state at the release position. The replay starts with the first subscription (so a test sees every
frame) or at :meth:`ExchangeSimulator.start_replay`.

    async with ExchangeSimulator(SimMarket.from_recording(paths), speed=None) as sim:
        ...  # sim.rest_url, sim.ws_url, sim.faults, sim.stats, sim.state

`SimulatorThread` runs one on its own event loop in a background thread for sync callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web

from tessera import __version__
from tessera.logging import get_logger
from tessera.sim.faults import FaultPlan
from tessera.sim.identity import SIMULATOR_HEADER
from tessera.sim.looping import LoopOffsets, loop_offsets, market_for_pass
from tessera.sim.market import SimMarket
from tessera.sim.recording import BUNDLED_RECORDINGS, Recording, recording_paths
from tessera.sim.rest import RestApi, exchange_info_limit
from tessera.sim.state import MarketState
from tessera.sim.ws import Connection, handle

__all__ = [
    "SIMULATOR_HEADER",
    "ExchangeSimulator",
    "FaultPlan",
    "SimStats",
    "SimulatorThread",
    "recording_paths",
]

log = get_logger(__name__)
T = TypeVar("T")

MAX_WINDOW = 1024  # at max speed, how far the release may run ahead of the slowest subscriber
IDLE_STEP = 16  # at max speed with no subscriber, frames released per event-loop turn


@dataclass
class SimStats:
    """What the simulator sent. ``bytes`` counts websocket frames on the wire (with headers)."""

    messages: Counter[str] = field(default_factory=Counter)  # per stream, e.g. "btcusdt@trade"
    bytes: Counter[str] = field(default_factory=Counter)
    connections: int = 0  # accepted so far
    pong_timeouts: int = 0  # sockets closed for want of a pong (market and user data)
    rest_requests: Counter[str] = field(default_factory=Counter)  # per path
    faults: Counter[str] = field(default_factory=Counter)  # drop, stall, malformed, rest_429, ...
    replays: int = 0  # completed passes over the data
    replay_done: bool = False

    @property
    def total_messages(self) -> int:
        return sum(self.messages.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


class ExchangeSimulator:
    def __init__(
        self,
        market: SimMarket | Recording | None = None,
        speed: float | None = 1.0,
        faults: FaultPlan | None = None,
        *,
        autostart: bool = True,
        loop_replay: bool = False,
        weight_limit: int | Literal["exchangeInfo"] | None = "exchangeInfo",
        ping_interval_s: float | None = 20.0,
        pong_timeout_s: float = 60.0,
        send_buffer_bytes: int | None = 128 * 1024,
    ) -> None:
        """``market``: what to serve (a `Recording` is wrapped; None = the bundled recordings).
        ``speed``: replay speed factor, None = max. ``weight_limit``: REST weight per minute per
        IP before 429 (default: the served exchangeInfo's REQUEST_WEIGHT limit; None = none).
        ``ping_interval_s``: server websocket pings, as Binance sends every 20 s;
        ``pong_timeout_s``: a socket without a pong for this long is closed (Binance: a minute).
        """
        if market is None:
            market = SimMarket.from_recording(BUNDLED_RECORDINGS)
        elif isinstance(market, Recording):
            market = SimMarket.from_recording(market)
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (None = max)")
        self.market = market  # the current pass's (see `base_market`)
        # A looped replay's pass k serves `base_market` moved forward (`tessera.sim.looping`):
        # time and ids never go back across a loop; pass 0 is the market itself.
        self.base_market = market
        self.pass_index = 0
        self._loop_offsets: LoopOffsets | None = None
        # Called with the new pass's market when a looped replay starts over, before the state
        # and the websocket subscriptions move to it (USDⓈ-M rebuilds its marks there).
        self.pass_hooks: list[Callable[[SimMarket], None]] = []
        self.speed = speed
        self.faults = faults or FaultPlan()
        self.autostart = autostart
        self.loop_replay = loop_replay
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.send_buffer_bytes = send_buffer_bytes
        self.stats = SimStats()
        self.state = MarketState(market)
        self.rest = RestApi(
            self,
            exchange_info_limit(market.exchange_info)
            if isinstance(weight_limit, str)
            else weight_limit,
        )
        self.head = 0  # base frames [0, head) are released
        self.connections: list[Connection] = []
        # Called with the new release position before frames [head, n) become visible (the
        # trading engine's bar mode matches the bars that close in between); a hook returns
        # True when it published something the replay should let go out first: it then
        # awaits ``release_flushes`` before releasing. ``release_stops(head, n)`` name the
        # position a replay must stop at on its way to ``n`` (after a bar that closes with
        # orders working), so that a bar's fills never go out before an earlier bar's frame.
        # (The paced and max-speed replays only; `release` by hand runs the hooks alone.)
        self.release_hooks: list[Callable[[int], bool]] = []
        self.release_flushes: list[Callable[[], Awaitable[None]]] = []
        self.release_stops: list[Callable[[int, int], int]] = []
        self._extra_routes: list[Callable[[web.Application], None]] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self._replay_task: asyncio.Task[None] | None = None
        self._head_event = asyncio.Event()
        self._running = asyncio.Event()  # cleared by `pause`
        self._running.set()
        self._pause_at: int | None = None  # `pause_at`: the paced replay pauses there
        self._progress_event = asyncio.Event()
        self._conn_event = asyncio.Event()
        self.replay_finished = asyncio.Event()

    # --- compatibility names ----------------------------------------------------------------------

    @property
    def recording(self) -> SimMarket:
        """The market being replayed (the name earlier callers use)."""
        return self.market

    @property
    def replay_position(self) -> int:
        """Index of the last released base frame (-1 before the first)."""
        return self.head - 1

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self._port}"

    def add_routes(self, register: Callable[[web.Application], None]) -> None:
        """Add endpoints (call before `start`); REST ones should use `self.rest.add_route`."""
        self._extra_routes.append(register)

    def build_app(self) -> web.Application:
        app = web.Application()

        async def identify(_: web.Request, response: web.StreamResponse) -> None:
            response.headers[SIMULATOR_HEADER] = __version__

        app.on_response_prepare.append(identify)

        async def ws_handler(request: web.Request) -> web.StreamResponse:
            return await handle(self, request)

        self.rest.register(app)
        # extra routes first: they may claim paths under /ws (user-data listen keys)
        for register in self._extra_routes:
            register(app)
        # "/public" and "/market": Binance USDⓈ-M's split of its market streams (ccxt.pro's
        # binanceusdm opens <ws>/public/ws/<depth|bookTicker|trade> and <ws>/market/ws/<rest>)
        for prefix in ("", "/public", "/market"):
            for path in ("/ws", "/ws/{tail:.*}", "/stream", "/stream/{tail:.*}"):
                app.router.add_get(prefix + path, ws_handler)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> ExchangeSimulator:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addrs = self._runner.addresses
        self._host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self._port = int(addrs[0][1])
        log.info(
            "exchange simulator listening",
            rest=self.rest_url,
            ws=self.ws_url,
            frames=len(self.market.frames),
            symbols=self.market.symbols,
            speed=self.speed or "max",
        )
        return self

    async def stop(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        for c in list(self.connections):
            c.closed = True
            with contextlib.suppress(Exception):
                await c.ws.close()
        self._wake_senders()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ExchangeSimulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- replay ---------------------------------------------------------------------------------

    def start_replay(self) -> None:
        if self._replay_task is None:
            self._replay_task = asyncio.get_running_loop().create_task(self._replay())

    def pause(self) -> None:
        """Hold a paced replay where it is (nothing more is released) until `resume`: the
        market stands still while, say, a test restarts the bot trading on it."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def pause_at(self, n: int) -> None:
        """`pause` a paced replay once base frames ``[0, n)`` are out, and not a frame later:
        a replay behind its schedule releases what is due at once, so pausing from outside
        after seeing frame ``n - 1`` may come too late."""
        if n <= self.head:
            raise ValueError(f"frame {n} is already out (released up to {self.head})")
        self._pause_at = n

    def release(self, n: int) -> None:
        """Step by hand: make base frames ``[0, n)`` visible (only while no replay runs).

        For tests and tools that want an exact position instead of a clock.
        """
        if self._replay_task is not None and not self._replay_task.done():
            raise RuntimeError("the replay is running; stepping by hand would race it")
        if n < self.head:
            raise ValueError(f"cannot step back from {self.head} to {n}")
        self._release(min(n, len(self.market.frames)))

    async def wait_replayed(self) -> None:
        await self.replay_finished.wait()

    async def wait_head_change(self, seen: int) -> None:
        """Return once the release position moves (or the simulator wakes its senders)."""
        if self.head == seen:
            await self._head_event.wait()

    def on_progress(self) -> None:
        ev, self._progress_event = self._progress_event, asyncio.Event()
        ev.set()

    def _wake_senders(self) -> None:
        ev, self._head_event = self._head_event, asyncio.Event()
        ev.set()

    def _run_release_hooks(self, n: int) -> bool:
        published = False
        for hook in self.release_hooks:
            published |= hook(n)
        return published

    def _release(self, n: int) -> None:
        self._run_release_hooks(n)
        self.head = n
        self._wake_senders()

    async def _release_flushed(self, n: int) -> None:
        """`_release` up to ``n``, stopping where a hook asks, each step after what the hooks
        published for it has gone out."""
        while self.head < n:
            stop = max(min([f(self.head, n) for f in self.release_stops], default=n), self.head + 1)
            if self._run_release_hooks(stop):
                for flush in self.release_flushes:
                    await flush()
            self._release(stop)

    async def _replay(self) -> None:
        n = len(self.market.frames)
        while True:
            if self.speed is None:
                await self._replay_max(n)
            else:
                await self._replay_paced(n, self.speed)
            self.stats.replays += 1
            self.stats.replay_done = True
            self.replay_finished.set()
            log.info("replay finished", frames=n, passes=self.stats.replays)
            if not self.loop_replay:
                self._wake_senders()
                return
            self._start_next_pass()
            await asyncio.sleep(0)

    @property
    def loop_offsets(self) -> LoopOffsets:
        """What each pass of a looped replay adds to times and ids (computed on first use)."""
        if self._loop_offsets is None:
            self._loop_offsets = loop_offsets(self.base_market)
        return self._loop_offsets

    def next_pass(self) -> None:
        """Step by hand into a looped replay's next pass (only while no replay runs), at
        position 0: for tests and tools that step with `release`."""
        if self._replay_task is not None and not self._replay_task.done():
            raise RuntimeError("the replay is running; stepping by hand would race it")
        self._start_next_pass()

    def _start_next_pass(self) -> None:
        """Start over, moved forward: the next pass's market (time and ids shifted, see
        `tessera.sim.looping`), a fresh book and history, every subscriber from its first frame.

        A market subclass with data of its own beyond the frames (a USDⓈ-M bar market's mark
        bars and funding) is replayed again at its own times, as before: it is not shifted."""
        self.pass_index += 1
        if type(self.base_market) is SimMarket:
            self.market = market_for_pass(self.base_market, self.pass_index, self.loop_offsets)
            for hook in self.pass_hooks:
                hook(self.market)
        elif self.pass_index == 1:
            log.warning(
                "looped replay of a market that cannot be shifted: each pass repeats its times",
                market=type(self.base_market).__name__,
            )
        self.state = MarketState(self.market)
        for c in self.connections:
            c.streams = {name: self.market.stream(name) for name in c.streams}
            c.cursor = 0
        self._release(0)

    async def _replay_max(self, n: int) -> None:
        while self.head < n:
            active = [c for c in self.connections if not c.closed and c.has_data]
            if not active:
                await self._release_flushed(min(n, self.head + IDLE_STEP))
                await asyncio.sleep(0)
                continue
            low = min(c.cursor for c in active)
            if low + MAX_WINDOW > self.head:
                await self._release_flushed(min(n, low + MAX_WINDOW))
            else:
                await self._progress_event.wait()
        # Let the senders flush the tail before the replay counts as done.
        while any(c.cursor < n for c in self.connections if not c.closed and c.has_data):
            await self._progress_event.wait()

    async def _replay_paced(self, n: int, speed: float) -> None:
        clock = self.market.clock_ms
        if self.head >= n:
            return
        loop = asyncio.get_running_loop()
        t0, c0 = loop.time(), clock[self.head]
        while self.head < n:
            if not self._running.is_set():  # paused: the replay's clock stops with it
                await self._running.wait()
                # and goes on from the last frame out (a replay that was behind its schedule
                # when paused does not release its backlog at once on resume)
                t0, c0 = loop.time(), clock[max(self.head - 1, 0)]
            now_rec = c0 + (loop.time() - t0) * 1000.0 * speed
            released = bisect_right(clock, now_rec, lo=self.head)
            if self._pause_at is not None:
                released = min(released, self._pause_at)
            if released > self.head:
                await self._release_flushed(released)
            if self._pause_at is not None and self.head >= self._pause_at:
                self._pause_at = None
                self.pause()
                continue
            if self.head >= n:
                break
            due = t0 + (clock[self.head] - c0) / (1000.0 * speed)
            await asyncio.sleep(max(0.0, due - loop.time()))

    # --- connections ----------------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections.append(conn)
        self.stats.connections += 1
        ev, self._conn_event = self._conn_event, asyncio.Event()
        ev.set()

    def unregister(self, conn: Connection) -> None:
        with contextlib.suppress(ValueError):
            self.connections.remove(conn)
        self.on_progress()

    def on_subscription(self, conn: Connection) -> None:
        if conn.streams and self.autostart:
            self.start_replay()
        self.on_progress()

    async def wait_connections(self, n: int) -> list[Connection]:
        """Wait until at least ``n`` websocket connections are open (wrap in a timeout)."""
        while len(self.connections) < n:
            await self._conn_event.wait()
        return list(self.connections)

    async def drop_connections(self) -> int:
        """Close every open websocket now (a server-side disconnect); returns how many."""
        conns = list(self.connections)
        for c in conns:
            c.closed = True
            await c.ws.close()
        self.stats.faults["drop"] += len(conns)
        return len(conns)


class SimulatorThread:
    """Run a simulator on its own event loop in a background thread (sync callers, benches).

    with SimulatorThread(ExchangeSimulator(market, speed=None)) as sim:
        requests.get(sim.rest_url + "/api/v3/ping")
    """

    def __init__(self, sim: ExchangeSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-sim", daemon=True
        )

    def start(self) -> ExchangeSimulator:
        self._thread.start()
        self.call(self._start())
        return self.sim

    async def _start(self) -> None:
        # asyncio primitives bind to the loop that first waits on them: make them here.
        self.sim._head_event = asyncio.Event()
        self.sim._progress_event = asyncio.Event()
        self.sim._conn_event = asyncio.Event()
        self.sim.replay_finished = asyncio.Event()
        await self.sim.start(self._host, self._port)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the simulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self.sim.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ExchangeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
