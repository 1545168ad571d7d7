"""Binance public bulk data (data.binance.vision): import local files and download with resume.

Layout: ``<base>/data/spot/{monthly,daily}/{klines,trades,aggTrades}/<SYMBOL>/[<interval>/]``
``<SYMBOL>-<interval|trades|aggTrades>-<YYYY-MM[-DD]>.zip``, each with a sibling ``.zip.CHECKSUM``
holding ``<sha256>  <file name>``. USDⓈ-M perpetuals live under ``data/futures/um/`` with the same
names, plus ``markPriceKlines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<period>.zip`` (named like
trade klines: the folder, or ``kind="markPriceKlines"``, tells them apart) and
``fundingRate/<SYMBOL>/<SYMBOL>-fundingRate-<YYYY-MM>.zip``; they are stored under the venue
``binance-usdm``, never with spot's rows.

CSV columns (with or without a header row; times in ms, or µs in the 2025+ spot files —
detected by magnitude):
- klines: open time, open, high, low, close, volume, close time, quote volume, trades,
  taker buy base, taker buy quote, ignore
- trades: id, price, qty, quote qty, time, is buyer maker, is best match
- aggTrades: agg id, price, qty, first id, last id, time, is buyer maker, is best match
- markPriceKlines: the klines columns; the volume columns are stored null (a mark price has no
  traded volume)
- fundingRate: calc_time (ms), funding_interval_hours, last_funding_rate

A kline's quote volume, trade count and taker volumes (and a mark kline's volume) may be empty:
stored null (unknown), not zero.

Imports are idempotent (the store deduplicates rows; a manifest skips a file already imported
with the same symbol, kind and interval) and downloads resume from a ``.part`` file with an HTTP
Range request.

A file is parsed and checked in full before anything of it is stored: a short row, a value that
is not a number, a value with more decimals than the store keeps (8, Binance's own precision: it
is refused, never rounded), a kline whose length is not its interval — each raises
`BulkDataError` naming the file, the line and the field, and nothing of that file is written.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import itertools
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from tessera.data.barfile import BINANCE_KLINE_COLUMNS
from tessera.data.schemas import PERP_DATASETS, SCHEMAS, SPOT_VENUE, USDM_VENUE
from tessera.data.store import ParquetStore
from tessera.logging import get_logger

log = get_logger(__name__)

KINDS = {
    "klines": "klines",
    "trades": "trades",
    "aggTrades": "agg_trades",
    "markPriceKlines": "mark_klines",
    "fundingRate": "funding_rates",
}
KLINE_KINDS = frozenset({"klines", "markPriceKlines"})
# Binance publishes these USDⓈ-M archives too; the store has no dataset for them, and their
# files are named like trade klines, so they are refused rather than stored as trade prices.
UNSTORED_KINDS = ("indexPriceKlines", "premiumIndexKlines", "bookTicker", "bookDepth", "metrics")
COLUMNS = {
    "klines": list(BINANCE_KLINE_COLUMNS),
    "markPriceKlines": list(BINANCE_KLINE_COLUMNS),
    "fundingRate": ["calc_time", "funding_interval_hours", "last_funding_rate"],
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
TIME_COLS = {"open_time", "close_time", "trade_time", "calc_time"}
INT_COLS = {
    "trades",
    "trade_id",
    "agg_id",
    "first_trade_id",
    "last_trade_id",
    "funding_interval_hours",
}
# Kline columns a source may leave empty (unknown: stored null); a mark kline's volume too.
OPTIONAL_COLS = {"quote_volume", "trades", "taker_buy_base", "taker_buy_quote"}
MARK_NULL_COLS = ("volume", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
HOUR_MS = 3_600_000
# Every kline interval Binance publishes, with its length in ms (None: a calendar month).
INTERVALS: dict[str, int | None] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": None,
}
DECIMALS = 8  # the store's scale (schemas.PRICE/QTY): Binance's own precision
MS_NS = 1_000_000
# Times outside these years are a unit mistake (seconds read as ms, a shifted column), not data.
EARLIEST_NS = 1_262_304_000_000_000_000  # 2010-01-01
LATEST_NS = 4_102_444_800_000_000_000  # 2100-01-01
SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
NAME_FORMAT = "<SYMBOL>-<interval|trades|aggTrades|fundingRate>-<YYYY-MM[-DD]>.zip or .csv"
VENUES = (SPOT_VENUE, USDM_VENUE)


class BulkDataError(ValueError):
    """A bulk file that cannot be imported (bad checksum, unknown layout, bad rows), or a
    download that failed; the message is one paragraph naming the file, line and field."""


def sentence(text: str) -> str:
    """``text`` ending with a full stop, so that further sentences can follow it."""
    text = text.rstrip()
    return text if text.endswith(".") else text + "."


def check_interval(interval: str, where: str) -> str:
    """``interval`` if Binance publishes klines of it; else `BulkDataError` naming them all."""
    if interval not in INTERVALS:
        raise BulkDataError(
            f"{where}: {interval!r} is not a Binance kline interval; Binance's are "
            f"{', '.join(INTERVALS)} (case matters: 1m is a minute, 1M a month)"
        )
    return interval


def check_symbol(symbol: str, where: str) -> str:
    """The symbol upper-cased; it becomes a folder name of the store, so only letters and
    digits (as every Binance spot symbol) are accepted."""
    upper = symbol.strip().upper()
    if not SYMBOL.fullmatch(upper):
        raise BulkDataError(
            f"{where}: {symbol!r} is not a Binance symbol (2 to 30 letters and digits, "
            "like BTCUSDT)"
        )
    return upper


@dataclass(frozen=True)
class _Rows:
    """The parsed CSV rows of one file, by column, with the 1-based line of each row."""

    source: str
    kind: str
    lines: list[int]
    cols: dict[str, list[str]]

    def error(self, i: int, field: str, problem: str) -> BulkDataError:
        names = COLUMNS[self.kind]
        return BulkDataError(
            f"{self.source}: line {self.lines[i]}, field {field} (column "
            f"{names.index(field) + 1} of {len(names)} of a Binance {self.kind} row): {problem}. "
            "Nothing of this file was stored."
        )


def _first_failing(values: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """The index of the first value ``convert`` rejects (it rejects the whole array), found by
    bisection: about two passes over the data, and only on the error path."""
    lo, hi = 0, len(values)  # invariant: values[lo:hi] holds a failure
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError, ValueError):
            hi = mid
        else:
            lo = mid
    return lo


def _ints(rows: _Rows, field: str, optional: bool = False) -> pa.Array:
    values = rows.cols[field]
    try:
        if optional:
            return pa.array([int(v) if v.strip() else None for v in values], pa.int64())
        return pa.array([int(v) for v in values], pa.int64())
    except (ValueError, OverflowError, pa.ArrowInvalid):
        pass
    for i, v in enumerate(values):
        if optional and not v.strip():
            continue
        try:
            pa.array([int(v)], pa.int64())
        except (ValueError, OverflowError, pa.ArrowInvalid):
            raise rows.error(i, field, f"{v!r} is not a whole number (64-bit)") from None
    raise AssertionError("unreachable: a value failed in bulk but not alone")


def _times(rows: _Rows, field: str) -> pa.Array:
    """ms or µs (the 2025+ spot files) since 1970 -> timestamp[ns, UTC]; the unit is told by
    magnitude, and a time outside 2010..2100 in that unit is an error (seconds, a bad column)."""
    ints = _ints(rows, field)
    if not len(ints):
        return ints.cast(pa.timestamp("ns", tz="UTC"))
    top = pc.max(ints).as_py()
    factor, unit = (1_000, "µs") if top >= 10**15 else (MS_NS, "ms")
    low = pc.less(ints, EARLIEST_NS // factor)
    high = pc.greater_equal(ints, LATEST_NS // factor)
    bad = pc.or_(low, high)
    if pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        v = ints[i].as_py()
        raise rows.error(
            i,
            field,
            f"{v} is not a time between 2010 and 2100 in {unit} since 1970 (the unit was read "
            f"from the file's largest {field}); Binance bulk files count ms, or µs since 2025",
        )
    return pc.multiply(ints, factor).cast(pa.timestamp("ns", tz="UTC"))


def _bools(rows: _Rows, field: str) -> pa.Array:
    values = rows.cols[field]
    text = pc.ascii_lower(pc.utf8_trim_whitespace(pa.array(values, pa.string())))
    is_true, is_false = pc.equal(text, "true"), pc.equal(text, "false")
    bad = pc.invert(pc.or_(is_true, is_false))
    if pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        raise rows.error(i, field, f"{values[i]!r} is neither true nor false")
    return is_true


def _decimal_problem(value: str, arrow_message: str) -> str:
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        return f"{value!r} is not a number"
    if not d.is_finite():
        return f"{value!r} is not a finite number"
    exponent = d.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places > DECIMALS:
        return (
            f"{value!r} has {places} decimal places; the store keeps {DECIMALS} (Binance's own "
            "precision) and never rounds a price or quantity, and this value has no exact "
            f"{DECIMALS}-place form (only trailing zeros could go). Fix or remove the row in "
            "the source, or round it there on purpose"
        )
    return f"{value!r} cannot be stored as a decimal with {DECIMALS} places ({arrow_message})"


def _decimals(rows: _Rows, field: str, type_: pa.DataType, optional: bool = False) -> pa.Array:
    text = pc.utf8_trim_whitespace(pa.array(rows.cols[field], pa.string()))
    if optional:  # an empty field is unknown: null, not zero
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)

    def convert(values: pa.Array) -> object:
        return pc.cast(values, type_)

    try:
        return pc.cast(text, type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        i = _first_failing(text, convert)
        raise rows.error(i, field, _decimal_problem(rows.cols[field][i], str(exc))) from None


def _check_bar_length(rows: _Rows, opens: pa.Array, closes: pa.Array, interval: str) -> None:
    """Most bars of a kline file must last its interval (close = open + interval - 1 unit).

    Binance's own files hold a few irregular bars around old maintenance windows (e.g.
    BTCUSDT-1h-2018-02), so single bars may differ (they are stored as published); a file
    whose bars mostly have another length is labelled with the wrong interval.
    """
    step_ms = INTERVALS[interval]
    if step_ms is None or not len(opens):
        return  # a calendar month has no fixed length
    length = pc.subtract(pc.cast(closes, pa.int64()), pc.cast(opens, pa.int64()))
    step = step_ms * MS_NS
    fits = pc.or_(pc.equal(length, step - MS_NS), pc.equal(length, step - 1_000))
    n_fit = pc.sum(pc.cast(fits, pa.int64())).as_py() or 0
    if 2 * n_fit >= len(opens):
        if n_fit < len(opens):
            log.warning(
                "kline bars whose length is not their interval (stored as published)",
                file=rows.source,
                interval=interval,
                bars=len(opens) - n_fit,
            )
        return
    i = pc.index(fits, False).as_py()
    ms = (length[i].as_py() + MS_NS) / MS_NS
    guess = [k for k, v in INTERVALS.items() if v is not None and abs(v - ms) < 1]
    raise rows.error(
        i,
        "close_time",
        f"a {interval} bar closes {step_ms:,} ms after it opens, but {len(opens) - n_fit:,} of "
        f"the file's {len(opens):,} bars do not (this one: {ms:,.0f} ms"
        + (f", a {guess[0]} bar" if guess else "")
        + "); the interval in the file name (or given) does not match the data",
    )


def parse_csv(text: str, kind: str, interval: str = "1m", source: str = "<csv>") -> pa.Table:
    """One bulk CSV (as text) -> a table in the store's schema for ``kind``.

    Every row and field is checked before the table is returned; the first problem raises
    `BulkDataError` naming ``source`` (the file), the 1-based line and the field.
    """
    if kind not in COLUMNS:
        raise BulkDataError(f"unknown bulk kind {kind!r}; expected one of {', '.join(COLUMNS)}")
    if kind in KLINE_KINDS:
        check_interval(interval, source)
    names = COLUMNS[kind]
    numbered = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), 1) if r]
    if numbered and not numbered[0][1][0].strip().lstrip("-").isdigit():
        numbered = numbered[1:]  # header row
    for n, r in numbered:
        if len(r) != len(names):
            raise BulkDataError(
                f"{source}: line {n} has {len(r)} columns, a Binance {kind} row has {len(names)} "
                f"({', '.join(names)})"
                + ("; the line looks cut short (a truncated file?)" if len(r) < len(names) else "")
                + ". Nothing of this file was stored."
            )
    rows = _Rows(
        source,
        kind,
        [n for n, _ in numbered],
        {name: [r[i] for _, r in numbered] for i, name in enumerate(names)},
    )
    if kind == "fundingRate":
        return _funding_table(rows)
    dataset = KINDS[kind]
    schema = SCHEMAS[dataset]
    arrays: dict[str, pa.Array] = {}
    for field in schema:
        n = field.name
        optional = kind in KLINE_KINDS and (
            n in OPTIONAL_COLS or (kind == "markPriceKlines" and n == "volume")
        )
        if n in rows.cols:
            if n in TIME_COLS:
                arrays[n] = _times(rows, n)
            elif n in INT_COLS:
                arrays[n] = _ints(rows, n, optional)
            elif pa.types.is_boolean(field.type):
                arrays[n] = _bools(rows, n)
            else:
                arrays[n] = _decimals(rows, n, field.type, optional)
        elif n == "interval":
            arrays[n] = pa.array([interval] * len(numbered), pa.string())
        elif n == "event_time":
            arrays[n] = arrays["close_time" if kind in KLINE_KINDS else "trade_time"]
        else:
            arrays[n] = pa.nulls(len(numbered), field.type)
    if kind in KLINE_KINDS:
        _check_bar_length(rows, arrays["open_time"], arrays["close_time"], interval)
    if kind == "markPriceKlines":  # checked above; a mark price has no traded volume
        for col in MARK_NULL_COLS:
            arrays[col] = pa.nulls(len(numbered), schema.field(col).type)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def _funding_table(rows: _Rows) -> pa.Table:
    """A fundingRate archive's rows as ``funding_rates``: ``calc_time`` is kept as reported and
    floored to the hour for the nominal ``funding_time`` (the key shared with REST rows)."""
    schema = SCHEMAS["funding_rates"]
    reported = _times(rows, "calc_time")
    hours = _ints(rows, "funding_interval_hours")
    bad = pc.less_equal(hours, 0)
    if len(hours) and pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        raise rows.error(
            i, "funding_interval_hours", f"{hours[i].as_py()} is not a positive hour count"
        )
    rate = _decimals(rows, "last_funding_rate", schema.field("funding_rate").type)
    ns = pc.cast(reported, pa.int64())
    hour_ns = HOUR_MS * MS_NS
    nominal = pc.multiply(pc.divide(ns, hour_ns), hour_ns)  # floored: the times are positive
    arrays = {
        "funding_time": nominal.cast(schema.field("funding_time").type),
        "reported_time": reported,
        "funding_rate": rate,
        "mark_price": pa.nulls(len(ns), schema.field("mark_price").type),
        "interval_hours": pc.cast(hours, pa.int32()),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


# What a file that is not a CSV usually is, by its first bytes.
MAGIC = {
    b"ARROW1": "an Arrow/Feather file (freqtrade stores candles so)",
    b"PAR1": "a Parquet file",
    b"\x1f\x8b": "a gzip file",
    b"PK\x03\x04": "a zip archive (name it .zip)",
}


def read_bulk_file(path: Path) -> str:
    """The CSV text of a bulk ``.zip`` or ``.csv``; `BulkDataError` if it is neither."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                csvs = [n for n in zf.namelist() if n.endswith(".csv")]
                if not csvs:
                    raise BulkDataError(f"{path}: no CSV inside the zip; nothing was stored")
                data, inner = zf.read(csvs[0]), f"{path} (its {csvs[0]})"
        except zipfile.BadZipFile as exc:
            raise BulkDataError(
                f"{path}: not a readable zip archive ({exc}); a Binance bulk file is a zip "
                "holding one CSV. Download it again (a partial download?); nothing was stored"
            ) from exc
    else:
        data, inner = path.read_bytes(), str(path)
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        what = next((w for m, w in MAGIC.items() if data.startswith(m)), "binary data")
        raise BulkDataError(
            f"{inner}: not a text CSV — byte {exc.start} is not UTF-8; the file looks like "
            f"{what}. `tessera data import` reads Binance bulk kline, trades and aggTrades "
            "CSV files (or their zips); nothing was stored"
        ) from exc


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
            raise BulkDataError(f"{name}: not a Binance bulk file name ({NAME_FORMAT})")
        symbol, mid, period = parts[0], parts[1], "-".join(parts[2:])
        kind = mid if mid in ("trades", "aggTrades", "fundingRate") else "klines"
        if kind == "klines":
            check_interval(mid, f"{name}: the second part of a bulk file name ({NAME_FORMAT})")
        return cls(symbol, kind, mid if kind == "klines" else "", period)


class Manifest:
    """Files already imported, kept in the store root as ``_imports.json``.

    Keyed by content hash, kind, symbol and interval: the same file imported under another
    symbol or interval is another import. Entries written before the key had all four are
    keyed by the hash alone; they match a file with the same hash, symbol and kind.
    """

    def __init__(self, store: ParquetStore) -> None:
        self.path = store.root / "_imports.json"
        try:
            self.entries: dict[str, dict[str, Any]] = (
                json.loads(self.path.read_text()) if self.path.exists() else {}
            )
        except (ValueError, OSError) as exc:
            raise BulkDataError(
                f"{self.path}: the import manifest cannot be read ({exc}). It only lets "
                "re-imports skip files already imported (rows are deduplicated anyway): move "
                "it aside or delete it and import again"
            ) from exc

    @staticmethod
    def key(digest: str, kind: str, symbol: str, interval: str) -> str:
        return f"{digest} {kind} {symbol} {interval}".rstrip()

    def find(self, digest: str, kind: str, symbol: str, interval: str) -> dict[str, Any] | None:
        """The entry of this import, if it was done before."""
        entry = self.entries.get(self.key(digest, kind, symbol, interval))
        if entry is None:
            legacy = self.entries.get(digest)
            if legacy and legacy.get("symbol") == symbol and legacy.get("kind") == kind:
                entry = legacy
        return entry

    def add(self, key: str, info: dict[str, Any]) -> None:
        self.entries[key] = info
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        tmp.replace(self.path)


@dataclass(frozen=True)
class ImportResult:
    """What importing one bulk file did."""

    file: Path
    symbol: str
    kind: str
    interval: str  # "" for trades, aggTrades and fundingRate
    rows: int  # rows in the file (0 when skipped)
    written: int  # rows new to the store; the rest were stored already
    skipped: bool  # in the manifest with the same symbol, kind and interval: not read again
    venue: str = SPOT_VENUE  # the store's exchange= partition the rows went to


def kind_and_venue_from_path(path: Path) -> tuple[str | None, str | None]:
    """What the Binance Vision folders around ``path`` say: the kind (``markPriceKlines`` is
    named like a trade kline file, so only its folder tells) and the venue (``futures/um``).

    A folder of an archive the store has no dataset for (index or premium-index klines, ...)
    is `BulkDataError`: its file names look like trade klines and must not be stored as such.
    """
    parts = path.resolve().parts[:-1]
    venue, at = None, max(0, len(parts) - 3)  # without a Vision tree: <kind>/<SYMBOL>/[<iv>/]
    for i, (a, b) in enumerate(itertools.pairwise(parts)):
        if a == "futures" and b == "cm":
            raise BulkDataError(
                f"{path}: a Binance COIN-M (futures/cm) archive; the store keeps spot and "
                "USDⓈ-M (futures/um) data only. Nothing was stored"
            )
        if (a, b) in (("futures", "um"), ("data", "spot")):
            venue, at = (USDM_VENUE if b == "um" else SPOT_VENUE), i + 2
    region = parts[at:]
    in_tree = venue is not None  # outside a Vision tree, only unmistakable folder names count
    for unstored in UNSTORED_KINDS:
        if unstored in region and (in_tree or unstored.endswith("Klines")):
            raise BulkDataError(
                f"{path}: a Binance {unstored} archive (its folder says so); the store keeps "
                f"{', '.join(KINDS)} only, and this file's name would read as trade klines. "
                "Nothing was stored"
            )
    kind = next((k for k in ("markPriceKlines", "fundingRate") if k in region), None)
    return kind, venue


def import_bulk_file(
    store: ParquetStore,
    path: Path,
    symbol: str | None = None,
    kind: str | None = None,
    interval: str | None = None,
    venue: str | None = None,
) -> ImportResult:
    """Import one bulk file (zip or csv), checked in full before anything is stored.

    Symbol, kind and interval default to the file name's (the kind to the Binance Vision
    folder's where it says ``markPriceKlines``); the venue to the folder's (``futures/um``:
    ``binance-usdm``), else ``binance-usdm`` for the perpetual-only kinds, else the store's.
    `BulkDataError` for a bad name, checksum, layout, row or field, or a perpetual-only kind
    given the spot venue; nothing of the file is stored then.
    """
    ok = verify_checksum(path)
    if ok is False:
        raise BulkDataError(
            f"{path}: checksum mismatch with {path.name}.CHECKSUM; nothing was stored. "
            "Download the file again"
        )
    folder_kind, folder_venue = kind_and_venue_from_path(path)
    kind = kind or folder_kind
    name = BulkName.parse(path.name) if (symbol is None or kind is None) else None
    symbol = check_symbol(symbol or (name.symbol if name else ""), f"{path.name}: the symbol")
    kind = kind or (name.kind if name else "klines")
    if kind not in COLUMNS:
        raise BulkDataError(
            f"{path.name}: unknown bulk kind {kind!r}; expected one of {', '.join(COLUMNS)}"
        )
    if kind in KLINE_KINDS:
        interval = check_interval(
            interval or (name.interval if name and name.interval else "1m"), path.name
        )
    else:
        interval = ""
    perp_only = KINDS[kind] in PERP_DATASETS
    venue = venue or folder_venue or (USDM_VENUE if perp_only else store.exchange)
    if perp_only and venue == SPOT_VENUE:
        raise BulkDataError(
            f"{path}: a {kind} archive belongs to USDⓈ-M perpetuals, not to the spot venue "
            f"{SPOT_VENUE!r}; import it with --venue {USDM_VENUE} (or leave the venue out). "
            "Nothing was stored"
        )
    target = store.venue(venue)
    digest = sha256_file(path)
    manifest = Manifest(store)
    kind_key = kind if venue == SPOT_VENUE else f"{venue}:{kind}"
    key = Manifest.key(digest, kind_key, symbol, interval)
    if manifest.find(digest, kind_key, symbol, interval) is not None:
        log.info("bulk file already imported, skipped", file=path.name, manifest_key=key)
        return ImportResult(path, symbol, kind, interval, 0, 0, True, venue)
    table = parse_csv(read_bulk_file(path), kind, interval or "1m", source=str(path))
    written = target.write(KINDS[kind], symbol, table)
    manifest.add(
        key,
        {
            "file": path.name,
            "symbol": symbol,
            "kind": kind_key,
            "interval": interval,
            "rows": table.num_rows,
            "written": written,
            "checksum": ok,
        },
    )
    log.info(
        "bulk file imported",
        file=path.name,
        symbol=symbol,
        rows=table.num_rows,
        written=written,
        checksum="verified" if ok else "none",
    )
    return ImportResult(path, symbol, kind, interval, table.num_rows, written, False, venue)


def import_file(
    store: ParquetStore,
    path: Path,
    symbol: str | None = None,
    kind: str | None = None,
    interval: str | None = None,
) -> int:
    """Import one bulk file (zip or csv); returns rows written (0 if already imported)."""
    return import_bulk_file(store, path, symbol, kind, interval).written


def bulk_url(
    base: str,
    symbol: str,
    kind: str,
    period: str,
    interval: str = "1m",
    venue: str = SPOT_VENUE,
) -> str:
    """The file's address: ``data/spot/...`` or, for ``binance-usdm``, ``data/futures/um/...``
    (where markPriceKlines sit in an interval folder like klines, fundingRate in none)."""
    freq = "daily" if len(period) == 10 else "monthly"
    kline = kind in KLINE_KINDS
    mid = interval if kline else kind
    sub = f"{symbol}/{interval}/" if kline else f"{symbol}/"
    tree = "data/futures/um" if venue == USDM_VENUE else "data/spot"
    return f"{base.rstrip('/')}/{tree}/{freq}/{kind}/{sub}{symbol}-{mid}-{period}.zip"


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
            raise BulkDataError(
                f"{url}: not found (404). Binance publishes no such file: check the symbol, "
                "kind and interval, and the dates (a month's file appears after the month "
                "ends, a day's the next day; use --daily for the current month)"
            )
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


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _done_so_far(results: dict[str, int]) -> str:
    if not results:
        return "Nothing was imported by this run."
    return (
        "Imported before it: "
        + ", ".join(f"{n} ({w:,} rows written)" for n, w in results.items())
        + "."
    )


def _download_failure(url: str, part: Path, exc: BaseException, results: dict[str, int]) -> str:
    """One paragraph: which host, what failed, what was stored, how to retry."""
    name = url.rsplit("/", 1)[1]
    if isinstance(exc, aiohttp.ClientResponseError):
        what = f"the server answered HTTP {exc.status} {exc.message}".rstrip()
    elif isinstance(exc, aiohttp.ClientError):
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:  # asyncio's timeout
        what = "no answer within the time limit"
    kept = (
        f" The {part.stat().st_size:,} bytes received are kept in {part} and the download "
        "resumes from there."
        if part.exists() and part.stat().st_size
        else ""
    )
    return (
        f"download of {name} from {_host(url)} failed: {what}. Nothing of {name} was "
        f"stored.{kept} {_done_so_far(results)} Check the network connection and the bulk-data "
        "address (data.bulk_url, or --base-url), then run the same command again: files "
        "already imported are skipped."
    )


async def download(
    store: ParquetStore,
    base_url: str,
    symbol: str,
    kind: str,
    period_list: Iterable[str],
    dest_dir: Path,
    interval: str = "1m",
    progress: Callable[[str, int, int], None] | None = None,
    venue: str = SPOT_VENUE,
) -> dict[str, int]:
    """Download (resumably), verify and import each period; returns rows written per file.

    A failure stops at that file with `BulkDataError`: a network failure names the host and
    says what was imported before it (a partial file is kept to resume); a file that does not
    verify or parse is deleted, so that the next run downloads it again.
    """
    results: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for period in period_list:
            url = bulk_url(base_url, symbol, kind, period, interval, venue)
            name = url.rsplit("/", 1)[1]
            dest = dest_dir / name
            try:
                if not dest.exists():

                    def report(done: int, total: int, n: str = name) -> None:
                        if progress is not None:
                            progress(n, done, total)

                    await download_file(session, url, dest, report)
                async with session.get(url + ".CHECKSUM") as resp:
                    if resp.status == 200:
                        (dest_dir / (name + ".CHECKSUM")).write_bytes(await resp.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                part = dest.with_name(dest.name + ".part")
                raise BulkDataError(_download_failure(url, part, exc, results)) from exc
            except BulkDataError as exc:
                raise BulkDataError(f"{sentence(str(exc))} {_done_so_far(results)}") from exc
            try:
                imported = await asyncio.to_thread(
                    import_bulk_file, store, dest, symbol, kind, interval, venue
                )
                results[name] = imported.written
            except BulkDataError as exc:
                dest.unlink(missing_ok=True)  # a corrupt file must be downloaded again
                raise BulkDataError(
                    f"{sentence(str(exc))} The downloaded file was deleted so that the next "
                    "run fetches it "
                    f"again. {_done_so_far(results)}"
                ) from exc
    return results
