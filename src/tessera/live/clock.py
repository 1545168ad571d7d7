"""The exchange's clock: what time it is *on the exchange*, for signing and for closing bars.

Two clocks, for two questions:

* `ExchangeClock` — "what timestamp do I sign a request with?" Binance refuses a signed request
  whose ``timestamp`` is more than 1 s ahead of its clock or older than ``recvWindow`` (-1021).
  A local clock that drifts (no NTP, a VM resumed from suspend, a step by an operator) makes
  every signed request fail, starting with the bot's first balance load. The clock measures its
  offset to ``GET /api/v3/time`` as hummingbot's ``TimeSynchronizer`` does: several samples,
  each server time compared with the midpoint of its round trip, the median offset kept. It
  counts from the local *monotonic* clock, so a step of the local wall clock after a sync does
  not move the exchange time; it resyncs periodically (`refresh_if_due`, `run`) and on demand
  (after a -1021, `sync`). Each sample's error is at most half its round trip plus 1 ms (the
  server truncates to ms), so the median's error is at most that of the slowest sample:
  `uncertainty_ms`.

* `MarketClock` — "which bars are closed?" A kline is closed once the exchange's time is past its
  close time. At warm-up and reconnect the bot fetches ``/api/v3/klines``, whose newest row is
  the bar still forming; judged by the local clock, a skewed host or a replay of recorded data
  (historical close times, always "in the past") lets that bar pass as closed, the bot records
  its open time as seen, and the real closed bar of that open time is skipped. The market's own
  time is the event time ``E`` of its stream frames — in a replay it is the *only* clock of that
  market — so the market clock is the newest ``E`` observed, falling back to the synchronised
  server time until a frame has arrived. It never extrapolates between frames: running late
  only keeps a closed bar out of the REST answer (its closed kline still arrives on the
  stream), while running early would let the forming bar in.

`closed_klines` is the filter itself, a pure function of the rows and the exchange's "now".
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from tessera import metrics
from tessera.logging import get_logger

if TYPE_CHECKING:
    from tessera.live.ratelimit import RateLimiter

log = get_logger(__name__)

Row = TypeVar("Row", bound=Sequence[Any])
ServerTimeFetch = Callable[[], Awaitable[int]]
Pace = Callable[[], Awaitable[object]]
CLOSE_TIME = 6  # index of a /klines row's close time (ms, the bar's last millisecond)


class ClockSyncError(Exception):
    """No sample of the exchange's time could be taken (the exchange did not answer)."""


@dataclass(frozen=True)
class ClockSample:
    """One reading: exchange time minus local time at the midpoint of the round trip."""

    offset_ms: float  # against the local monotonic clock
    wall_offset_ms: float  # against the local wall clock (what an operator wants to see)
    round_trip_ms: float


class ExchangeClock:
    """The exchange's time, measured against ``GET /api/v3/time`` (see the module docstring).

    ``fetch_server_ms`` returns the exchange's ``serverTime``; ``pace`` (e.g. the shared rate
    limiter's ``acquire``) runs before each sample, outside the timed round trip.
    """

    def __init__(
        self,
        fetch_server_ms: ServerTimeFetch,
        *,
        samples: int = 5,
        resync_interval_s: float = 600.0,
        warn_offset_ms: float = 1000.0,
        pace: Pace | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self._fetch = fetch_server_ms
        self.samples = samples
        self.resync_interval_s = resync_interval_s
        self.warn_offset_ms = warn_offset_ms
        self._pace = pace
        self._mono = monotonic_ns
        self._wall = wall_ns
        self._on_close = on_close
        # before the first sync: the local wall clock, read through the monotonic one
        self._offset_mono_ms = (wall_ns() - monotonic_ns()) / 1e6
        self._wall_offset_ms = 0.0
        self._uncertainty_ms: float | None = None
        self._synced_at_ns: int | None = None
        self._generation = 0  # completed syncs
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self.last_samples: list[ClockSample] = []

    @classmethod
    def for_rest_url(
        cls,
        rest_url: str,
        *,
        limiter: RateLimiter | None = None,
        timeout_s: float = 5.0,
        path: str = "/api/v3/time",
        **kwargs: Any,
    ) -> ExchangeClock:
        """A clock on ``{rest_url}{path}`` (spot's ``/api/v3/time`` by default, USDⓈ-M's
        ``/fapi/v1/time``; Binance, testnet or the simulator), paced by ``limiter`` if given
        (weight 1 per sample). Close it with `close`."""
        source = _RestServerTime(rest_url, timeout_s, path)

        async def pace() -> None:
            if limiter is not None:
                await limiter.acquire(1, 0)

        return cls(source, pace=pace, on_close=source.close, **kwargs)

    # --- reading --------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced_at_ns is not None

    def now_ms(self) -> int:
        """The exchange's time now (ms): the local wall clock until the first sync."""
        return int(self._mono() / 1e6 + self._offset_mono_ms)

    @property
    def offset_ms(self) -> float:
        """Exchange minus local wall clock at the last sync (0 before it), ms."""
        return self._wall_offset_ms

    @property
    def uncertainty_ms(self) -> float | None:
        """Bound on the error of the last measured offset; None before the first sync."""
        return self._uncertainty_ms

    @property
    def age_s(self) -> float | None:
        """Seconds since the last sync; None before the first."""
        if self._synced_at_ns is None:
            return None
        return (self._mono() - self._synced_at_ns) / 1e9

    # --- synchronising --------------------------------------------------------------------------

    async def sync(self, reason: str = "manual") -> None:
        """Measure the offset now; raises `ClockSyncError` if no sample could be taken (the
        previous offset is kept). Callers that arrive while a sync runs wait for it and take its
        result rather than measuring again: after a -1021 storm, one resync serves them all."""
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                return  # measured while we waited
            await self._measure(reason)

    async def _measure(self, reason: str) -> None:
        got: list[ClockSample] = []
        errors: list[str] = []
        for _ in range(self.samples):
            try:
                got.append(await self._sample())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one lost sample is not a failed sync ...
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                if len(errors) >= 2 and len(errors) > len(got):
                    break  # ... but an exchange that does not answer is not asked 5 times
        if not got:
            metrics.EXCHANGE_CLOCK_SYNC_FAILURES.inc()
            log.error(
                "exchange clock: no answer from the exchange; keeping the last offset",
                reason=reason,
                errors=errors[:3],
                offset_ms=round(self._wall_offset_ms, 1),
            )
            raise ClockSyncError(f"no server time from the exchange: {errors[-1]}")
        previous = self._wall_offset_ms if self.synced else None
        self._offset_mono_ms = statistics.median(s.offset_ms for s in got)
        self._wall_offset_ms = statistics.median(s.wall_offset_ms for s in got)
        self._uncertainty_ms = max(s.round_trip_ms for s in got) / 2 + 1.0
        self._synced_at_ns = self._mono()
        self._generation += 1
        self.last_samples = got
        metrics.EXCHANGE_CLOCK_OFFSET_MS.set(self._wall_offset_ms)
        metrics.EXCHANGE_CLOCK_UNCERTAINTY_MS.set(self._uncertainty_ms)
        metrics.EXCHANGE_CLOCK_RESYNCS.labels(
            reason=metrics.bounded(reason, metrics.CLOCK_SYNC_REASONS)
        ).inc()
        fields: dict[str, Any] = {
            "reason": reason,
            "offset_ms": round(self._wall_offset_ms, 1),
            "uncertainty_ms": round(self._uncertainty_ms, 1),
            "samples": len(got),
            "failed_samples": len(errors),
        }
        if previous is not None:
            fields["moved_ms"] = round(self._wall_offset_ms - previous, 1)
        if abs(self._wall_offset_ms) > self.warn_offset_ms:
            log.warning(
                "local clock is off from the exchange's; signing with the exchange's time "
                "(check NTP on this host)",
                **fields,
            )
        else:
            log.info("exchange clock synchronised", **fields)

    async def _sample(self) -> ClockSample:
        if self._pace is not None:
            await self._pace()
        mono0, wall0 = self._mono(), self._wall()
        server_ms = await self._fetch()
        mono1, wall1 = self._mono(), self._wall()
        # the server stamped its time somewhere inside the round trip: assume its middle
        return ClockSample(
            offset_ms=server_ms - (mono0 + mono1) / 2e6,
            wall_offset_ms=server_ms - (wall0 + wall1) / 2e6,
            round_trip_ms=(mono1 - mono0) / 1e6,
        )

    def refresh_if_due(self) -> None:
        """Start a background resync if the last one is older than ``resync_interval_s``.

        Cheap enough to call before every request: the request goes on with the current offset
        (which a -1021 would correct at once) instead of waiting for a round of samples."""
        age = self.age_s
        if age is None or age < self.resync_interval_s:
            return
        if self._refresh is not None and not self._refresh.done():
            return
        self._refresh = asyncio.get_running_loop().create_task(self._sync_quietly("periodic"))

    async def _sync_quietly(self, reason: str) -> None:
        with contextlib.suppress(ClockSyncError):  # logged and counted by `_measure`
            await self.sync(reason)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Resync every ``resync_interval_s`` until ``stop`` is set (or the task is cancelled);
        a failed round is logged and counted, and the last offset stays in use."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.resync_interval_s)
                return
            await self._sync_quietly("periodic")

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        if self._on_close is not None:
            await self._on_close()


class _RestServerTime:
    """``GET /api/v3/time`` on one kept-alive session: a new connection per sample would put
    the TCP (and TLS) handshake inside the round trip and widen every sample's error bound."""

    def __init__(self, rest_url: str, timeout_s: float, path: str = "/api/v3/time") -> None:
        self.url = rest_url.rstrip("/") + path
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> int:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.get(self.url) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200 or not isinstance(body, dict):
                raise ClockSyncError(f"GET {self.url}: HTTP {resp.status}: {str(body)[:200]}")
            value = body.get("serverTime")
            if not isinstance(value, int) or isinstance(value, bool):
                raise ClockSyncError(f"GET {self.url}: no integer serverTime in {str(body)[:200]}")
            return value

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --- closed bars -----------------------------------------------------------------------------


def closed_klines(rows: Iterable[Row], exchange_now_ms: int) -> list[Row]:
    """The rows of a ``/api/v3/klines`` answer whose bar is over by the exchange's clock.

    A bar is closed once the exchange's time is past its close time (index 6, the bar's last
    millisecond): ``close_time < exchange_now_ms``. The newest row Binance returns is the bar
    still forming; with the exchange's "now" it is dropped, whatever the local clock says."""
    return [row for row in rows if int(row[CLOSE_TIME]) < exchange_now_ms]


class MarketClock:
    """The exchange's time of a market, from the event times of its stream frames.

    Call `observe` with every frame's ``E``; `now_ms` is the newest one seen for that symbol,
    else for any symbol (one exchange, one clock), else the fallback (the synchronised server
    time). Never extrapolated between frames (see the module docstring); so after an outage it
    is as old as the last frame before it, and a REST fetch of the bars missed meanwhile must
    wait for a fresh frame first (`mark` at the disconnect, then `wait_observed(since=...)`).
    """

    def __init__(self, fallback: ExchangeClock | Callable[[], int] | None = None) -> None:
        if isinstance(fallback, ExchangeClock):
            self._fallback: Callable[[], int] = fallback.now_ms
        elif fallback is not None:
            self._fallback = fallback
        else:
            self._fallback = lambda: time.time_ns() // 1_000_000
        self._by_symbol: dict[str, int] = {}
        self._frames: dict[str, int] = {}  # frames observed per symbol
        self._newest: int | None = None
        self._changed = asyncio.Event()

    def observe(self, symbol: str, event_ms: int) -> None:
        """A frame of ``symbol`` stamped ``event_ms`` by the exchange (its ``E``)."""
        sym = symbol.upper()
        if event_ms > self._by_symbol.get(sym, -(1 << 62)):
            self._by_symbol[sym] = event_ms
        if self._newest is None or event_ms > self._newest:
            self._newest = event_ms
        self._frames[sym] = self._frames.get(sym, 0) + 1
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def seen(self, symbol: str) -> bool:
        return symbol.upper() in self._by_symbol

    def mark(self) -> dict[str, int]:
        """Where the observations stand, for `wait_observed(..., since=mark)`."""
        return dict(self._frames)

    def now_ms(self, symbol: str | None = None) -> int:
        """The exchange's time of ``symbol``'s market (ms), as far as we have seen it."""
        if symbol is not None:
            t = self._by_symbol.get(symbol.upper())
            if t is not None:
                return t
        if self._newest is not None:
            return self._newest
        return self._fallback()

    def closed(self, symbol: str, rows: Iterable[Row]) -> list[Row]:
        """`closed_klines` by this market's clock."""
        return closed_klines(rows, self.now_ms(symbol))

    async def wait_observed(
        self, symbols: Sequence[str], timeout_s: float, since: Mapping[str, int] | None = None
    ) -> bool:
        """Wait until every symbol has had a frame (after ``since``, a `mark`), or
        ``timeout_s``; returns whether they did.

        Before its first frame a market's time is the server's wall-clock time, which in a
        replay is far past every recorded bar: a warm-up should wait for the stream first.
        After a reconnect the last frame seen is as old as the outage, and the bars that closed
        meanwhile would pass for forming: wait for a frame newer than the mark taken then."""
        base = since or {}
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s

        def done() -> bool:
            return all(self._frames.get(s.upper(), 0) > base.get(s.upper(), 0) for s in symbols)

        while not done():
            left = until - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True
