"""USDⓈ-M stream data in the store: depth diffs with ``pu`` and their continuity, mark-price
updates and liquidation orders, under the venue ``binance-usdm``.

Data: the bundled real USDⓈ-M BTCUSDT recording (samples/binance-raw-ws/usdm, 120 s of trades,
depth@0ms with ``pu``, bookTicker and the REST snapshot), a real spot recording for the spot
rule, and Binance's ``markPriceUpdate`` and ``forceOrder`` payloads bundled in
samples/binance-api/futures-market-data (wrapped here in the combined-stream envelope the
recordings use: ``<recv ns> {"stream": ..., "data": <payload>}``). The recording has no
``@markPrice`` or ``@forceOrder`` frames, so those two are tested on the single payloads.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tessera.data.importers import import_recording
from tessera.data.store import ParquetStore, StoreSchemaError

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "samples" / "binance-raw-ws"
USDM_REC = RAW / "usdm" / "btcusdt_20240808.gz"
SPOT_REC = RAW / "spot" / "ethusdt_20240808.gz"
PAYLOADS = REPO / "samples" / "binance-api" / "futures-market-data"
USDM = "binance-usdm"


@pytest.fixture(scope="module")
def usdm_depth(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    store = ParquetStore(tmp_path_factory.mktemp("usdm")).venue(USDM)
    written = import_recording(store, USDM_REC)
    assert written["book_updates"] == 146_231 and written["trades"] == 4_315
    return store.read("book_updates", "BTCUSDT").drop(["symbol", "date", "exchange"])


def diffs(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table.select(["first_update_id", "last_update_id", "prev_update_id"]))
    assert isinstance(frame, pl.DataFrame)
    return frame.unique().sort("last_update_id")


def without_one_diff(table: pa.Table, last_update_id: int) -> pa.Table:
    return table.filter(pa.compute.not_equal(table["last_update_id"], last_update_id))


def book_breaks(store: ParquetStore) -> dict[str, int]:
    return {
        f"{c.exchange}/{c.day}": c.missing for c in store.coverage() if c.dataset == "book_updates"
    }


def test_usdm_depth_diffs_keep_pu_and_each_names_the_last_diffs_final_id(
    usdm_depth: pa.Table,
) -> None:
    d = diffs(usdm_depth)
    assert d.height == 2_291 and d["prev_update_id"].null_count() == 0
    # pu = the previous diff's u, all along the recording (U is not u + 1 on futures)
    assert d["prev_update_id"][1:].to_list() == d["last_update_id"][:-1].to_list()
    assert (d["first_update_id"][1:] != d["last_update_id"][:-1] + 1).sum() > 0


def test_data_info_counts_a_missing_depth_diff_as_one_break_on_usdm_and_spot(
    tmp_path: Path, usdm_depth: pa.Table
) -> None:
    whole = ParquetStore(tmp_path / "whole").venue(USDM)
    whole.write("book_updates", "BTCUSDT", usdm_depth)
    assert book_breaks(whole) == {f"{USDM}/2024-08-08": 0}
    middle = diffs(usdm_depth)["last_update_id"][1_000]
    holed = ParquetStore(tmp_path / "holed").venue(USDM)
    holed.write("book_updates", "BTCUSDT", without_one_diff(usdm_depth, middle))
    assert book_breaks(holed) == {f"{USDM}/2024-08-08": 1}

    spot = ParquetStore(tmp_path / "spot")
    import_recording(spot, SPOT_REC)
    spot_depth = spot.read("book_updates", "ETHUSDT").drop(["symbol", "date", "exchange"])
    assert set(book_breaks(spot).values()) == {0}  # the file runs a little past midnight
    spot_diffs = diffs(spot_depth)
    assert spot_diffs["prev_update_id"].null_count() == spot_diffs.height  # spot has no pu
    spot_holed = ParquetStore(tmp_path / "spot-holed")
    gone = spot_diffs["last_update_id"][500]
    spot_holed.write("book_updates", "ETHUSDT", without_one_diff(spot_depth, gone))
    assert book_breaks(spot_holed)["binance/2024-08-08"] == 1
    assert sum(book_breaks(spot_holed).values()) == 1


def recording_of(tmp_path: Path, frames: list[tuple[str, str]]) -> Path:
    """The bundled payload files as recording lines (the envelope the recordings use)."""
    path = tmp_path / "btcusdt_payloads.gz"
    with gzip.open(path, "wt") as fh:
        for i, (stream, name) in enumerate(frames):
            data = json.loads((PAYLOADS / name).read_text())
            fh.write(
                f"{1_700_000_000_000_000_000 + i} {json.dumps({'stream': stream, 'data': data})}\n"
            )
    return path


def test_mark_price_updates_and_liquidations_are_stored_exactly_on_the_usdm_venue(
    tmp_path: Path,
) -> None:
    rec = recording_of(
        tmp_path,
        [("btcusdt@markPrice@1s", "mark_price_stream.json"),
         ("!forceOrder@arr", "liquidation_stream.json")],
    )  # fmt: skip
    store = ParquetStore(tmp_path / "store").venue(USDM)
    assert import_recording(store, rec) == {"mark_prices": 1, "liquidations": 1}
    mark = store.read("mark_prices", "BTCUSDT").to_pylist()[0]
    assert (mark["mark_price"], mark["index_price"], mark["estimated_settle_price"]) == (
        Decimal("11794.15000000"),
        Decimal("11784.62659091"),
        Decimal("11784.25641265"),
    )
    assert mark["funding_rate"] == Decimal("0.00038167")
    assert int(mark["next_funding_time"].timestamp() * 1000) == 1562306400000
    liq = store.read("liquidations", "BTCUSDT").to_pylist()[0]  # the symbol from the order
    assert (liq["side"], liq["order_type"], liq["status"]) == ("SELL", "LIMIT", "FILLED")
    assert (liq["qty"], liq["price"], liq["avg_price"]) == (
        Decimal("0.014"),
        Decimal("9910"),
        Decimal("9910.12345678"),
    )
    assert import_recording(store, rec) == {"mark_prices": 0, "liquidations": 0}
    with pytest.raises(StoreSchemaError, match="perpetual futures only"):
        import_recording(ParquetStore(tmp_path / "spot"), rec)


def frame(stream: str, name: str, **changes: str) -> str:
    data = {**json.loads((PAYLOADS / name).read_text()), **changes}
    return json.dumps({"stream": stream, "data": data})


async def test_the_ingest_service_stores_mark_price_updates_and_liquidations(
    tmp_path: Path,
) -> None:
    from tessera.data.ingest import IngestService

    store = ParquetStore(tmp_path).venue(USDM)
    svc = IngestService(
        store, "ws://unused", "http://unused", ["BTCUSDT"], kinds=("markPrice@1s", "forceOrder"),
        backfill=False,
    )  # fmt: skip
    assert svc.streams == ["btcusdt@markPrice@1s", "btcusdt@forceOrder"]
    fed = [
        frame("btcusdt@markPrice@1s", "mark_price_stream.json"),
        frame("btcusdt@forceOrder", "liquidation_stream.json"),
        frame("btcusdt@markPrice@1s", "mark_price_stream.json", r="0.0003816x"),  # broken
    ]
    for i, f in enumerate(fed):
        svc.on_frame(f, 1_700_000_000_000_000_000 + i)
    await svc.flush(force=True)
    assert svc.stats.malformed == 1 and svc.stats.rows_written == {
        "mark_prices": 1,
        "liquidations": 1,
    }
    assert store.read("mark_prices", "BTCUSDT")["funding_rate"].to_pylist() == [
        Decimal("0.00038167")
    ]
    assert store.read("liquidations", "BTCUSDT")["avg_price"].to_pylist() == [
        Decimal("9910.12345678")
    ]
