"""REST backfill of USDⓈ-M perpetual history: trade klines, mark-price klines, funding rates.

Binance's ``/fapi/v1/klines``, ``/fapi/v1/markPriceKlines`` and ``/fapi/v1/fundingRate`` are
read through ccxt's ``binanceusdm`` (its rate limiter, retries-free errors and URLs), page by
page, into the venue ``binance-usdm`` of the store.

**Why ccxt's endpoint methods, not ``fetch_ohlcv``/``fetch_funding_rate_history``**: those two
parse Binance's decimal strings into floats and keep 6 of a kline's 12 columns; the store keeps
Binance's decimals exactly (8 places, refused rather than rounded) with every column. The
endpoint methods (``fapiPublicGetKlines``, ``fapiPublicGetMarkPriceKlines``,
``fapiPublicGetFundingRate``) send the same requests ``fetch_ohlcv(..., params={'price':
'mark'})`` and ``fetch_funding_rate_history`` send, and return the JSON as Binance wrote it.

**Paging**: from ``startTime`` = the window's start, ``limit`` rows a page; the next page starts
1 ms after the last row's time; a short page (or an empty one) ends the window. Binance answers
with the rows at or after ``startTime``, so a gap in the history (a delisting, a maintenance
window) is stepped over, not looped on.

**Storing**: every page is checked in full (kline pages through the bulk importer's parser: the
same column, decimal and bar-length checks) before it is written; the store's writes are atomic
and deduplicated, so a failure keeps the pages before it, stores nothing of the failing one, and
running the same command again fills in the rest. A finished window that lies wholly in the past
is recorded in the import manifest (``_imports.json``) and skipped when asked for again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from tessera.data.bulk import (
    INTERVALS,
    BulkDataError,
    Manifest,
    check_interval,
    check_symbol,
    parse_csv,
    sentence,
)
from tessera.data.futures_store import funding_table
from tessera.data.schemas import USDM_VENUE
from tessera.data.store import ParquetStore
from tessera.logging import get_logger

log = get_logger(__name__)

MS_NS: Final = 1_000_000
# kind -> (ccxt endpoint method, store dataset, Binance's largest page)
ENDPOINTS: Final[Mapping[str, tuple[str, str, int]]] = {
    "klines": ("fapiPublicGetKlines", "klines", 1500),
    "markPriceKlines": ("fapiPublicGetMarkPriceKlines", "mark_klines", 1500),
    "fundingRate": ("fapiPublicGetFundingRate", "funding_rates", 1000),
}
DEFAULT_REST_URL: Final = "https://fapi.binance.com"


class BackfillError(BulkDataError):
    """A backfill that failed: one paragraph naming the request (or page row and field), what
    was stored before it, and how to go on."""


@dataclass(frozen=True)
class BackfillResult:
    symbol: str
    kind: str
    interval: str  # "" for fundingRate
    pages: int
    rows: int  # rows received
    written: int  # rows new to the store
    skipped: bool  # the same finished window was backfilled before


def make_exchange(rest_url: str | None = None) -> Any:
    """ccxt's async ``binanceusdm``, its ``/fapi`` URLs pointed at ``rest_url`` when given (a
    simulator, a proxy); markets are never loaded: the endpoints take Binance's symbol id."""
    import ccxt.async_support as ccxt_async

    ex = ccxt_async.binanceusdm({"enableRateLimit": True})
    if rest_url:
        base = rest_url.rstrip("/")
        for key, url in list(ex.urls["api"].items()):
            if isinstance(url, str) and url.startswith(DEFAULT_REST_URL):
                ex.urls["api"][key] = url.replace(DEFAULT_REST_URL, base)
    return ex


def _funding_rows(page: list[Any], where: str) -> pa.Table:
    """A ``/fapi/v1/fundingRate`` page as ``funding_rates`` rows, every field checked."""
    rows: list[tuple[int, str, str | None, int | None]] = []
    for i, item in enumerate(page, 1):
        if not isinstance(item, dict):
            raise BackfillError(f"{where}: row {i} is not an object: {str(item)[:80]}")
        values: dict[str, str | None] = {}
        for field in ("fundingTime", "fundingRate", "markPrice"):
            raw = item.get(field)
            if raw is None or raw == "":
                if field != "markPrice":
                    raise BackfillError(f"{where}: row {i} has no {field}")
                values[field] = None
                continue
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                raise BackfillError(f"{where}: row {i}, {field} {raw!r} is not a number") from None
            exponent = value.normalize().as_tuple().exponent
            if field != "fundingTime" and isinstance(exponent, int) and exponent < -8:
                raise BackfillError(
                    f"{where}: row {i}, {field} {raw!r} has more than 8 decimal places; the "
                    "store keeps 8 (Binance's precision) and never rounds"
                )
            values[field] = str(raw)
        ms = int(str(values["fundingTime"]))
        if not 1_262_304_000_000 <= ms < 4_102_444_800_000:
            raise BackfillError(f"{where}: row {i}, fundingTime {ms} is not a time in ms")
        rows.append((ms * MS_NS, str(values["fundingRate"]), values["markPrice"], None))
    return funding_table(rows)


def _kline_rows(page: list[Any], kind: str, interval: str, where: str) -> pa.Table:
    """A kline page (Binance's 12-field arrays) through the bulk parser's checks."""
    lines = []
    for i, item in enumerate(page, 1):
        if not isinstance(item, list):
            raise BackfillError(f"{where}: row {i} is not a kline array: {str(item)[:80]}")
        lines.append(",".join("" if v is None else str(v) for v in item))
    try:
        return parse_csv("\n".join(lines), kind, interval, source=where)
    except BulkDataError as exc:
        raise BackfillError(str(exc).replace("line ", "row ", 1)) from None


async def backfill(
    store: ParquetStore,
    symbol: str,
    kind: str,
    start_ms: int,
    end_ms: int,
    *,
    interval: str = "1h",
    exchange: Any = None,
    rest_url: str | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    now_ms: Callable[[], int] | None = None,
) -> BackfillResult:
    """Fetch ``kind`` (klines, markPriceKlines, fundingRate) of ``symbol`` with times in
    ``[start_ms, end_ms)`` into the ``binance-usdm`` venue of ``store``.

    ``exchange`` is a ccxt ``binanceusdm`` (made from ``rest_url`` if None, and closed after);
    ``limit`` the page size (Binance's largest by default); ``progress(rows, written)`` is
    called after each page. `BackfillError` (one paragraph) on a failed request or a bad page.
    """
    if kind not in ENDPOINTS:
        raise BackfillError(f"--kind {kind!r}: expected one of {', '.join(ENDPOINTS)}")
    method, dataset, largest = ENDPOINTS[kind]
    symbol = check_symbol(symbol, "--symbol")
    is_kline = kind != "fundingRate"
    if is_kline:
        check_interval(interval, "--interval")
    else:
        interval = ""
    if end_ms <= start_ms:
        raise BackfillError(f"the window ends ({end_ms} ms) before it starts ({start_ms} ms)")
    page_size = min(limit or largest, largest)
    target = store.venue(USDM_VENUE)
    manifest = Manifest(store)
    key = f"rest {USDM_VENUE}:{kind} {symbol} {interval} {start_ms}-{end_ms}".replace("  ", " ")
    if manifest.entries.get(key, {}).get("complete"):
        log.info("backfill window done before, skipped", manifest_key=key)
        return BackfillResult(symbol, kind, interval, 0, 0, 0, True)
    import ccxt.async_support as ccxt_async

    own = exchange is None
    ex = make_exchange(rest_url) if own else exchange
    pages = rows = written = 0
    cursor = start_ms
    time_col = "open_time" if is_kline else "reported_time"
    try:
        while cursor < end_ms:
            params: dict[str, Any] = {
                "symbol": symbol,
                "startTime": cursor,
                "endTime": end_ms - 1,
                "limit": page_size,
            }
            if is_kline:
                params["interval"] = interval
            where = f"{method} {symbol} page {pages + 1} (startTime {cursor})"
            try:
                page = await getattr(ex, method)(params)
            except ccxt_async.BaseError as exc:  # network and exchange errors alike
                first = str(exc).splitlines()[0][:300] if str(exc) else ""
                raise BackfillError(
                    f"{where} failed: {type(exc).__name__}: {first or 'no detail'}. Check the "
                    "network and the address (--rest-url)"
                ) from exc
            if not isinstance(page, list):
                raise BackfillError(f"{where}: the answer is not a list: {str(page)[:120]}")
            if not page:
                break
            table = (
                _kline_rows(page, kind, interval, where) if is_kline else _funding_rows(page, where)
            )
            times = pc.cast(table[time_col], pa.int64())
            last_ns = pc.max(times).as_py()
            table = table.filter(pc.less(times, end_ms * MS_NS))
            written += target.write(dataset, symbol, table)
            rows += table.num_rows
            pages += 1
            if progress is not None:
                progress(rows, written)
            last_ms = last_ns // MS_NS
            if len(page) < page_size or last_ms + 1 <= cursor or last_ms + 1 >= end_ms:
                break
            cursor = last_ms + 1
    except BackfillError as exc:
        done = (
            f"The {pages} page(s) before it are stored ({written:,} rows new to the store)"
            if pages
            else "Nothing was stored"
        )
        raise BackfillError(
            f"{sentence(str(exc))} {done}; run the same command again to go on (stored rows "
            "are skipped)."
        ) from exc
    finally:
        if own:
            await ex.close()
    clock = now_ms or (lambda: time.time_ns() // MS_NS)
    step = (INTERVALS.get(interval) or 0) if is_kline else 0
    complete = end_ms + step <= clock()  # the last bar of the window has closed
    manifest.add(
        key,
        {
            "symbol": symbol,
            "kind": f"{USDM_VENUE}:{kind}",
            "interval": interval,
            "rows": rows,
            "written": written,
            "pages": pages,
            "complete": complete,
        },
    )
    log.info(
        "USDⓈ-M backfill done", symbol=symbol, kind=kind, interval=interval, rows=rows,
        written=written, pages=pages,
    )  # fmt: skip
    return BackfillResult(symbol, kind, interval, pages, rows, written, False)
