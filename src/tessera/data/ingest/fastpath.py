"""The high-rate streams (trades, aggregate trades, best bid/ask) decoded in batches.

At tens of thousands of messages a second, per-message Python work is what limits ingest: a
dict per payload, a validation call per field, a Prometheus call per metric. So for these
streams the receive loop only reads the stream name from the frame's first bytes and keeps the
raw text; at flush time each stream's frames are decoded in **one** `msgspec` call (a JSON
array of the frames, typed: every field's type is checked in C), deduplicated and gap-checked
by id in order, and turned into Arrow columns in one vectorized step per column (decimal strings
checked with one regex and cast exactly to decimal128, never through a float).

A frame that breaks the batch decode (invalid JSON, a wrong field type, a missing field) is
found by decoding that batch's frames one by one: the good ones are kept, the bad ones are
counted, logged and skipped, exactly as on the per-message path.

What Binance sends (the typed payloads, their Arrow schemas, which key becomes which column) is
the venue's: `tessera.venues.binance_spot.fastpath`. This module is the store's side: decoding
in batches, sequencing by id and building the store's Arrow tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from tessera.data.schemas import SCHEMAS
from tessera.venues.binance.market_data import MS
from tessera.venues.binance_spot.fastpath import (
    ARROW_SCHEMAS,
    COLUMNS,
    ID_KEY,
    MSG_TYPES,
    OPTIONAL,
    Frame,
    TradeMsg,
)

# What Binance sends: plain digits with at most 8 decimals (the store's scale). Anything else
# ("1e-5", "-1", "0.123456789", "") cannot be stored exactly and is rejected, not rounded.
EXACT_DECIMAL = r"^[0-9]{1,30}(\.[0-9]{1,8})?$"
_STR = pa.string()
_I64 = pa.int64()
DATASETS = {"trade": "trades", "aggTrade": "agg_trades", "bookTicker": "book_ticker"}


class BatchDecoder:
    """Decodes a list of combined-stream frames of one kind; isolates the bad ones."""

    def __init__(self, kind: str) -> None:
        msg = MSG_TYPES[kind]
        self.kind = kind
        self.many = msgspec.json.Decoder(list[Frame[msg]])  # type: ignore[valid-type]
        self.one = msgspec.json.Decoder(Frame[msg])  # type: ignore[valid-type]

    def decode(self, frames: Sequence[str]) -> tuple[list[Any], list[int], list[str]]:
        """(messages of the good frames, indices of the good frames, errors of the bad ones)."""
        try:
            batch = self.many.decode("[" + ",".join(frames) + "]")
            if len(batch) == len(frames):  # else two broken frames merged: isolate them below
                return [f.data for f in batch], list(range(len(frames))), []
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        msgs: list[Any] = []
        good: list[int] = []
        errors: list[str] = []
        for i, raw in enumerate(frames):
            try:
                msgs.append(self.one.decode(raw).data)
                good.append(i)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                errors.append(f"frame {i}: {exc}")
        return msgs, good, errors


@dataclass
class Built:
    table: pa.Table
    rejected: list[int] = field(default_factory=list)  # input positions of dropped rows


def build_table(dataset: str, columns: Mapping[str, Any]) -> Built:
    """Columns -> a store table: Arrow arrays or Python sequences, decimals as strings, times
    as integer ms except ``recv_time`` (ns). Columns of the schema not given are null.

    A row whose decimal is not exact to 8 places is dropped and reported in ``rejected``.
    """
    schema = SCHEMAS[dataset]
    n = len(columns["recv_time"])
    if n == 0:
        return Built(schema.empty_table())
    arrays: list[pa.Array] = []
    decimals: list[int] = []
    bad: pa.Array | None = None
    for i, f in enumerate(schema):
        values = columns.get(f.name)
        decimal, stamp = pa.types.is_decimal(f.type), pa.types.is_timestamp(f.type)
        if values is not None and not isinstance(values, pa.Array | pa.ChunkedArray):
            values = pa.array(values, _STR if decimal else _I64 if stamp else f.type)
        if values is None:
            arrays.append(pa.nulls(n, f.type))
        elif decimal:
            ok = pc.fill_null(pc.match_substring_regex(values, EXACT_DECIMAL), False)
            bad = pc.invert(ok) if bad is None else pc.or_(bad, pc.invert(ok))
            arrays.append(values)
            decimals.append(i)
        elif stamp:
            ints = values if f.name == "recv_time" else pc.multiply(values, MS)
            arrays.append(ints.cast(f.type))
        else:
            arrays.append(values.cast(f.type))
    rejected: list[int] = []
    if bad is not None and pc.any(bad).as_py():
        rejected = pc.indices_nonzero(bad).to_pylist()
        keep = pc.invert(bad)
        arrays = [pc.filter(a, keep) for a in arrays]
    for i in decimals:
        arrays[i] = pc.cast(arrays[i], schema.field(i).type)
    return Built(pa.Table.from_arrays(arrays, schema=schema), rejected)


def _cols(items: Sequence[Any], *names: str) -> dict[str, list[Any]]:
    return {name: list(map(attrgetter(name), items)) for name in names}


def table_of(kind: str, msgs: Sequence[Any], recv_ns: Sequence[int]) -> Built:
    """Store rows of decoded messages of one kind."""
    if kind == "trade":
        cols = _cols(msgs, "trade_id", "price", "qty", "is_buyer_maker")
        cols["trade_time"] = list(map(attrgetter("trade_ms"), msgs))
        cols["event_time"] = list(map(attrgetter("event_ms"), msgs))
        cols["recv_time"] = list(recv_ns)
        return build_table("trades", cols)
    if kind == "aggTrade":
        cols = _cols(
            msgs, "agg_id", "price", "qty", "first_trade_id", "last_trade_id", "is_buyer_maker"
        )
        cols["trade_time"] = list(map(attrgetter("trade_ms"), msgs))
        cols["event_time"] = list(map(attrgetter("event_ms"), msgs))
        cols["recv_time"] = list(recv_ns)
        return build_table("agg_trades", cols)
    cols = _cols(msgs, "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty")
    cols["event_time"] = list(map(attrgetter("event_ms"), msgs))
    cols["recv_time"] = list(recv_ns)
    return build_table("book_ticker", cols)


def warm_up() -> None:
    """Compile the decimal regex and load Arrow's kernels now, not on the first live batch.

    The first conversion costs ~0.3 s; paid while connecting, it delays no message.
    """
    one = TradeMsg(0, 0, "1.0", "1.0", 0, False)
    table_of("trade", [one], [0])


# --- the Arrow JSON path: the whole batch parsed in C++, off the event loop's GIL -----------------


@dataclass
class Converted:
    """One stream's batch, decoded, checked and sequenced; ready to write."""

    table: pa.Table
    decoded: int = 0  # well-formed messages (before dedup)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (frame index, reason)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing ids, inclusive
    last_id: int | None = None
    lag_samples: list[tuple[int, int]] = field(default_factory=list)  # (recv ns, event ns)
    last_event_ms: int | None = None


def _sequence(ids: pa.Array, last: int | None) -> tuple[Any, list[tuple[int, int]], int | None]:
    """Keep mask, gaps and new last id: a message is new if its id exceeds every id before it.

    Vectorised form of "skip ``id <= last``; report ``id > last + 1``; ``last = id``".
    """
    import numpy as np

    arr = ids.to_numpy(zero_copy_only=False).astype(np.int64)
    if arr.size == 0:
        return np.zeros(0, dtype=bool), [], last
    start = -1 if last is None else last
    before = np.maximum.accumulate(np.concatenate(([start], arr[:-1])))
    keep = arr > before
    gaps: list[tuple[int, int]] = []
    jump = keep & (arr > before + 1) & (before >= 0)
    if last is None:
        jump[0] = False
    for i in np.flatnonzero(jump).tolist():
        gaps.append((int(before[i]) + 1, int(arr[i]) - 1))
    return keep, gaps, int(max(start, int(arr.max())))


def convert_batch(
    kind: str, frames: Sequence[str], recv_ns: Sequence[int], last_id: int | None
) -> Converted:
    """Frames of one stream -> store table. Runs in a worker thread: Arrow releases the GIL.

    A batch Arrow cannot parse whole (a broken frame, a wrong type) is decoded frame by frame
    with msgspec to isolate the bad ones.
    """
    import io

    import pyarrow.json as pj

    n = len(frames)
    try:
        parsed = pj.read_json(
            io.BytesIO("\n".join(frames).encode()),
            read_options=pj.ReadOptions(use_threads=False, block_size=1 << 26),
            parse_options=pj.ParseOptions(
                explicit_schema=ARROW_SCHEMAS[kind], unexpected_field_behavior="ignore"
            ),
        )
        if parsed.num_rows != n:
            raise ValueError("row count differs from frame count")
    except (pa.ArrowInvalid, ValueError):
        return _convert_slow(kind, frames, recv_ns, last_id)
    data = parsed.column("data").combine_chunks()
    cols = {key: data.field(key) for key in COLUMNS[kind]}
    malformed: list[tuple[int, str]] = []
    # a missing data object or a missing required field arrives as null
    missing = pc.is_null(data)
    for key, arr in cols.items():
        if key not in OPTIONAL.get(kind, set()):
            missing = pc.or_(missing, pc.is_null(arr))
    ok = pc.invert(missing)
    recv = pa.array(recv_ns, _I64)
    if pc.any(missing).as_py():
        for i in pc.indices_nonzero(missing).to_pylist():
            malformed.append((i, "a required field is missing or null"))
        cols = {k: pc.filter(v, ok) for k, v in cols.items()}
        recv = pc.filter(recv, ok)
        index = pc.indices_nonzero(ok)
    else:
        index = None
    decoded = len(recv)
    gaps: list[tuple[int, int]] = []
    new_last = last_id
    if kind in ID_KEY:
        keep, gaps, new_last = _sequence(cols[ID_KEY[kind]], last_id)
        if not keep.all():
            mask = pa.array(keep)
            cols = {k: pc.filter(v, mask) for k, v in cols.items()}
            recv = pc.filter(recv, mask)
            if index is None:
                index = pa.array(range(n), _I64)
            index = pc.filter(index, mask)
    out: dict[str, Any] = {COLUMNS[kind][k]: v for k, v in cols.items()}
    out["recv_time"] = recv
    built = build_table(DATASETS[kind], out)
    for i in built.rejected:
        src = i if index is None else index[i].as_py()
        malformed.append((src, "a decimal is not exact to 8 places"))
    events = out["event_time"]
    m = len(recv)
    step = max(1, m // 64)
    samples = [
        (r, e * MS)
        for r, e in zip(recv[::step].to_pylist(), events[::step].to_pylist(), strict=True)
        if e is not None
    ]
    last_event = events[m - 1].as_py() if m else None
    return Converted(built.table, decoded, malformed, gaps, new_last, samples, last_event)


def _convert_slow(
    kind: str, frames: Sequence[str], recv_ns: Sequence[int], last_id: int | None
) -> Converted:
    """Frame by frame (msgspec), for batches with broken frames."""
    msgs, good, errors = BatchDecoder(kind).decode(frames)
    decoded = len(msgs)
    bad = sorted(set(range(len(frames))) - set(good))
    malformed = list(zip(bad, errors, strict=False))
    recv = [recv_ns[i] for i in good]
    gaps: list[tuple[int, int]] = []
    new_last = last_id
    if kind in ID_KEY and msgs:
        attr = "trade_id" if kind == "trade" else "agg_id"
        keep, gaps, new_last = _sequence(pa.array([getattr(m, attr) for m in msgs], _I64), last_id)
        idx = [i for i, k in enumerate(keep.tolist()) if k]
        msgs, recv, good = [msgs[i] for i in idx], [recv[i] for i in idx], [good[i] for i in idx]
    built = table_of(kind, msgs, recv)
    rejected = set(built.rejected)
    for i in built.rejected:
        malformed.append((good[i], "a decimal is not exact to 8 places"))
    kept = [(m, r) for j, (m, r) in enumerate(zip(msgs, recv, strict=True)) if j not in rejected]
    step = max(1, len(kept) // 64)
    samples = [(r, m.event_ms * MS) for m, r in kept[::step] if m.event_ms is not None]
    last_event = kept[-1][0].event_ms if kept else None
    return Converted(built.table, decoded, malformed, gaps, new_last, samples, last_event)
