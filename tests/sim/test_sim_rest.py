"""REST fidelity: Binance's shapes, values, weights and errors, checked against real payloads."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pytest
from sim_helpers import (
    BTC_0808,
    HTTP,
    SAMPLES,
    get,
    rebuild_book,
    recorded_lines,
    recorded_snapshot,
    replay_all,
    shape,
)

from tessera.data.schemas import KLINES, TRADES
from tessera.sim import ExchangeSimulator, SimMarket

EIGHT = Decimal("0.00000001")


def real(name: str) -> Any:
    return json.loads((HTTP / name).read_text())


def ccxt_fixture(method: str, description: str) -> Any:
    doc = json.loads((SAMPLES / "ccxt-fixtures" / "response-binance.json").read_text())
    return next(c for c in doc["methods"][method] if c["description"] == description)[
        "httpResponse"
    ]


def recorded_trades() -> list[dict[str, Any]]:
    return [json.loads(d) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade"]


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("/api/v3/ping", "ping_response.json"),
        ("/api/v3/time", "server_time_response.json"),
        ("/api/v3/trades?symbol=BTCUSDT&limit=5", "trades_response.json"),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5", "klines_response.json"),
        ("/api/v3/depth?symbol=BTCUSDT&limit=5", "depth_response.json"),
    ],
)
async def test_rest_payloads_have_binance_shapes(
    sim: ExchangeSimulator, path: str, fixture: str
) -> None:
    await replay_all(sim)
    status, headers, body = await get(sim, path)
    assert status == 200
    assert shape(body) == shape(real(fixture))
    assert headers["Content-Type"] == "application/json;charset=UTF-8"


async def test_rest_payloads_have_the_keys_ccxt_was_tested_with(sim: ExchangeSimulator) -> None:
    await replay_all(sim)
    _, _, book = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=2")
    ref_book = ccxt_fixture("fetchOrderBook", "spot orderbook")
    assert set(book) == set(ref_book)
    assert len(book["bids"][0]) == len(ref_book["bids"][0]) == 2
    _, _, ohlcv = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
    assert len(ohlcv[0]) == len(ccxt_fixture("fetchOHLCV", "Spot OHLCV with since and limit")[0])
    _, _, aggs = await get(sim, "/api/v3/aggTrades?symbol=BTCUSDT&limit=1")
    assert list(aggs[0]) == list(ccxt_fixture("fetchTrades", "public spot trades")[0])


async def test_exchange_info_is_the_real_one(sim: ExchangeSimulator) -> None:
    status, headers, body = await get(sim, "/api/v3/exchangeInfo")
    assert status == 200
    with gzip.open(SAMPLES / "cryptofeed" / "BINANCE.0.gz", "rt") as fh:
        recorded = json.loads(fh.readline().split(": ", 1)[1])
    (btc,) = body["symbols"]
    real = next(s for s in recorded["symbols"] if s["symbol"] == "BTCUSDT")
    # one deliberate difference: every spot order type, as Binance lists them today (the 2021
    # file predates STOP_LOSS and TAKE_PROFIT on BTCUSDT)
    assert set(btc.pop("orderTypes")) == set(real.pop("orderTypes")) | {"STOP_LOSS", "TAKE_PROFIT"}
    assert btc == real
    assert {k: v for k, v in body.items() if k not in ("symbols", "serverTime")} == {
        k: v for k, v in recorded.items() if k not in ("symbols", "serverTime")
    }
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == 20
    status, _, one = await get(sim, "/api/v3/exchangeInfo?symbol=BTCUSDT")
    assert status == 200 and [{**one["symbols"][0], "orderTypes": None}] == [
        {**btc, "orderTypes": None}
    ]
    status, _, many = await get(sim, '/api/v3/exchangeInfo?symbols=["BTCUSDT"]')
    assert status == 200 and many["symbols"] == one["symbols"]
    status, _, err = await get(sim, '/api/v3/exchangeInfo?symbols=["ETHBTC"]')
    assert (status, err) == (400, {"code": -1121, "msg": "Invalid symbol."})
    status, _, err = await get(sim, "/api/v3/exchangeInfo?symbols=BTCUSDT")
    assert status == 400 and err["code"] == -1100


async def test_depth_starts_as_the_recorded_snapshot_and_follows_the_diffs(
    sim: ExchangeSimulator,
) -> None:
    snap = recorded_snapshot(BTC_0808)
    _, _, before = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert before == {k: snap[k] for k in ("lastUpdateId", "bids", "asks")}
    await replay_all(sim)
    diffs = [json.loads(d) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@depth@100ms"]
    last, bids, asks = rebuild_book(snap, diffs)
    _, _, after = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert after["lastUpdateId"] == last == diffs[-1]["u"]
    assert {Decimal(p): Decimal(q) for p, q in after["bids"]} == bids
    assert {Decimal(p): Decimal(q) for p, q in after["asks"]} == asks
    prices = [Decimal(p) for p, _ in after["bids"]]
    assert prices == sorted(prices, reverse=True)
    _, _, top = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=7")
    assert top["bids"] == after["bids"][:7] and top["asks"] == after["asks"][:7]


async def test_trades_are_the_latest_recorded_ones(sim: ExchangeSimulator) -> None:
    await replay_all(sim)
    ref = recorded_trades()
    _, _, got = await get(sim, "/api/v3/trades?symbol=BTCUSDT&limit=1000")
    assert [(t["id"], t["price"], t["qty"], t["time"], t["isBuyerMaker"]) for t in got] == [
        (r["t"], r["p"], r["q"], r["T"], r["m"]) for r in ref[-1000:]
    ]
    for t in got:
        exact = Decimal(t["price"]) * Decimal(t["qty"])
        assert Decimal(t["quoteQty"]) == exact.quantize(EIGHT, rounding=ROUND_DOWN)
        assert not t["quoteQty"].endswith("0")  # Binance drops trailing zeros here
    from_id = ref[100]["t"]
    _, _, hist = await get(sim, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={from_id}&limit=3")
    assert [t["id"] for t in hist] == [from_id, from_id + 1, from_id + 2]


async def test_agg_trades_aggregate_the_recorded_trades(sim: ExchangeSimulator) -> None:
    await replay_all(sim)
    trades = {r["t"]: r for r in recorded_trades()}
    first = min(trades)
    got: list[dict[str, Any]] = []
    _, _, page = await get(sim, "/api/v3/aggTrades?symbol=BTCUSDT&fromId=0&limit=1000")
    while page:  # page through by fromId, as a client backfilling would
        got.extend(page)
        _, _, page = await get(
            sim, f"/api/v3/aggTrades?symbol=BTCUSDT&fromId={page[-1]['a'] + 1}&limit=1000"
        )
    ids = [a["a"] for a in got]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # one sequence, no hole
    covered = [i for a in got for i in range(a["f"], a["l"] + 1)]
    assert covered == sorted(trades) and covered[0] == first  # every trade exactly once
    assert len(got) < len(trades)  # some trades did aggregate
    for a in got:
        members = [trades[i] for i in range(a["f"], a["l"] + 1)]
        assert {(m["p"], m["T"], m["m"]) for m in members} == {(a["p"], a["T"], a["m"])}
        assert Decimal(a["q"]) == sum(Decimal(m["q"]) for m in members)
    t0 = got[10]["T"]
    _, _, window = await get(
        sim, f"/api/v3/aggTrades?symbol=BTCUSDT&startTime={t0}&endTime={t0 + 1000}"
    )
    assert window == [a for a in got if t0 <= a["T"] <= t0 + 1000]
    status, _, err = await get(
        sim, f"/api/v3/aggTrades?symbol=BTCUSDT&startTime={t0}&endTime={t0 + 3_600_001}"
    )
    assert (status, err["code"]) == (400, -1127)
    status, _, err = await get(sim, f"/api/v3/aggTrades?symbol=BTCUSDT&startTime={t0}&endTime=1")
    assert (status, err["code"]) == (400, -1023)


async def test_klines_built_from_real_trades_match_freqtrades_candles() -> None:
    """XRP/ETH aggregate trades in, 1m bars out; freqtrade built its candles from the same
    trades with its own code (``samples/freqtrade``)."""
    with gzip.open(SAMPLES / "freqtrade" / "XRP_OLD-trades.json.gz", "rt") as fh:
        rows = [t["info"] for t in json.load(fh)]
    ns = [r["T"] * 1_000_000 for r in rows]
    table = pa.Table.from_arrays(
        [
            pa.array([r["a"] for r in rows], pa.int64()),
            pa.array([Decimal(r["p"]) for r in rows], TRADES.field("price").type),
            pa.array([Decimal(r["q"]) for r in rows], TRADES.field("qty").type),
            pa.array([r["m"] for r in rows]),
            pa.array(ns, TRADES.field("trade_time").type),
            pa.array(ns, TRADES.field("event_time").type),
            pa.array([None] * len(rows), TRADES.field("recv_time").type),
        ],
        schema=TRADES,
    )
    market = SimMarket.from_tables(trades={"XRPETH": table})
    candles = feather.read_table(SAMPLES / "freqtrade" / "XRP_ETH-1m.feather").to_pylist()
    async with ExchangeSimulator(market, speed=None) as sim:
        await replay_all(sim)
        bars: list[list[Any]] = []
        start = 0
        while True:
            _, _, page = await get(
                sim, f"/api/v3/klines?symbol=XRPETH&interval=1m&startTime={start}&limit=1000"
            )
            if not page:
                break
            bars.extend(page)
            start = page[-1][0] + 60_000
    traded = [b for b in bars if b[8] > 0]
    assert len(traded) == len(candles)
    for b, c in zip(traded, candles, strict=True):
        assert b[0] == int(c["date"].timestamp() * 1000)
        assert [float(x) for x in b[1:6]] == [c[k] for k in ("open", "high", "low", "close")] + [
            c["volume"]
        ]
    for prev, b in itertools.pairwise(bars):  # minutes without trades: Binance's way
        assert b[0] == prev[0] + 60_000
        if b[8] == 0:
            assert b[1:5] == [prev[4]] * 4 and b[5] == "0.00000000"


async def test_klines_from_a_table_are_served_verbatim() -> None:
    """Binance's bulk CSV has the exact columns of /klines: a round trip must be lossless."""
    path = SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv"
    rows = list(csv.reader(path.open()))
    table = pa.Table.from_pylist(
        [
            {
                "interval": "1m",
                "open_time": int(r[0]) * 1_000_000,
                "close_time": int(r[6]) * 1_000_000,
                "open": Decimal(r[1]),
                "high": Decimal(r[2]),
                "low": Decimal(r[3]),
                "close": Decimal(r[4]),
                "volume": Decimal(r[5]),
                "quote_volume": Decimal(r[7]),
                "trades": int(r[8]),
                "taker_buy_base": Decimal(r[9]),
                "taker_buy_quote": Decimal(r[10]),
                "event_time": None,
                "recv_time": None,
            }
            for r in rows
        ],
        schema=KLINES,
    )
    market = SimMarket.from_tables(klines={"ADABTC": table})
    async with ExchangeSimulator(market, speed=None) as sim:
        await replay_all(sim)
        _, _, got = await get(sim, "/api/v3/klines?symbol=ADABTC&interval=1m")
        assert got == [[int(r[0]), *r[1:6], int(r[6]), r[7], int(r[8]), *r[9:]] for r in rows]
        _, _, (hour,) = await get(sim, "/api/v3/klines?symbol=ADABTC&interval=1h")
    assert hour[0] == int(rows[0][0]) and hour[6] == hour[0] + 3_600_000 - 1
    assert hour[1] == rows[0][1] and hour[4] == rows[-1][4]
    assert Decimal(hour[2]) == max(Decimal(r[2]) for r in rows)
    assert Decimal(hour[3]) == min(Decimal(r[3]) for r in rows)
    for col in (5, 7, 9, 10):
        assert Decimal(hour[col]) == sum(Decimal(r[col]) for r in rows)
    assert hour[8] == sum(int(r[8]) for r in rows)


async def test_request_weights_are_counted_like_binance(sim: ExchangeSimulator) -> None:
    used = 0
    for path, weight in (
        ("/api/v3/ping", 1),
        ("/api/v3/time", 1),
        ("/api/v3/exchangeInfo", 20),
        ("/api/v3/depth?symbol=BTCUSDT", 5),
        ("/api/v3/depth?symbol=BTCUSDT&limit=500", 25),
        ("/api/v3/depth?symbol=BTCUSDT&limit=1000", 50),
        ("/api/v3/depth?symbol=BTCUSDT&limit=5000", 250),
        ("/api/v3/trades?symbol=BTCUSDT", 25),
        ("/api/v3/historicalTrades?symbol=BTCUSDT", 25),
        ("/api/v3/aggTrades?symbol=BTCUSDT", 4),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m", 2),
        ("/api/v3/depth?symbol=NOPE", 5),  # refused requests cost weight too
    ):
        _, headers, _ = await get(sim, path)
        used += weight
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) == used, path
        assert headers["Content-Type"] == "application/json;charset=UTF-8"


async def test_too_much_weight_is_refused_with_retry_after(btc_market: SimMarket) -> None:
    async with ExchangeSimulator(btc_market, speed=None, weight_limit=30) as sim:
        status, _, _ = await get(sim, "/api/v3/exchangeInfo")
        assert status == 200
        status, headers, body = await get(sim, "/api/v3/exchangeInfo")
    assert status == 429 and body["code"] == -1003
    assert "limit is 30 request weight per 1 MINUTE" in body["msg"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-MBX-USED-WEIGHT-1M"] == "40"


async def test_calling_on_after_a_429_is_banned_with_418(btc_market: SimMarket) -> None:
    async with ExchangeSimulator(btc_market, speed=None, weight_limit=30) as sim:
        await get(sim, "/api/v3/exchangeInfo")
        first, _, _ = await get(sim, "/api/v3/exchangeInfo")  # 429: told to wait
        second, _, _ = await get(sim, "/api/v3/exchangeInfo")  # did not wait: banned
        status, headers, body = await get(sim, "/api/v3/ping")  # still banned
    assert (first, second, status) == (429, 418, 418)
    assert body["code"] == -1003 and "IP banned until" in body["msg"]
    assert 100 <= int(headers["Retry-After"]) <= 120


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v3/depth?symbol=NOPE", -1121),
        ("/api/v3/depth", -1102),
        ("/api/v3/depth?symbol=btcusdt", -1100),
        ("/api/v3/trades?symbol=BTCUSDT&limit=x", -1100),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=7m", -1120),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=-5", -1100),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=9&endTime=1", -1023),
        ('/api/v3/exchangeInfo?symbol=BTCUSDT&symbols=["BTCUSDT"]', -1128),
    ],
)
async def test_bad_requests_get_binance_errors(
    sim: ExchangeSimulator, path: str, code: int
) -> None:
    status, _, body = await get(sim, path)
    assert status == 400
    assert body["code"] == code and isinstance(body["msg"], str) and set(body) == {"code", "msg"}
    if code == -1121:
        assert body == {"code": -1121, "msg": "Invalid symbol."}
    if code == -1102:
        assert body["msg"].startswith("Mandatory parameter '")
