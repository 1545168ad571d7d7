"""Reading bar files (CSV, CSV.gz, Parquet, Feather) into the frame research code expects.

It lives in ``data/`` (not ``backtest/``) because features, models, the simulator and the
backtest all read bars: the reader is a data concern, and importing it must not pull the
backtest engine in.

What a user hands us varies, so the reader accepts:

- Tessera's kline schema, and generic files with a ``timestamp``/``date``/``open_time`` column
  (ISO strings, or epoch s/ms/µs/ns integers, detected by magnitude);
- Binance's bulk-data kline CSVs, which have **no header line** (12 columns: open time, OHLC,
  volume, close time, quote volume, trades, taker buy base/quote, ignore);
- files with a banner line above the header (CryptoDataDownload's "Timestamps are UTC..." line);
- freqtrade's ``.feather`` candles (``date, open, high, low, close, volume``).

Every problem is a `BarFileError` naming the file (and the row or column where one is to blame).
The frame comes back sorted by ``open_time`` (UTC, ns) with duplicate times dropped.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLES = REPO_ROOT / "samples"
SAMPLE_BARS = SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"

TIME_COLUMNS = ("open_time", "timestamp", "date", "time", "datetime")
OHLCV = ("open", "high", "low", "close", "volume")
# Binance bulk-data kline layout (data.binance.vision), header-less
BINANCE_KLINE_COLUMNS = (
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
)
_BANNER_LINES = 3  # at most this many lines above the header are skipped as a banner


class BarFileError(ValueError):
    """A bar file that cannot be read as bars; the message names the file and what is wrong."""


@dataclass(frozen=True)
class BarFileMeta:
    """What a bundled file is: its symbol, venue and interval, from its provenance."""

    symbol: str
    venue: str
    interval: str
    note: str = ""


# The bundled bar files and what they hold (samples/SOURCES.md has the provenance). A user's
# own file gets its symbol from --symbol or from its name (see `symbol_from_name`).
BUNDLED: dict[str, BarFileMeta] = {
    "btc-perp-20211231-20220201_1m.csv.gz": BarFileMeta(
        "BTCPERP",
        "nautilus",
        "1m",
        "BTC-PERP perpetual bars from nautilus_trader's test data; volume is in quote currency",
    ),
    "Coinbase_BTCUSD_1h.csv.gz": BarFileMeta("BTCUSD", "coinbase", "1h", "CryptoDataDownload"),
    "bitstamp_BTCUSD_1d.csv.gz": BarFileMeta("BTCUSD", "bitstamp", "1d", "CryptoDataDownload"),
    "bitstamp_ETHUSD_1d.csv.gz": BarFileMeta("ETHUSD", "bitstamp", "1d", "CryptoDataDownload"),
    "bitstamp_LTCUSD_1d.csv.gz": BarFileMeta("LTCUSD", "bitstamp", "1d", "CryptoDataDownload"),
}


def bundled_meta(path: Path) -> BarFileMeta | None:
    return BUNDLED.get(path.name)


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return io.TextIOWrapper(open(path, "rb"), encoding="utf-8")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> pl.DataFrame:
    """A CSV with a header, a banner above its header, or none (Binance bulk layout)."""
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise BarFileError(
            f"{path}: not a text (CSV) file (byte {exc.start} is not UTF-8); is it a "
            "Parquet or Feather file with a .csv name? Give it its real extension"
        ) from None
    except (OSError, EOFError) as exc:
        raise BarFileError(f"{path}: cannot read it ({exc})") from None
    lines = text.splitlines()
    if not lines:
        raise BarFileError(f"{path}: the file is empty")
    first = lines[0].split(",")
    if _is_number(first[0].strip()):
        # header-less: Binance's bulk layout (or the first columns of it)
        if len(first) < 6:
            raise BarFileError(
                f"{path}: line 1 has {len(first)} columns and no header; a header-less file "
                "must use Binance's kline layout (open_time,open,high,low,close,volume,...)"
            )
        names = list(BINANCE_KLINE_COLUMNS[: len(first)])
        names += [f"column_{i}" for i in range(len(names), len(first))]
        return _parse(path, text, names, skip=0)
    skip = next(
        (
            k
            for k, line in enumerate(lines[: _BANNER_LINES + 1])
            if {c.strip().strip('"').lower() for c in line.split(",")} & set(TIME_COLUMNS)
        ),
        None,
    )
    if skip is None:
        raise BarFileError(
            f"{path}: no header line with a time column ({', '.join(TIME_COLUMNS)}) in the "
            f"first {_BANNER_LINES + 1} lines, and line 1 is not a header-less kline row"
        )
    return _parse(path, text, None, skip=skip)


def _parse(path: Path, text: str, names: list[str] | None, skip: int) -> pl.DataFrame:
    body = "\n".join(text.splitlines()[skip:])
    expected = len(names) if names else len(body.split("\n", 1)[0].split(","))
    for lineno, line in enumerate(body.split("\n"), start=skip + 1):
        if line.strip() and line.count(",") + 1 != expected:
            raise BarFileError(
                f"{path}: line {lineno} has {line.count(',') + 1} "
                f"columns where the {'first row' if names else 'header'} has {expected} "
                "(a truncated or damaged row); fix or remove that line"
            )
    try:
        return pl.read_csv(
            io.StringIO(body),
            has_header=names is None,
            new_columns=names,
            infer_schema_length=10_000,
        )
    except pl.exceptions.PolarsError as exc:
        raise BarFileError(f"{path}: cannot parse it as CSV ({str(exc).splitlines()[0]})") from None


def read_bar_file(path: Path) -> pl.DataFrame:
    """OHLCV bars with a UTC ``open_time`` column (ns), sorted, duplicate times dropped."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such bar file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(path)
        elif name.endswith((".feather", ".arrow", ".ipc")):
            frame = pl.read_ipc(path)
        elif name.endswith((".csv", ".csv.gz")):
            frame = _read_csv(path)
        else:
            raise BarFileError(f"{path}: expected .csv, .csv.gz, .parquet or .feather")
    except pl.exceptions.PolarsError as exc:
        raise BarFileError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise BarFileError(f"{path}: cannot read it ({exc})") from None
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_col is None:
        raise BarFileError(f"{path}: no time column (one of {', '.join(TIME_COLUMNS)})")
    missing = set(OHLCV) - set(frame.columns)
    if missing:
        raise BarFileError(f"{path}: missing columns {sorted(missing)}")
    frame = frame.with_columns(_parse_time(path, frame[time_col]).alias("open_time"))
    for c in OHLCV:
        if not frame[c].dtype.is_numeric():
            bad = frame.with_row_index("_row").filter(
                pl.col(c).cast(pl.Float64, strict=False).is_null() & pl.col(c).is_not_null()
            )
            row = int(bad["_row"][0]) + 1 if len(bad) else 0
            raise BarFileError(
                f"{path}: column {c!r} is not numeric (data row {row}: "
                f"{bad[c][0] if len(bad) else '?'!r})"
            )
    decimals = [c for c, t in frame.schema.items() if isinstance(t, pl.Decimal)]
    if decimals:  # research arrays are float; the exact values stay in the store
        frame = frame.with_columns(pl.col(decimals).cast(pl.Float64))
    if "close_time" in frame.columns and not frame["close_time"].dtype.is_temporal():
        frame = frame.drop("close_time")  # re-derived from the interval by BarSeries
    return frame.sort("open_time").unique("open_time", keep="first", maintain_order=True)


def _parse_time(path: Path, col: pl.Series) -> pl.Series:
    try:
        if col.dtype == pl.String:
            parsed = _parse_time_text(col)
        elif col.dtype.is_temporal():
            parsed = (
                col.dt.replace_time_zone("UTC")
                if getattr(col.dtype, "time_zone", None) is None
                else col.dt.convert_time_zone("UTC")
            )
        else:
            top = int(col.cast(pl.Int64).max() or 0)  # type: ignore[arg-type]
            if top < 10**11:  # epoch seconds
                parsed = pl.from_epoch(col.cast(pl.Int64), time_unit="s")
            else:
                unit: Literal["ms", "us", "ns"] = (
                    "ms" if top < 10**14 else ("us" if top < 10**17 else "ns")
                )
                parsed = pl.from_epoch(col.cast(pl.Int64), time_unit=unit)
            parsed = parsed.dt.replace_time_zone("UTC")
    except pl.exceptions.PolarsError as exc:
        raise BarFileError(
            f"{path}: column {col.name!r} is not a time I can read "
            f"({str(exc).splitlines()[0]}); use ISO-8601 or epoch integers"
        ) from None
    return parsed.dt.cast_time_unit("ns")


def _parse_time_text(col: pl.Series) -> pl.Series:
    # CryptoDataDownload writes hours as "2019-10-17 09-AM"
    if col.str.contains(r"^\d{4}-\d\d-\d\d \d\d-(AM|PM)$").all():
        return col.str.replace(r"-(AM|PM)$", ":00 $1").str.to_datetime(
            "%Y-%m-%d %I:%M %p", time_zone="UTC"
        )
    return col.str.to_datetime(time_zone="UTC")


def infer_interval(frame: pl.DataFrame) -> str | None:
    """The bar interval of a frame, from the most common spacing of its open times."""
    from tessera.data.intervals import INTERVAL_NS

    if len(frame) < 2:
        return None
    ns = frame["open_time"].dt.epoch("ns").diff().drop_nulls()
    mode = ns.mode().sort()
    if mode.is_empty():
        return None
    step = int(mode[0])
    for name, width in INTERVAL_NS.items():
        if width == step:
            return name
    return None
