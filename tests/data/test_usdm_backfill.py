"""REST backfill of USDⓈ-M history through ccxt ``binanceusdm``: paging, checking, storing.

The server: an aiohttp stand-in for ``/fapi/v1/klines``, ``markPriceKlines`` and ``fundingRate``
answering, page by page as Binance does (``startTime``/``endTime`` inclusive, ``limit``), from
the bundled USDⓈ-M archives (samples/binance-usdm/archives: the real XRP/USDT perpetual rows
re-laid by scripts/bundle_usdm_archives.py), so the backfilled store can be compared with the
same archives imported. Fields the archives leave empty (quote volume, trade count, ...) are
sent as ``""``; a funding row carries ``markPrice`` where the real 1h mark file has a candle
at its hour, else ``""`` (as Binance answers for old rows). The simulator's ``/fapi/v1``
(tessera.sim.usdm) holds a 2-minute BTCUSDT recording with no funding history, too little to
page through; one test runs the klines backfill against it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pytest
from aiohttp import web
from test_futures_store import WIDE, cli
from test_usdm_import import (
    FUNDING_DEC,
    FUNDING_NOV,
    KLINES_1H,
    MARK_1H,
    REPO,
    config_error,
)
from typer.testing import CliRunner

from tessera.data.bulk import import_bulk_file, read_bulk_file
from tessera.data.futures_store import load_funding_rates
from tessera.data.store import ParquetStore
from tessera.data.usdm_rest import BackfillError, backfill, make_exchange

USDM = "binance-usdm"
NOV_START = 1_635_724_800_000  # 2021-11-01 00:00 UTC, ms
DEC_END = 1_640_995_200_000  # 2022-01-01


def rows_of(path: Path) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(read_bulk_file(path))))
    return [r for r in rows if r and r[0].isdigit()]


KLINES = {"1h": rows_of(KLINES_1H)}
MARKS = {"1h": rows_of(MARK_1H)}
MARK_OPEN = {int(r[0]): r[1] for r in MARKS["1h"]}
FUNDING = rows_of(FUNDING_NOV) + rows_of(FUNDING_DEC)


def kline_json(row: list[str]) -> list[Any]:
    return [int(row[0]), *row[1:6], int(row[6]), *row[7:]]


def funding_json(row: list[str]) -> dict[str, Any]:
    ms = int(row[0])
    return {
        "symbol": "XRPUSDT",
        "fundingTime": ms,
        "fundingRate": row[2],
        "markPrice": MARK_OPEN.get(ms - ms % 3_600_000, ""),
    }


@dataclass
class FapiStandIn:
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_on_request: int | None = None  # 1-based: answer HTTP 503 to that request
    bad_rate_on_request: int | None = None  # 1-based: a ninth decimal in its first row


def _window(request: web.Request, rows: list[Any], time_of: Any, largest: int) -> list[Any]:
    q = request.query
    start = int(q.get("startTime", 0))
    end = int(q.get("endTime", 1 << 62))
    limit = min(int(q.get("limit", 500)), largest)
    return [r for r in rows if start <= time_of(r) <= end][:limit]


@pytest.fixture
async def fapi() -> AsyncIterator[FapiStandIn]:
    state = FapiStandIn()

    def gate(request: web.Request) -> None:
        state.requests.append({"path": request.path, **request.query})
        if state.fail_on_request == len(state.requests):
            raise web.HTTPServiceUnavailable(text="maintenance")

    async def klines(request: web.Request) -> web.Response:
        gate(request)
        source = MARKS if "markPrice" in request.path else KLINES
        rows = source.get(request.query["interval"], [])
        page = _window(request, [kline_json(r) for r in rows], lambda r: r[0], 1500)
        return web.json_response(page)

    async def funding(request: web.Request) -> web.Response:
        gate(request)
        page = _window(
            request, [funding_json(r) for r in FUNDING], lambda r: r["fundingTime"], 1000
        )
        if state.bad_rate_on_request == len(state.requests) and page:
            page[0] = {**page[0], "fundingRate": "0.000100001"}
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/fapi/v1/klines", klines)
    app.router.add_get("/fapi/v1/markPriceKlines", klines)
    app.router.add_get("/fapi/v1/fundingRate", funding)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def exchange(url: str) -> Any:
    ex = make_exchange(url)
    ex.enableRateLimit = False  # a local stand-in: no need to pace the test
    return ex


async def run_backfill(
    store: ParquetStore, fapi: FapiStandIn, kind: str, limit: int, **kw: Any
) -> Any:
    ex = exchange(fapi.url)
    try:
        return await backfill(
            store, "XRPUSDT", kind, NOV_START, DEC_END, limit=limit, exchange=ex, **kw
        )
    finally:
        await ex.close()


def table(store: ParquetStore, dataset: str) -> pa.Table:
    return store.venue(USDM).read(dataset, "XRPUSDT").drop(["symbol", "date", "exchange"])


async def test_a_backfill_pages_through_klines_marks_and_funding_and_stores_what_the_archives_hold(
    tmp_path: Path, fapi: FapiStandIn
) -> None:
    rest = ParquetStore(tmp_path / "rest")
    k = await run_backfill(rest, fapi, "klines", 40, interval="1h")
    assert (k.pages, k.rows, k.written) == (3, 100, 100)
    starts = [int(r["startTime"]) for r in fapi.requests]
    opens = [int(r[0]) for r in KLINES["1h"]]
    assert starts == [NOV_START, opens[39] + 1, opens[79] + 1]  # each page after the last row
    assert {r["endTime"] for r in fapi.requests} == {str(DEC_END - 1)}
    m = await run_backfill(rest, fapi, "markPriceKlines", 1500, interval="1h")
    assert (m.pages, m.rows) == (1, 100)
    f = await run_backfill(rest, fapi, "fundingRate", 25)
    assert (f.pages, f.rows, f.written) == (4, 91, 91)

    archived = ParquetStore(tmp_path / "archive")
    for path in (KLINES_1H, MARK_1H, FUNDING_NOV, FUNDING_DEC):
        import_bulk_file(archived, path)
    assert table(rest, "klines").equals(table(archived, "klines"))
    assert table(rest, "mark_klines").equals(table(archived, "mark_klines"))
    got, want = table(rest, "funding_rates"), table(archived, "funding_rates")
    for col in ("funding_time", "reported_time", "funding_rate"):
        assert got[col].equals(want[col])
    assert got["mark_price"].null_count == 86  # REST: the 5 marks the 1h file has
    # with its own marks or the stored candles', the backtest reads the same funding
    assert load_funding_rates(rest, USDM, "XRPUSDT") == load_funding_rates(
        archived, USDM, "XRPUSDT"
    )


async def test_a_finished_window_is_skipped_and_an_overlapping_one_writes_nothing_new(
    tmp_path: Path, fapi: FapiStandIn
) -> None:
    store = ParquetStore(tmp_path)
    await run_backfill(store, fapi, "fundingRate", 1000)
    again = await run_backfill(store, fapi, "fundingRate", 1000)
    assert again.skipped and len(fapi.requests) == 1
    ex = exchange(fapi.url)
    try:
        wider = await backfill(
            store, "XRPUSDT", "fundingRate", NOV_START - 86_400_000, DEC_END, exchange=ex
        )
    finally:
        await ex.close()
    assert (wider.rows, wider.written, wider.skipped) == (91, 0, False)
    still_open = await run_backfill(
        ParquetStore(tmp_path / "b"), fapi, "fundingRate", 1000, now_ms=lambda: DEC_END - 1
    )
    assert not still_open.skipped  # a window not yet over is not marked done
    assert not (
        await run_backfill(
            ParquetStore(tmp_path / "b"), fapi, "fundingRate", 1000, now_ms=lambda: DEC_END
        )
    ).skipped


async def test_a_failed_request_keeps_the_pages_before_it_and_the_same_run_again_completes(
    tmp_path: Path, fapi: FapiStandIn
) -> None:
    store = ParquetStore(tmp_path)
    fapi.fail_on_request = 3
    with pytest.raises(BackfillError) as exc:
        await run_backfill(store, fapi, "fundingRate", 25)
    msg = str(exc.value)
    assert "fapiPublicGetFundingRate XRPUSDT page 3" in msg and "maintenance" in msg
    assert "The 2 page(s) before it are stored (50 rows new" in msg and "\n" not in msg
    assert table(store, "funding_rates").num_rows == 50
    fapi.fail_on_request = None
    done = await run_backfill(store, fapi, "fundingRate", 25)
    assert (done.rows, done.written) == (91, 41)


async def test_a_page_with_a_ninth_decimal_is_refused_and_nothing_of_it_is_stored(
    tmp_path: Path, fapi: FapiStandIn
) -> None:
    store = ParquetStore(tmp_path)
    fapi.bad_rate_on_request = 2
    with pytest.raises(BackfillError) as exc:
        await run_backfill(store, fapi, "fundingRate", 25)
    msg = str(exc.value)
    assert "page 2" in msg and "row 1, fundingRate '0.000100001'" in msg
    assert "8 decimal places" in msg and "The 1 page(s) before it are stored" in msg
    assert table(store, "funding_rates").num_rows == 25


def test_the_download_command_backfills_over_rest_and_says_what_failed_in_one_paragraph(
    tmp_path: Path,
) -> None:
    bad_kind = CliRunner().invoke(
        cli(tmp_path),
        ["data", "download", "--venue", USDM, "--kind", "trades", "--symbol", "XRPUSDT",
         "--start", "2021-11"],
        env=WIDE,
    )  # fmt: skip
    assert "klines, markPriceKlines, fundingRate" in config_error(bad_kind)
    closed = CliRunner().invoke(
        cli(tmp_path),
        ["data", "download", "--venue", USDM, "--kind", "fundingRate", "--symbol", "XRPUSDT",
         "--start", "2021-11", "--rest-url", "http://127.0.0.1:9"],
        env=WIDE,
    )  # fmt: skip
    msg = config_error(closed)
    assert "fapiPublicGetFundingRate XRPUSDT page 1" in msg and "Nothing was stored" in msg


async def test_klines_backfill_from_the_simulator_stores_its_bars(tmp_path: Path) -> None:
    import tessera.sim.usdm as sim_usdm

    market = sim_usdm.usdm_market(
        [REPO / "samples" / "binance-raw-ws" / "usdm" / "btcusdt_20240808.gz"]
    )
    # the simulator's USDⓈ-M entry point is being reworked (usdm_simulator -> usdm_venue)
    venue = getattr(sim_usdm, "usdm_venue", None)
    simulator = (
        venue(market, speed=None).sim if venue else sim_usdm.usdm_simulator(market, speed=None)
    )
    async with simulator as sim:
        sim.start_replay()
        await asyncio.wait_for(sim.wait_replayed(), 60)
        query = "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500"
        async with aiohttp.ClientSession() as s, s.get(sim.rest_url + query) as r:
            assert r.status == 200
            served = await r.json()
        assert len(served) >= 2
        first = int(served[0][0])
        ex = exchange(sim.rest_url)
        try:
            got = await backfill(
                ParquetStore(tmp_path), "BTCUSDT", "klines", first, first + 3_600_000,
                interval="1m", exchange=ex,
            )  # fmt: skip
        finally:
            await ex.close()
    assert got.rows == len(served)
    stored = ParquetStore(tmp_path).venue(USDM).read("klines", "BTCUSDT")
    for i, col in enumerate(("open", "high", "low", "close", "volume"), 1):
        assert stored[col].to_pylist() == [Decimal(r[i]) for r in served]
