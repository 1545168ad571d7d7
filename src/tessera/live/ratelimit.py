"""Exchange rate limiting shared by every process that uses one API key.

Binance meters requests in fixed windows: request weight per minute, orders per 10 seconds
and per day (``exchangeInfo.rateLimits``), and reports the weight used in the current minute
in ``X-MBX-USED-WEIGHT-1M`` (orders in ``X-MBX-ORDER-COUNT-10S`` / ``-1D``). We keep the same
fixed windows, aligned to the epoch like Binance's, so our count and theirs agree; the
headers correct our count upwards when another client used the key too.

`RedisRateLimiter` does the check-and-reserve for all scopes in one Lua script (atomic across
processes, clocked by the Redis server's TIME so that machines need not agree on time);
`LocalRateLimiter` is the embedded, single-process version with the same rules.

A 429 sets a shared back-off until ``Retry-After``; a 418 (IP ban) stops every process using the
key until the ban expires — both are visible to all processes through Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tessera import metrics
from tessera.logging import get_logger

if TYPE_CHECKING:  # the shared limiter is handed a client: the in-process one never loads redis
    from redis.asyncio import Redis

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # request_weight_1m | orders_10s | orders_1d
    interval_ms: int
    limit: int
    header: str | None = None  # response header reporting usage in this window

    @property
    def kind(self) -> str:
        return "weight" if self.scope.startswith("request_weight") else "orders"


# Binance spot's published limits (exchangeInfo of 2021; today's are higher: read them from the
# exchange with `limits_from_exchange_info`).
BINANCE_SPOT_LIMITS: tuple[Limit, ...] = (
    Limit("request_weight_1m", 60_000, 1200, "x-mbx-used-weight-1m"),
    Limit("orders_10s", 10_000, 50, "x-mbx-order-count-10s"),
    Limit("orders_1d", 86_400_000, 160_000, "x-mbx-order-count-1d"),
)

_INTERVAL_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_HEADER_UNIT = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}


def limits_from_exchange_info(info: Mapping[str, object]) -> tuple[Limit, ...]:
    """The REQUEST_WEIGHT and ORDERS limits of a Binance ``exchangeInfo`` response."""
    out = []
    for raw in info.get("rateLimits", []):  # type: ignore[attr-defined]
        kind, interval, num = raw["rateLimitType"], raw["interval"], int(raw["intervalNum"])
        unit = _HEADER_UNIT[interval]
        if kind == "REQUEST_WEIGHT":
            scope, header = f"request_weight_{num}{unit}", f"x-mbx-used-weight-{num}{unit}"
        elif kind == "ORDERS":
            scope, header = f"orders_{num}{unit}", f"x-mbx-order-count-{num}{unit}"
        else:
            continue
        out.append(Limit(scope, _INTERVAL_MS[interval] * num, int(raw["limit"]), header))
    return tuple(out)


class RateLimitBannedError(RuntimeError):
    """The exchange banned the key/IP (HTTP 418): no request may be sent until ``until_ms``."""

    def __init__(self, until_ms: int) -> None:
        super().__init__(f"exchange ban (418) in force until {until_ms} ms epoch")
        self.until_ms = until_ms


class RateLimiter(Protocol):
    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        """Wait until ``weight`` and ``orders`` fit in every window; returns seconds waited."""
        ...

    async def admit(self) -> float:
        """Before an order is recorded: a ban (418) this process knows of raises
        `RateLimitBannedError`, a back-off (429) it knows of is waited out; returns seconds
        waited. Without a round trip to a shared store: the adapter's `acquire` right before
        the request is the check every process of the key shares."""
        ...

    async def observe_headers(self, headers: Mapping[str, str]) -> None: ...

    async def on_429(self, retry_after_s: float) -> None: ...

    async def on_418(self, retry_after_s: float) -> None: ...


BACKOFF = "exchange_backoff"  # the wait is the exchange's 429 Retry-After, not one of our windows


_LONG_WAIT_MS = 1_000  # a wait this long is told in the log, not only counted
_LOG_EVERY_S = 10.0
_last_told: dict[str, float] = {}


def _count_wait(scope: str, wait_ms: int = 0) -> None:
    """Counted always; a wait of a second or more is also logged (once per scope per 10 s): an
    order held back that long is one the operator should hear of."""
    metrics.RATE_LIMIT_WAITS.labels(scope=metrics.bounded(scope, metrics.RATE_LIMIT_SCOPES)).inc()
    if wait_ms >= _LONG_WAIT_MS:
        now = time.monotonic()
        if now - _last_told.get(scope, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            _last_told[scope] = now
            log.warning("rate limiter holding requests back", scope=scope, wait_s=wait_ms / 1000)


def _costs(limits: Sequence[Limit], weight: int, orders: int) -> list[int]:
    return [weight if lim.kind == "weight" else orders for lim in limits]


def key_prefix(api_key: str | None, namespace: str = "tessera:rl") -> str:
    """Redis key prefix per API key; the key itself never appears, only a short hash."""
    digest = hashlib.sha256((api_key or "public").encode()).hexdigest()[:16]
    return f"{namespace}:{digest}"


# KEYS: [ban key, window key 1, ...]; ARGV: [n, interval_1, limit_1, cost_1, ...]
# Returns {0, window start of the first limit, 0} when reserved, {1, wait_ms, i} when it must
# wait (i: the 1-based limit that binds, 0: the exchange's back-off), {2, wait_ms, 0} if banned.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ban = redis.call('PTTL', KEYS[1])
if ban > 0 then
  local kind = redis.call('GET', KEYS[1])
  if kind == '418' then return {2, ban, 0} end
  return {1, ban, 0}
end
local n = tonumber(ARGV[1])
local wait = 0
local binding = 0
local keys = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 + (i - 1) * 3])
  local limit = tonumber(ARGV[3 + (i - 1) * 3])
  local cost = tonumber(ARGV[4 + (i - 1) * 3])
  local start = now - (now % interval)
  local key = KEYS[1 + i] .. ':' .. start
  keys[i] = {key, cost, interval - (now - start)}
  if cost > 0 then
    local used = tonumber(redis.call('GET', key) or '0')
    if used + cost > limit then
      local w = interval - (now - start)
      if w > wait then
        wait = w
        binding = i
      end
    end
  end
end
if wait > 0 then return {1, wait, binding} end
local first = now - (now % tonumber(ARGV[2]))
for i = 1, n do
  if keys[i][2] > 0 then
    redis.call('INCRBY', keys[i][1], keys[i][2])
    redis.call('PEXPIRE', keys[i][1], keys[i][3] + 1000)
  end
end
return {0, first, 0}
"""

# KEYS: [window key base]; ARGV: [interval, used]: raise our count to what the exchange reports.
_OBSERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local start = now - (now % interval)
local key = KEYS[1] .. ':' .. start
local used = tonumber(redis.call('GET', key) or '0')
local seen = tonumber(ARGV[2])
if seen > used then
  redis.call('SET', key, seen, 'PX', interval - (now - start) + 1000)
  return seen
end
return used
"""


class RedisRateLimiter:
    """Shared limiter: all processes with the same API key and Redis see one budget."""

    def __init__(
        self,
        redis: Redis,
        limits: Sequence[Limit] = BINANCE_SPOT_LIMITS,
        api_key: str | None = None,
        namespace: str = "tessera:rl",
    ) -> None:
        self.redis = redis
        self.limits = tuple(limits)
        self.prefix = key_prefix(api_key, namespace)
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._observe = redis.register_script(_OBSERVE_LUA)
        # the last ban or back-off this process saw in Redis or set: (until, epoch ms; 2 ban,
        # 1 back-off), what `admit` goes by
        self._blocked = (0, 0)
        for lim in self.limits:
            metrics.RATE_LIMIT_LIMIT.labels(
                scope=metrics.bounded(lim.scope, metrics.RATE_LIMIT_SCOPES)
            ).set(lim.limit)

    def _keys(self) -> list[str]:
        return [f"{self.prefix}:ban", *(f"{self.prefix}:{lim.scope}" for lim in self.limits)]

    async def try_acquire(self, weight: int = 1, orders: int = 0) -> tuple[int, int, str]:
        """One atomic attempt: (0, window_start_ms, "") reserved, (1, wait_ms, scope) must wait
        for ``scope`` (BACKOFF: the exchange's 429), (2, wait_ms, BACKOFF) banned."""
        argv: list[int] = [len(self.limits)]
        for lim, cost in zip(self.limits, _costs(self.limits, weight, orders), strict=True):
            argv += [lim.interval_ms, lim.limit, cost]
        status, wait, binding = await self._acquire(keys=self._keys(), args=argv)
        if int(status) == 0:
            return 0, int(wait), ""
        scope = self.limits[int(binding) - 1].scope if int(binding) else BACKOFF
        if scope == BACKOFF:
            self._block(int(wait), int(status))
        return int(status), int(wait), scope

    def _block(self, wait_ms: int, status: int) -> None:
        now = time.time_ns() // 1_000_000
        until, seen = self._blocked
        if until <= now:
            self._blocked = (now + wait_ms, status)
        else:  # one still in force: the later end, and a ban over a back-off
            self._blocked = (max(until, now + wait_ms), max(seen, status))

    async def admit(self) -> float:
        waited = 0.0
        while True:
            until, status = self._blocked
            left = until - time.time_ns() // 1_000_000
            if left <= 0:
                return waited
            if status == 2:
                raise RateLimitBannedError(until)
            _count_wait(BACKOFF, left)
            await asyncio.sleep(left / 1000)
            waited += left / 1000

    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        waited = 0.0
        while True:
            status, wait_ms, scope = await self.try_acquire(weight, orders)
            if status == 0:
                return waited
            if status == 2:
                raise RateLimitBannedError(int(time.time() * 1000) + wait_ms)
            _count_wait(scope, wait_ms)
            delay = max(wait_ms, 1) / 1000
            await asyncio.sleep(delay)
            waited += delay

    async def observe_headers(self, headers: Mapping[str, str]) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        for lim in self.limits:
            if lim.header and lim.header in lower:
                seen = int(lower[lim.header])
                used = await self._observe(
                    keys=[f"{self.prefix}:{lim.scope}"], args=[lim.interval_ms, seen]
                )
                metrics.RATE_LIMIT_USED.labels(
                    scope=metrics.bounded(lim.scope, metrics.RATE_LIMIT_SCOPES)
                ).set(int(used))

    async def on_429(self, retry_after_s: float) -> None:
        px = max(int(retry_after_s * 1000), 1)
        self._block(px, 1)
        await self.redis.set(f"{self.prefix}:ban", "429", px=px, nx=False)

    async def on_418(self, retry_after_s: float) -> None:
        px = max(int(retry_after_s * 1000), 1)
        self._block(px, 2)
        await self.redis.set(f"{self.prefix}:ban", "418", px=px)

    async def used(self, scope: str) -> int:
        """Units used in the current window of ``scope`` (for tests and dashboards)."""
        lim = next(lim for lim in self.limits if lim.scope == scope)
        now_s, now_us = await self.redis.time()
        now = now_s * 1000 + now_us // 1000
        start = now - now % lim.interval_ms
        raw = await self.redis.get(f"{self.prefix}:{scope}:{start}")
        return int(raw or 0)


class LocalRateLimiter:
    """The embedded limiter for one process (no Redis), same windows and rules."""

    def __init__(
        self,
        limits: Sequence[Limit] = BINANCE_SPOT_LIMITS,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.limits = tuple(limits)
        self.clock_ms = clock_ms
        self._used: dict[tuple[str, int], int] = {}
        self._ban_until = 0
        self._ban_kind = ""
        self._lock = threading.Lock()

    def try_acquire(self, weight: int = 1, orders: int = 0) -> tuple[int, int, str]:
        """As `RedisRateLimiter.try_acquire` (the reserved case returns wait 0)."""
        with self._lock:
            now = self.clock_ms()
            if self._ban_until > now:
                return (2 if self._ban_kind == "418" else 1), self._ban_until - now, BACKOFF
            wait, binding = 0, ""
            costs = _costs(self.limits, weight, orders)
            for lim, cost in zip(self.limits, costs, strict=True):
                start = now - now % lim.interval_ms
                left = lim.interval_ms - (now - start)
                over = cost and self._used.get((lim.scope, start), 0) + cost > lim.limit
                if over and left > wait:
                    wait, binding = left, lim.scope
            if wait:
                return 1, wait, binding
            for lim, cost in zip(self.limits, costs, strict=True):
                if cost:
                    start = now - now % lim.interval_ms
                    self._used[(lim.scope, start)] = self._used.get((lim.scope, start), 0) + cost
            self._prune(now)
            return 0, 0, ""

    async def admit(self) -> float:
        """`acquire` of nothing: the windows are this process's own, no round trip."""
        return await self.acquire(0, 0)

    def _prune(self, now: int) -> None:
        if len(self._used) > 64:
            horizon = max(lim.interval_ms for lim in self.limits)
            self._used = {k: v for k, v in self._used.items() if k[1] > now - 2 * horizon}

    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        waited = 0.0
        while True:
            status, wait_ms, scope = self.try_acquire(weight, orders)
            if status == 0:
                return waited
            if status == 2:
                raise RateLimitBannedError(self.clock_ms() + wait_ms)
            _count_wait(scope, wait_ms)
            delay = max(wait_ms, 1) / 1000
            await asyncio.sleep(delay)
            waited += delay

    async def observe_headers(self, headers: Mapping[str, str]) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            now = self.clock_ms()
            for lim in self.limits:
                if lim.header and lim.header in lower:
                    key = (lim.scope, now - now % lim.interval_ms)
                    self._used[key] = max(self._used.get(key, 0), int(lower[lim.header]))

    async def on_429(self, retry_after_s: float) -> None:
        with self._lock:
            self._ban_until = self.clock_ms() + max(int(retry_after_s * 1000), 1)
            self._ban_kind = "429"

    async def on_418(self, retry_after_s: float) -> None:
        with self._lock:
            self._ban_until = self.clock_ms() + max(int(retry_after_s * 1000), 1)
            self._ban_kind = "418"

    def used(self, scope: str) -> int:
        now = self.clock_ms()
        lim = next(lim for lim in self.limits if lim.scope == scope)
        return self._used.get((scope, now - now % lim.interval_ms), 0)
