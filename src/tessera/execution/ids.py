"""Identifiers that stay the same when an operation is retried or replayed.

A client order id is decided *before* the order is sent and persisted with the intent, so a
retried submit carries the same id and the exchange refuses a second order with it: a retry can
never create a duplicate. Ids synthesised during reconciliation (fills we learn about from an
account snapshot) are hashes of the fill's own fields, so replaying the same reconciliation after
a restart produces the same ids, and the unique-trade-id rule dedupes them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

# Binance: newClientOrderId must match ^[.A-Z:/a-z0-9_-]{1,36}$
CLIENT_ORDER_ID_MAX = 36
_ALLOWED = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_RUN_ID_CHARS = re.compile(r"[^A-Za-z0-9]")


@dataclass
class ClientOrderIdGenerator:
    """``<prefix><run>-<seq>``: deterministic from the run id and a persisted sequence.

    The caller persists ``next_seq`` with each order intent; after a restart the generator is
    rebuilt from the highest persisted sequence, so ids never repeat within a run.
    """

    run_id: str
    next_seq: int = 1
    prefix: str = "t"

    def __post_init__(self) -> None:
        compact = _RUN_ID_CHARS.sub("", self.run_id)
        if not compact:
            raise ValueError(f"run id {self.run_id!r} has no usable characters")
        # Leave room for "-" and a 10-digit sequence.
        room = CLIENT_ORDER_ID_MAX - len(self.prefix) - 11
        self._stem = f"{self.prefix}{compact[-room:]}"
        if self.next_seq < 1:
            raise ValueError("next_seq must be >= 1")

    def next(self) -> str:
        seq = self.next_seq
        self.next_seq += 1
        return self.format(seq)

    def format(self, seq: int) -> str:
        if not 0 < seq < 10**10:
            raise ValueError(f"sequence {seq} out of range")
        coid = f"{self._stem}-{seq}"
        assert is_valid_client_order_id(coid), coid
        return coid

    def take(self) -> int:
        """The next sequence, for an order whose id is not ``format(seq)`` (`for_signal`)."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def for_signal(self, signal_id: str) -> str:
        """``<prefix><run>-x<hash>``: an id decided where the order is decided — in the
        strategy, before the signal is queued — so the strategy can cancel it by that id. The
        same signal (redelivered, or re-decided after a restart) gives the same id, and the
        exchange refuses a second order with it."""
        digest = hashlib.blake2b(signal_id.encode(), digest_size=8).digest()
        tail = base64.b32encode(digest).decode().rstrip("=").lower()[:9]
        coid = f"{self._stem}-x{tail}"
        assert is_valid_client_order_id(coid), coid
        return coid

    def owns(self, client_order_id: str) -> bool:
        """True if ``client_order_id`` was made by a generator of this run."""
        return client_order_id.startswith(self._stem + "-")


def is_valid_client_order_id(value: str) -> bool:
    return bool(_ALLOWED.match(value))


def synthetic_trade_id(
    symbol: str, exchange_order_id: str, side: str, qty: Decimal, price: Decimal, ts_event: int
) -> str:
    """A stable id for a fill known only from an aggregate (no exchange trade id)."""
    material = "|".join(
        (
            "fill",
            symbol,
            exchange_order_id,
            side,
            format(qty.normalize(), "f"),
            format(price.normalize(), "f"),
            str(ts_event),
        )
    )
    return "S-" + hashlib.sha256(material.encode()).hexdigest()[:24]
