"""Local order book kept in sync with Binance's documented snapshot + diff procedure.

1. Buffer the stream's diffs. 2. Fetch a REST depth snapshot (``lastUpdateId`` = L; spot's
``/api/v3/depth``, USDⓈ-M's ``/fapi/v1/depth``). 3. Join the snapshot to the buffered diffs by
the venue's rule — spot: drop diffs with ``u <= L``, the first applied has ``U <= L+1 <= u``;
USDⓈ-M (diffs that carry ``pu``): drop diffs with ``u < L``, the first applied has
``U <= L <= u`` — else the snapshot is too old: fetch another. USDⓈ-M's rule differs because its
diff ids are not consecutive: the diff after the one ending at L usually starts well past
L + 1, so spot's rule would refuse every snapshot taken between two diffs. A snapshot that
arrives before any diff was buffered is joined the same way by the next diff (not by the
continuity rule: the snapshot's id is not a diff's). 4. From then on each
diff must start at the previous ``u + 1`` (spot) or name the previous diff's ``u`` as its ``pu``
(USDⓈ-M); a break is a gap: the book is resynchronised from a new snapshot. The continuity
rule is the venue's (`venues.binance.market_data.depth_follows`). Quantities are absolute; 0
removes the level (re-applying the diff that ends at L is harmless). Prices are exact
(`Decimal`).
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
    # live on a snapshot that no buffered diff joined yet: the next diff must straddle it
    joining: bool = False

    def on_diff(self, diff: Diff) -> str:
        """Feed one diff. Returns "applied", "buffered", "stale" or "gap" (resync needed)."""
        if self.state is BookState.SYNCING:
            self.buffer.append(diff)
            return "buffered"
        if self.joining:  # a snapshot with no diff buffered yet: this one must straddle it
            if _before(diff, self.last_update_id):
                return "stale"
            if not _joins(diff, self.last_update_id):
                self._start_resync(diff)
                return "gap"
            self.joining = False
            self._apply(diff)
            return "applied"
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
        pending = [d for d in self.buffer if not _before(d, last_update_id)]
        if pending and not _joins(pending[0], last_update_id):
            return False  # diffs we buffered start after the snapshot: a newer one is needed
        self.bids = {Decimal(p): Decimal(q) for p, q in bids if Decimal(q) != 0}
        self.asks = {Decimal(p): Decimal(q) for p, q in asks if Decimal(q) != 0}
        self.last_update_id = last_update_id
        self.bid_floor = min(self.bids) if self.bids else None
        self.ask_ceiling = max(self.asks) if self.asks else None
        self.state = BookState.LIVE
        self.buffer = []
        self.joining = not pending  # the first diff still to come must straddle the snapshot
        for i, d in enumerate(pending):
            # the first diff straddles the snapshot (checked above, by the venue's rule); each
            # later one must follow the one before it by the venue's rule
            if i > 0 and not depth_follows(self.last_update_id, d.first, d.prev):
                self._start_resync(d)
                return True
            self._apply(d)
        return True

    def _start_resync(self, diff: Diff) -> None:
        self.state = BookState.SYNCING
        self.joining = False
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


def _before(diff: Diff, snapshot_id: int) -> bool:
    """Whether ``diff`` is already in a snapshot at ``snapshot_id`` (dropped when joining):
    ``u <= lastUpdateId`` on spot, ``u < lastUpdateId`` on USDⓈ-M (diffs with ``pu``)."""
    if diff.prev is not None:
        return diff.last < snapshot_id
    return diff.last <= snapshot_id


def _joins(diff: Diff, snapshot_id: int) -> bool:
    """Whether ``diff`` may be the first applied over a snapshot at ``snapshot_id``:
    ``U <= lastUpdateId + 1 <= u`` on spot, ``U <= lastUpdateId <= u`` on USDⓈ-M."""
    if diff.prev is not None:
        return diff.first <= snapshot_id <= diff.last
    return diff.first <= snapshot_id + 1 <= diff.last
