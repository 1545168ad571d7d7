"""The signal queue between strategies and the executor.

`RedisSignalQueue` uses Redis Streams: ``XADD`` with an approximate ``MAXLEN``, one consumer
group of executors, ``XREADGROUP`` for new entries, ``XACK`` once the order intent is durably
recorded, and ``XAUTOCLAIM`` to take over entries a dead consumer left pending. A signal can
therefore be delivered more than once; it is *idempotent* because its ``signal_id`` is unique
in the orders table (a second delivery finds the order already recorded and sends nothing).

`LocalSignalQueue` has the same interface and semantics in one process (no Redis).

Signals carry the timestamps of the latency chain: market event -> signal -> (order sent ->
ack, recorded by the executor).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:  # a bot on the in-process queue never loads redis
    from redis.asyncio import Redis


class SignalKind:
    """What a signal asks for. A target is sized by the executor (the difference between the
    target and what the strategy holds); the others carry an order the strategy decided
    itself, with the client order id it was given (`ClientOrderIdGenerator.for_signal`)."""

    TARGET = "target"  # target_qty: the signed position wanted
    ORDER = "order"  # order: client_order_id, side, type, qty, price, stop_price, tif, ...
    OCO = "oco"  # order: list_id, above/below leg fields (see `LiveContext.submit_oco`)
    CANCEL = "cancel"  # order: client_order_id
    ALL = (TARGET, ORDER, OCO, CANCEL)


@dataclass(frozen=True, slots=True)
class Signal:
    signal_id: str  # unique: "<run>:<strategy>:<symbol>:<bar open time ns>:<n>"
    strategy: str
    symbol: str
    target_qty: str  # kind "target": signed target position in base units, as a decimal string
    ts_event: int  # exchange time of the market event that caused it, ns
    ts_recv: int  # local receive time of that event, ns
    ts_signal: int  # when the strategy emitted the signal, ns
    reason: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    kind: str = SignalKind.TARGET
    order: dict[str, str] = field(default_factory=dict)  # kinds other than "target"

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> Signal:
        data = orjson.loads(raw)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Delivery:
    entry_id: str
    signal: Signal
    deliveries: int = 1  # > 1: redelivered (claimed from a dead consumer or re-read)


class SignalQueue(Protocol):
    async def publish(self, signal: Signal) -> str: ...

    async def consume(self, consumer: str, count: int = 16, block_ms: int = 100) -> list[Delivery]:
        """New signals for ``consumer`` (each delivered to one consumer of the group)."""
        ...

    async def ack(self, entry_id: str) -> None: ...

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 16) -> list[Delivery]:
        """Take over signals another consumer received but did not ack for ``min_idle_ms``."""
        ...

    async def pending(self) -> int: ...


class RedisSignalQueue:
    def __init__(
        self,
        redis: Redis,
        stream: str = "tessera:signals",
        group: str = "executors",
        maxlen: int = 100_000,
    ) -> None:
        from redis.exceptions import ResponseError

        self.redis = redis
        self._response_error = ResponseError
        self.stream = stream
        self.group = group
        self.maxlen = maxlen
        self._group_ready = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except self._response_error as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def publish(self, signal: Signal) -> str:
        entry = await self.redis.xadd(
            self.stream, {"s": signal.encode()}, maxlen=self.maxlen, approximate=True
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def consume(self, consumer: str, count: int = 16, block_ms: int = 100) -> list[Delivery]:
        await self.ensure_group()
        try:
            reply = await self.redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except self._response_error as exc:
            if "NOGROUP" not in str(exc):  # the stream was deleted (e.g. Redis restarted empty)
                raise
            self._group_ready = False
            return []
        streams: Any = reply or []  # RESP2: [[stream, [(id, {field: value})]]]
        return [
            Delivery(_s(eid), Signal.decode(fields[b"s"]))
            for _, entries in streams
            for eid, fields in entries
            if fields
        ]

    async def ack(self, entry_id: str) -> None:
        await self.redis.xack(self.stream, self.group, entry_id)

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 16) -> list[Delivery]:
        await self.ensure_group()
        reply = await self.redis.xautoclaim(
            self.stream,
            self.group,
            consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = reply[1] if reply else []
        return [
            Delivery(_s(eid), Signal.decode(fields[b"s"]), deliveries=2)
            for eid, fields in entries
            if fields
        ]

    async def pending(self) -> int:
        await self.ensure_group()
        info = await self.redis.xpending(self.stream, self.group)
        return int(info["pending"])


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class LocalSignalQueue:
    """In-process queue with consumer-group semantics (delivered, pending until acked)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self._entries: OrderedDict[str, Signal] = OrderedDict()
        self._new: asyncio.Queue[str] = asyncio.Queue()
        self._pending: dict[str, tuple[str, float]] = {}  # entry -> (consumer, delivered at)
        self._seq = 0

    async def publish(self, signal: Signal) -> str:
        return self.publish_nowait(signal)

    def publish_nowait(self, signal: Signal) -> str:
        """`publish` without a turn of the event loop (nothing here waits)."""
        self._seq += 1
        entry = f"{time.time_ns() // 1_000_000}-{self._seq}"
        self._entries[entry] = signal
        while len(self._entries) > self.maxlen:
            old, _ = self._entries.popitem(last=False)
            self._pending.pop(old, None)
        self._new.put_nowait(entry)
        return entry

    async def consume(self, consumer: str, count: int = 16, block_ms: int = 100) -> list[Delivery]:
        out: list[Delivery] = []
        if not self._new.empty():
            first = self._new.get_nowait()
        else:
            try:  # `asyncio.timeout`, not `wait_for`: no task of its own, fewer loop turns
                async with asyncio.timeout(block_ms / 1000):
                    first = await self._new.get()
            except TimeoutError:
                return out
        batch = [first]
        while len(batch) < count and not self._new.empty():
            batch.append(self._new.get_nowait())
        now = time.monotonic()
        for entry in batch:
            if entry in self._entries:
                self._pending[entry] = (consumer, now)
                out.append(Delivery(entry, self._entries[entry]))
        return out

    async def ack(self, entry_id: str) -> None:
        self._pending.pop(entry_id, None)

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 16) -> list[Delivery]:
        now = time.monotonic()
        out: list[Delivery] = []
        for entry, (_owner, at) in list(self._pending.items()):
            if len(out) >= count:
                break
            if (now - at) * 1000 >= min_idle_ms and entry in self._entries:
                self._pending[entry] = (consumer, now)
                out.append(Delivery(entry, self._entries[entry], deliveries=2))
        return out

    async def pending(self) -> int:
        return len(self._pending)

    def backlog(self) -> int:
        """Signals published and not yet acknowledged (queued or being executed)."""
        return self._new.qsize() + len(self._pending)
