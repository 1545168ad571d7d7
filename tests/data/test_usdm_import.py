"""Binance USDⓈ-M bulk archives into the store: trade klines, mark-price klines and funding
rates, zipped or not, with or without a header row, checksums verified, under the venue
``binance-usdm``; a bad file is one paragraph naming file, line and field (exit 2) and nothing
of it is stored.

Data: samples/binance-usdm/archives, the real XRP/USDT perpetual candles, mark candles and
funding rates from samples/freqtrade/futures re-laid in Binance's archive layout by
scripts/bundle_usdm_archives.py (samples/SOURCES.md). Every bad file is made from one of them.
"""

from __future__ import annotations

import shutil
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from test_futures_store import WIDE, cli
from typer.testing import CliRunner, Result

from tessera.config import ConfigError
from tessera.data.barfile import read_bar_file
from tessera.data.bulk import BulkDataError, import_bulk_file, parse_csv, read_bulk_file
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    as_decimal,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.data.futures_store import load_funding_rates, load_mark_klines
from tessera.data.store import ParquetStore

REPO = Path(__file__).resolve().parents[2]
ARCHIVES = REPO / "samples" / "binance-usdm" / "archives"
UM = ARCHIVES / "data" / "futures" / "um"
KLINES_1H = UM / "monthly" / "klines" / "XRPUSDT" / "1h" / "XRPUSDT-1h-2021-11.zip"
KLINES_5M = UM / "daily" / "klines" / "XRPUSDT" / "5m" / "XRPUSDT-5m-2021-11-15.zip"
MARK_1H = UM / "monthly" / "markPriceKlines" / "XRPUSDT" / "1h" / "XRPUSDT-1h-2021-11.zip"
FUNDING_DIR = UM / "monthly" / "fundingRate" / "XRPUSDT"
FUNDING_NOV = FUNDING_DIR / "XRPUSDT-fundingRate-2021-11.zip"
FUNDING_DEC = FUNDING_DIR / "XRPUSDT-fundingRate-2021-12.csv"
ALL = [KLINES_1H, KLINES_5M, MARK_1H, FUNDING_NOV, FUNDING_DEC]
USDM = "binance-usdm"


def run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli(tmp_path), ["data", *args], env=WIDE)


def config_error(result: Result) -> str:
    """The one paragraph the `tessera` entry point prints (exit 2) for this result."""
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    text = str(result.exception)
    assert "\n" not in text and "Traceback" not in text
    return text


def store_of(tmp_path: Path) -> ParquetStore:
    return ParquetStore(tmp_path / "data" / "store")


def copy_funding(tmp_path: Path, edit_line: int | None = None, new: str = "") -> Path:
    """The December funding file (plain CSV) copied under a Vision tree, one line replaced."""
    lines = FUNDING_DEC.read_text().splitlines()
    if edit_line is not None:
        lines[edit_line - 1] = new
    dest = tmp_path / "in" / "data" / "futures" / "um" / "monthly" / "fundingRate" / "XRPUSDT"
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / FUNDING_DEC.name
    out.write_text("\n".join(lines) + "\n")
    return out


def test_the_usdm_archives_import_to_the_usdm_venue_and_give_back_the_source_values(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, "import", *map(str, ALL))
    assert result.exit_code == 0, result.output
    assert "binance-usdm markPriceKlines XRPUSDT 1h, 100 rows read, 100 written" in result.output
    assert "binance-usdm fundingRate XRPUSDT, 39 rows read, 39 written" in result.output
    store = store_of(tmp_path)
    assert store.files("klines") == []  # nothing under spot
    usdm = store.venue(USDM)
    # funding and mark: what the freqtrade readers give from the source files
    rates = load_funding_rates(store, USDM, "XRPUSDT")
    assert rates == funding_rates_from_frames(
        read_funding_rates(SAMPLE_FUNDING), read_mark_prices(SAMPLE_MARK_1H)
    )
    assert all(h == 8 for h in usdm.read("funding_rates")["interval_hours"].to_pylist())
    assert_frame_equal(
        load_mark_klines(store, USDM, "XRPUSDT", "1h"), read_mark_prices(SAMPLE_MARK_1H)
    )
    marks = usdm.read("mark_klines")
    assert marks["volume"].null_count == marks.num_rows == 100
    # trade klines: the source candles, both intervals, header-less and with a header
    klines = pl.from_arrow(usdm.read("klines"))
    assert isinstance(klines, pl.DataFrame)
    for interval, n in (("1h", 100), ("5m", 288)):
        got = klines.filter(pl.col("interval") == interval)
        src = read_bar_file(SAMPLE_FUTURES / f"XRP_USDT_USDT-{interval}-futures.feather")
        src = src.filter(pl.col("open_time").is_in(got["open_time"].implode()))
        assert got.height == src.height == n
        for col in ("open", "high", "low", "close", "volume"):
            # the store's exact decimals are the source floats' decimal text (no float noise)
            assert got[col].to_list() == [as_decimal(v) for v in src[col].to_list()]
        assert got["quote_volume"].null_count() == n  # the source has none: null, not zero
    again = run(tmp_path, "import", *map(str, ALL))
    assert again.exit_code == 0 and again.output.count(": already imported as binance-usdm") == 5


def test_a_mark_archive_outside_its_folder_needs_the_kind_and_a_funding_one_the_usdm_venue(
    tmp_path: Path,
) -> None:
    loose = tmp_path / "XRPUSDT-1h-2021-11.zip"
    shutil.copy(MARK_1H, loose)
    r = import_bulk_file(ParquetStore(tmp_path / "s"), loose, kind="markPriceKlines")
    assert (r.venue, r.kind, r.interval, r.written) == (USDM, "markPriceKlines", "1h", 100)
    msg = config_error(run(tmp_path, "import", "--venue", "binance", str(FUNDING_NOV)))
    assert str(FUNDING_NOV) in msg and "--venue binance-usdm" in msg
    assert store_of(tmp_path).venue(USDM).files("funding_rates") == []


def test_an_index_price_archive_is_refused_not_stored_as_trade_klines(tmp_path: Path) -> None:
    index = tmp_path / "data" / "futures" / "um" / "monthly" / "indexPriceKlines" / "XRPUSDT"
    (index / "1h").mkdir(parents=True)
    fake = index / "1h" / KLINES_1H.name
    shutil.copy(KLINES_1H, fake)
    msg = config_error(run(tmp_path, "import", str(fake)))
    assert "indexPriceKlines archive" in msg and "Nothing was stored" in msg
    assert store_of(tmp_path).venue(USDM).files("klines") == []


@pytest.mark.parametrize(
    ("line", "new", "field", "says"),
    [
        (5, "1638403200000,8,0.000100001", "last_funding_rate", "9 decimal places"),
        (5, "1638403200000,8", None, "line 5 has 2 columns, a Binance fundingRate row has 3"),
        (7, "1638460800000,8h,0.00010000", "funding_interval_hours", "'8h' is not a whole"),
        (9, "1638518400,8,0.00010000", "calc_time", "not a time between 2010 and 2100"),
        (9, "1638518400000,0,0.00010000", "funding_interval_hours", "not a positive hour"),
    ],
)
def test_a_bad_funding_row_is_one_paragraph_naming_line_and_field_and_nothing_is_stored(
    tmp_path: Path, line: int, new: str, field: str | None, says: str
) -> None:
    bad = copy_funding(tmp_path, line, new)
    msg = config_error(run(tmp_path, "import", str(bad)))
    assert str(bad) in msg and says in msg, msg
    if field is not None:
        assert f"line {line}, field {field}" in msg and "Nothing of this file was stored" in msg
    assert store_of(tmp_path).venue(USDM).files("funding_rates") == []


def test_a_zip_that_does_not_match_its_checksum_is_refused_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "data" / "futures" / "um" / "monthly" / "fundingRate" / "XRPUSDT"
    dest.mkdir(parents=True)
    bad = dest / FUNDING_NOV.name
    with zipfile.ZipFile(bad, "w") as zf:  # the same CSV re-zipped: other bytes
        zf.writestr(FUNDING_NOV.with_suffix(".csv").name, read_bulk_file(FUNDING_NOV))
    shutil.copy(FUNDING_NOV.with_name(FUNDING_NOV.name + ".CHECKSUM"), dest)
    msg = config_error(run(tmp_path, "import", str(bad), str(FUNDING_DEC)))
    assert "checksum mismatch" in msg and "Not read (after it): " + FUNDING_DEC.name in msg
    assert store_of(tmp_path).venue(USDM).files("funding_rates") == []


def test_the_funding_archive_with_and_without_header_parses_to_the_same_rows() -> None:
    text = FUNDING_DEC.read_text()
    with_header = parse_csv(text, "fundingRate", source="dec")
    without = parse_csv(text.split("\n", 1)[1], "fundingRate", source="dec")
    assert with_header.equals(without) and with_header.num_rows == 52
    nominal = with_header["funding_time"].to_pylist()
    assert all(t.minute == t.second == t.microsecond == 0 for t in nominal)


def test_a_cut_mark_archive_line_names_the_file_in_the_zip(tmp_path: Path) -> None:
    lines = read_bulk_file(MARK_1H).splitlines()
    lines[3] = lines[3][:30]
    with pytest.raises(BulkDataError, match=r"line 4 has \d+ columns") as exc:
        parse_csv("\n".join(lines), "markPriceKlines", "1h", source=str(MARK_1H))
    assert str(MARK_1H) in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(
    row=st.integers(min_value=0, max_value=51),
    archive_ms=st.integers(min_value=0, max_value=3_599_999),
    rest_ms=st.integers(min_value=0, max_value=3_599_999),
)
def test_one_funding_reported_at_any_ms_of_its_hour_by_both_sources_is_one_row_at_the_hour(
    row: int, archive_ms: int, rest_ms: int
) -> None:
    """The key is `nominal_funding_time` of the reported time, whichever source reports it and
    however late in the hour (the rates are the real December ones; only the stamps vary)."""
    import tempfile

    from tessera.data.futures_store import funding_table
    from tessera.execution.perp.funding import nominal_funding_time

    line = FUNDING_DEC.read_text().splitlines()[1 + row]
    calc_ms, hours, rate = line.split(",")
    hour_ms = int(calc_ms) - int(calc_ms) % 3_600_000
    archive = parse_csv(f"{hour_ms + archive_ms},{hours},{rate}", "fundingRate", source="a")
    rest = funding_table([((hour_ms + rest_ms) * 1_000_000, rate, None, None)])
    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetStore(tmp).venue(USDM)
        assert store.write("funding_rates", "XRPUSDT", archive) == 1
        assert store.write("funding_rates", "XRPUSDT", rest) == 0
        (stored,) = store.read("funding_rates", "XRPUSDT").to_pylist()
    ns = int(stored["funding_time"].timestamp()) * 1_000_000_000
    assert ns == nominal_funding_time((hour_ms + archive_ms) * 1_000_000) == hour_ms * 1_000_000
    assert stored["reported_time"].timestamp() * 1000 == pytest.approx(hour_ms + archive_ms)
    assert stored["funding_rate"] == Decimal(rate)


def test_outside_a_vision_tree_a_folder_named_like_an_archive_kind_is_just_a_folder(
    tmp_path: Path,
) -> None:
    loose = tmp_path / "metrics" / KLINES_1H.name
    loose.parent.mkdir()
    shutil.copy(KLINES_1H, loose)
    store = ParquetStore(tmp_path / "s")
    r = import_bulk_file(store, loose, venue=USDM)  # no futures/um folder: the venue is given
    assert (r.venue, r.kind, r.written) == (USDM, "klines", 100)


async def test_usdm_archives_download_from_their_futures_um_paths_verified_and_imported(
    tmp_path: Path,
) -> None:
    from aiohttp import web

    from tessera.data.bulk import download

    served: list[str] = []

    @web.middleware
    async def log_path(request: web.Request, handler: Any) -> web.StreamResponse:
        served.append(request.path)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[log_path])
    app.router.add_static("/", ARCHIVES)  # the bundled tree is Binance's own layout
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    store = ParquetStore(tmp_path / "store")
    try:
        for kind, interval in (("klines", "1h"), ("markPriceKlines", "1h"), ("fundingRate", "")):
            got = await download(
                store, base, "XRPUSDT", kind, ["2021-11"], tmp_path / "dl" / kind,
                interval or "1m", venue=USDM,
            )  # fmt: skip
            assert list(got.values()) == [{"klines": 100, "markPriceKlines": 100}.get(kind, 39)]
    finally:
        await runner.cleanup()
    assert "/data/futures/um/monthly/markPriceKlines/XRPUSDT/1h/XRPUSDT-1h-2021-11.zip" in served
    assert (
        "/data/futures/um/monthly/fundingRate/XRPUSDT/XRPUSDT-fundingRate-2021-11.zip.CHECKSUM"
        in served
    )
    usdm = store.venue(USDM)
    assert [usdm.read(d).num_rows for d in ("klines", "mark_klines", "funding_rates")] == [
        100,
        100,
        39,
    ]
    assert store.files("klines") == []  # nothing under spot
    msg = config_error(
        run(tmp_path, "download", "--venue", USDM, "--archives", "--kind", "fundingRate",
            "--symbol", "XRPUSDT", "--start", "2021-11-01", "--daily")
    )  # fmt: skip
    assert "monthly only" in msg
