"""Local order book kept in sync with Binance's documented snapshot + diff procedure.

1. Buffer the stream's diffs. 2. Fetch a REST ``/depth`` snapshot (``lastUpdateId`` = L).
3. Drop buffered diffs with ``u <= L``. 4. The first diff applied must have ``U <= L+1 <= u``
(else the snapshot is too old: fetch another). 5. From then on each diff must start at the
previous ``u + 1`` (spot) or name the previous diff's ``u`` as its ``pu`` (USDⓈ-M, whose
diff ids are not consecutive); a break is a gap: the book is resynchronised from a new
snapshot. The continuity rule is the venue's (`venues.binance.market_data.depth_follows`).
Quantities are absolute; 0 removes the level. Prices are exact (`Decimal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from tessera.venues.binance.market_data import depth_follows


class BookState(StrEnum):
    SYNCING = "syncing"  # waiting for a snapshot that joins the buffered diffs
    LIVE = "live"


@dataclass
class Diff:
    first: int  # U
    last: int  # u
    bids: list[list[str]]
    asks: list[list[str]]
    prev: int | None = None  # pu: USDⓈ-M's "previous final update id"; None on spot


@dataclass
class OrderBook:
    symbol: str
    state: BookState = BookState.SYNCING
    last_update_id: int = 0
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    buffer: list[Diff] = field(default_factory=list)
    resyncs: int = 0
    # The price range the last snapshot covered: outside it, levels the exchange never showed us
    # may exist (a 1000-level snapshot is not the whole book).
    bid_floor: Decimal | None = None
    ask_ceiling: Decimal | None = None

    def on_diff(self, diff: Diff) -> str:
        """Feed one diff. Returns "applied", "buffered", "stale" or "gap" (resync needed)."""
        if self.state is BookState.SYNCING:
            self.buffer.append(diff)
            return "buffered"
        if diff.last <= self.last_update_id:
            return "stale"  # already applied (reconnect overlap)
        if not depth_follows(self.last_update_id, diff.first, diff.prev):
            self._start_resync(diff)
            return "gap"
        self._apply(diff)
        return "applied"

    def on_snapshot(
        self, last_update_id: int, bids: list[list[str]], asks: list[list[str]]
    ) -> bool:
        """Install a snapshot and replay the buffer; False if the snapshot is too old."""
        pending = [d for d in self.buffer if d.last > last_update_id]
        if pending and pending[0].first > last_update_id + 1:
            return False  # diffs we buffered start after the snapshot: a newer one is needed
        self.bids = {Decimal(p): Decimal(q) for p, q in bids if Decimal(q) != 0}
        self.asks = {Decimal(p): Decimal(q) for p, q in asks if Decimal(q) != 0}
        self.last_update_id = last_update_id
        self.bid_floor = min(self.bids) if self.bids else None
        self.ask_ceiling = max(self.asks) if self.asks else None
        self.state = BookState.LIVE
        self.buffer = []
        for i, d in enumerate(pending):
            # the first diff straddles the snapshot (U <= L+1 <= u, checked above); each later
            # one must follow the one before it by the venue's rule
            if i > 0 and not depth_follows(self.last_update_id, d.first, d.prev):
                self._start_resync(d)
                return True
            self._apply(d)
        return True

    def _start_resync(self, diff: Diff) -> None:
        self.state = BookState.SYNCING
        self.buffer = [diff]
        self.resyncs += 1

    def _apply(self, diff: Diff) -> None:
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for p, q in levels:
                price, qty = Decimal(p), Decimal(q)
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = diff.last

    def top(
        self, n: int = 5
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)[:n]
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])[:n]
        return bids, asks
