"""USDⓈ-M series in the store: funding rates and mark-price candles under the venue
``binance-usdm``, read back as exactly what the freqtrade-file readers give (so the backtest can
switch source), kept apart from spot, and shown with their gaps by `data info`.

Data: the real Binance XRP/USDT perpetual funding rates and 1h mark candles bundled from
freqtrade (samples/freqtrade/futures, see samples/SOURCES.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import typer
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from tessera.bootstrap import bootstrap
from tessera.config import load_settings
from tessera.data import cli as data_cli
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_MARK_1H,
    as_decimal,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.data.futures_store import (
    FuturesStoreError,
    funding_table,
    load_funding_rate_frame,
    load_funding_rates,
    load_mark_klines,
)
from tessera.data.store import ParquetStore, StoreSchemaError, rows_to_table

USDM = "binance-usdm"
MS = 1_000_000
WIDE = {"COLUMNS": "400"}


def cli(tmp_path: Path) -> typer.Typer:
    """The `data` commands under a root that boots like `tessera` (data dir under tmp_path)."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        settings = load_settings(
            config_dir=tmp_path / "configs", env_file=None, data_dir=tmp_path / "data"
        )
        ctx.obj = bootstrap(settings)

    root.add_typer(data_cli.data_app, name="data")
    return root


def real_funding() -> pa.Table:
    """The 91 real XRPUSDT funding rates as store rows (no mark, no interval: as freqtrade)."""
    frame = read_funding_rates(SAMPLE_FUNDING)
    return funding_table(
        (int(t), str(as_decimal(r)), None, None)
        for t, r in zip(
            frame["open_time"].dt.epoch("ns").to_list(), frame["funding_rate"], strict=True
        )
    )


def real_mark_1h() -> pa.Table:
    """The 100 real XRPUSDT 1h mark candles as ``mark_klines`` rows (volumes null)."""
    frame = read_mark_prices(SAMPLE_MARK_1H)
    hour = 3_600_000_000_000
    rows = []
    for r in frame.with_columns(pl.col("open_time").dt.epoch("ns").alias("ns")).iter_rows(
        named=True
    ):
        rows.append(
            {
                "interval": "1h",
                "open_time": r["ns"],
                "close_time": r["ns"] + hour - MS,
                "event_time": r["ns"] + hour - MS,
                **{c: str(as_decimal(r[c])) for c in ("open", "high", "low", "close")},
            }
        )
    return rows_to_table("mark_klines", rows)


def usdm_store(root: Path) -> ParquetStore:
    store = ParquetStore(root).venue(USDM)
    assert store.write("funding_rates", "XRPUSDT", real_funding()) == 91
    assert store.write("mark_klines", "XRPUSDT", real_mark_1h()) == 100
    return store


def test_the_store_gives_back_what_the_freqtrade_readers_give_for_funding_and_mark(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    usdm_store(tmp_path)
    marks = load_mark_klines(store, USDM, "XRPUSDT", "1h")
    assert_frame_equal(marks, read_mark_prices(SAMPLE_MARK_1H))
    rates_frame = load_funding_rate_frame(store, USDM, "XRPUSDT")
    assert_frame_equal(rates_frame, read_funding_rates(SAMPLE_FUNDING))
    rates, missing = load_funding_rates(store, USDM, "XRPUSDT")
    expected = funding_rates_from_frames(
        read_funding_rates(SAMPLE_FUNDING), read_mark_prices(SAMPLE_MARK_1H)
    )
    assert (rates, missing) == expected
    # the 1h mark file ends 2021-11-19 09:00: five funding times have a mark, 86 none
    assert missing == 86
    assert [r.mark_price for r in rates[:6]] == [
        *(Decimal(v) for v in ("1.09503", "1.10725", "1.05591", "1.04093", "1.04239")),
        None,
    ]
    assert min(r.rate for r in rates) == Decimal("-0.00219334")


def test_a_window_reads_funding_times_in_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    store = usdm_store(tmp_path)
    start, end = datetime(2021, 11, 18, 8, tzinfo=UTC), datetime(2021, 11, 19, 8, tzinfo=UTC)
    rates, _ = load_funding_rates(store, USDM, "XRPUSDT", start, end)
    got = [datetime.fromtimestamp(r.ts_ns / 1e9, UTC).strftime("%d %H") for r in rates]
    assert got == ["18 08", "18 16", "19 00"]
    marks = load_mark_klines(store, USDM, "XRPUSDT", "1h", start, end)
    assert marks.height == 24 and marks["open_time"][0] == start


def test_a_mark_price_stored_with_the_rate_is_used_before_the_candles(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path).venue(USDM)
    first = real_funding().slice(0, 1).to_pylist()[0]
    ns = int(first["reported_time"].timestamp() * 1e9) // MS * MS
    table = funding_table([(ns, "0.00010000", "1.11111111", 8)])
    store.write("funding_rates", "XRPUSDT", table)
    store.write("mark_klines", "XRPUSDT", real_mark_1h())
    (rate,), missing = load_funding_rates(store, USDM, "XRPUSDT")
    assert missing == 0 and rate.mark_price == Decimal("1.11111111")


def test_the_same_funding_from_the_archive_on_the_hour_and_rest_ms_later_is_one_row(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path).venue(USDM)
    rest = real_funding().slice(0, 3)  # fundingTime 17, 7 and 11 ms after the hour
    assert store.write("funding_rates", "XRPUSDT", rest) == 3
    times = [int(t.value) for t in rest["funding_time"].to_pandas()]
    archive = funding_table((t, "0.00010000", None, 8) for t in times)  # calc_time on the hour
    assert store.write("funding_rates", "XRPUSDT", archive) == 0
    assert store.read("funding_rates", "XRPUSDT").num_rows == 3


def test_funding_and_mark_candles_are_refused_on_the_spot_venue_and_venues_do_not_mix(
    tmp_path: Path,
) -> None:
    spot = ParquetStore(tmp_path)
    with pytest.raises(StoreSchemaError, match="perpetual futures only"):
        spot.write("funding_rates", "XRPUSDT", real_funding())
    usdm_store(tmp_path)
    # the perpetual's candles are not spot's: a spot read of the same symbol finds nothing
    assert spot.read("mark_klines", "XRPUSDT").num_rows == 0
    with pytest.raises(FuturesStoreError, match="binance-usdm:XRPUSDT"):
        load_funding_rates(spot, "binance", "XRPUSDT")
    with pytest.raises(FuturesStoreError, match="at 1h only, not 8h"):
        load_mark_klines(spot, USDM, "XRPUSDT", "8h")
    with pytest.raises(FuturesStoreError, match="no funding_rates of BTCUSDT"):
        load_funding_rates(spot, USDM, "BTCUSDT")
    with pytest.raises(StoreSchemaError, match="venue 'Binance USDM'"):
        spot.venue("Binance USDM")


def test_data_info_shows_funding_and_mark_candles_with_the_missing_ones(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "data" / "store").venue(USDM)
    rates = real_funding()
    keep = [i for i in range(rates.num_rows) if i != 4]  # drop 2021-11-19 08:00
    store.write("funding_rates", "XRPUSDT", rates.take(keep))
    marks = real_mark_1h()
    store.write("mark_klines", "XRPUSDT", marks.take([i for i in range(100) if i != 30]))
    result = CliRunner().invoke(cli(tmp_path), ["data", "info", "--json"], env=WIDE)
    assert result.exit_code == 0, result.output
    parts = json.loads(result.stdout)["partitions"]
    funding = {p["day"]: p for p in parts if p["dataset"] == "funding_rates"}
    assert len(funding) == 31 and sum(p["rows"] for p in funding.values()) == 90
    assert {d: p["missing"] for d, p in funding.items() if p["missing"]} == {"2021-11-19": 1}
    assert all(p["exchange"] == USDM for p in parts)
    mark = {p["day"]: p["missing"] for p in parts if p["dataset"] == "mark_klines"}
    assert mark == {"2021-11-15": 0, "2021-11-16": 1, "2021-11-17": 0, "2021-11-18": 0,
                    "2021-11-19": 0}  # fmt: skip
    table = CliRunner().invoke(cli(tmp_path), ["data", "info"], env=WIDE)
    assert "funding_rates" in table.stdout and "mark_klines" in table.stdout
