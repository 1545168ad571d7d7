"""Funding payments: signs, settlement of one funding time, alignment to bars, and a month of
the real XRP/USDT perpetual funding history (freqtrade's test data, samples/freqtrade/futures)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_MARK_8H,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.execution.perp.funding import (
    HOUR_NS,
    FundingEntry,
    FundingRate,
    funding_payment,
    funding_times,
    nominal_funding_time,
    schedule,
    settle_funding,
)

D = Decimal


def ns(text: str) -> int:
    dt = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1_000


def test_a_long_pays_when_the_rate_is_positive() -> None:
    # 1,000 XRP at a mark of 1.1 USDT: notional 1,100 USDT x 0.01% = 0.11 USDT paid
    assert funding_payment(D(1000), D("1.1"), D("0.0001")) == D("-0.11")


def test_a_short_receives_when_the_rate_is_positive() -> None:
    assert funding_payment(D(-1000), D("1.1"), D("0.0001")) == D("0.11")


def test_a_negative_rate_flips_who_pays() -> None:
    assert funding_payment(D(1000), D("1.1"), D("-0.0001")) == D("0.11")
    assert funding_payment(D(-1000), D("1.1"), D("-0.0001")) == D("-0.11")


def test_a_mark_price_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match=r"mark price"):
        funding_payment(D(1), D(0), D("0.0001"))


def test_settle_funding_books_one_entry_per_held_symbol_sorted_and_skips_flat_ones() -> None:
    t = ns("2021-11-18T08:00:00")
    rates = {
        "XRPUSDT": FundingRate(t, D("0.0001"), D("1.1075")),
        "BTCUSDT": FundingRate(t, D("-0.0002"), D("60000")),
        "ETHUSDT": FundingRate(t, D("0.0001"), D("4000")),
    }
    positions = {"XRPUSDT": D(1000), "BTCUSDT": D("-0.5"), "ETHUSDT": D(0), "LTCUSDT": D(3)}
    entries = settle_funding(positions, rates, {})
    assert entries == [
        # short 0.5 BTC, negative rate: the short pays 0.5 x 60000 x 0.0002 = 6
        FundingEntry(t, "BTCUSDT", D("-0.5"), D("60000"), D("-0.0002"), D("-6.0000")),
        FundingEntry(t, "XRPUSDT", D(1000), D("1.1075"), D("0.0001"), D("-0.11075000")),
    ]
    assert FundingEntry.kind == "funding"


def test_settle_funding_prefers_the_marks_given_over_the_rates_own_mark() -> None:
    t = ns("2021-11-18T08:00:00")
    rates = {"XRPUSDT": FundingRate(t, D("0.0001"), D("1.1075"))}
    (entry,) = settle_funding({"XRPUSDT": D(1000)}, rates, {"XRPUSDT": D("1.2")})
    assert entry.mark == D("1.2") and entry.amount == D("-0.12")


def test_settle_funding_without_any_mark_for_a_held_symbol_is_an_error() -> None:
    rates = {"XRPUSDT": FundingRate(ns("2021-11-18T08:00:00"), D("0.0001"))}
    with pytest.raises(ValueError, match=r"XRPUSDT.*no mark price"):
        settle_funding({"XRPUSDT": D(1000)}, rates, {})


def test_the_funding_time_is_floored_to_the_hour_binance_stamps_a_few_ms_late() -> None:
    assert nominal_funding_time(ns("2021-11-18T08:00:00.017")) == ns("2021-11-18T08:00:00")
    assert nominal_funding_time(ns("2021-11-18T08:00:00")) == ns("2021-11-18T08:00:00")
    with pytest.raises(ValueError, match="grid_ns"):
        nominal_funding_time(0, 0)


def test_a_funding_time_is_applied_at_the_first_bar_closing_at_or_after_it() -> None:
    opens = [ns(f"2021-11-18T{h:02d}:00:00") for h in range(5, 10)]  # 05:00 ... 09:00
    at_8 = FundingRate(ns("2021-11-18T08:00:00"), D("0.0001"))
    mid = FundingRate(ns("2021-11-18T06:30:00"), D("0.0002"))
    sched = schedule([at_8, mid], opens, HOUR_NS)
    # 08:00 closes the 07:00 bar (index 2); 06:30 falls inside the 06:00 bar (index 1)
    assert sched.due == {2: (at_8,), 1: (mid,)}
    assert (sched.applied, sched.before, sched.after) == (2, 0, 0)


def test_a_raw_binance_stamp_would_land_one_bar_late_which_is_why_times_are_floored() -> None:
    opens = [ns(f"2021-11-18T{h:02d}:00:00") for h in range(5, 10)]
    raw = FundingRate(ns("2021-11-18T08:00:00.017"), D("0.0001"))
    assert list(schedule([raw], opens, HOUR_NS).due) == [3]  # the 08:00 bar, not the 07:00 one


def test_funding_in_a_gap_between_bars_is_applied_at_the_next_bar_and_outsiders_counted() -> None:
    opens = [ns("2021-11-18T05:00:00"), ns("2021-11-18T09:00:00")]  # 06:00-09:00 missing
    rates = [
        FundingRate(ns("2021-11-18T05:00:00"), D("0.1")),  # at the first open: before the data
        FundingRate(ns("2021-11-18T08:00:00"), D("0.2")),  # in the gap
        FundingRate(ns("2021-11-18T10:00:00"), D("0.3")),  # the last bar's close
        FundingRate(ns("2021-11-18T16:00:00"), D("0.4")),  # after the data
    ]
    sched = schedule(rates, opens, HOUR_NS)
    assert {i: [r.rate for r in v] for i, v in sched.due.items()} == {1: [D("0.2"), D("0.3")]}
    assert (sched.before, sched.after) == (1, 1)
    assert funding_times(rates) == sorted(r.ts_ns for r in rates)


def test_bar_opens_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ascending"):
        schedule([], [2, 1], HOUR_NS)


def test_a_month_of_real_xrp_funding_on_a_1000_xrp_long_matches_an_independent_polars_sum() -> None:
    rates, missing = funding_rates_from_frames(
        read_funding_rates(SAMPLE_FUNDING), read_mark_prices(SAMPLE_MARK_8H)
    )
    assert (len(rates), missing) == (91, 0)  # 2021-11-18 00:00 -> 2021-12-18 00:00, every 8 h
    negative = [r.rate for r in rates if r.rate < 0]
    assert (len(negative), min(negative)) == (4, D("-0.00219334"))
    total = sum(
        (e.amount for fr in rates for e in settle_funding({"XRPUSDT": D(1000)}, {"XRPUSDT": fr})),
        D(0),
    )
    # Independently, from the raw feather files with polars: freqtrade keeps the rate in `open`;
    # the mark at a funding time is the open of the 8h mark candle at that hour.
    raw = pl.read_ipc(SAMPLE_FUNDING).with_columns(pl.col("date").dt.truncate("1h"))
    marks = pl.read_ipc(SAMPLE_MARK_8H).select("date", pl.col("open").alias("mark"))
    joined = raw.join(marks, on="date", how="inner")
    assert len(joined) == 91
    expected = float((-1000 * joined["mark"] * joined["open"]).sum())
    assert float(total) == pytest.approx(expected, abs=1e-9)
    # The figure to cross-check against freqtrade's futures backtest later: a constant
    # 1,000 XRP long held over these 91 funding times PAYS 8.031210148 USDT in funding.
    assert total == D("-8.031210148")
