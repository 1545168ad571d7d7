"""Where features get their bars: a bar file, or the bundled real sample by default."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file

__all__ = ["SAMPLE_BARS", "load_bars"]


def load_bars(path: Path) -> pl.DataFrame:
    """OHLCV bars (.csv, .csv.gz, .parquet) with a UTC ``open_time``, sorted and de-duplicated."""
    return read_bar_file(Path(path))
