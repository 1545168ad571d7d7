"""Faults the simulator injects on purpose, so that clients can be tested against a bad day.

A `FaultPlan` is plain data; change its fields at any time. ``sim.faults`` applies to every
connection that has no plan of its own; ``connection.faults`` overrides it for one connection.
Message counts (``drop_after``, ``stall_after``, ``malformed_at``) are per connection: data
messages that connection was sent. Sequence gaps count base frames of the whole replay (the N-th
depth diff, the N-th trade), so every connection that carries them sees the same hole.
``clock_skew_ms`` moves the server's wall clock (``sim.faults`` only: the clock is the server's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tessera.sim.market import SimMarket

MalformedKind = Literal["both", "invalid_json", "bad_fields"]
DropMode = Literal["close", "abort"]

# The field whose absence breaks each payload kind (a required id or value).
_REQUIRED = {"trade": "p", "aggTrade": "p", "depth": "u", "bookTicker": "b", "kline": "k"}


@dataclass
class FaultPlan:
    """What to break. Every field is optional; the default plan breaks nothing."""

    drop_after: int | None = None  # close a connection after it was sent N data messages
    drop_mode: DropMode = "close"  # "close": websocket close frame; "abort": TCP reset
    stall_after: int | None = None  # after N messages stop sending (socket stays open) ...
    stall_s: float = 0.0  # ... for this many seconds
    malformed_at: int | None = None  # after N messages send malformed frame(s) ...
    malformed: MalformedKind = "both"  # ... invalid JSON, valid JSON with bad fields, or both
    skip_depth_at: int | None = None  # never send the N-th depth diff of the replay ...
    skip_depth_count: int = 1  # ... nor the ones after it, this many in all (a U != u+1 gap)
    skip_trades_at: int | None = None  # never send trades N..N+count-1 (ids jump) ...
    skip_trades_count: int = 3  # ... REST still has them, as Binance would
    rest_429: int = 0  # answer the next K REST requests with 429 + Retry-After
    retry_after_s: int = 1
    rest_5xx: int = 0  # answer the next K REST requests with a 5xx
    rest_5xx_status: int = 503
    # The server's clock runs this many ms ahead of the host's (negative: behind): serverTime,
    # the recvWindow check of signed requests and every timestamp the exchange stamps (orders,
    # fills, user-data events). What a client with a drifting clock meets, from either side.
    clock_skew_ms: int = 0

    def skips(self, market: SimMarket) -> dict[str, frozenset[int]]:
        """Stream kind -> base frame indices whose payloads are not sent."""
        out: dict[str, frozenset[int]] = {}
        if self.skip_depth_at is not None:
            idx = market.kind_indices("depth")
            start = self.skip_depth_at - 1
            out["depth"] = frozenset(idx[max(0, start) : start + self.skip_depth_count])
        if self.skip_trades_at is not None:
            idx = market.kind_indices("trade")
            start = self.skip_trades_at - 1
            gone = frozenset(idx[max(0, start) : start + self.skip_trades_count])
            out["trade"] = out["aggTrade"] = gone  # an aggregate anchored there goes too
        return out


def malformed_frames(kind: MalformedKind, stream: str, payload: str, combined: bool) -> list[str]:
    """Broken versions of a real payload of ``stream``, in the connection's framing.

    ``invalid_json``: the frame cut in half. ``bad_fields``: valid JSON whose event time is a
    string and whose essential field (price, update id, ...) is missing.
    """
    framed = f'{{"stream":"{stream}","data":{payload}}}' if combined else payload
    out: list[str] = []
    if kind in ("both", "invalid_json"):
        out.append(framed[: max(1, len(framed) // 2)])
    if kind in ("both", "bad_fields"):
        d: dict[str, Any] = orjson.loads(payload)
        d["E"] = "not-a-number"
        stream_kind = stream.split("@", 1)[1].split("_", 1)[0].split("@", 1)[0]
        d.pop(_REQUIRED.get(stream_kind, "s"), None)
        body = orjson.dumps(d).decode()
        out.append(f'{{"stream":"{stream}","data":{body}}}' if combined else body)
    return out
