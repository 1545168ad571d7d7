"""The live order book's continuity rule is the venue's: spot diffs follow at ``u + 1``,
USDⓈ-M diffs name their predecessor's ``u`` as ``pu`` (their ids are not consecutive, so the
spot rule would call almost every USDⓈ-M diff a gap and resync the book on each).

Data: the bundled real recordings (samples/binance-raw-ws: USDⓈ-M BTCUSDT depth@0ms with
``pu``, spot ETHUSDT depth@100ms). The book is put live at the first diff's predecessor, as a
snapshot joining the stream would leave it, and then fed the recorded diffs in order.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

from tessera.data.ingest.book import BookState, Diff, OrderBook
from tessera.venues.binance.market_data import depth_levels

RAW = Path(__file__).resolve().parents[2] / "samples" / "binance-raw-ws"


def recorded_diffs(path: Path) -> list[Diff]:
    out: list[Diff] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, frame = line.split(" ", 1)
            doc = json.loads(frame)
            if "@depth" not in doc.get("stream", ""):  # REST snapshots are recorded too
                continue
            first, last, prev, _, bids, asks = depth_levels(doc["data"])
            out.append(Diff(first, last, bids, asks, prev))
    return out


def live_book(before: Diff) -> OrderBook:
    """A book in sync just before ``before`` (as after a snapshot that joined the stream)."""
    book = OrderBook("X", state=BookState.LIVE)
    book.last_update_id = before.prev if before.prev is not None else before.first - 1
    return book


def outcomes(book: OrderBook, diffs: list[Diff]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for d in diffs:
        outcome = book.on_diff(d)
        seen[outcome] = seen.get(outcome, 0) + 1
    return seen


def test_recorded_usdm_diffs_follow_each_other_by_pu_without_a_single_resync() -> None:
    diffs = recorded_diffs(RAW / "usdm" / "btcusdt_20240808.gz")
    assert len(diffs) > 2_000
    # the spot rule would not hold here: USDⓈ-M ids jump between diffs
    assert sum(d.first != p.last + 1 for p, d in itertools.pairwise(diffs)) > 1_000
    book = live_book(diffs[0])
    assert outcomes(book, diffs) == {"applied": len(diffs)}
    assert book.resyncs == 0 and book.state is BookState.LIVE
    assert book.last_update_id == diffs[-1].last


def test_a_missing_usdm_diff_is_one_gap_and_the_book_resyncs() -> None:
    diffs = recorded_diffs(RAW / "usdm" / "btcusdt_20240808.gz")
    book = live_book(diffs[0])
    seen = outcomes(book, diffs[:500] + diffs[501:502])
    assert seen == {"applied": 500, "gap": 1}
    assert book.resyncs == 1 and book.state is BookState.SYNCING


def test_recorded_spot_diffs_still_follow_at_u_plus_one() -> None:
    diffs = recorded_diffs(RAW / "spot" / "ethusdt_20240808.gz")
    assert diffs and all(d.prev is None for d in diffs)
    book = live_book(diffs[0])
    assert outcomes(book, diffs) == {"applied": len(diffs)}
    gap = live_book(diffs[0])
    assert outcomes(gap, diffs[:10] + diffs[11:12]) == {"applied": 10, "gap": 1}
