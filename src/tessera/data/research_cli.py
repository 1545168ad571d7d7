"""The ``--symbol``/``--timeframe``/``--timerange``/``--bars`` options every research command takes.

One definition, so `backtest`, `sweep`, `train`, `predict` and `features build|check` spell and
document them the same way, and one loader (`tessera.data.universe.load_universe`) so the same
flags select the same bars. The bars used are printed (symbol, venue, interval, span, source and
any resampling) before the command's own work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from tessera.config.settings import TesseraSettings
    from tessera.data.universe import LoadedBars

SymbolsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--symbol",
        help="Symbol to read from the Parquet store (repeatable; VENUE:SYMBOL where two venues "
        "hold it). With --bars: the symbol of each file, in order",
    ),
]
TimeframeOpt = Annotated[
    str | None,
    typer.Option(
        "--timeframe",
        "-t",
        help="Bar interval 1m…1d: read as stored, or resampled from finer stored bars",
    ),
]
TimerangeOpt = Annotated[
    str | None,
    typer.Option(
        "--timerange",
        help="Window YYYYMMDD-YYYYMMDD (end exclusive; 20220101- and -20220115 are open-ended)",
    ),
]
BarsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--bars",
        help="Bar file(s) instead of the store (.csv[.gz] with or without a header, .parquet, "
        ".feather); repeatable. Default: the store's --symbol, else the bundled real sample",
    ),
]


def store_root(settings: TesseraSettings) -> Path:
    return settings.data.store_dir or settings.data_dir / "store"


def research_bars(
    settings: TesseraSettings,
    symbols: Sequence[str] | None,
    timeframe: str | None,
    timerange: str | None,
    files: Sequence[Path] | None,
    *,
    console: Console | None = None,
    use_backtest_defaults: bool = True,
) -> list[LoadedBars]:
    """The bars a research command reads, printed one line per symbol.

    Flags win over the settings; the backtest section's ``symbols``, ``interval``, ``start``
    and ``end`` are the defaults (the same window for `backtest`, `sweep`, `train`, ...).
    """
    from tessera.data.universe import TimeRange, load_universe, request_from

    cfg = settings.backtest
    request = request_from(
        symbols,
        timeframe,
        timerange,
        files,
        default_symbols=cfg.symbols if use_backtest_defaults else (),
        default_timeframe=cfg.interval if use_backtest_defaults else None,
        default_range=TimeRange.from_iso(cfg.start, cfg.end) if use_backtest_defaults else None,
    )
    loaded = load_universe(request, store_root=store_root(settings))
    if console is not None:
        for bars in loaded:
            console.print(f"bars: {bars.describe()}", highlight=False, soft_wrap=True)
    return loaded
