"""The batch path of the high-rate streams, on real recorded Binance frames.

Frames go in exactly as Binance sent them (the hftbacktest recording); the broken ones are
real frames cut or edited. Checked: the batch decode keeps every good frame and isolates the
bad; inexact decimals are refused, not rounded; duplicates (reconnect overlap) are dropped and
gaps reported by id; what reaches the store is exactly the recording's trades.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from test_ingest_e2e import SPOT, stored_trades

from tessera.data.ingest import IngestService
from tessera.data.ingest.fastpath import (
    BatchDecoder,
    _convert_slow,
    convert_batch,
    table_of,
)
from tessera.data.store import ParquetStore
from tessera.venues.binance_spot.fastpath import frame_stream


def real_frames(stream_suffix: str, limit: int = 3000) -> list[str]:
    out = []
    with gzip.open(SPOT / "btcusdt_20240808.gz", "rt") as fh:
        for line in fh:
            text = line.rstrip("\n").split(" ", 1)[1]
            if text.startswith('{"stream":"btcusdt' + stream_suffix + '"'):
                out.append(text)
                if len(out) == limit:
                    break
    return out


def test_stream_name_is_read_from_the_prefix() -> None:
    frame = real_frames("@trade", 1)[0]
    assert frame_stream(frame) == "btcusdt@trade"
    assert frame_stream('{"result":null,"id":1}') is None
    assert frame_stream('{"data":{},"stream":"btcusdt@trade"}') is None  # other layouts: slow path


def test_batch_decode_isolates_bad_frames() -> None:
    frames = real_frames("@trade", 500)
    cut = frames[100][: len(frames[100]) // 2]
    retyped = frames[200].replace('"E":', '"E":"', 1).replace(',"s":', '",,"s":', 1)
    missing = orjson.dumps(
        {"stream": "btcusdt@trade", "data": {**orjson.loads(frames[300])["data"], "p": None}}
    ).decode()
    batch = [*frames[:100], cut, *frames[101:200], retyped, *frames[201:300], missing]
    msgs, good, errors = BatchDecoder("trade").decode(batch)
    assert len(errors) == 3 and len(msgs) == len(batch) - 3
    assert 100 not in good and 200 not in good and 300 not in good
    want = [orjson.loads(frames[i])["data"]["t"] for i in range(300) if i not in (100, 200)]
    assert [m.trade_id for m in msgs] == want


def test_inexact_decimals_are_refused_not_rounded() -> None:
    frames = real_frames("@trade", 10)
    docs = [orjson.loads(f)["data"] for f in frames]
    docs[3]["p"] = "1e-5"
    docs[6]["q"] = "0.123456789"  # nine places: the store keeps eight
    frames = [orjson.dumps({"stream": "btcusdt@trade", "data": d}).decode() for d in docs]
    msgs, _, errors = BatchDecoder("trade").decode(frames)
    assert not errors  # well-typed strings: the decode accepts them ...
    built = table_of("trade", msgs, [0] * len(msgs))
    assert built.rejected == [3, 6]  # ... the table refuses them
    assert built.table.num_rows == 8
    assert str(built.table["price"][0].as_py()) == docs[0]["p"]  # exact, no float on the way


@pytest.mark.parametrize("suffix", ["@trade", "@bookTicker"])
def test_decoded_values_are_the_frames_values(suffix: str) -> None:
    frames = real_frames(suffix, 2000)
    kind = suffix[1:]
    msgs, good, errors = BatchDecoder(kind).decode(frames)
    assert not errors and len(good) == len(frames) > 100
    built = table_of(kind, msgs, list(range(len(msgs))))
    assert not built.rejected
    first = orjson.loads(frames[0])["data"]
    row = built.table.slice(0, 1).to_pylist()[0]
    if kind == "trade":
        assert row["trade_id"] == first["t"] and f"{row['price']:.8f}" == first["p"]
    else:
        assert row["update_id"] == first["u"] and f"{row['bid_qty']:.8f}" == first["B"]


async def test_service_dedups_reports_gaps_and_counts_malformed(tmp_path: Path) -> None:
    frames = real_frames("@trade", 3000)
    ids = [orjson.loads(f)["data"]["t"] for f in frames]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # the recording itself has no gap
    # a reconnect overlap (frames 1000..1199 twice), a hole (2000..2049), two broken frames
    fed = frames[:1200] + frames[1000:2000] + frames[2050:] + [frames[5][:40], "not json"]
    svc = IngestService(
        ParquetStore(tmp_path), "ws://unused", "http://unused", ["BTCUSDT"], kinds=("trade",),
        backfill=False,
    )  # fmt: skip
    for i, f in enumerate(fed):
        svc.on_frame(f, 1_723_161_254_000_000_000 + i)
    await svc.flush()
    got = stored_trades(ParquetStore(tmp_path), "BTCUSDT")  # asserts no duplicate id
    assert sorted(got) == ids[:2000] + ids[2050:]
    assert svc.stats.gaps_found == 1
    assert svc.stats.malformed == 2
    assert svc.stats.by_stream["trade"] == len(fed) - 2


@pytest.mark.parametrize("suffix", ["@trade", "@bookTicker"])
def test_arrow_batch_and_frame_by_frame_agree(suffix: str) -> None:
    """The Arrow parse (all of a batch at once) and the msgspec fallback give the same rows,
    the same gaps and the same rejects on real frames with repeats, a hole and bad values."""
    kind = suffix[1:]
    frames = real_frames(suffix, 2000)
    docs = [orjson.loads(f)["data"] for f in frames]
    docs[10].pop("p" if kind == "trade" else "b")  # valid JSON, a required field missing
    docs[20]["q" if kind == "trade" else "B"] = "0.123456789"  # not exact to 8 places
    edited = [orjson.dumps({"stream": "btcusdt" + suffix, "data": d}).decode() for d in docs]
    batch = edited[:1500] + edited[1400:1500] + edited[1600:]  # repeats and a hole
    recv = list(range(len(batch)))
    last = docs[0]["t"] - 1 if kind == "trade" else None
    fast = convert_batch(kind, batch, recv, last)
    slow = _convert_slow(kind, batch, recv, last)
    assert fast.table.equals(slow.table)
    assert sorted(i for i, _ in fast.malformed) == sorted(i for i, _ in slow.malformed) == [10, 20]
    if kind == "trade":  # the unreadable trade is a gap too: REST backfills it
        t = [d["t"] for d in docs]
        assert fast.gaps == slow.gaps == [(t[10], t[10]), (t[1500], t[1599])]
    else:
        assert fast.gaps == slow.gaps == []
    assert fast.last_id == slow.last_id
    assert fast.decoded == slow.decoded == len(batch) - 1
