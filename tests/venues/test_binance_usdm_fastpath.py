"""The ingest fast path's wire description (`tessera.venues.binance_spot.fastpath`) decodes
USDⓈ-M's trade and bookTicker frames too: on the bundled real futures recording, the batch
decode gives the rows the per-message parsers give, with no frame refused."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tessera.data.ingest.fastpath import convert_batch
from tessera.venues.binance.market_data import book_ticker_row, trade_row

USDM = Path(__file__).resolve().parents[2] / "samples" / "binance-raw-ws" / "usdm"


def frames(stream: str, limit: int = 1500) -> list[str]:
    out = []
    with gzip.open(USDM / "btcusdt_20240808.gz", "rt") as fh:
        for line in fh:
            text = line.rstrip("\n").split(" ", 1)[1]
            if text.startswith('{"stream":"' + stream + '"'):
                out.append(text)
                if len(out) == limit:
                    break
    return out


@pytest.mark.parametrize(
    ("kind", "stream", "parse"),
    [("trade", "btcusdt@trade", trade_row), ("bookTicker", "btcusdt@bookTicker", book_ticker_row)],
)
def test_the_batch_decode_of_usdm_frames_gives_the_per_message_rows(
    kind: str, stream: str, parse: Callable[[dict[str, Any], int], dict[str, Any]]
) -> None:
    raw = frames(stream)
    assert len(raw) == 1500
    recv = list(range(len(raw)))
    converted = convert_batch(kind, raw, recv, None)
    assert converted.malformed == [] and converted.table.num_rows == len(raw)
    expected = [parse(orjson.loads(f)["data"], r) for f, r in zip(raw, recv, strict=True)]
    got = converted.table.to_pylist()
    for want, row in zip(expected, got, strict=True):
        for key, value in want.items():
            if key.endswith("_time") and value is not None and key != "recv_time":
                assert round(row[key].timestamp() * 1000) * 1_000_000 == value, key
            elif isinstance(row[key], Decimal):
                assert row[key] == Decimal(value), key
            elif key != "recv_time":
                assert row[key] == value, key
    if kind == "bookTicker":  # futures send the event time spot's bookTicker lacks
        assert all(r["event_time"] is not None for r in got)
