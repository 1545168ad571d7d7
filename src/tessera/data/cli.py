"""`tessera data ...` and `tessera ingest`."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tessera.config import ConfigError

if TYPE_CHECKING:
    from tessera.bootstrap import AppContext
    from tessera.config.settings import TesseraSettings
    from tessera.data.bulk import ImportResult
    from tessera.data.store import ParquetStore, PartitionCoverage

out = Console()
err = Console(stderr=True)
data_app = typer.Typer(
    help="The market-data store: coverage, SQL, import, download.", no_args_is_help=True
)


def _app(ctx: typer.Context) -> AppContext:
    from tessera.bootstrap import AppContext  # here: a command's --help needs no settings

    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def _store_root(app: AppContext) -> Path:
    return app.settings.data.store_dir or app.settings.data_dir / "store"


def _open_store(app: AppContext) -> ParquetStore:
    """The configured store; a root that cannot be created is a configuration error."""
    from tessera.data.store import ParquetStore

    root = _store_root(app)
    try:
        return ParquetStore(root)
    except OSError as exc:
        raise ConfigError(
            f"data.store_dir: cannot open the market-data store at {root}: "
            f"{exc.strerror or exc}. Set data.store_dir (or TESSERA_DATA__STORE_DIR) to a "
            f"writable folder, or fix the path."
        ) from exc


def _report_quarantine(store: ParquetStore) -> None:
    """Tell the user about corrupt files moved aside now, and about earlier ones still there.

    Reads that succeeded on the rest of the store keep exit code 0; the message is the signal.
    """
    now = store.quarantined
    for q in now:
        err.print(f"[yellow]quarantined[/] {q.original} -> {q.moved_to}: {q.reason}")
    if now:
        err.print(
            f"[yellow]{len(now)} corrupt file(s) quarantined[/] to {store.quarantine_dir}; "
            "the results above are from the rest of the store. Re-import or re-download the "
            "affected days (see docs/data.md, 'Failures')."
        )
    earlier = len(store.quarantine_contents()) - len(now)
    if earlier > 0:
        err.print(
            f"note: {earlier} file(s) quarantined earlier are in {store.quarantine_dir} "
            "(not read; see docs/data.md, 'Failures')"
        )


def _epoch_ns(moment: datetime | None) -> int | None:
    """A coverage time (a pandas Timestamp when pandas is installed, else a datetime) in ns."""
    if moment is None:
        return None
    value = getattr(moment, "value", None)  # pandas.Timestamp: exact to the nanosecond
    if isinstance(value, int):
        return value
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1_000


def _coverage_json(store: ParquetStore) -> dict[str, Any]:
    """`data info` as data: the same facts as the table; times ISO-8601 UTC to the millisecond
    and epoch ms, as every ``--json`` of the CLI (docs/cli.md)."""
    from tessera.console import epoch_ms, iso_utc

    def times(c: PartitionCoverage) -> dict[str, Any]:
        first, last = _epoch_ns(c.first), _epoch_ns(c.last)
        return {
            "first": iso_utc(first),
            "first_ms": epoch_ms(first),
            "last": iso_utc(last),
            "last_ms": epoch_ms(last),
        }

    return {
        "store": str(store.root),
        "partitions": [
            {
                "exchange": c.exchange,
                "dataset": c.dataset,
                "symbol": c.symbol,
                "day": c.day.isoformat(),
                "rows": c.rows,
                **times(c),
                "files": c.files,
                "missing": c.missing,
            }
            for c in store.coverage()
        ],
        "quarantined": [
            {"original": str(q.original), "moved_to": str(q.moved_to), "reason": q.reason}
            for q in store.quarantine_contents()
        ],
    }


@data_app.command("info")
def info(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON document (the table's facts) instead of the table"
        ),
    ] = False,
) -> None:
    """Coverage per exchange/dataset/symbol/day: rows, time range, files, and gaps.

    ``missing`` counts trade ids or bars absent from the whole series; a gap that crosses
    midnight UTC is counted on the day of the first row after it.
    """
    store = _open_store(_app(ctx))
    if as_json:
        doc = _coverage_json(store)
        typer.echo(json.dumps(doc, indent=1))  # plain stdout: no console markup in pipes
        _report_quarantine(store)
        return
    rows = store.coverage()
    if not rows:
        out.print(f"the store at {store.root} is empty: try `tessera data import --bundled`")
        _report_quarantine(store)
        return
    table = Table(title=f"store: {store.root}")
    for col in (
        "exchange",
        "dataset",
        "symbol",
        "day",
        "rows",
        "first (UTC)",
        "last (UTC)",
        "files",
        "missing",
    ):
        table.add_column(col, justify="right" if col in ("rows", "files", "missing") else "left")
    for c in rows:
        table.add_row(
            c.exchange,
            c.dataset,
            c.symbol,
            str(c.day),
            f"{c.rows:,}",
            f"{c.first:%H:%M:%S}" if c.first else "",
            f"{c.last:%H:%M:%S}" if c.last else "",
            str(c.files),
            f"[red]{c.missing:,}[/]" if c.missing else "0",
        )
    out.print(table)
    _report_quarantine(store)


@data_app.command("check")
def check(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="Check file footers only (fast) instead of every page")
    ] = False,
) -> None:
    """Verify every Parquet file of the store; move corrupt ones to <store>/_quarantine.

    Exit code 1 if a corrupt file was found (and quarantined), 0 if the store is sound.
    """
    store = _open_store(_app(ctx))
    found = store.check(deep=not quick)
    _report_quarantine(store)
    if found:
        raise typer.Exit(1)
    out.print(f"store at {store.root}: every file is readable ({'footers' if quick else 'full'})")


@data_app.command("query")
def query(
    ctx: typer.Context,
    sql: Annotated[
        str,
        typer.Argument(
            help="SQL over the views trades, agg_trades, klines, book_updates, "
            "book_snapshots, book_ticker, funding_rates, mark_klines"
        ),
    ],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write .csv or .parquet")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print")] = 50,
) -> None:
    """Run SQL (DuckDB) over the store and print a table or write CSV/Parquet."""
    import duckdb  # here, not at the top: `tessera data --help` and `ingest` need no DuckDB

    from tessera.data.catalog import Catalog

    store = _open_store(_app(ctx))
    catalog = Catalog(store)
    try:
        result = catalog.query(sql)
    except duckdb.Error as exc:
        _report_quarantine(store)
        raise ConfigError(f"query failed: {str(exc).splitlines()[0]}") from exc
    if out_file is not None:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        try:
            if out_file.suffix == ".parquet":
                pq.write_table(result, out_file)
            else:
                pacsv.write_csv(result, out_file)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(
                f"--out {out_file}: cannot write the result: {str(exc).splitlines()[0]}"
            ) from exc
        out.print(f"{result.num_rows:,} rows written to {out_file}")
        _report_quarantine(store)
        return
    table = Table()
    for name in result.column_names:
        table.add_column(name)
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    out.print(table)
    if result.num_rows > limit:
        out.print(f"… {result.num_rows - limit:,} more rows (use --out to save all)")
    _report_quarantine(store)


@data_app.command("compact")
def compact(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset")] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol")] = None,
) -> None:
    """Merge each partition's small files into one (atomically; dedup preserved)."""
    store = _open_store(_app(ctx))
    n = store.compact(dataset, symbol)
    out.print(f"compacted {n} partition(s)")
    _report_quarantine(store)


def _imported_before(done: list[ImportResult]) -> str:
    if not done:
        return "No file was imported before it."
    return (
        "Imported before it: "
        + ", ".join(
            f"{r.file.name} ({'already imported' if r.skipped else f'{r.written:,} rows written'})"
            for r in done
        )
        + "."
    )


@data_app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Binance bulk files (.zip/.csv), named like BTCUSDT-1m-2024-08.zip"),
    ] = None,
    bundled: Annotated[
        bool, typer.Option("--bundled", help="Import the real datasets in samples/")
    ] = False,
    symbol: Annotated[
        str | None, typer.Option(help="Override the symbol from the file name")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help="klines, trades, aggTrades, markPriceKlines or fundingRate (default: the file "
            "name's, or the Binance Vision folder's: a markPriceKlines file is named like klines)"
        ),
    ] = None,
    venue: Annotated[
        str | None,
        typer.Option(
            help="binance (spot) or binance-usdm (default: the folder's, data/futures/um is "
            "binance-usdm; markPriceKlines and fundingRate are binance-usdm; else binance)"
        ),
    ] = None,
) -> None:
    """Import Binance bulk-data files (spot, and USDⓈ-M under data/futures/um), or the bundled
    real datasets (idempotent).

    Each file is checked in full before any of it is stored. The first bad file stops the
    command (exit 2) with its line and field; the files before it stay imported, the ones after
    it are not read.
    """
    from tessera.data.bulk import COLUMNS, VENUES, BulkDataError, import_bulk_file, sentence
    from tessera.data.importers import import_bundled
    from tessera.data.store import StoreSchemaError, StoreWriteError

    store = _open_store(_app(ctx))
    if not bundled and not paths:
        raise ConfigError("nothing to import: give file paths or --bundled")
    if kind is not None and kind not in COLUMNS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(COLUMNS)}")
    if venue is not None and venue not in VENUES:
        raise ConfigError(f"--venue {venue!r}: expected one of {', '.join(VENUES)}")
    with Progress(TextColumn("{task.description}"), BarColumn(), console=out) as progress:
        if bundled:
            task = progress.add_task("bundled real data", total=1)
            result = import_bundled(store)
            progress.advance(task)
            for k, v in result.items():
                out.print(f"  {k}: {v:,} rows written")
        files = paths or []
        task = progress.add_task("bulk files", total=len(files))
        done: list[ImportResult] = []
        for i, p in enumerate(files):
            try:
                r = import_bulk_file(store, p, symbol=symbol, kind=kind, venue=venue)
            except (BulkDataError, StoreSchemaError, OSError) as exc:
                if isinstance(exc, StoreWriteError):
                    problem = (
                        f"{p}: the store could not be written ({exc}); the days of this file "
                        "written before the failure stay stored, and importing the file again "
                        "once the cause is fixed adds the rest (rows are deduplicated)."
                    )
                elif isinstance(exc, OSError):
                    problem = f"{p}: cannot read the file: {exc.strerror or exc}."
                else:
                    problem = str(exc)
                rest = files[i + 1 :]
                raise ConfigError(
                    f"{sentence(problem)} {_imported_before(done)}"
                    + (f" Not read (after it): {', '.join(f.name for f in rest)}." if rest else "")
                ) from exc
            done.append(r)
            what = (f"{r.venue} " if r.venue != store.exchange else "") + (
                f"{r.kind} {r.symbol}" + (f" {r.interval}" if r.interval else "")
            )
            if r.skipped:
                out.print(
                    f"  {p.name}: already imported as {what} (manifest "
                    f"{store.root / '_imports.json'}): skipped"
                )
            else:
                dup = r.rows - r.written
                out.print(
                    f"  {p.name}: {what}, {r.rows:,} rows read, {r.written:,} written"
                    + (f" ({dup:,} already stored)" if dup else "")
                )
            progress.advance(task)


def _day(option: str, text: str, end: bool = False) -> date:
    """``YYYY-MM-DD``, or ``YYYY-MM`` (the month's first day; its last for ``--end``)."""
    try:
        if len(text) == 7:
            first = date.fromisoformat(text + "-01")
            if not end:
                return first
            return date(first.year + (first.month == 12), first.month % 12 + 1, 1) - timedelta(1)
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: not a date; give YYYY-MM-DD (e.g. 2024-01-31) or, for a whole "
            "month, YYYY-MM"
        ) from None


@data_app.command("download")
def download(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Option(help="e.g. BTCUSDT")],
    start: Annotated[
        str, typer.Option(help="First day, YYYY-MM-DD (or a month, YYYY-MM)", show_default=False)
    ],
    kind: Annotated[
        str,
        typer.Option(
            help="klines, trades or aggTrades; with --venue binance-usdm: klines, "
            "markPriceKlines or fundingRate"
        ),
    ] = "klines",
    end: Annotated[
        str, typer.Option(help="Last day, YYYY-MM-DD or YYYY-MM (default: --start)")
    ] = "",
    interval: Annotated[str, typer.Option(help="Kline interval")] = "1m",
    daily: Annotated[
        bool, typer.Option("--daily/--monthly", help="Daily or monthly files")
    ] = False,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Default: data.bulk_url")
    ] = None,
    venue: Annotated[
        str,
        typer.Option(
            help="binance: spot bulk files; binance-usdm: USDⓈ-M history over REST "
            "(/fapi/v1/klines, markPriceKlines, fundingRate through ccxt binanceusdm)"
        ),
    ] = "binance",
    rest_url: Annotated[
        str | None,
        typer.Option(
            "--rest-url", help="With --venue binance-usdm: default https://fapi.binance.com"
        ),
    ] = None,
    archives: Annotated[
        bool,
        typer.Option(
            "--archives",
            help="With --venue binance-usdm: download Binance's USDⓈ-M bulk archives "
            "(data/futures/um) instead of the REST backfill",
        ),
    ] = False,
) -> None:
    """Download Binance bulk files (resumable, checksum-verified) and import them, or, with
    ``--venue binance-usdm``, backfill USDⓈ-M klines, mark-price klines or funding rates over
    REST (paged; each page checked, then stored atomically).

    A failure (no network, a missing file, a bad checksum or row) stops at that file with exit
    code 2 and says what was imported before it; running the same command again skips the files
    already imported and resumes a partial download.
    """
    from tessera.config.settings import require_supported_exchange
    from tessera.data.bulk import BulkDataError, check_interval, check_symbol, periods
    from tessera.data.bulk import download as run_download

    app = _app(ctx)
    if venue == "binance-usdm" and not archives:
        _backfill_usdm(app, symbol, start, end, kind, interval, rest_url)
        return
    if venue not in ("binance", "binance-usdm"):
        raise ConfigError(f"--venue {venue!r}: expected binance or binance-usdm")
    kinds: tuple[str, ...] = ("klines", "trades", "aggTrades")
    if venue == "binance-usdm":
        kinds += ("markPriceKlines", "fundingRate")
    if kind not in kinds:
        raise ConfigError(f"--kind {kind!r}: expected {', '.join(kinds)}")
    if kind == "fundingRate" and daily:
        raise ConfigError("--kind fundingRate: Binance publishes funding rates monthly only")
    try:
        symbol = check_symbol(symbol, "--symbol")
        if kind in ("klines", "markPriceKlines"):
            check_interval(interval, "--interval")
    except BulkDataError as exc:
        raise ConfigError(str(exc)) from exc
    first = _day("--start", start)
    last = _day("--end", end, end=True) if end else _day("--start", start, end=True)
    if last < first:
        raise ConfigError(f"--end {end}: before --start {start}")
    # Binance's public bulk-data site: the files of the venue exchange.name names
    require_supported_exchange(app.settings.exchange.name, "market data downloads")
    store = _open_store(app)
    dest = app.settings.data_dir / "downloads"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total or None)
            progress.update(tasks[name], completed=done, total=total or None)

        try:
            results = asyncio.run(
                run_download(
                    store,
                    base_url or app.settings.data.bulk_url,
                    symbol,
                    kind,
                    periods(first, last, daily),
                    dest,
                    interval,
                    report,
                    venue,
                )
            )
        except BulkDataError as exc:
            raise ConfigError(str(exc)) from exc
        except OSError as exc:  # the local disk: the downloads folder or the store
            raise ConfigError(
                f"cannot write {exc.filename or dest}: {exc.strerror or exc}. Free space or fix "
                "the folder (data.data_dir), then run the same command again: files already "
                "imported are skipped, a partial download resumes"
            ) from exc
    for name, n in results.items():
        out.print(f"  {name}: {n:,} rows written")


def _backfill_usdm(
    app: AppContext,
    symbol: str,
    start: str,
    end: str,
    kind: str,
    interval: str,
    rest_url: str | None,
) -> None:
    """`data download --venue binance-usdm`: one REST backfill of the days given."""
    from tessera.data.bulk import BulkDataError
    from tessera.data.usdm_rest import ENDPOINTS, backfill

    if kind not in ENDPOINTS:
        raise ConfigError(
            f"--kind {kind!r}: with --venue binance-usdm, expected one of {', '.join(ENDPOINTS)}"
        )
    first = _day("--start", start)
    last = _day("--end", end, end=True) if end else _day("--start", start, end=True)
    if last < first:
        raise ConfigError(f"--end {end}: before --start {start}")
    epoch = date(1970, 1, 1)
    start_ms = (first - epoch).days * 86_400_000
    end_ms = (last - epoch).days * 86_400_000 + 86_400_000
    store = _open_store(app)
    with Progress(TextColumn("{task.description}"), console=out) as progress:
        task = progress.add_task(f"{kind} {symbol}", total=None)

        def report(rows: int, written: int) -> None:
            progress.update(task, description=f"{kind} {symbol}: {rows:,} rows, {written:,} new")

        try:
            result = asyncio.run(
                backfill(
                    store,
                    symbol,
                    kind,
                    start_ms,
                    end_ms,
                    interval=interval,
                    rest_url=rest_url,
                    progress=report,
                )
            )
        except BulkDataError as exc:  # BackfillError and the symbol/interval checks
            raise ConfigError(str(exc)) from exc
        except OSError as exc:  # the local disk: the store
            raise ConfigError(
                f"cannot write {exc.filename or store.root}: {exc.strerror or exc}. Free space "
                "or fix the folder (data.store_dir), then run the same command again: stored "
                "rows are skipped"
            ) from exc
    what = f"binance-usdm {kind} {result.symbol}" + (
        f" {result.interval}" if result.interval else ""
    )
    if result.skipped:
        out.print(f"  {what} {first}..{last}: backfilled before (manifest): skipped")
    else:
        out.print(
            f"  {what} {first}..{last}: {result.rows:,} rows in {result.pages} page(s), "
            f"{result.written:,} written"
        )


def ingest(
    ctx: typer.Context,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", "-s", help="Default: data.symbols")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option(
            "--stream",
            help="trade, aggTrade, kline, depth, bookTicker; with exchange.name binance-usdm "
            "also markPrice (mark, index, funding rate, next funding time, every second) and "
            "forceOrder (liquidations); default: data.streams",
        ),
    ] = None,
    ws_url: Annotated[
        str | None,
        typer.Option(
            "--ws-url",
            help="Default: exchange.ws_url, else data.ws_url (binance-usdm: "
            "wss://fstream.binance.com)",
        ),
    ] = None,
    rest_url: Annotated[
        str | None,
        typer.Option(
            "--rest-url",
            help="Default: exchange.rest_url, else data.rest_url (binance-usdm: "
            "https://fapi.binance.com)",
        ),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Live console display")
    ] = True,
    max_buffered_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rows held in memory while the store cannot be written (default 2,000,000); "
            "beyond, the oldest are dropped (counted, logged, exit code 1)",
        ),
    ] = None,
) -> None:
    """Stream market data into the store: reconnects, gap backfill, book sync, crash-safe writes.

    The venue is exchange.name: binance (spot, stored as venue binance) or binance-usdm
    (USDⓈ-M perpetuals, stored as venue binance-usdm, next to `data import`/`download`'s).
    Exit code 1 if any row was lost (the store stayed unwritable past the buffer cap or at stop),
    the ingest failed, or it never connected to the websocket; the last line says which.
    """
    from tessera.config.settings import require_supported_exchange
    from tessera.data.ingest import IngestService, UnknownStreamKindError, stream_names
    from tessera.data.ingest.service import DEFAULT_MAX_BUFFERED_ROWS
    from tessera.logging import scrub

    app = _app(ctx)
    s = app.settings
    require_supported_exchange(s.exchange.name, "market data")
    venue, ws_default, rest_default = ingest_venue(s)
    symbols = symbol or s.data.symbols
    kinds = stream or s.data.streams
    try:  # before anything opens: a kind the venue lacks must not be subscribed in vain
        stream_names(symbols, kinds, s.data.intervals, venue)
    except UnknownStreamKindError as exc:
        given = "--stream" if stream else "data.streams"
        hint = (
            " markPrice and forceOrder are USDⓈ-M streams: set exchange.name to binance-usdm "
            "(tessera.yaml or TESSERA_EXCHANGE__NAME) to ingest them."
            if venue != "binance-usdm"
            else ""
        )
        raise ConfigError(
            f"{given}: {exc} (exchange.name {s.exchange.name!r}). Give {given} one of those "
            f"kinds.{hint}"
        ) from None
    store = _open_store(app)
    app.start_metrics()
    svc = IngestService(
        store,
        ws_url or ws_default,
        rest_url or rest_default,
        symbols,
        kinds=kinds,
        intervals=s.data.intervals,
        flush_rows=s.data.flush_rows,
        flush_interval_s=s.data.flush_interval_s,
        max_backoff_s=s.data.reconnect_max_backoff_s,
        planned_reconnect_s=s.data.planned_reconnect_h * 3600,
        backfill=s.data.backfill,
        depth_limit=s.data.depth_snapshot_limit,
        api_key=s.exchange.api_key.get_secret_value() if s.exchange.api_key else None,
        max_buffered_rows=max_buffered_rows or DEFAULT_MAX_BUFFERED_ROWS,
        venue=venue,  # its rows go to that venue's partition of the store
    )

    ever_connected = False

    async def watch_connected() -> None:
        nonlocal ever_connected
        await svc.connected.wait()  # set on every connect, cleared on a drop: seen even then
        ever_connected = True

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, svc.stop)
        watcher = asyncio.create_task(watch_connected())  # waits before the first connect
        task = asyncio.create_task(svc.run(duration))
        if progress and out.is_terminal:
            with Live(_ingest_table(svc, 0.0), console=out, refresh_per_second=2) as live:
                t0 = time.monotonic()
                while not task.done():
                    await asyncio.sleep(0.5)
                    live.update(_ingest_table(svc, time.monotonic() - t0))
        try:
            await task
        finally:
            watcher.cancel()

    failure: Exception | None = None
    try:
        asyncio.run(main())
    except Exception as exc:  # logged with its traceback by the service; said here in one line
        failure = exc
    st = svc.stats
    health = svc.health()
    out.print(
        f"ingest stopped: {st.messages:,} messages, {dict(st.rows_written)} rows written, "
        f"{st.reconnects} reconnects, {st.gaps_found} gaps ({st.gaps_filled} filled), "
        f"{st.malformed} malformed skipped"
    )
    if store.quarantined:
        _report_quarantine(store)
    if failure is not None:
        out.print(f"[red]ingest failed:[/] {failure!r:.300}; {health.summary()}", soft_wrap=True)
        raise typer.Exit(1)
    if health.data_lost:
        out.print(f"[red]ingest lost data:[/] {health.summary()}", soft_wrap=True)
        raise typer.Exit(1)
    if not ever_connected:  # a wrong URL or no network is not a successful (empty) ingest
        out.print(
            f"[red]ingest never connected[/] to {scrub(svc.ws_url)} ({st.reconnects} failed "
            "attempt(s), see the log): check --ws-url / exchange.ws_url and the network",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    out.print(f"ingest complete: {health.summary()}", soft_wrap=True)


def ingest_venue(s: TesseraSettings) -> tuple[str, str, str]:
    """exchange.name -> the ingest's venue (`tessera.venues.contract`) and its default websocket
    and REST bases (`tessera.venues.contract.exchange_hosts`: a perpetual ingest never falls back
    to spot's data.ws_url/rest_url, as `tessera run` does not)."""
    from tessera.venues.contract import exchange_hosts

    rest, ws = exchange_hosts(s)
    return ("binance-usdm" if s.exchange.name == "binance-usdm" else "binance-spot"), ws, rest


def _ingest_table(svc: object, elapsed: float) -> Table:
    from tessera.data.ingest import IngestService

    assert isinstance(svc, IngestService)
    st = svc.stats
    table = Table(title=f"ingest · {elapsed:,.0f} s")
    table.add_column("stream")
    table.add_column("messages", justify="right")
    table.add_column("per s", justify="right")
    for kind, n in sorted(st.by_stream.items()):
        table.add_row(kind, f"{n:,}", f"{n / elapsed:,.0f}" if elapsed else "")
    table.add_row("rows written", f"{sum(st.rows_written.values()):,}", "")
    table.add_row(
        "reconnects / gaps", f"{st.reconnects} / {st.gaps_found} ({st.gaps_filled} filled)", ""
    )
    table.add_row("malformed skipped", f"{st.malformed}", "")
    health = svc.health()
    if not health.ok or health.data_lost:
        table.add_row(
            "[red]store writes failing[/]" if not health.ok else "store writes",
            f"{health.buffered_rows:,} held / {health.rows_dropped:,} lost",
            (health.last_error or "")[:60],
        )
    return table
