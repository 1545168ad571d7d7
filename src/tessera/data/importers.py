"""Import the real datasets bundled in ``samples/`` into the store (idempotent).

- ``binance-raw-ws/spot/*.gz``: Binance BTCUSDT/ETHUSDT trades, depth diffs, bookTicker and the
  REST depth snapshot, exactly as recorded (exchange ``binance``).
- ``bars/btc-perp-…_1m.csv.gz``: 1-minute BTC-PERP bars (exchange ``nautilus``, symbol
  ``BTCPERP``; the file's volume is in quote currency, so it goes to ``quote_volume`` and the base
  volume stays unknown/null).
- ``bars/Coinbase_BTCUSD_1h.csv.gz``: hourly BTC/USD bars (exchange ``coinbase``).
- ``binance-bulk/ADABTC-1m-2021-11-27.csv``: a Binance bulk-data kline file.
- ``binance-raw-ws/usdm/*.gz``: a Binance USDⓈ-M BTCUSDT perpetual recording (trades, depth
  diffs with ``pu``, bookTicker, the REST depth snapshot), exchange ``binance-usdm``.
- ``binance-usdm/archives/``: USDⓈ-M bulk archives (XRPUSDT trade and mark klines, funding
  rates; real values re-laid by ``scripts/bundle_usdm_archives.py``), exchange ``binance-usdm``.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from tessera.data.bulk import KINDS, import_bulk_file, import_file
from tessera.data.schemas import SCHEMAS, USDM_VENUE
from tessera.data.store import ParquetStore, rows_to_table
from tessera.venues.binance.market_data import MS, book_ticker_row, depth_levels, trade_row
from tessera.venues.binance_usdm.market_data import force_order_row, mark_price_row

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLES = REPO_ROOT / "samples"


def import_recording(store: ParquetStore, path: Path) -> dict[str, int]:
    """One raw websocket recording -> trades, book_updates, book_ticker, book_snapshots, and
    on USDⓈ-M (``store`` of that venue) mark_prices and liquidations."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            ts, _, text = line.rstrip("\n").partition(" ")
            recv = int(ts)
            doc = orjson.loads(text)
            if "stream" not in doc:
                if "lastUpdateId" in doc:
                    sym = path.name.split("_", 1)[0].upper()
                    for side, key in (("bid", "bids"), ("ask", "asks")):
                        for i, (p, q) in enumerate(doc[key]):
                            rows[("book_snapshots", sym)].append(
                                {
                                    "last_update_id": doc["lastUpdateId"],
                                    "side": side,
                                    "level": i,
                                    "price": p,
                                    "qty": q,
                                    "recv_time": recv,
                                }
                            )
                continue
            stream, d = doc["stream"], doc["data"]
            sym = stream.split("@", 1)[0].upper()
            if stream.endswith("@trade"):
                rows[("trades", sym)].append(trade_row(d, recv))
            elif "@depth" in stream:
                first, last, prev, e_ms, bids, asks = depth_levels(d)
                for side, levels in (("bid", bids), ("ask", asks)):
                    for p, q in levels:
                        rows[("book_updates", sym)].append(
                            {
                                "first_update_id": first,
                                "last_update_id": last,
                                "prev_update_id": prev,
                                "side": side,
                                "price": p,
                                "qty": q,
                                "event_time": e_ms * MS,
                                "recv_time": recv,
                            }
                        )
            elif stream.endswith("@bookTicker"):
                rows[("book_ticker", sym)].append(book_ticker_row(d, recv))
            elif "@markPrice" in stream:
                rows[("mark_prices", sym)].append(mark_price_row(d, recv))
            elif "forceOrder" in stream:  # <symbol>@forceOrder or !forceOrder@arr
                row = force_order_row(d, recv)
                rows[("liquidations", row.pop("symbol"))].append(row)
    written: dict[str, int] = defaultdict(int)
    for (dataset, sym), items in rows.items():
        written[dataset] += store.write(dataset, sym, rows_to_table(dataset, items))
    return dict(written)


def _exact8(text: str) -> str:
    """The source's decimal text, rounded (half-even) only if it has more than 8 places.

    The raw store keeps 8 decimals (Binance's precision). Third-party bar files occasionally
    carry more (6 of 45,031 quote volumes in the BTC-PERP file): those are rounded, visibly here.
    """
    d = Decimal(text)
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        d = d.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_EVEN)
    return format(d, "f")


def _kline_table(frame: pl.DataFrame, interval: str) -> pa.Table:
    step = {"1m": 60, "1h": 3600}[interval] * 1_000_000_000
    frame = frame.with_columns(
        pl.col("open_time").dt.epoch("ns").alias("_ot"),
    )
    data: dict[str, Any] = {
        "interval": [interval] * len(frame),
        "open_time": frame["_ot"].to_list(),
        "close_time": (frame["_ot"] + step - MS).to_list(),
        "event_time": (frame["_ot"] + step - MS).to_list(),
    }
    for col in ("open", "high", "low", "close", "volume", "quote_volume"):
        data[col] = (
            [None if v is None else _exact8(str(v)) for v in frame[col].to_list()]
            if col in frame.columns
            else [None] * len(frame)
        )
    rows = [dict(zip(data, vals, strict=True)) for vals in zip(*data.values(), strict=True)]
    return rows_to_table("klines", rows)


def import_btc_perp_bars(store_root: Path) -> int:
    path = SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"
    frame = (
        pl.read_csv(path)
        .with_columns(
            pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time"),
            pl.col("volume").alias("quote_volume"),
        )
        .drop("volume")
    )
    return ParquetStore(store_root, exchange="nautilus").write(
        "klines", "BTCPERP", _kline_table(frame, "1m")
    )


def import_coinbase_hourly(store_root: Path) -> int:
    path = SAMPLES / "bars" / "Coinbase_BTCUSD_1h.csv.gz"
    with gzip.open(path, "rt") as fh:
        next(fh)  # source banner line
        frame = pl.read_csv(fh.read().encode(), infer_schema=False)
    frame = frame.with_columns(
        pl.col("date")
        .str.replace(r"-(AM|PM)$", ":00 $1")
        .str.to_datetime("%Y-%m-%d %I:%M %p", time_zone="UTC")
        .alias("open_time"),
        pl.col("volume_btc").alias("volume"),
        pl.col("volume").alias("quote_volume"),
    ).sort("open_time")
    return ParquetStore(store_root, exchange="coinbase").write(
        "klines", "BTCUSD", _kline_table(frame, "1h")
    )


def import_bundled(store: ParquetStore) -> dict[str, int]:
    """Import every bundled real dataset; a second run writes nothing."""
    out: dict[str, int] = defaultdict(int)
    for path in sorted((SAMPLES / "binance-raw-ws" / "spot").glob("*.gz")):
        for dataset, n in import_recording(store, path).items():
            out[f"binance/{dataset}"] += n
    out["nautilus/klines"] += import_btc_perp_bars(store.root)
    out["coinbase/klines"] += import_coinbase_hourly(store.root)
    out["binance/klines"] += import_file(
        store,
        SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv",
        symbol="ADABTC",
        kind="klines",
        interval="1m",
    )
    usdm = store.venue(USDM_VENUE)
    for path in sorted((SAMPLES / "binance-raw-ws" / "usdm").glob("*.gz")):
        for dataset, n in import_recording(usdm, path).items():
            out[f"{USDM_VENUE}/{dataset}"] += n
    for path in sorted((SAMPLES / "binance-usdm" / "archives").rglob("*-*-*")):
        if path.suffix in (".zip", ".csv"):
            result = import_bulk_file(store, path)
            out[f"{result.venue}/{KINDS[result.kind]}"] += result.written
    assert set(SCHEMAS)  # every dataset name used above is a known one
    return dict(out)
