"""Market data through every venue's parsers, on its bundled real payloads: the kinds every
venue has give the same row shapes, with exact decimal strings and ns times."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from venue_payloads import DEPTH_RECORDINGS, MARKET, Payload, cases, recording_frames

from tessera.venues.contract import venue, venue_names

RECV = 1_700_000_000_000_000_000
ROW_KEYS = {
    "trade": {
        "trade_id",
        "price",
        "qty",
        "is_buyer_maker",
        "trade_time",
        "event_time",
        "recv_time",
    },
    "aggTrade": {
        "agg_id",
        "price",
        "qty",
        "first_trade_id",
        "last_trade_id",
        "is_buyer_maker",
        "trade_time",
        "event_time",
        "recv_time",
    },
    "kline": {
        "interval",
        "open_time",
        "close_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "taker_buy_base",
        "taker_buy_quote",
        "event_time",
        "recv_time",
    },
    "bookTicker": {
        "update_id",
        "bid_price",
        "bid_qty",
        "ask_price",
        "ask_qty",
        "event_time",
        "recv_time",
    },
}
DECIMALS = {"price", "qty", "open", "high", "low", "close", "volume", "quote_volume",
            "taker_buy_base", "taker_buy_quote", "bid_price", "bid_qty", "ask_price",
            "ask_qty"}  # fmt: skip
TIMES = {"trade_time", "event_time", "open_time", "close_time"}


def check_row(row: dict[str, Any], kind: str) -> None:
    assert set(row) == ROW_KEYS[kind]
    assert row["recv_time"] == RECV
    for key in DECIMALS & set(row):
        assert isinstance(row[key], str) and Decimal(row[key]) >= 0, key
    for key in TIMES & set(row):
        if row[key] is not None:  # spot's bookTicker has no event time
            assert isinstance(row[key], int) and row[key] > 10**18, key  # ns since 2001


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "trade"))
def test_a_trade_gives_the_common_trade_row(name: str, payload: Payload) -> None:
    check_row(venue(name).market_data.trade(payload.data(), RECV), "trade")


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "aggTrade"))
def test_an_aggregate_trade_gives_the_common_row(name: str, payload: Payload) -> None:
    check_row(venue(name).market_data.agg_trade(payload.data(), RECV), "aggTrade")


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "kline_closed"))
def test_a_closed_kline_says_closed_and_gives_the_common_row(name: str, payload: Payload) -> None:
    closed, row = venue(name).market_data.kline(payload.data(), RECV)
    assert closed is True
    check_row(row, "kline")
    assert Decimal(row["low"]) <= min(Decimal(row["open"]), Decimal(row["close"]))
    assert Decimal(row["high"]) >= max(Decimal(row["open"]), Decimal(row["close"]))
    assert row["open_time"] < row["close_time"]


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "kline_open"))
def test_an_open_kline_says_open_and_gives_the_same_row(name: str, payload: Payload) -> None:
    closed, row = venue(name).market_data.kline(payload.data(), RECV)
    assert closed is False
    check_row(row, "kline")


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "bookTicker"))
def test_a_book_ticker_gives_the_common_row(name: str, payload: Payload) -> None:
    row = venue(name).market_data.book_ticker(payload.data(), RECV)
    check_row(row, "bookTicker")
    assert Decimal(row["bid_price"]) < Decimal(row["ask_price"])


@pytest.mark.parametrize(("name", "payload"), cases(MARKET, "depth"))
def test_a_depth_diff_gives_its_ids_and_price_levels(name: str, payload: Payload) -> None:
    data = payload.data()
    first, last, prev, event_ms, bids, asks = venue(name).market_data.depth(data)
    assert first <= last and event_ms > 10**12
    assert prev == data.get("pu")  # kept where the venue sends it (USDⓈ-M), None otherwise
    for price, qty in (*bids, *asks):
        assert Decimal(price) > 0 and Decimal(qty) >= 0


@pytest.mark.parametrize("name", venue_names())
def test_recorded_depth_diffs_follow_each_other_by_the_venues_rule(name: str) -> None:
    source, stream = DEPTH_RECORDINGS[name]
    parse = venue(name).market_data
    diffs = [json.loads(f)["data"] for f in recording_frames(source) if f'"{stream}"' in f[:60]]
    assert len(diffs) > 20
    last = None
    for d in diffs:
        first, final, prev, *_ = parse.depth(d)
        if last is not None:
            assert parse.depth_follows(last, first, prev), (last, first, prev)
        last = final
    # an earlier diff arriving again, out of order, is caught
    first, final, prev, *_ = parse.depth(diffs[1])
    assert not parse.depth_follows(last, first, prev)


@pytest.mark.parametrize("name", venue_names())
def test_a_payload_without_its_fields_is_refused_with_the_venues_error(name: str) -> None:
    md = venue(name).market_data
    for parse in (md.trade, md.agg_trade, md.book_ticker, *md.extra.values()):
        with pytest.raises(md.error):
            parse({}, RECV)
    with pytest.raises(md.error):
        md.kline({}, RECV)
    with pytest.raises(md.error):
        md.depth({})
