"""Binance public bulk data (data.binance.vision): import local files and download with resume.

Layout: ``<base>/data/spot/{monthly,daily}/{klines,trades,aggTrades}/<SYMBOL>/[<interval>/]``
``<SYMBOL>-<interval|trades|aggTrades>-<YYYY-MM[-DD]>.zip``, each with a sibling ``.zip.CHECKSUM``
holding ``<sha256>  <file name>``.

CSV columns (with or without a header row; times in ms, or µs in the 2025+ spot files —
detected by magnitude):
- klines: open time, open, high, low, close, volume, close time, quote volume, trades,
  taker buy base, taker buy quote, ignore
- trades: id, price, qty, quote qty, time, is buyer maker, is best match
- aggTrades: agg id, price, qty, first id, last id, time, is buyer maker, is best match

Imports are idempotent (the store deduplicates rows; a manifest skips files already imported)
and downloads resume from a ``.part`` file with an HTTP Range request.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from tessera.data.schemas import SCHEMAS
from tessera.data.store import ParquetStore
from tessera.logging import get_logger

log = get_logger(__name__)

KINDS = {"klines": "klines", "trades": "trades", "aggTrades": "agg_trades"}
COLUMNS = {
    "klines": [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "trades",
        "taker_buy_base",
        "taker_buy_quote",
        "ignore",
    ],
    "trades": [
        "trade_id",
        "price",
        "qty",
        "quote_qty",
        "trade_time",
        "is_buyer_maker",
        "is_best_match",
    ],
    "aggTrades": [
        "agg_id",
        "price",
        "qty",
        "first_trade_id",
        "last_trade_id",
        "trade_time",
        "is_buyer_maker",
        "is_best_match",
    ],
}
TIME_COLS = {"open_time", "close_time", "trade_time"}
INT_COLS = {"trades", "trade_id", "agg_id", "first_trade_id", "last_trade_id"}


class BulkDataError(ValueError):
    """A bulk file that cannot be imported (bad checksum, unknown layout, bad rows)."""


def _to_ns(values: list[str]) -> pa.Array:
    ints = pa.array([int(v) for v in values], pa.int64())
    if not len(ints):
        return ints.cast(pa.timestamp("ns", tz="UTC"))
    top = pc.max(ints).as_py()
    factor = 1_000 if top >= 10**15 else 1_000_000  # µs (2025+ spot files) or ms
    return pc.multiply(ints, factor).cast(pa.timestamp("ns", tz="UTC"))


def parse_csv(text: str, kind: str, interval: str = "1m") -> pa.Table:
    """One bulk CSV (as text) -> a table in the store's schema for ``kind``."""
    if kind not in COLUMNS:
        raise BulkDataError(f"unknown bulk kind {kind!r}; expected one of {', '.join(COLUMNS)}")
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]  # header row
    names = COLUMNS[kind]
    for i, r in enumerate(rows[:3]):
        if len(r) != len(names):
            raise BulkDataError(f"{kind}: row {i + 1} has {len(r)} columns, expected {len(names)}")
    cols = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    dataset = KINDS[kind]
    schema = SCHEMAS[dataset]
    arrays: dict[str, pa.Array] = {}
    for field in schema:
        n = field.name
        if n in cols:
            if n in TIME_COLS:
                arrays[n] = _to_ns(cols[n])
            elif n in INT_COLS:
                arrays[n] = pa.array([int(v) for v in cols[n]], pa.int64())
            elif pa.types.is_boolean(field.type):
                arrays[n] = pa.array([v.strip().lower() == "true" for v in cols[n]], pa.bool_())
            else:
                arrays[n] = pc.cast(pa.array(cols[n], pa.string()), field.type)
        elif n == "interval":
            arrays[n] = pa.array([interval] * len(rows), pa.string())
        elif n == "event_time":
            src = "close_time" if kind == "klines" else "trade_time"
            arrays[n] = _to_ns(cols[src])
        else:
            arrays[n] = pa.nulls(len(rows), field.type)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def read_bulk_file(path: Path) -> str:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            csvs = [n for n in zf.namelist() if n.endswith(".csv")]
            if not csvs:
                raise BulkDataError(f"{path}: no CSV inside the zip")
            return zf.read(csvs[0]).decode()
    return path.read_text()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: Path, checksum_file: Path | None = None) -> bool | None:
    """True/False if a ``.CHECKSUM`` file exists (and matches), None if there is none."""
    checksum_file = checksum_file or path.with_name(path.name + ".CHECKSUM")
    if not checksum_file.exists():
        return None
    expected = checksum_file.read_text().split()[0].strip().lower()
    return sha256_file(path) == expected


@dataclass(frozen=True)
class BulkName:
    symbol: str
    kind: str
    interval: str
    period: str  # "2024-08" or "2024-08-08"

    @classmethod
    def parse(cls, name: str) -> BulkName:
        stem = name.removesuffix(".zip").removesuffix(".csv")
        parts = stem.split("-")
        if len(parts) < 3:
            raise BulkDataError(
                f"{name}: not a Binance bulk file name "
                "(<SYMBOL>-<interval|trades|aggTrades>-<YYYY-MM[-DD]>)"
            )
        symbol, mid, period = parts[0], parts[1], "-".join(parts[2:])
        kind = mid if mid in ("trades", "aggTrades") else "klines"
        return cls(symbol, kind, mid if kind == "klines" else "", period)


class Manifest:
    """Files already imported (by content hash), kept in the store root."""

    def __init__(self, store: ParquetStore) -> None:
        self.path = store.root / "_imports.json"
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def seen(self, digest: str) -> bool:
        return digest in self.entries

    def add(self, digest: str, info: dict[str, Any]) -> None:
        self.entries[digest] = info
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        tmp.replace(self.path)


def import_file(
    store: ParquetStore,
    path: Path,
    symbol: str | None = None,
    kind: str | None = None,
    interval: str | None = None,
) -> int:
    """Import one bulk file (zip or csv); returns rows written (0 if already imported)."""
    ok = verify_checksum(path)
    if ok is False:
        raise BulkDataError(f"{path}: checksum mismatch with {path.name}.CHECKSUM; not imported")
    digest = sha256_file(path)
    manifest = Manifest(store)
    if manifest.seen(digest):
        return 0
    name = BulkName.parse(path.name) if (symbol is None or kind is None) else None
    symbol = symbol or (name.symbol if name else "")
    kind = kind or (name.kind if name else "klines")
    interval = interval or (name.interval if name and name.interval else "1m")
    table = parse_csv(read_bulk_file(path), kind, interval)
    written = store.write(KINDS[kind], symbol, table)
    manifest.add(
        digest,
        {
            "file": path.name,
            "symbol": symbol,
            "kind": kind,
            "rows": table.num_rows,
            "written": written,
            "checksum": ok,
        },
    )
    log.info(
        "bulk file imported",
        file=path.name,
        rows=table.num_rows,
        written=written,
        checksum="verified" if ok else "none",
    )
    return written


def bulk_url(base: str, symbol: str, kind: str, period: str, interval: str = "1m") -> str:
    freq = "daily" if len(period) == 10 else "monthly"
    mid = interval if kind == "klines" else kind
    sub = f"{symbol}/{interval}/" if kind == "klines" else f"{symbol}/"
    return f"{base.rstrip('/')}/data/spot/{freq}/{kind}/{sub}{symbol}-{mid}-{period}.zip"


def periods(start: date, end: date, daily: bool) -> list[str]:
    out: list[str] = []
    d = start
    while d <= end:
        if daily:
            out.append(d.isoformat())
            d = date.fromordinal(d.toordinal() + 1)
        else:
            out.append(d.strftime("%Y-%m"))
            d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return out


async def download_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``.part`` with a Range request."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    async with session.get(url, headers=headers) as resp:
        if resp.status == 416:  # already complete
            part.replace(dest)
            return dest
        if resp.status == 404:
            raise BulkDataError(f"{url}: not found (404)")
        resp.raise_for_status()
        resuming = resp.status == 206
        total = int(resp.headers.get("Content-Length", "0")) + (have if resuming else 0)
        mode = "ab" if resuming else "wb"
        done = have if resuming else 0
        fh = await asyncio.to_thread(open, part, mode)
        try:
            async for chunk in resp.content.iter_chunked(1 << 16):
                fh.write(chunk)  # small buffered writes; the OS absorbs them
                done += len(chunk)
                if progress:
                    progress(done, total)
        finally:
            fh.close()
    part.replace(dest)
    return dest


async def download(
    store: ParquetStore,
    base_url: str,
    symbol: str,
    kind: str,
    period_list: Iterable[str],
    dest_dir: Path,
    interval: str = "1m",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, int]:
    """Download (resumably), verify and import each period; returns rows written per file."""
    results: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for period in period_list:
            url = bulk_url(base_url, symbol, kind, period, interval)
            name = url.rsplit("/", 1)[1]
            dest = dest_dir / name
            if not dest.exists():

                def report(done: int, total: int, n: str = name) -> None:
                    if progress is not None:
                        progress(n, done, total)

                await download_file(session, url, dest, report)
            async with session.get(url + ".CHECKSUM") as resp:
                if resp.status == 200:
                    (dest_dir / (name + ".CHECKSUM")).write_bytes(await resp.read())
            try:
                results[name] = await asyncio.to_thread(
                    import_file, store, dest, symbol, kind, interval
                )
            except BulkDataError:
                dest.unlink(missing_ok=True)  # a corrupt file must be downloaded again
                raise
    return results
