"""A looped replay never sends time or ids backwards: pass k is pass 0 moved forward.

Read as a client reads: websocket streams across two or three loop boundaries (spot and
USDⓈ-M), REST before and after a boundary, the REST state at random passes and positions, and a
live bot trading on 1s bars across two boundaries without dropping a bar. Expected shifts are
checked against the data itself (a whole number of minutes longer than the data, the id ranges
of the recording) and each later pass's payload against pass 0's moved by an independent
re-implementation of the documented shift.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import BTC_0808, get, ws_connect

from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.looping import loop_offsets, market_for_pass
from tessera.sim.recording import load_recording
from tessera.sim.state import MarketState
from tessera.sim.usdm import usdm_venue
from tessera.sim.usdm.market import USDM_RECORDINGS, usdm_exchange_info

MINUTE = 60_000
FUNDING_MS = 8 * 3_600_000
SPOT_STREAMS = [
    "btcusdt@trade",
    "btcusdt@aggTrade",
    "btcusdt@depth@100ms",
    "btcusdt@bookTicker",
    "btcusdt@kline_1s",
    "btcusdt@kline_1m",
]
USDM_STREAMS = [
    "btcusdt@trade",
    "btcusdt@aggTrade",
    "btcusdt@depth@0ms",
    "btcusdt@bookTicker",
    "btcusdt@kline_1s",
    "btcusdt@markPrice@1s",
]


def _short(frames: int, paths: list[Path], usdm: bool = False) -> SimMarket:
    """The first ``frames`` frames of a recording (with its snapshot): a pass of seconds."""
    rec = load_recording(paths)
    if usdm:
        return SimMarket(
            rec.frames[:frames], rec.snapshots, exchange_info=usdm_exchange_info(rec.symbols)
        )
    return SimMarket(rec.frames[:frames], rec.snapshots)


@pytest.fixture(scope="module")
def spot_short() -> SimMarket:
    return _short(2500, [BTC_0808])  # ~25 s of BTCUSDT


@pytest.fixture(scope="module")
def usdm_short() -> SimMarket:
    return _short(3000, list(USDM_RECORDINGS), usdm=True)  # ~12 s of BTCUSDT perpetual


def _times(market: SimMarket) -> tuple[int, int]:
    """First and last exchange time in the data (event and trade times)."""
    ts: list[int] = []
    for name in market.base_streams():
        for text in market.stream(name).payloads:  # type: ignore[union-attr]
            d = json.loads(text)
            ts += [d[k] for k in ("E", "T") if k in d]
    return min(ts), max(ts)


def _ids(market: SimMarket, stream: str, keys: tuple[str, ...]) -> int:
    """The id range plus one of ``keys`` over a stream's payloads (the per-pass id step)."""
    sd = market.stream(stream)
    assert sd is not None
    vals = [json.loads(p)[k] for p in sd.payloads for k in keys if k in json.loads(p)]
    return max(vals) - min(vals) + 1


def _moved(d: dict[str, Any], k: int, span: int, di: int, du: int) -> dict[str, Any]:
    """Pass 0's payload as pass ``k`` should say it (the documented shift, written out)."""
    out = json.loads(json.dumps(d))
    e = out.get("e")
    if "E" in out:
        out["E"] += k * span
    if e == "trade":
        out["T"] += k * span
        out["t"] += k * di
    elif e == "aggTrade":
        out["T"] += k * span
        out["a"] += k * di
        out["f"] += k * di
        out["l"] += k * di
    elif e == "kline":
        kk = out["k"]
        kk["t"] += k * span
        kk["T"] += k * span
        for key in ("f", "L"):
            if kk[key] >= 0:
                kk[key] += k * di
    elif e == "markPriceUpdate":
        while out["T"] <= out["E"]:
            out["T"] += FUNDING_MS
    else:  # depth diffs and bookTickers
        for key in ("U", "u", "pu"):
            if key in out:
                out[key] += k * du
        if "T" in out:
            out["T"] += k * span
    return out


def _check_span(market: SimMarket, span: int) -> None:
    lo, hi = _times(market)
    assert span % MINUTE == 0  # 1s and 1m bars stay on their grid
    assert span > hi - lo  # the next pass starts after this one ends
    assert span <= (hi - lo) + 2 * MINUTE  # no longer than whole minutes need


async def _read_passes(
    sim: ExchangeSimulator, streams: list[str], passes: float
) -> dict[str, list[str]]:
    """Every payload text of ``streams`` over ``passes`` passes, per stream, in order."""
    per_pass = {s: len(sim.market.stream(s).payloads) for s in streams}  # type: ignore[union-attr]
    want = int(sum(per_pass.values()) * passes)
    got: dict[str, list[str]] = {s: [] for s in streams}
    # A bounded queue: the client reads only as fast as the test does, so that a max-speed
    # replay waits for it instead of looping hundreds of times into an unbounded buffer.
    url = f"{sim.ws_url}/stream?streams={'/'.join(streams)}"
    async with websockets.connect(url, max_queue=16, close_timeout=1) as ws:
        for _ in range(want):
            raw = await asyncio.wait_for(ws.recv(), 10)
            stream = json.loads(raw)["stream"]
            got[stream].append(raw[raw.index('"data":') + len('"data":') : -1])
    return got


def _split(texts: list[str], n: int) -> list[list[dict[str, Any]]]:
    return [[json.loads(t) for t in texts[i : i + n]] for i in range(0, len(texts), n)]


def _assert_forward(stream: str, events: list[dict[str, Any]]) -> None:
    """What a client may rely on, over the whole sequence (loop boundaries included)."""
    if "E" in events[0]:
        es = [d["E"] for d in events]
        assert es == sorted(es), f"{stream}: event time went back"
    kind = stream.split("@", 1)[1]
    if kind == "trade":
        ids = [d["t"] for d in events]
        assert all(a < b for a, b in itertools.pairwise(ids)), f"{stream}: trade id"
    elif kind == "aggTrade":
        ids = [d["a"] for d in events]
        assert all(a < b for a, b in itertools.pairwise(ids))
        assert all(a["l"] < b["f"] for a, b in itertools.pairwise(events))
    elif kind.startswith("depth"):
        assert all(a["u"] < b["U"] for a, b in itertools.pairwise(events))
    elif kind == "bookTicker":
        us = [d["u"] for d in events]
        assert us == sorted(us), f"{stream}: update id went back"
    elif kind.startswith("kline_"):
        width = {"kline_1s": 1000, "kline_1m": MINUTE}[kind]
        opens = [d["k"]["t"] for d in events]
        assert all(t % width == 0 for t in opens), f"{stream}: off the bar grid"
        assert opens == sorted(opens), f"{stream}: open time went back"
        closed = [d["k"]["t"] for d in events if d["k"]["x"]]
        assert all(a < b for a, b in itertools.pairwise(closed)), stream
    elif kind.startswith("markPrice"):
        ts = [d["T"] for d in events]
        assert ts == sorted(ts) and all(d["T"] > d["E"] for d in events), stream


async def test_spot_streams_move_forward_across_loop_boundaries(spot_short: SimMarket) -> None:
    async with ExchangeSimulator(spot_short, speed=None, loop_replay=True) as sim:
        got = await _read_passes(sim, SPOT_STREAMS, 2.5)
        offsets = sim.loop_offsets
        assert sim.pass_index >= 2
    span = offsets.span_ms
    _check_span(spot_short, span)
    di = _ids(spot_short, "btcusdt@trade", ("t",))
    du = max(
        _ids(spot_short, "btcusdt@depth@100ms", ("U", "u")),
        _ids(spot_short, "btcusdt@bookTicker", ("u",)),
    )
    assert offsets.trade("BTCUSDT") == di
    assert offsets.update("BTCUSDT") >= du  # the snapshot's id may widen the range
    du = offsets.update("BTCUSDT")
    for stream in SPOT_STREAMS:
        base = spot_short.stream(stream)
        assert base is not None
        n = len(base.payloads)
        assert got[stream][:n] == base.payloads, f"{stream}: pass 0 is not as recorded"
        passes = _split(got[stream], n)
        for k, events in enumerate(passes[1:], 1):
            want = [_moved(json.loads(p), k, span, di, du) for p in base.payloads[: len(events)]]
            assert events == want, f"{stream}: pass {k} is not pass 0 moved"
        _assert_forward(stream, [d for p in passes for d in p])


async def test_usdm_streams_move_forward_and_a_new_pass_starts_a_new_book(
    usdm_short: SimMarket,
) -> None:
    venue = usdm_venue(usdm_short, speed=None, loop_replay=True)
    async with venue.sim as sim:
        got = await _read_passes(sim, USDM_STREAMS, 3.0)
        offsets = sim.loop_offsets
    _check_span(usdm_short, offsets.span_ms)
    for stream in USDM_STREAMS:
        n = len(usdm_short.stream(stream).payloads)  # type: ignore[union-attr]
        passes = _split(got[stream], n)
        assert len(passes) == 3
        _assert_forward(stream, [d for p in passes for d in p])
    diffs = _split(got["btcusdt@depth@0ms"], len(got["btcusdt@depth@0ms"]) // 3)
    for one in diffs:  # within a pass each diff chains to the one before, as recorded
        assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(one))
    for before, after in itertools.pairwise(diffs):  # a new pass: a gap, ids up
        assert after[0]["pu"] > before[-1]["u"]
    marks = [json.loads(t) for t in got["btcusdt@markPrice@1s"]]
    assert marks[-1]["E"] - marks[0]["E"] >= 2 * offsets.span_ms - 2 * 1000


async def test_spot_rest_after_a_boundary_serves_the_moved_pass_as_the_stream_does(
    spot_short: SimMarket,
) -> None:
    n = len(spot_short.frames)
    paths = [
        "/api/v3/trades?symbol=BTCUSDT&limit=1000",
        "/api/v3/aggTrades?symbol=BTCUSDT&limit=1000",
        "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000",
        "/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000",
        "/api/v3/depth?symbol=BTCUSDT&limit=100",
    ]
    async with (
        ExchangeSimulator(spot_short, speed=None, autostart=False, loop_replay=True) as sim,
        ws_connect(f"{sim.ws_url}/ws/btcusdt@trade") as ws,
    ):
        await asyncio.wait_for(sim.wait_connections(1), 5)
        trades = len(spot_short.trades("BTCUSDT").trades)
        sim.release(n)
        before = [(await get(sim, p))[2] for p in paths]
        streamed = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(trades)]
        sim.next_pass()  # by hand, once pass 0 is all out: it starts every socket over
        sim.release(n)
        after = [(await get(sim, p))[2] for p in paths]
        streamed += [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(trades)]
        off = sim.loop_offsets
    span, di, du = off.span_ms, off.trade("BTCUSDT"), off.update("BTCUSDT")
    t0, a0, m0, s0, d0 = before
    t1, a1, m1, s1, d1 = after
    assert [(t["id"] - di, t["time"] - span) for t in t1] == [(t["id"], t["time"]) for t in t0]
    assert [(a["a"] - di, a["f"] - di, a["T"] - span) for a in a1] == [
        (a["a"], a["f"], a["T"]) for a in a0
    ]
    for old, new in ((m0, m1), (s0, s1)):  # same bars, opened span later
        assert [[r[0] + span, *r[1:6], r[6] + span, *r[7:]] for r in old] == new
        assert new[0][0] > old[-1][0]
    assert d1["lastUpdateId"] == d0["lastUpdateId"] + du
    assert (d1["bids"], d1["asks"]) == (d0["bids"], d0["asks"])
    last = streamed[-1]  # the stream's last trade of pass 1 is REST's
    assert (last["t"], last["T"]) == (t1[-1]["id"], t1[-1]["time"])


async def test_usdm_rest_marks_and_funding_times_move_forward(usdm_short: SimMarket) -> None:
    n = len(usdm_short.frames)
    venue = usdm_venue(usdm_short, speed=None, autostart=False, loop_replay=True)
    seen: list[list[Any]] = []
    async with venue.sim as sim:
        for _ in range(3):
            sim.release(n)
            _, _, premium = await get(sim, "/fapi/v1/premiumIndex?symbol=BTCUSDT")
            _, _, marks = await get(
                sim, "/fapi/v1/markPriceKlines?symbol=BTCUSDT&interval=1m&limit=10"
            )
            _, _, bars = await get(sim, "/fapi/v1/klines?symbol=BTCUSDT&interval=1s&limit=1000")
            _, _, book = await get(sim, "/fapi/v1/depth?symbol=BTCUSDT&limit=5")
            _, _, funding = await get(sim, "/fapi/v1/fundingRate?symbol=BTCUSDT")
            seen.append([premium, marks, bars, book, funding])
            sim.next_pass()
        span = sim.loop_offsets.span_ms
    last_u = max(json.loads(p)["u"] for p in usdm_short.stream("btcusdt@depth@0ms").payloads)  # type: ignore[union-attr]
    for k, (premium, marks, bars, book, funding) in enumerate(seen):
        p0, m0, b0 = seen[0][0], seen[0][1], seen[0][2]
        assert premium["time"] == p0["time"] + k * span
        assert premium["markPrice"] == p0["markPrice"]
        assert premium["nextFundingTime"] > premium["time"]
        assert premium["nextFundingTime"] % FUNDING_MS == 0
        assert [r[0] for r in marks] == [r[0] + k * span for r in m0]
        assert [r[0] for r in bars] == [r[0] + k * span for r in b0]
        assert book["lastUpdateId"] > (k > 0) * last_u
        assert funding == []  # the bundled recording has no funding data: none invented
    times = [s[0]["nextFundingTime"] for s in seen]
    assert times == sorted(times)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(k=st.integers(1, 6), at=st.floats(0.0, 1.0))
def test_the_rest_state_of_any_pass_is_pass_0_moved(
    spot_short: SimMarket, k: int, at: float
) -> None:
    off = loop_offsets(spot_short)
    span, di, du = off.span_ms, off.trade("BTCUSDT"), off.update("BTCUSDT")
    position = 1 + int(at * (len(spot_short.frames) - 1))
    zero, moved = MarketState(spot_short), MarketState(market_for_pass(spot_short, k, off))
    zero.advance_to(position)
    moved.advance_to(position)
    assert moved.last_event_ms == zero.last_event_ms + k * span
    assert [(t.id, t.time, t.price) for t in moved.trades("BTCUSDT")] == [
        (t.id + k * di, t.time + k * span, t.price) for t in zero.trades("BTCUSDT")
    ]
    for interval in ("1s", "1m"):
        assert [(b.open_time, b.close) for b in moved.klines("BTCUSDT", interval)] == [
            (b.open_time + k * span, b.close) for b in zero.klines("BTCUSDT", interval)
        ]
    # longer bars keep their own grid: the same trades, bucketed again (span: whole minutes)
    bars_3m = moved.klines("BTCUSDT", "3m")
    assert all(b.open_time % (3 * MINUTE) == 0 for b in bars_3m)
    assert sum(b.trades for b in bars_3m) == len(zero.trades("BTCUSDT"))
    assert moved.books["BTCUSDT"].rest(20) == {
        **zero.books["BTCUSDT"].rest(20),
        "lastUpdateId": zero.books["BTCUSDT"].last_update_id + k * du,
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(k=st.integers(0, 8))
def test_every_stream_of_pass_k_ends_before_pass_k_plus_1_begins(
    usdm_short: SimMarket, k: int
) -> None:
    off = loop_offsets(usdm_short)
    this, nxt = market_for_pass(usdm_short, k, off), market_for_pass(usdm_short, k + 1, off)
    for name in ("btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth@0ms", "btcusdt@kline_1m"):
        last = json.loads(this.stream(name).payloads[-1])  # type: ignore[union-attr]
        first = json.loads(nxt.stream(name).payloads[0])  # type: ignore[union-attr]
        assert first["E"] > last["E"]
        key = {"trade": "t", "aggTrade": "a", "depth@0ms": "u"}.get(name.split("@", 1)[1])
        if key is not None:
            assert first[key] > last[key]
        if "k" in first:
            assert first["k"]["t"] > last["k"]["t"]
    assert nxt.clock_ms[0] > this.clock_ms[-1]


# --- a live bot across loop boundaries -----------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))  # the in-process bot


@pytest.fixture
def bot_sim(spot_short: SimMarket) -> Iterator[tuple[ExchangeSimulator, Any]]:
    from inprocess_bot import running_simulator

    with running_simulator(speed=5.0, market=spot_short, loop_replay=True) as pair:
        yield pair


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_live_bot_keeps_trading_on_newer_bars_across_loop_boundaries(
    tmp_path: Path, bot_sim: tuple[ExchangeSimulator, Any], spot_short: SimMarket
) -> None:
    from inprocess_bot import bot_options, wait_until

    from tessera.live.bot import EXIT_OK, TradingBot

    sim, engine = bot_sim
    bot = TradingBot(bot_options(sim, f"sqlite:///{tmp_path / 'bot.db'}"))
    task = asyncio.create_task(bot.run())
    orders_at: dict[int, int] = {}
    try:
        for boundary in (1, 2):
            await wait_until(lambda b=boundary: sim.pass_index >= b, 60, f"loop {boundary}")
            orders_at[boundary] = len(engine.orders)
            await wait_until(
                lambda b=boundary: len(engine.orders) > orders_at[b],
                40,
                f"an order after loop {boundary}",
            )
        newest = max(t.time for t in spot_short.trades("BTCUSDT").trades)
        # the bot's last bar (ns) is from a later pass than the data's own times
        assert bot._last_bar["BTCUSDT"] // 1_000_000 > newest + sim.loop_offsets.span_ms
    finally:
        bot._request_stop()
        code = await asyncio.wait_for(task, 60)
    assert bot.out_of_order_bars == 0
    assert code == EXIT_OK, bot.problems
