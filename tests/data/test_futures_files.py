"""Reading freqtrade's real XRP/USDT perpetual files: funding rates, mark candles, futures bars."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from tessera.data.barfile import BarFileError, infer_interval, read_bar_file
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    SAMPLE_MARK_8H,
    as_decimal,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)


def test_freqtrade_keeps_the_funding_rate_in_the_open_column_and_zeros_elsewhere() -> None:
    raw = pl.read_ipc(SAMPLE_FUNDING)
    assert raw.columns == ["date", "open", "high", "low", "close", "volume"]
    for col in ("high", "low", "close", "volume"):
        assert raw[col].abs().max() == 0
    rates = read_funding_rates(SAMPLE_FUNDING)
    assert rates.columns == ["open_time", "funding_rate"]
    assert rates["funding_rate"].to_list() == raw["open"].to_list()
    assert len(rates) == 91
    # the raw fundingTime, a few ms after the hour, is kept as read
    assert rates["open_time"][0] == datetime(2021, 11, 18, 0, 0, 0, 17_000, tzinfo=UTC)
    assert rates["open_time"].dtype == pl.Datetime("ns", "UTC")
    assert as_decimal(rates["funding_rate"].min()) == Decimal("-0.00219334")  # type: ignore[arg-type]


def test_mark_candles_come_without_volume() -> None:
    marks = read_mark_prices(SAMPLE_MARK_1H)
    assert marks.columns == ["open_time", "open", "high", "low", "close"]
    assert len(marks) == 100 and infer_interval(marks) == "1h"
    assert len(read_mark_prices(SAMPLE_MARK_8H)) == 91


def test_the_8h_mark_file_opens_are_the_trade_candle_opens_unlike_the_1h_mark_file() -> None:
    # A data fact the docs state: freqtrade's "8h-mark" file has volumes and its opens equal
    # the 5m trade candles' opens at the same times, while the 1h mark file differs from them.
    m8 = read_mark_prices(SAMPLE_MARK_8H)
    m1 = read_mark_prices(SAMPLE_MARK_1H)
    trades = read_bar_file(SAMPLE_FUTURES / "XRP_USDT_USDT-5m-futures.feather")
    same8 = m8.join(trades, on="open_time", suffix="_t")
    assert len(same8) == 12 and (same8["open"] == same8["open_t"]).all()
    same1 = m1.join(trades, on="open_time", suffix="_t")
    assert len(same1) > 0 and not (same1["open"] == same1["open_t"]).any()
    assert pl.read_ipc(SAMPLE_MARK_8H)["volume"].min() > 0  # type: ignore[operator]
    assert pl.read_ipc(SAMPLE_MARK_1H)["volume"].null_count() == 100


@pytest.mark.parametrize(("name", "rows", "interval"), [("5m", 1999, "5m"), ("1h", 100, "1h")])
def test_the_perpetual_trade_candles_read_as_ordinary_bar_files(
    name: str, rows: int, interval: str
) -> None:
    bars = read_bar_file(SAMPLE_FUTURES / f"XRP_USDT_USDT-{name}-futures.feather")
    assert len(bars) == rows and infer_interval(bars) == interval


def test_funding_records_carry_the_mark_at_the_hour_and_count_those_without_one() -> None:
    rates = read_funding_rates(SAMPLE_FUNDING)
    records, missing = funding_rates_from_frames(rates, read_mark_prices(SAMPLE_MARK_1H))
    # the 1h mark file ends 2021-11-19 09:00: only the first 5 funding times have a mark
    assert missing == 86
    first = records[0]
    assert first.ts_ns == int(datetime(2021, 11, 18, tzinfo=UTC).timestamp()) * 10**9
    assert (first.rate, first.mark_price) == (Decimal("0.0001"), Decimal("1.09503"))
    assert records[5].mark_price is None
    assert funding_rates_from_frames(rates)[1] == 91


def test_float_noise_in_stored_prices_goes_but_real_digits_stay() -> None:
    assert as_decimal(0.9467000000000001) == Decimal("0.9467")
    assert as_decimal(-0.0021933400000000002) == Decimal("-0.00219334")
    assert as_decimal(43210.12345678) == Decimal("43210.12345678")


def test_a_missing_funding_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BarFileError, match=r"nope.feather: no such funding-rate file"):
        read_funding_rates(tmp_path / "nope.feather")
    with pytest.raises(BarFileError, match=r"nope.feather: no such mark-price file"):
        read_mark_prices(tmp_path / "nope.feather")


def test_a_candle_file_is_refused_as_a_funding_rate_file() -> None:
    path = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"
    with pytest.raises(BarFileError, match=r"1h-futures.feather: column 'high' is not all zero"):
        read_funding_rates(path)


def test_funding_files_with_a_bad_rate_or_no_time_say_which(tmp_path: Path) -> None:
    text = tmp_path / "text.csv"
    text.write_text("date,funding_rate\n2021-11-18T00:00:00Z,abc\n")
    with pytest.raises(BarFileError, match=r"text.csv: funding-rate column .* not numeric"):
        read_funding_rates(text)
    gap = tmp_path / "gap.csv"
    gap.write_text("date,funding_rate\n2021-11-18T00:00:00Z,0.0001\n2021-11-18T08:00:00Z,\n")
    with pytest.raises(BarFileError, match=r"gap.csv: funding rate missing in data row 2"):
        read_funding_rates(gap)
    notime = tmp_path / "notime.csv"
    notime.write_text("when,funding_rate\n1,0.0001\n")
    with pytest.raises(BarFileError, match=r"notime.csv: no time column"):
        read_funding_rates(notime)
    other = tmp_path / "rates.json"
    other.write_text("[]")
    with pytest.raises(BarFileError, match=r"rates.json: expected .feather"):
        read_funding_rates(other)
    broken = tmp_path / "broken.feather"
    broken.write_bytes(b"not arrow")
    with pytest.raises(BarFileError, match=r"broken.feather: cannot read it"):
        read_funding_rates(broken)
