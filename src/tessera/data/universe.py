"""Which bars a research command reads: the universe (symbols), the timeframe and the window.

`backtest`, `sweep`, `train`, `predict` and `features build|check` all take ``--symbol``
(repeatable), ``--timeframe`` and ``--timerange`` and read through `load_universe`, so the same
flags mean the same bars everywhere, and the bars used are said, not guessed:

- **Where from.** The Parquet store by default: ``--symbol BTCUSDT`` reads that symbol's klines
  (``--symbol coinbase:BTCUSD`` names the venue where two venues hold one symbol). ``--bars FILE``
  (repeatable) reads files instead: any bundled or imported bar file, with or without a header
  line. With neither, the bundled real sample is used and the command says so.
- **Timeframe.** ``--timeframe 1h`` reads 1h klines as stored if the store has them, otherwise
  resamples the finest stored interval that divides it (1m, 3m, ...) with
  `tessera.data.resample.resample_klines` (Binance's kline rules: first open, highest high, lowest
  low, last close, summed volumes; exact on the store's decimals). Bars built from fewer base bars
  than the timeframe holds are counted and reported; the partial first and last bars that only a
  window's edge cut are dropped. A timeframe finer than the data is an error.
- **Window.** ``--timerange 20220101-20220115`` (freqtrade's syntax: ``YYYYMMDD-YYYYMMDD``,
  open-ended ``20220101-`` or ``-20220115``, or epoch seconds ``1640995200-1642204800``): bars
  opening at or after the start and before the end. The settings ``backtest.start``/``end``
  (ISO-8601) are the same window for the backtest.

Nothing is narrowed quietly: an unknown symbol, a window with no bars, a symbol held by two venues
without a venue prefix, are errors that say what the store does hold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from tessera.config.errors import ConfigError
from tessera.data.intervals import INTERVAL_NS

NS = 1_000_000_000
_RANGE_PART = re.compile(r"^(\d{8}|\d{12}|\d{14}|\d{9,10})?$")


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC window ``[start, end)`` in ns since the epoch; None is open-ended."""

    start_ns: int | None = None
    end_ns: int | None = None

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """freqtrade's ``--timerange``: ``20220101-20220115``, ``20220101-``, ``-20220115``.

        Dates may carry a time (``YYYYMMDDHHMM``); 9–10 digit numbers are epoch seconds. The end
        is exclusive: ``-20220115`` stops before 2022-01-15 00:00 UTC.
        """
        raw = text.strip()
        start_s, sep, end_s = raw.partition("-")
        if not sep or not (start_s or end_s):
            raise ConfigError(
                f"--timerange {text!r}: expected START-END as YYYYMMDD-YYYYMMDD (either side may "
                "be empty: 20220101- or -20220115), or epoch seconds 1640995200-1642204800"
            )
        for part in (start_s, end_s):
            if not _RANGE_PART.match(part):
                raise ConfigError(
                    f"--timerange {text!r}: {part!r} is neither a date YYYYMMDD[HHMM] nor epoch "
                    "seconds; expected START-END as YYYYMMDD-YYYYMMDD (20220101-20220115, "
                    "20220101- or -20220115)"
                )
        rng = cls(_point(start_s, text), _point(end_s, text))
        if rng.start_ns is not None and rng.end_ns is not None and rng.start_ns >= rng.end_ns:
            raise ConfigError(f"--timerange {text!r}: the start is not before the end")
        return rng

    @classmethod
    def from_iso(cls, start: str | None, end: str | None, what: str = "backtest") -> TimeRange:
        """The settings' ``start``/``end`` (ISO-8601, UTC when no zone is given)."""
        return cls(_iso(start, f"{what}.start"), _iso(end, f"{what}.end"))

    @property
    def is_open(self) -> bool:
        return self.start_ns is None and self.end_ns is None

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        ot = pl.col("open_time").dt.epoch("ns")
        if self.start_ns is not None:
            frame = frame.filter(ot >= self.start_ns)
        if self.end_ns is not None:
            frame = frame.filter(ot < self.end_ns)
        return frame

    def describe(self) -> str:
        def fmt(ns: int | None) -> str:
            if ns is None:
                return "…"
            return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M")

        return f"{fmt(self.start_ns)} → {fmt(self.end_ns)}"


def _point(part: str, text: str) -> int | None:
    if not part:
        return None
    if len(part) in (9, 10):
        return int(part) * NS
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}[len(part)]
    try:
        when = datetime.strptime(part, fmt).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(f"--timerange {text!r}: {part!r} is not a valid date ({exc})") from None
    return int(when.timestamp()) * NS


def _iso(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{name} {value!r}: not an ISO-8601 time (e.g. 2022-01-15 or 2022-01-15T12:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * NS)


@dataclass(frozen=True)
class LoadedBars:
    """One symbol's bars and where they came from (printed, recorded in results)."""

    symbol: str
    venue: str
    interval: str
    frame: pl.DataFrame
    source: str  # "store:binance/BTCUSDT/1m", or the file path
    notes: tuple[str, ...] = ()  # resampling, partial bars, the sample fallback

    @property
    def title(self) -> str:
        return f"{self.symbol} ({self.venue}, {self.interval})"

    def describe(self) -> str:
        n = len(self.frame)
        span = ""
        if n:
            first = self.frame["open_time"][0].strftime("%Y-%m-%d %H:%M")
            last = self.frame["open_time"][-1].strftime("%Y-%m-%d %H:%M")
            span = f", {first} → {last}"
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"{self.title}: {n:,} bars{span} from {self.source}{extra}"


@dataclass(frozen=True)
class BarRequest:
    """What a research command asked for (CLI flags over settings)."""

    symbols: tuple[str, ...] = ()
    timeframe: str | None = None
    timerange: TimeRange = field(default_factory=TimeRange)
    files: tuple[Path, ...] = ()


def load_universe(request: BarRequest, *, store_root: Path) -> list[LoadedBars]:
    """The bars of every requested symbol, windowed and at the requested timeframe."""
    if request.timeframe is not None and request.timeframe not in INTERVAL_NS:
        raise ConfigError(f"--timeframe {request.timeframe!r}: use one of {', '.join(INTERVAL_NS)}")
    if request.files:
        loaded = _from_files(request)
    elif request.symbols:
        loaded = [_from_store(store_root, ref, request) for ref in request.symbols]
    else:
        from tessera.data.barfile import SAMPLE_BARS

        sample = BarRequest((), request.timeframe, request.timerange, (SAMPLE_BARS,))
        loaded = [
            _with_note(b, "no --symbol or --bars given: the bundled real sample")
            for b in _from_files(sample)
        ]
    seen: set[str] = set()
    for bars in loaded:
        if bars.symbol in seen:
            raise ConfigError(f"symbol {bars.symbol} is given twice")
        seen.add(bars.symbol)
        if bars.frame.is_empty():
            window = request.timerange.describe()
            raise ConfigError(
                f"{bars.symbol} ({bars.source}): no bars in the window {window}; "
                f"`tessera data info` shows what the store holds"
            )
    return loaded


def _with_note(bars: LoadedBars, note: str) -> LoadedBars:
    return LoadedBars(
        bars.symbol, bars.venue, bars.interval, bars.frame, bars.source, (note, *bars.notes)
    )


def symbol_from_name(path: Path) -> str | None:
    """A symbol in a file name: Binance's ``ADABTC-1m-2021-11-27.csv``, ``XRP_ETH-1m.feather``
    (freqtrade's pair), ``bitstamp_BTCUSD_1d.csv.gz``."""
    stem = path.name.split(".", 1)[0]
    m = re.match(r"^([A-Z0-9]{2,12})_([A-Z0-9]{2,12})-\d+[smhdwM]", stem)  # freqtrade pair
    if m:
        return m.group(1) + m.group(2)
    m = re.match(r"^([A-Z0-9]{4,20})-\d+[smhdwM]", stem)  # Binance bulk
    if m:
        return m.group(1)
    tokens = [t for t in re.split(r"[-_.]", stem) if re.fullmatch(r"[A-Z0-9]{5,20}", t)]
    tokens = [t for t in tokens if not t.isdigit()]
    return tokens[0] if len(tokens) == 1 else None


def _from_files(request: BarRequest) -> list[LoadedBars]:
    from tessera.data.barfile import BarFileError, bundled_meta, infer_interval, read_bar_file

    symbols = list(request.symbols)
    if symbols and len(symbols) != len(request.files):
        raise ConfigError(
            f"{len(request.files)} --bars file(s) and {len(symbols)} --symbol(s): give one "
            "--symbol per --bars file (in the same order), or none to take each file's own"
        )
    out = []
    for k, path in enumerate(request.files):
        try:
            frame = read_bar_file(path)
        except (FileNotFoundError, BarFileError) as exc:
            raise ConfigError(str(exc)) from None
        meta = bundled_meta(path)
        symbol = symbols[k].split(":")[-1] if symbols else None
        symbol = symbol or (meta.symbol if meta else None) or symbol_from_name(path)
        if symbol is None:
            raise ConfigError(f"{path}: which symbol is this? Its name does not say; give --symbol")
        stored = infer_interval(frame)
        if stored is None:
            raise ConfigError(
                f"{path}: cannot tell its bar interval (open times are not evenly spaced on "
                f"any of {', '.join(INTERVAL_NS)})"
            )
        notes: list[str] = []
        if meta and meta.note:
            notes.append(meta.note)
        frame = request.timerange.apply(frame)
        frame, interval, more = _to_timeframe(frame, stored, request.timeframe, str(path))
        out.append(
            LoadedBars(
                symbol.upper(),
                meta.venue if meta else "file",
                interval,
                frame,
                str(path),
                (*notes, *more),
            )
        )
    return out


def _store_venues(store_root: Path, symbol: str) -> list[str]:
    found = sorted(store_root.glob(f"exchange=*/dataset=klines/symbol={symbol}"))
    return [p.parent.parent.name.removeprefix("exchange=") for p in found]


def _store_intervals(store_root: Path, venue: str, symbol: str) -> list[str]:
    from tessera.data.store import ParquetStore

    store = ParquetStore(store_root, exchange=venue)
    got = store.scan("klines", symbol).select("interval").unique().collect()["interval"]
    return sorted((str(v) for v in got.to_list()), key=lambda i: INTERVAL_NS.get(i, 0))


def _from_store(store_root: Path, ref: str, request: BarRequest) -> LoadedBars:
    from tessera.data.store import ParquetStore

    venue, _, symbol = ref.rpartition(":")
    symbol = symbol.upper()
    venues = _store_venues(store_root, symbol)
    if venue and venue not in venues:
        venues = []
    if not venues:
        held = sorted(
            {
                f"{p.parent.parent.name.removeprefix('exchange=')}:{p.name.removeprefix('symbol=')}"
                for p in store_root.glob("exchange=*/dataset=klines/symbol=*")
            }
        )
        raise ConfigError(
            f"--symbol {ref}: no klines of it in the store {store_root} (it holds: "
            f"{', '.join(held) or 'no klines'}). Import or download some (`tessera data import`, "
            "`tessera data download`), or read a file with --bars"
        )
    if not venue:
        if len(venues) > 1:
            raise ConfigError(
                f"--symbol {symbol}: the store holds it from {', '.join(venues)}; name one, e.g. "
                f"--symbol {venues[0]}:{symbol}"
            )
        venue = venues[0]
    intervals = _store_intervals(store_root, venue, symbol)
    want = request.timeframe
    if want is None:
        if len(intervals) > 1:
            raise ConfigError(
                f"--symbol {ref}: the store holds {', '.join(intervals)} klines of it; choose one "
                "with --timeframe (or set backtest.interval)"
            )
        base = intervals[0]
    elif want in intervals:
        base = want
    else:
        finer = [
            i for i in intervals if i in INTERVAL_NS and INTERVAL_NS[want] % INTERVAL_NS[i] == 0
        ]
        if not finer:
            raise ConfigError(
                f"--timeframe {want}: the store holds {', '.join(intervals)} klines of {symbol}, "
                f"none of which divides {want}"
            )
        base = finer[-1]  # the coarsest that divides: the fewest rows to resample
    store = ParquetStore(store_root, exchange=venue)
    lf = store.scan("klines", symbol).filter(pl.col("interval") == base)
    tr = request.timerange
    if tr.start_ns is not None:
        lf = lf.filter(pl.col("open_time").dt.epoch("ns") >= tr.start_ns)
    if tr.end_ns is not None:
        lf = lf.filter(pl.col("open_time").dt.epoch("ns") < tr.end_ns)
    frame = lf.drop("symbol", "date", "exchange", strict=False).collect()
    source = f"store:{venue}/{symbol}/{base}"
    frame, interval, notes = _to_timeframe(frame, base, want, source)
    return LoadedBars(symbol, venue, interval, frame, source, tuple(notes))


def _to_timeframe(
    frame: pl.DataFrame, stored: str, want: str | None, source: str
) -> tuple[pl.DataFrame, str, list[str]]:
    if want is None or want == stored:
        return frame, stored, []
    if INTERVAL_NS[want] < INTERVAL_NS[stored] or INTERVAL_NS[want] % INTERVAL_NS[stored]:
        raise ConfigError(
            f"--timeframe {want}: {source} holds {stored} bars; a timeframe must be a multiple "
            f"of the data's ({stored}, or coarser)"
        )
    from tessera.data.resample import resample_klines

    out, partial = resample_klines(frame, stored, want)
    notes = [f"resampled {stored} → {want}"]
    if partial:
        notes.append(f"{partial} {want} bar(s) built from fewer {stored} bars than {want} holds")
    return out, want, notes


def request_from(
    symbols: Sequence[str] | None,
    timeframe: str | None,
    timerange: str | None,
    files: Sequence[Path] | None,
    *,
    default_symbols: Sequence[str] = (),
    default_timeframe: str | None = None,
    default_range: TimeRange | None = None,
) -> BarRequest:
    """The request of a command: its flags, else the settings' defaults."""
    rng = TimeRange.parse(timerange) if timerange else (default_range or TimeRange())
    chosen = tuple(symbols or ()) or (() if files else tuple(default_symbols))
    return BarRequest(chosen, timeframe or default_timeframe, rng, tuple(files or ()))
