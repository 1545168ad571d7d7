"""Reading bar files (CSV, CSV.gz, Parquet) into the frame the engine and features expect."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_BARS = REPO_ROOT / "samples" / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"

_TIME_COLUMNS = ("open_time", "timestamp", "date", "time", "datetime")


def read_bar_file(path: Path) -> pl.DataFrame:
    """OHLCV bars with a UTC ``open_time`` column, sorted, duplicates dropped.

    Accepts Tessera's kline schema, and generic files with a ``timestamp``/``date`` column
    (ISO strings, or epoch ms/µs/ns integers, detected by magnitude).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such bar file")
    name = path.name.lower()
    if name.endswith(".parquet"):
        frame = pl.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz")):
        frame = pl.read_csv(path)
    else:
        raise ValueError(f"{path}: expected .csv, .csv.gz or .parquet")
    frame = frame.rename({c: c.lower() for c in frame.columns})
    time_col = next((c for c in _TIME_COLUMNS if c in frame.columns), None)
    if time_col is None:
        raise ValueError(f"{path}: no time column (one of {', '.join(_TIME_COLUMNS)})")
    col = frame[time_col]
    if col.dtype == pl.String:
        parsed = col.str.to_datetime(time_zone="UTC")
    elif col.dtype.is_temporal():
        parsed = (
            col.dt.replace_time_zone("UTC")
            if getattr(col.dtype, "time_zone", None) is None
            else col.dt.convert_time_zone("UTC")
        )
    else:
        top = int(col.cast(pl.Int64).max() or 0)  # type: ignore[arg-type]
        unit: Literal["ms", "us", "ns"] = "ms" if top < 10**14 else ("us" if top < 10**17 else "ns")
        parsed = pl.from_epoch(col, time_unit=unit).dt.replace_time_zone("UTC")
    frame = frame.with_columns(parsed.dt.cast_time_unit("ns").alias("open_time"))
    missing = {"open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    decimals = [c for c, t in frame.schema.items() if isinstance(t, pl.Decimal)]
    if decimals:  # research arrays are float; the exact values stay in the store
        frame = frame.with_columns(pl.col(decimals).cast(pl.Float64))
    return frame.sort("open_time").unique("open_time", keep="first", maintain_order=True)
