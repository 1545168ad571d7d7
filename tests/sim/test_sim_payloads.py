"""Pure pieces: Binance's number formats, bar arithmetic, aggregation, exchangeInfo entries,
websocket framing and the fault payloads."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sim_helpers import BTC_0808, HTTP, SAMPLES, recorded_lines

from tessera.sim.exchange_info import generated_entry, split_symbol, step_of
from tessera.sim.faults import malformed_frames
from tessera.sim.market import normalize_stream, ws_text_frame
from tessera.sim.payloads import (
    Kline,
    Trade,
    aggregate_trades,
    bucket_close,
    bucket_open,
    fmt8,
    fmt_plain,
    resample,
)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def recorded_trades() -> list[Trade]:
    return [
        Trade.from_ws(json.loads(d)) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"
    ]


def test_trade_rest_reproduces_binances_documented_example() -> None:
    (ref,) = json.loads((HTTP / "trades_response.json").read_text())
    t = Trade(ref["id"], ref["price"], ref["qty"], ref["time"], ref["isBuyerMaker"])
    assert t.rest() == ref  # including quoteQty "48.000012" (no trailing zeros)


def test_number_formats() -> None:
    assert fmt8(Decimal("61837.63")) == "61837.63000000"
    assert fmt8(Decimal("0.00002853")) == "0.00002853"
    assert fmt_plain(Decimal("48.00001200")) == "48.000012"
    assert fmt_plain(Decimal("1236.75260000")) == "1236.7526"
    assert fmt_plain(Decimal("100.00000000")) == "100"
    assert fmt_plain(Decimal("0.123456789")) == "0.12345678"  # 8 places at most, cut not rounded


@pytest.mark.parametrize(
    ("t", "interval", "open_", "close"),
    [
        (ms(2024, 8, 8, 23, 59, 59), "1s", ms(2024, 8, 8, 23, 59, 59), ms(2024, 8, 9) - 1),
        (ms(2024, 8, 8, 23, 59, 59), "15m", ms(2024, 8, 8, 23, 45), ms(2024, 8, 9) - 1),
        (ms(2024, 8, 8, 13, 5), "4h", ms(2024, 8, 8, 12), ms(2024, 8, 8, 16) - 1),
        # 2024-08-08 was a Thursday; Binance's weeks open on Monday 00:00 UTC.
        (ms(2024, 8, 8, 13, 5), "1w", ms(2024, 8, 5), ms(2024, 8, 12) - 1),
        (ms(2024, 2, 29, 12), "1M", ms(2024, 2, 1), ms(2024, 3, 1) - 1),
        (ms(2023, 12, 31, 23), "1M", ms(2023, 12, 1), ms(2024, 1, 1) - 1),
    ],
)
def test_bar_boundaries(t: int, interval: str, open_: int, close: int) -> None:
    assert bucket_open(t, interval) == open_
    assert bucket_close(open_, interval) == close


def test_bars_resampled_from_minutes_equal_bars_built_from_trades() -> None:
    """Two paths to a 5m bar (trade by trade, or merging 1m bars) must agree exactly."""
    trades = recorded_trades()
    minutes: list[Kline] = []
    direct: list[Kline] = []
    for t in trades:
        for bars, iv in ((minutes, "1m"), (direct, "5m")):
            start = bucket_open(t.time, iv)
            if not bars or bars[-1].open_time != start:
                bars.append(Kline.first(start, iv, t))
            else:
                bars[-1].add(t)
    assert resample(minutes, "5m") == direct
    assert sum(k.trades for k in direct) == len(trades)


def test_aggregation_groups_same_time_price_and_side() -> None:
    trades = recorded_trades()
    aggs = list(aggregate_trades(trades, 1000))
    assert [a.id for _, a in aggs] == list(range(1000, 1000 + len(aggs)))
    assert len(aggs) < len(trades)
    start = 0
    for last, a in aggs:
        members = trades[start : last + 1]
        assert (a.first_id, a.last_id) == (members[0].id, members[-1].id)
        assert {(m.time, m.price, m.is_buyer_maker) for m in members} == {
            (a.time, a.price, a.is_buyer_maker)
        }
        assert Decimal(a.qty) == sum(Decimal(m.qty) for m in members)
        start = last + 1
    assert start == len(trades)


def test_generated_exchange_info_entry_looks_like_a_real_one() -> None:
    with gzip.open(SAMPLES / "cryptofeed" / "BINANCE.0.gz", "rt") as fh:
        doc = json.loads(fh.readline().split(": ", 1)[1])
    before = copy.deepcopy(doc)
    entry = generated_entry("NEWTOKENUSDT", doc, Decimal("0.0001"), Decimal("0.1"))
    assert doc == before  # the recorded document is not touched
    real = next(s for s in doc["symbols"] if s["symbol"] == "BTCUSDT")
    assert set(entry) == set(real)
    assert {type(v) for v in entry.values()} == {type(v) for v in real.values()}
    assert {f["filterType"] for f in entry["filters"]} == {f["filterType"] for f in real["filters"]}
    assert (entry["symbol"], entry["baseAsset"], entry["quoteAsset"]) == (
        "NEWTOKENUSDT",
        "NEWTOKEN",
        "USDT",
    )
    filters = {f["filterType"]: f for f in entry["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.00010000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.10000000"
    assert split_symbol("ADABTC", {"BTC", "USDT"}) == ("ADA", "BTC")
    assert step_of(["61837.63000000", "61837.60000000"]) == Decimal("0.01")


def test_stream_names_and_websocket_frames() -> None:
    assert normalize_stream("BTCUSDT@trade") == "btcusdt@trade"
    assert normalize_stream("btcusdt@depth@100ms") == "btcusdt@depth@100ms"
    assert normalize_stream("btcusdt") is None and normalize_stream("a b@trade") is None
    for n, head in ((125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65536, b"\x81\x7f")):
        frame = ws_text_frame(b"x" * n)
        assert frame.startswith(head) and frame.endswith(b"x" * n)
        assert len(frame) == n + (2 if n < 126 else 4 if n < 65536 else 10)


def test_malformed_frames_are_broken_in_the_two_ways() -> None:
    payload = next(d for s, d in recorded_lines(BTC_0808) if s == "btcusdt@depth@100ms")
    bad_json, bad_fields = malformed_frames("both", "btcusdt@depth@100ms", payload, True)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad_json)
    doc = json.loads(bad_fields)
    assert doc["stream"] == "btcusdt@depth@100ms"
    assert doc["data"]["E"] == "not-a-number" and "u" not in doc["data"]
    assert malformed_frames("invalid_json", "btcusdt@depth@100ms", payload, False) == [
        payload[: len(payload) // 2]
    ]
