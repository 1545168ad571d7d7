"""Reading stored perpetual-futures series: funding-rate history and mark-price candles.

freqtrade stores both as ordinary candle files (``date, open, high, low, close, volume``), which
is why they need readers of their own rather than `read_bar_file`:

- a ``*-funding_rate.feather`` file holds **the funding rate in the ``open`` column** (freqtrade
  writes ``[fundingTime, fundingRate, 0, 0, 0, 0]`` per row; in the bundled XRP file
  ``high``, ``low``, ``close`` and ``volume`` are 0 everywhere, which `read_funding_rates`
  checks), and ``date`` is Binance's ``fundingTime`` as reported, a few ms after the hour;
- a ``*-mark.feather`` file holds mark-price candles (volume is meaningless for a mark price:
  Binance's ``markPriceKlines`` carry none and freqtrade's 1h mark file has nulls there).

Trade candles of the perpetual (``*-futures.feather``) are plain OHLCV and read through
`tessera.data.barfile.read_bar_file` unchanged.

Every problem is a `BarFileError` naming the file, as for bar files.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from tessera.data.barfile import SAMPLES, BarFileError, read_bar_file

if TYPE_CHECKING:
    from tessera.execution.perp.funding import FundingRate

SAMPLE_FUTURES = SAMPLES / "freqtrade" / "futures"
SAMPLE_FUNDING = SAMPLE_FUTURES / "XRP_USDT_USDT-8h-funding_rate.feather"
SAMPLE_MARK_8H = SAMPLE_FUTURES / "XRP_USDT_USDT-8h-mark.feather"
SAMPLE_MARK_1H = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-mark.feather"


def read_funding_rates(path: Path) -> pl.DataFrame:
    """Funding-rate history as ``open_time`` (UTC, ns; the raw funding time) and ``funding_rate``.

    Sorted by time, duplicate times dropped. The rate is read from freqtrade's ``open`` column
    (or a ``funding_rate``/``fundingRate`` column where a file has one). A file whose
    ``high``/``low``/``close``/``volume`` are not all zero is refused: it is then an ordinary
    candle file, and reading its open as a rate would book nonsense funding.
    """
    path = Path(path)
    frame = _read_frame(path)
    cols = {c.strip().lower(): c for c in frame.columns}
    rate_col = cols.get("funding_rate") or cols.get("fundingrate")
    if rate_col is None:
        if "open" not in cols:
            raise BarFileError(
                f"{path}: no funding-rate column (expected freqtrade's 'open' or 'funding_rate')"
            )
        rate_col = cols["open"]
        for name in ("high", "low", "close", "volume"):
            if name in cols:
                col = frame[cols[name]]
                if not col.dtype.is_numeric() or col.fill_null(0).abs().max() != 0:
                    raise BarFileError(
                        f"{path}: column {name!r} is not all zero, so this looks like a candle "
                        "file, not freqtrade's funding-rate file (rate in 'open', zeros elsewhere)"
                    )
    rate = frame[rate_col]
    if not rate.dtype.is_numeric():
        raise BarFileError(f"{path}: funding-rate column {rate_col!r} is not numeric")
    if rate.null_count():
        row = int(frame.with_row_index("_r").filter(pl.col(rate_col).is_null())["_r"][0]) + 1
        raise BarFileError(f"{path}: funding rate missing in data row {row}")
    bars = _with_open_time(path, frame)
    out = bars.select("open_time", pl.col(rate_col).cast(pl.Float64).alias("funding_rate"))
    return out.sort("open_time").unique("open_time", keep="first", maintain_order=True)


def read_mark_prices(path: Path) -> pl.DataFrame:
    """Mark-price candles: ``open_time`` (UTC, ns) and ``open, high, low, close``.

    Read through `read_bar_file` (same time parsing and errors), then the volume column is
    dropped: a mark price has no traded volume, and keeping one would invite using it.
    """
    path = Path(path)
    if not path.exists():
        raise BarFileError(f"{path}: no such mark-price file")
    frame = read_bar_file(path)
    return frame.select("open_time", "open", "high", "low", "close")


def funding_rates_from_frames(
    rates: pl.DataFrame, marks: pl.DataFrame | None = None
) -> tuple[list[FundingRate], int]:
    """`FundingRate` records from `read_funding_rates` output, with the mark where known.

    Each raw funding time is floored to the hour (`nominal_funding_time`); its mark price is
    the ``open`` of the mark candle opening at that hour (the mark at the funding time, as
    freqtrade's backtest uses it). Floats become `Decimal` through 15 significant digits
    (`as_decimal`). Returns the records and how many have no mark
    candle at their hour (those carry ``mark_price=None``; `settle_funding` refuses them unless
    a mark is supplied).
    """
    from tessera.execution.perp.funding import FundingRate, nominal_funding_time

    mark_at: dict[int, float] = {}
    if marks is not None:
        ns = marks["open_time"].dt.epoch("ns").to_list()
        mark_at = dict(zip(ns, marks["open"].to_list(), strict=True))
    out: list[FundingRate] = []
    missing = 0
    times: Sequence[int] = rates["open_time"].dt.epoch("ns").to_list()
    for raw, rate in zip(times, rates["funding_rate"].to_list(), strict=True):
        ts = nominal_funding_time(int(raw))
        mark = mark_at.get(ts)
        if mark is None:
            missing += 1
        out.append(FundingRate(ts, as_decimal(rate), None if mark is None else as_decimal(mark)))
    return out, missing


def as_decimal(value: float) -> Decimal:
    """A stored float as the decimal it was written from (15 significant digits).

    The files keep Binance's decimal strings as float64, and some come back with float noise
    (``0.9467000000000001``, ``-0.0021933400000000002``). Any decimal of at most 15 significant
    digits survives the round trip through float64 and ``%.15g`` exactly, which covers
    Binance's 8-decimal funding rates and its prices, so the noise goes and no real digit does.
    """
    return Decimal(f"{value:.15g}")


def _read_frame(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise BarFileError(f"{path}: no such funding-rate file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pl.read_parquet(path)
        if name.endswith((".feather", ".arrow", ".ipc")):
            return pl.read_ipc(path)
        if name.endswith((".csv", ".csv.gz")):
            return pl.read_csv(path)
    except pl.exceptions.PolarsError as exc:
        raise BarFileError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise BarFileError(f"{path}: cannot read it ({exc})") from None
    raise BarFileError(f"{path}: expected .feather, .parquet or .csv")


def _with_open_time(path: Path, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with a UTC ns ``open_time``, parsed as bar files parse their time column."""
    from tessera.data.barfile import TIME_COLUMNS, _parse_time

    lower = {c.strip().lower(): c for c in frame.columns}
    time_col = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if time_col is None:
        raise BarFileError(f"{path}: no time column (one of {', '.join(TIME_COLUMNS)})")
    return frame.with_columns(_parse_time(path, frame[time_col]).alias("open_time"))
