"""The universe and window of research commands: --symbol, --timeframe, --timerange, --bars.

The bars a command uses are checked against DuckDB queries of the same store (an independent
reader and aggregator), on the bundled real data.
"""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.config import ConfigError
from tessera.data.barfile import SAMPLE_BARS, SAMPLES, infer_interval, read_bar_file
from tessera.data.catalog import Catalog
from tessera.data.importers import import_btc_perp_bars, import_coinbase_hourly
from tessera.data.store import ParquetStore
from tessera.data.universe import (
    BarRequest,
    TimeRange,
    load_universe,
    request_from,
    symbol_from_name,
)

NS = 1_000_000_000


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    import_btc_perp_bars(root)
    import_coinbase_hourly(root)
    return root


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("20220101-20220115", "2022-01-01", "2022-01-15"),
        ("20220101-", "2022-01-01", None),
        ("-20220115", None, "2022-01-15"),
        ("202201011230-202201011300", "2022-01-01T12:30", "2022-01-01T13:00"),
        ("1640995200-1642204800", "2022-01-01", "2022-01-15"),
    ],
)
def test_timerange_reads_freqtrades_syntax(text: str, start: str | None, end: str | None) -> None:
    rng = TimeRange.parse(text)
    assert rng.start_ns == (_ns(start) if start else None)
    assert rng.end_ns == (_ns(end) if end else None)


@pytest.mark.parametrize("text", ["2022-01-01", "20220115-20220101", "-", "2022010-", "abc-def"])
def test_a_bad_timerange_is_an_error_that_shows_the_syntax(text: str) -> None:
    with pytest.raises(ConfigError, match="timerange"):
        TimeRange.parse(text)


@given(st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2090, 1, 1).date()))
def test_any_date_round_trips_through_the_timerange_syntax(day: object) -> None:
    text = f"{day:%Y%m%d}-"
    assert TimeRange.parse(text).start_ns == _ns(f"{day:%Y-%m-%d}")


def test_timerange_and_timeframe_select_the_bars_duckdb_finds(store_root: Path) -> None:
    request = request_from(["BTCPERP"], "1h", "20220105-20220112", None)
    (bars,) = load_universe(request, store_root=store_root)
    assert (bars.symbol, bars.venue, bars.interval) == ("BTCPERP", "nautilus", "1h")
    assert bars.notes == ("resampled 1m → 1h",)
    catalog = Catalog(ParquetStore(store_root))
    expected = pl.from_arrow(
        catalog.query(
            """
            SELECT time_bucket(INTERVAL 1 HOUR, open_time::TIMESTAMPTZ) AS open_time,
                   first(open ORDER BY open_time) AS open, max(high) AS high, min(low) AS low,
                   last(close ORDER BY open_time) AS close,
                   sum(quote_volume) AS quote_volume, count(*) AS n
            FROM klines WHERE symbol = 'BTCPERP' AND interval = '1m'
              AND open_time::TIMESTAMPTZ >= TIMESTAMPTZ '2022-01-05 00:00:00+00'
              AND open_time::TIMESTAMPTZ < TIMESTAMPTZ '2022-01-12 00:00:00+00'
            GROUP BY 1 ORDER BY 1
            """
        )
    )
    assert isinstance(expected, pl.DataFrame)
    assert len(bars.frame) == len(expected) == 7 * 24
    for col in ("open", "high", "low", "close", "quote_volume"):
        got = bars.frame[col].cast(pl.Float64).to_list()
        assert got == expected[col].cast(pl.Float64).to_list(), col
    assert bars.frame["open_time"][0] == datetime(2022, 1, 5, tzinfo=UTC)
    assert bars.frame["open_time"][-1] == datetime(2022, 1, 11, 23, tzinfo=UTC)


def test_the_stored_interval_is_read_as_stored_when_no_timeframe_is_asked(
    store_root: Path,
) -> None:
    (bars,) = load_universe(
        request_from(["coinbase:BTCUSD"], None, "20190101-20190201", None), store_root=store_root
    )
    assert bars.interval == "1h" and bars.notes == ()
    assert len(bars.frame) == 31 * 24


def test_a_partial_bar_cut_by_the_edge_of_the_data_is_dropped_and_inner_gaps_are_counted(
    store_root: Path,
) -> None:
    # the sample starts at 23:01 and ends at 05:31: the first and last 4h bars are incomplete
    (bars,) = load_universe(request_from(["BTCPERP"], "4h", None, None), store_root=store_root)
    assert bars.frame["open_time"][0] == datetime(2022, 1, 1, tzinfo=UTC)
    assert bars.frame["open_time"][-1] == datetime(2022, 2, 1, tzinfo=UTC)
    sample = read_bar_file(SAMPLE_BARS)
    full_4h = sample.filter(
        (pl.col("open_time") >= datetime(2022, 1, 1, tzinfo=UTC))
        & (pl.col("open_time") < datetime(2022, 2, 1, 4, tzinfo=UTC))
    )
    missing = 31 * 24 * 60 + 4 * 60 - len(full_4h)  # 1m bars absent from the source
    partial = [n for n in bars.notes if "fewer 1m bars" in n]
    assert (missing > 0) == bool(partial)


def test_a_timeframe_finer_than_the_data_is_an_error(store_root: Path) -> None:
    with pytest.raises(ConfigError, match="none of which divides 1m"):
        load_universe(request_from(["coinbase:BTCUSD"], "1m", None, None), store_root=store_root)


def test_an_unknown_symbol_says_what_the_store_holds(store_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"ETHUSDT.*coinbase:BTCUSD.*nautilus:BTCPERP"):
        load_universe(request_from(["ETHUSDT"], None, None, None), store_root=store_root)


def test_a_window_without_bars_is_an_error_not_an_empty_run(store_root: Path) -> None:
    with pytest.raises(ConfigError, match="no bars in the window"):
        load_universe(request_from(["BTCPERP"], None, "20230101-", None), store_root=store_root)


def test_no_symbol_and_no_file_reads_the_bundled_sample_and_says_so(tmp_path: Path) -> None:
    (bars,) = load_universe(BarRequest(), store_root=tmp_path)
    assert bars.symbol == "BTCPERP" and bars.venue == "nautilus"
    assert any("bundled real sample" in n for n in bars.notes)
    assert len(bars.frame) == 45_031


def test_a_binance_bulk_file_without_a_header_line_is_read(tmp_path: Path) -> None:
    src = SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv"
    frame = read_bar_file(src)
    assert frame["open_time"][0] == datetime(2021, 11, 27, tzinfo=UTC)
    assert frame["close"][0] == pytest.approx(0.00002854)
    assert infer_interval(frame) == "1m"
    (bars,) = load_universe(BarRequest(files=(src,)), store_root=tmp_path)
    assert bars.symbol == "ADABTC" and bars.interval == "1m"


def test_a_file_with_a_banner_above_its_header_is_read(tmp_path: Path) -> None:
    frame = read_bar_file(SAMPLES / "bars" / "Coinbase_BTCUSD_1h.csv.gz")
    assert len(frame) == 20_111
    assert frame["open_time"].is_sorted()
    assert frame["open_time"][-1] == datetime(2019, 10, 17, 9, tzinfo=UTC)


def test_a_truncated_row_names_its_line(tmp_path: Path) -> None:
    lines = (SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv").read_text().splitlines()
    lines[4] = ",".join(lines[4].split(",")[:5])
    bad = tmp_path / "ADABTC-1m-2021-11-27.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 5 has 5 columns"):
        read_bar_file(bad)


def test_a_feather_file_named_like_a_csv_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "XRPETH-1m-2019-10-11.csv"
    shutil.copy(SAMPLES / "freqtrade" / "XRP_ETH-1m.feather", bad)
    with pytest.raises(ValueError, match="not a text"):
        read_bar_file(bad)


def test_freqtrade_feather_candles_are_read_with_their_pair_as_symbol(tmp_path: Path) -> None:
    path = SAMPLES / "freqtrade" / "XRP_ETH-1m.feather"
    (bars,) = load_universe(BarRequest(files=(path,)), store_root=tmp_path)
    assert bars.symbol == "XRPETH" and len(bars.frame) == 2_469


def test_several_files_pair_with_the_symbols_given_in_order(tmp_path: Path) -> None:
    a = SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv"
    b = tmp_path / "mine.csv.gz"
    with gzip.open(b, "wt") as fh:
        fh.write(a.read_text())
    loaded = load_universe(
        request_from(["ADABTC", "OTHER"], None, None, [a, b]), store_root=tmp_path
    )
    assert [x.symbol for x in loaded] == ["ADABTC", "OTHER"]
    with pytest.raises(ConfigError, match="one --symbol per --bars"):
        load_universe(request_from(["ADABTC"], None, None, [a, b]), store_root=tmp_path)


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("ADABTC-1m-2021-11-27.csv", "ADABTC"),
        ("XRP_ETH-1m.feather", "XRPETH"),
        ("bitstamp_ETHUSD_1d.csv.gz", "ETHUSD"),
        ("bars.csv", None),
    ],
)
def test_a_files_symbol_comes_from_its_name(name: str, symbol: str | None) -> None:
    assert symbol_from_name(Path(name)) == symbol


def test_the_backtest_settings_window_is_the_default_and_the_flag_wins() -> None:
    default = TimeRange.from_iso("2022-01-05", "2022-01-07T12:00Z")
    assert request_from(None, None, None, None, default_range=default).timerange == default
    flag = request_from(None, None, "20220110-", None, default_range=default).timerange
    assert flag == TimeRange(_ns("2022-01-10"), None)
