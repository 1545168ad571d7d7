"""`ParquetStore`: the raw market-data store — exact, deduplicated, crash-safe Parquet files.

Layout: ``<root>/exchange=<x>/dataset=<d>/symbol=<s>/date=<YYYY-MM-DD>/part-<ns>-<rand>.parquet``
(hive partitions; the date is the UTC day of the dataset's partition-time column).

- **Exact**: tables are cast to `tessera.data.schemas` — prices/quantities decimal128(38, 8),
  times timestamp[ns, UTC]; a value that does not fit raises instead of rounding.
- **Deduplicated**: a row whose key (`DEDUP_KEYS`) is already stored is dropped, also across
  restarts (each partition's keys are loaded lazily from its files the first time it is written).
- **Crash-safe**: every file is written to ``*.parquet.tmp`` in its final folder, fsynced, renamed
  and the folder fsynced; readers only glob ``*.parquet``. A crash leaves at most a temp file,
  removed the next time the store is opened. A failed write (full disk, unwritable folder) removes
  its temp file and raises `StoreWriteError` naming the file and the OS error; nothing is stored.
- **Quarantine, never delete**: a file that is not valid Parquet (truncated by a disk or a copy,
  overwritten) would break every reader of its dataset. Whoever meets it first — the writer
  loading a partition's keys, `files()`/`scan()`, `coverage()`, the DuckDB catalog, `check()` —
  moves it to ``<root>/_quarantine/<its relative path>`` with a ``.note.json`` saying why and
  when, logs it, counts it (``tessera_store_files_quarantined_total``) and carries on with the
  rest. Pages are written with CRC checksums so that `check()` finds damage inside a file too.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tessera import metrics
from tessera.data.schemas import DEDUP_KEYS, PARTITION_TIME, PERP_DATASETS, SCHEMAS, SPOT_VENUE
from tessera.logging import get_logger

log = get_logger(__name__)

NS_PER_DAY = 86_400_000_000_000
QUARANTINE_DIR = "_quarantine"


class StoreSchemaError(ValueError):
    """A table that cannot be stored exactly in its dataset's schema."""


class StoreWriteError(OSError):
    """A Parquet file could not be written (full disk, unwritable folder, ...); nothing of it
    is stored. ``path`` is the file (or folder) that failed and ``errno`` the OS error number,
    so that a caller can tell one failure from another and say which path to fix."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        errno = cause.errno if isinstance(cause, OSError) else None
        reason = (
            cause.strerror
            if isinstance(cause, OSError) and cause.strerror
            else (str(cause) or type(cause).__name__)
        )
        failed = getattr(cause, "filename", None) or path
        super().__init__(errno, f"cannot write {failed}: {reason}")
        self.path = Path(failed)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class QuarantinedFile:
    """A corrupt file moved out of the store: where it was, where it is now, and why."""

    original: Path
    moved_to: Path
    reason: str
    at: datetime


@dataclass(frozen=True)
class PartitionCoverage:
    exchange: str
    dataset: str
    symbol: str
    day: date
    rows: int
    first: datetime | None
    last: datetime | None
    files: int
    # missing ids (trades/agg_trades), bars (klines, mark_klines), funding times, or breaks in
    # the chain of depth diffs (book_updates); 0 when unknown
    missing: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that readers see all of it or nothing.

    On failure the temp file is removed (a full disk must not stay fuller for the retry) and
    `StoreWriteError` names the path; the caller still holds the rows and may retry.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            # page checksums: damage inside a file is detected by `check`, not read as numbers
            pq.write_table(table, fh, compression="zstd", write_page_checksum=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except NotADirectoryError:
            pass  # its folder could not even be made: there is no temp file
        except OSError as cleanup:
            log.warning(
                "could not remove the temp file of a failed write",
                path=str(tmp),
                error=str(cleanup),
            )
        raise StoreWriteError(path, exc) from exc


_OPEN_PREFIX = re.compile(r"^Could not open Parquet input source '[^']*': ")


def _reason(exc: BaseException) -> str:
    """pyarrow's message, first line, without the path it repeats (the log names the file)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _OPEN_PREFIX.sub("", text)[:300]


def file_problem(path: Path, deep: bool = False) -> str | None:
    """Why ``path`` is not a readable Parquet file, or None if it is.

    The shallow check reads the footer only (a truncated or overwritten file fails it: the
    footer is the last thing written); ``deep`` decodes every page and verifies the page
    checksums. Only format errors count: an OS error (a missing file, EIO) is raised, because
    moving a file aside would not fix the disk.
    """
    try:
        if deep:
            pq.read_table(path, page_checksum_verification=True)
        else:
            pq.read_metadata(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return _reason(exc)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # pyarrow reports some format errors (a bad page checksum, a bad thrift header) as
        # IOError; a real disk error carries an errno
        if exc.errno is None:
            return _reason(exc)
        raise
    return None


VENUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class ParquetStore:
    """The store at ``root``, writing and reading the venue ``exchange`` (the ``exchange=``
    partition: ``binance`` spot, ``binance-usdm`` USDⓈ-M perpetuals, ...); `venue` gives the
    same store for another venue."""

    def __init__(
        self, root: Path | str, exchange: str = "binance", *, recover: bool = True
    ) -> None:
        if not VENUE_NAME.fullmatch(exchange):
            raise StoreSchemaError(
                f"venue {exchange!r}: a venue name becomes a folder of the store, so it is 1 to "
                "40 lower-case letters, digits, '-' or '_' (like binance or binance-usdm)"
            )
        self.root = Path(root)
        self.exchange = exchange
        self.root.mkdir(parents=True, exist_ok=True)
        self._keys: dict[tuple[str, str, str], set[Any]] = {}
        self._lock = threading.Lock()
        self._checked: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) seen valid
        self._q_lock = threading.Lock()
        self.quarantined: list[QuarantinedFile] = []  # moved aside by this instance
        self._venues: dict[str, ParquetStore] = {exchange: self}
        self._steps: dict[Path, int | None] = {}  # funding series -> spacing, per coverage()
        if recover:
            self._recover()

    def venue(self, name: str) -> ParquetStore:
        """This store (same root) writing and reading venue ``name``; one instance per venue,
        sharing this one's quarantine record so that a command reports every file moved."""
        other = self._venues.get(name)
        if other is None:
            other = ParquetStore(self.root, name, recover=False)
            other.quarantined = self.quarantined
            other._q_lock = self._q_lock
            other._venues = self._venues
            self._venues[name] = other
        return other

    # --- paths ----------------------------------------------------------------------------------

    def dataset_dir(self, dataset: str, exchange: str | None = None) -> Path:
        return self.root / f"exchange={exchange or self.exchange}" / f"dataset={dataset}"

    def partition_dir(self, dataset: str, symbol: str, day: str) -> Path:
        return self.dataset_dir(dataset) / f"symbol={symbol}" / f"date={day}"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE_DIR

    def _recover(self) -> None:
        """Remove temp files of crashed writes; finish or undo interrupted compactions."""
        for tmp in self.root.glob("exchange=*/**/*.parquet.tmp"):
            log.warning("removing leftover temp file of an interrupted write", path=str(tmp))
            tmp.unlink(missing_ok=True)
        for old in self.root.rglob(".compact-old-*"):
            live = old.parent / old.name.split("-", 3)[3]
            if live.exists():
                shutil.rmtree(old)  # the compacted partition is in place: drop the old one
            else:
                old.rename(live)  # crashed between the two renames: put the original back
        for new in self.root.rglob(".compact-new-*"):
            shutil.rmtree(new)

    # --- quarantine -----------------------------------------------------------------------------

    def quarantine(self, path: Path, reason: str) -> QuarantinedFile | None:
        """Move the corrupt file ``path`` to ``<root>/_quarantine/<relative path>`` with a note.

        Never deletes: a person may still recover rows from it. Returns None when another reader
        (or process) moved it first. Any cached keys of its partition are forgotten, so that
        rows that were only in this file can be written again.
        """
        path = Path(path)
        try:
            rel = path.resolve().relative_to(self.root.resolve())
        except ValueError:
            rel = Path(path.name)
        dest = self.quarantine_dir / rel
        at = datetime.now(UTC)
        with self._q_lock:
            if dest.exists():
                dest = dest.with_name(f"{dest.stem}.{time.time_ns()}{dest.suffix}")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            except FileNotFoundError:
                return None  # already moved by someone else
            note = {
                "original": str(rel),
                "reason": reason,
                "quarantined_at": at.isoformat(),
                "size_bytes": dest.stat().st_size,
            }
            try:
                dest.with_name(dest.name + ".note.json").write_text(json.dumps(note, indent=2))
            except OSError as exc:  # the file is safe; only the note is missing
                log.warning("could not write the quarantine note", path=str(dest), error=str(exc))
            self._checked.pop(path, None)
            parts = dict(p.split("=", 1) for p in rel.parts if "=" in p)
            if "dataset" in parts and "symbol" in parts and "date" in parts:
                self._keys.pop((parts["dataset"], parts["symbol"], parts["date"]), None)
            record = QuarantinedFile(path, dest, reason, at)
            self.quarantined.append(record)
        metrics.STORE_FILES_QUARANTINED.labels(
            dataset=metrics.bounded(parts.get("dataset", ""), metrics.DATASETS)
        ).inc()
        log.error(
            "corrupt Parquet file moved to quarantine; the rest of the store stays readable",
            path=str(path),
            moved_to=str(dest),
            reason=reason,
        )
        return record

    def _usable(self, path: Path) -> bool:
        """True if ``path`` is valid Parquet (footer check, cached by size and mtime); a corrupt
        file is quarantined and False returned. A file that vanished is False too."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        sig = (st.st_size, st.st_mtime_ns)
        if self._checked.get(path) == sig:
            return True
        try:
            problem = file_problem(path)
        except FileNotFoundError:
            return False
        if problem is None:
            self._checked[path] = sig
            return True
        self.quarantine(path, problem)
        return False

    def _read_or_quarantine(self, path: Path, columns: list[str] | None = None) -> pa.Table | None:
        """``pq.read_table``, except that a corrupt file is quarantined and None returned."""
        try:
            return pq.read_table(path, columns=columns)
        except FileNotFoundError:
            return None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a disk error, not a bad file
            self.quarantine(path, _reason(exc))
            return None

    def check(self, deep: bool = True) -> list[QuarantinedFile]:
        """Verify every file of the store (all exchanges and datasets), quarantining corrupt
        ones; returns those quarantined now. ``deep`` decodes every page (slower)."""
        before = len(self.quarantined)
        for f in sorted(self.root.glob("exchange=*/dataset=*/symbol=*/date=*/*.parquet")):
            try:
                problem = file_problem(f, deep=deep)
            except FileNotFoundError:
                continue
            if problem is not None:
                self.quarantine(f, problem)
        return self.quarantined[before:]

    def quarantine_contents(self) -> list[QuarantinedFile]:
        """Everything in the quarantine folder, from the notes (also those of earlier runs)."""
        out: list[QuarantinedFile] = []
        base = self.quarantine_dir
        for note in sorted(base.rglob("*.note.json")) if base.exists() else []:
            try:
                doc = json.loads(note.read_text())
                out.append(
                    QuarantinedFile(
                        self.root / doc["original"],
                        note.with_name(note.name.removesuffix(".note.json")),
                        str(doc["reason"]),
                        datetime.fromisoformat(doc["quarantined_at"]),
                    )
                )
            except (OSError, ValueError, KeyError) as exc:
                log.warning("unreadable quarantine note", path=str(note), error=str(exc))
        return out

    # --- writing --------------------------------------------------------------------------------

    def _conform(self, dataset: str, table: pa.Table) -> pa.Table:
        schema = SCHEMAS[dataset]
        missing = [f.name for f in schema if f.name not in table.column_names]
        nullable_missing = {"recv_time", "prev_update_id", "event_time"}
        if set(missing) - nullable_missing:
            raise StoreSchemaError(
                f"{dataset}: missing columns {sorted(set(missing) - nullable_missing)}"
            )
        cols = []
        for f in schema:
            if f.name in table.column_names:
                col = table[f.name]
                if col.type != f.type:
                    try:
                        col = pc.cast(col, f.type, safe=True)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise StoreSchemaError(
                            f"{dataset}.{f.name}: cannot store exactly as {f.type}: {exc}"
                        ) from exc
                cols.append(col)
            else:
                cols.append(pa.nulls(len(table), f.type))
        return pa.Table.from_arrays(cols, schema=schema)

    def _key_values(self, dataset: str, table: pa.Table) -> list[Any]:
        """Each row's dedup key as a hashable Python value (a tuple for several columns).
        Decimals as their text at the dataset's scale and times as integer ns: the same
        equality as `Decimal` and `datetime` objects, built several times faster (the keys of
        every partition written, and of every file already in it, go through here)."""
        schema = SCHEMAS[dataset]
        cols: list[list[Any]] = []
        for k in DEDUP_KEYS[dataset]:
            col, ftype = table[k], schema.field(k).type
            if pa.types.is_decimal(ftype):
                col = pc.cast(pc.cast(col, ftype), pa.string())
            elif pa.types.is_timestamp(ftype):
                col = pc.cast(col, pa.int64())
            cols.append(col.to_pylist())
        if len(cols) == 1:
            return cols[0]
        return list(zip(*cols, strict=True))

    def _known_keys(self, dataset: str, symbol: str, day: str) -> set[Any]:
        ident = (dataset, symbol, day)
        known = self._keys.get(ident)
        if known is None:
            known = set()
            pdir = self.partition_dir(dataset, symbol, day)
            for f in sorted(pdir.glob("*.parquet")) if pdir.is_dir() else []:
                existing = self._read_or_quarantine(f, columns=list(DEDUP_KEYS[dataset]))
                if existing is not None:  # a corrupt file is quarantined, not fatal to writes
                    known.update(self._key_values(dataset, existing))
            self._keys[ident] = known
        return known

    def write(self, dataset: str, symbol: str, table: pa.Table) -> int:
        """Store the rows of ``table`` not already stored; returns how many were written."""
        if dataset not in SCHEMAS:
            raise StoreSchemaError(f"unknown dataset {dataset!r}; known: {', '.join(SCHEMAS)}")
        if dataset in PERP_DATASETS and self.exchange == SPOT_VENUE:
            raise StoreSchemaError(
                f"{dataset} exists for perpetual futures only, and this store writes the spot "
                f"venue {SPOT_VENUE!r}: write it to the USDⓈ-M venue (store.venue('binance-usdm'))"
            )
        if table.num_rows == 0:
            return 0
        table = self._conform(dataset, table)
        ptime = table[PARTITION_TIME[dataset]]
        if ptime.null_count:
            raise StoreSchemaError(f"{dataset}: {PARTITION_TIME[dataset]} must not be null")
        days = (pc.cast(ptime, pa.int64()).to_numpy() // NS_PER_DAY).astype(np.int64)
        written = 0
        with self._lock:
            for day_num in np.unique(days).tolist():
                part = table.filter(pa.array(days == day_num))
                day = str(np.datetime64(day_num, "D"))
                known = self._known_keys(dataset, symbol, day)
                keys = self._key_values(dataset, part)
                batch = set(keys)
                if len(batch) == len(keys) and known.isdisjoint(batch):
                    # the common case, checked in C: all new, no repeats inside the batch
                    known.update(batch)
                    fresh = part
                else:
                    keep = []
                    for k in keys:
                        new = k not in known
                        keep.append(new)
                        if new:
                            known.add(k)  # also drops duplicates inside this batch
                    fresh = part.filter(pa.array(keep, type=pa.bool_()))
                if fresh.num_rows == 0:
                    continue
                name = f"part-{time.time_ns():020d}-{secrets.token_hex(3)}.parquet"
                try:
                    atomic_write_parquet(fresh, self.partition_dir(dataset, symbol, day) / name)
                except BaseException:
                    # Not stored: forget the keys so that a retry can write them. Days written
                    # before this one stay written (and counted); a retry skips them by key.
                    for k in self._key_values(dataset, fresh):
                        known.discard(k)
                    self._count_written(dataset, written)
                    raise
                written += fresh.num_rows
        self._count_written(dataset, written)
        return written

    @staticmethod
    def _count_written(dataset: str, rows: int) -> None:
        if rows:
            metrics.ROWS_WRITTEN.labels(dataset=metrics.bounded(dataset, metrics.DATASETS)).inc(
                rows
            )

    # --- reading --------------------------------------------------------------------------------

    def files(self, dataset: str, symbol: str | None = None) -> list[Path]:
        """The dataset's valid files; corrupt ones are quarantined on the way (see `_usable`)."""
        base = self.dataset_dir(dataset)
        pattern = f"symbol={symbol}/*/*.parquet" if symbol else "symbol=*/*/*.parquet"
        found = sorted(base.glob(pattern)) if base.is_dir() else []
        return [f for f in found if self._usable(f)]

    def all_files(self, dataset: str) -> list[Path]:
        """Valid files of ``dataset`` across every exchange (what the DuckDB views read)."""
        found = sorted(self.root.glob(f"exchange=*/dataset={dataset}/*/*/*.parquet"))
        return [f for f in found if self._usable(f)]

    def scan(
        self,
        dataset: str,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.LazyFrame:
        """All stored rows as a polars LazyFrame (with ``symbol`` and ``date`` columns)."""
        files = self.files(dataset, symbol)
        if not files:
            empty = pa.Table.from_batches([], schema=SCHEMAS[dataset])
            frame = pl.from_arrow(empty)
            assert isinstance(frame, pl.DataFrame)
            return frame.lazy().with_columns(
                pl.lit(symbol or "").alias("symbol"), pl.lit(None, pl.Date).alias("date")
            )
        lf = pl.scan_parquet(
            [str(f) for f in files],
            hive_partitioning=True,
            hive_schema={
                "exchange": pl.String,
                "dataset": pl.String,
                "symbol": pl.String,
                "date": pl.Date,
            },
        ).drop("dataset")
        tcol = PARTITION_TIME[dataset]
        if start is not None:
            lf = lf.filter(pl.col(tcol) >= start)
        if end is not None:
            lf = lf.filter(pl.col(tcol) < end)
        return lf.sort(tcol, *[k for k in DEDUP_KEYS[dataset] if k != tcol])

    def read(self, dataset: str, symbol: str | None = None, **kw: Any) -> pa.Table:
        return self.scan(dataset, symbol, **kw).collect().to_arrow()

    def max_value(self, dataset: str, symbol: str, column: str) -> Any:
        files = self.files(dataset, symbol)
        if not files:
            return None
        # Partitions sort by date: the newest file set holds the maximum for time-ordered keys,
        # but backfilled rows may land anywhere, so take the max over the newest two days.
        days = sorted({f.parent for f in files})[-2:]
        best = None
        for d in days:
            for f in d.glob("*.parquet"):
                t = self._read_or_quarantine(f, columns=[column])
                if t is None:
                    continue
                v = pc.max(t[column]).as_py()
                if v is not None and (best is None or v > best):
                    best = v
        return best

    def coverage(self) -> list[PartitionCoverage]:
        """One entry per partition (exchange, dataset, symbol, UTC day), in order.

        ``missing`` counts trade ids or bars absent from the series, not just inside the day:
        a gap that crosses midnight (or spans days without a partition) is counted on the day
        of the first row after it. The first row of a series has no gap before it.
        """
        out: list[PartitionCoverage] = []
        self._steps = {}
        last_seen: dict[tuple[Any, ...], int] = {}  # series -> its last id / bar time so far
        for xdir in sorted(self.root.glob("exchange=*")):
            exchange = xdir.name.split("=", 1)[1]
            for ddir in sorted(xdir.glob("dataset=*")):
                dataset = ddir.name.split("=", 1)[1]
                if dataset not in SCHEMAS:
                    continue
                tcol = PARTITION_TIME[dataset]
                for pdir in sorted(ddir.glob("symbol=*/date=*")):
                    cols = [tcol] + [
                        k
                        for k in (
                            "trade_id",
                            "agg_id",
                            "interval",
                            "interval_hours",
                            "first_update_id",
                            "last_update_id",
                            "prev_update_id",
                        )
                        if k in SCHEMAS[dataset].names and k != tcol
                    ]
                    read = [
                        self._read_or_quarantine(f, cols) for f in sorted(pdir.glob("*.parquet"))
                    ]
                    tables = [t for t in read if t is not None]
                    if not tables:
                        continue
                    t = pa.concat_tables(tables)
                    missing = 0
                    series = (exchange, dataset, pdir.parent.name)
                    if dataset in ("trades", "agg_trades") and t.num_rows:
                        ids = t["trade_id" if dataset == "trades" else "agg_id"]
                        lo, hi = pc.min(ids).as_py(), pc.max(ids).as_py()
                        missing = int(hi - lo + 1 - t.num_rows)
                        if series in last_seen:
                            missing += max(0, lo - last_seen[series] - 1)
                        last_seen[series] = max(hi, last_seen.get(series, hi))
                    elif dataset in ("klines", "mark_klines") and t.num_rows:
                        missing = _missing_klines(t, series, last_seen)
                    elif dataset == "book_updates" and t.num_rows:
                        missing = _depth_breaks(t, series, last_seen)
                    elif dataset == "funding_rates" and t.num_rows:
                        step = self._funding_step(pdir.parent)
                        missing = _missing_funding(t, series, last_seen, step)
                    out.append(
                        PartitionCoverage(
                            exchange,
                            dataset,
                            pdir.parent.name.split("=", 1)[1],
                            date.fromisoformat(pdir.name.split("=", 1)[1]),
                            t.num_rows,
                            pc.min(t[tcol]).as_py(),
                            pc.max(t[tcol]).as_py(),
                            len(tables),
                            missing,
                        )
                    )
        return out

    def _funding_step(self, symbol_dir: Path) -> int | None:
        """The shortest spacing (ns) between a funding series' stored times, or None."""
        steps = self._steps.get(symbol_dir)
        if symbol_dir not in self._steps:
            read = [
                self._read_or_quarantine(f, ["funding_time"])
                for f in sorted(symbol_dir.glob("date=*/*.parquet"))
            ]
            times = sorted(
                {v for t in read if t is not None for v in pc.cast(t[0], pa.int64()).to_pylist()}
            )
            diffs = [b - a for a, b in itertools.pairwise(times)]
            steps = self._steps[symbol_dir] = min(diffs) if diffs else None
        return steps

    # --- maintenance ----------------------------------------------------------------------------

    def compact(self, dataset: str | None = None, symbol: str | None = None) -> int:
        """Merge each partition's files into one; returns the number of partitions compacted.

        The merged partition is built in a sibling folder and swapped in with two renames; a
        crash in between is repaired when the store is next opened (see `_recover`).
        """
        done = 0
        datasets = [dataset] if dataset else list(SCHEMAS)
        with self._lock:
            for ds in datasets:
                base = self.dataset_dir(ds)
                pattern = f"symbol={symbol}/date=*" if symbol else "symbol=*/date=*"
                for pdir in sorted(base.glob(pattern)) if base.exists() else []:
                    read = [self._read_or_quarantine(f) for f in sorted(pdir.glob("*.parquet"))]
                    tables = [t for t in read if t is not None]
                    if len(tables) < 2:
                        continue
                    merged = pa.concat_tables(tables)
                    sort = [(k, "ascending") for k in (PARTITION_TIME[ds], *DEDUP_KEYS[ds])]
                    merged = merged.sort_by(sort)
                    new = pdir.parent / f".compact-new-{pdir.name}"
                    shutil.rmtree(new, ignore_errors=True)
                    atomic_write_parquet(merged, new / f"part-{time.time_ns():020d}-c.parquet")
                    old = pdir.parent / f".compact-old-{secrets.token_hex(2)}-{pdir.name}"
                    pdir.rename(old)
                    new.rename(pdir)
                    _fsync_dir(pdir.parent)
                    shutil.rmtree(old)
                    done += 1
        return done


def _missing_klines(
    t: pa.Table, series: tuple[Any, ...], last_seen: dict[tuple[Any, ...], int]
) -> int:
    """Bars missing in one day's klines, and before its first bar since the series' last one
    (``last_seen``, per interval, updated here). Monthly bars have no fixed length: not counted.
    """
    missing = 0
    frame = pl.from_arrow(t)
    assert isinstance(frame, pl.DataFrame)
    for interval, group in frame.group_by("interval"):
        step = _interval_ns(str(interval[0]))
        times = group["open_time"].dt.epoch("ns").sort()
        key = (*series, str(interval[0]))
        first, last = int(times[0]), int(times[-1])
        if step is not None:
            missing += (last - first) // step + 1 - len(times)
            if key in last_seen:
                missing += max(0, (first - last_seen[key]) // step - 1)
        last_seen[key] = max(last, last_seen.get(key, last))
    return int(missing)


def _depth_breaks(
    t: pa.Table, series: tuple[Any, ...], last_seen: dict[tuple[Any, ...], int]
) -> int:
    """Breaks in one day's chain of depth diffs, and between it and the series' last diff.

    A USDⓈ-M diff names the previous diff's final update id (``pu``): it follows when ``pu``
    is the last diff's ``u``. A spot diff has no ``pu``: it follows when its first id ``U`` is
    the last ``u`` + 1. Each break is one (unknown-sized) hole in the book's history.
    """
    frame = pl.from_arrow(t.select(["first_update_id", "last_update_id", "prev_update_id"]))
    assert isinstance(frame, pl.DataFrame)
    diffs = frame.unique().sort("last_update_id")
    breaks = 0
    last = last_seen.get(series)
    for first, final, prev in diffs.iter_rows():
        if last is not None and final > last:
            follows = prev == last if prev is not None else first == last + 1
            breaks += not follows
        last = final if last is None else max(last, final)
    if last is not None:
        last_seen[series] = last
    return breaks


def _missing_funding(
    t: pa.Table,
    series: tuple[Any, ...],
    last_seen: dict[tuple[Any, ...], int],
    series_step: int | None,
) -> int:
    """Funding times missing in one day, and before its first since the series' last one.

    The step is the rows' ``interval_hours`` where the source gave it (the archives), else
    ``series_step``, the shortest spacing between the series' funding times (REST rows and
    freqtrade's carry no interval; a series of one row: not counted).
    """
    times = sorted(pc.cast(t["funding_time"], pa.int64()).to_pylist())
    known = [h for h in t["interval_hours"].to_pylist() if h]
    step = min(known) * 3_600_000_000_000 if known else series_step
    missing = 0
    if step:
        previous = last_seen.get(series)
        for ts in times:
            if previous is not None and ts > previous:
                missing += max(0, (ts - previous) // step - 1)
            previous = ts if previous is None else max(previous, ts)
    last_seen[series] = max(times[-1], last_seen.get(series, times[-1]))
    return int(missing)


def _interval_ns(interval: str) -> int | None:
    """A kline interval's length in ns; None for a month (1M) or a name not understood."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if interval[-1:] not in units or not interval[:-1].isdigit():
        return None
    return int(interval[:-1]) * units[interval[-1]] * 1_000_000_000


def rows_to_table(dataset: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with strings for decimals, ints for ns times) to a schema-true table. A
    column a row lacks is null in it; keys outside the schema are ignored. Arrow reads the
    dicts (`Table.from_pylist`, in C++) as text and integers, then casts them exactly: a Python
    loop over every row and column cost ~2 s of the bundled import's ~12 (issue 20)."""
    schema = SCHEMAS[dataset]
    table = pa.Table.from_pylist(
        rows if isinstance(rows, list) else list(rows), schema=_ROWS_SCHEMAS[dataset]
    )
    arrays = []
    for f, col in zip(schema, table.columns, strict=True):
        if pa.types.is_decimal(f.type):
            arrays.append(pc.cast(col, f.type))
        elif pa.types.is_timestamp(f.type):
            arrays.append(col.cast(f.type))
        else:
            arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def _rows_schema(schema: pa.Schema) -> pa.Schema:
    """What `rows_to_table` reads a row's values as: decimals as text, times as integer ns."""
    return pa.schema(
        [
            (f.name, pa.string() if pa.types.is_decimal(f.type)
             else pa.int64() if pa.types.is_timestamp(f.type) else f.type)
            for f in schema
        ]
    )  # fmt: skip


_ROWS_SCHEMAS = {name: _rows_schema(schema) for name, schema in SCHEMAS.items()}
