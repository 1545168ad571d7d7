"""What a perpetual backtest needs besides the trade bars: brackets, mark prices, funding rates.

One function, `load_perp_inputs`, gathers them, from files or from the store, without the
engine knowing which: ``--mark FILE`` and ``--funding FILE`` (`tessera.data.futures_files`)
when given; else, when the bars come from the store (venue ``binance-usdm``), the store's
``mark_klines`` and ``funding_rates`` of the symbol (`tessera.data.futures_store`, exact
decimals); else, when the bars are the bundled XRP/USDT perpetual sample, its bundled files.
The output names the source (``store binance-usdm XRPUSDT 1h mark_klines for 100 of 100
bars``).

Nothing is filled in silently:

* **mark price**: per trade bar, the mark kline opening at the same time when a mark file of
  the same interval is given; every other bar uses the trade bar's own OHLC, and the count is
  said (``mark_source``). The liquidation check uses the mark bar's high/low, so with no mark
  data it uses the trade bar's.
* **funding**: required. A perpetual backtest without a funding file is refused unless funding
  is switched off (``--no-funding``, ``backtest.perp.funding: false``), and the output says so;
  funding is never silently zero. The mark at a funding time is the open of the mark kline at
  that hour (the mark file may be of any interval for this), else the trade price at the
  funding time (the close of the bar the payment falls on), counted.
* **brackets**: Binance's real leverage brackets, bundled in ``samples/binance-usdm/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tessera.backtest.data import BarSeries
from tessera.data.barfile import SAMPLES, BarFileError
from tessera.data.store import ParquetStore
from tessera.execution.perp.funding import FundingRate, FundingSchedule, schedule
from tessera.execution.perp.margin import LeverageBrackets

BRACKETS_FILE = SAMPLES / "binance-usdm" / "leverage_brackets.json"
SAMPLE_PERP_BARS = {"XRP_USDT_USDT-1h-futures.feather", "XRP_USDT_USDT-5m-futures.feather"}


class PerpInputError(ValueError):
    """A perpetual backtest cannot run with these inputs (the message says why)."""


@dataclass(frozen=True)
class StoreSeries:
    """Where a symbol's bars came from in the store: the mark and the funding are read from
    the same ``venue`` there (the mark candles at the bars' ``interval``)."""

    store: ParquetStore
    venue: str
    interval: str


@dataclass(frozen=True)
class SymbolPerpInputs:
    """One perpetual's inputs, aligned to its trade bars."""

    symbol: str
    brackets: LeverageBrackets
    mark_open: npt.NDArray[np.float64]  # per trade bar (the trade bar's where no mark)
    mark_high: npt.NDArray[np.float64]
    mark_low: npt.NDArray[np.float64]
    mark_close: npt.NDArray[np.float64]
    mark_bars: int  # trade bars with a mark kline
    funding: FundingSchedule
    funding_without_mark: int  # funding times marked at the trade price
    mark_source: str
    funding_source: str


@dataclass(frozen=True)
class PerpInputs:
    symbols: Mapping[str, SymbolPerpInputs] = field(default_factory=dict)
    funding_enabled: bool = True

    def describe(self) -> list[str]:
        """Lines for the CLI and the report: where the mark and the funding came from."""
        lines = []
        for s in self.symbols.values():
            lines.append(f"{s.symbol} mark: {s.mark_source}")
            lines.append(f"{s.symbol} funding: {s.funding_source}")
        return lines


def load_brackets(path: Path = BRACKETS_FILE) -> dict[str, LeverageBrackets]:
    """The leverage brackets in a ``/fapi/v1/leverageBracket`` payload file."""
    from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

    try:
        return parse_leverage_brackets(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise PerpInputError(f"{path}: cannot read leverage brackets ({exc})") from None


def bundled_inputs_for(bars_source: str) -> tuple[Path | None, Path | None]:
    """(mark file, funding file) bundled with a bundled perpetual bar file, else (None, None)."""
    from tessera.data.futures_files import SAMPLE_FUNDING, SAMPLE_MARK_1H, SAMPLE_MARK_8H

    name = Path(bars_source).name
    if name not in SAMPLE_PERP_BARS:
        return None, None
    return (SAMPLE_MARK_1H if "-1h-" in name else SAMPLE_MARK_8H), SAMPLE_FUNDING


def load_perp_inputs(
    series: Sequence[BarSeries],
    *,
    mark_files: Mapping[str, Path | None],
    funding_files: Mapping[str, Path | None],
    funding: bool = True,
    brackets_file: Path = BRACKETS_FILE,
    stores: Mapping[str, StoreSeries] | None = None,
) -> PerpInputs:
    """The perpetual inputs of each series (see the module docstring for the rules).

    ``mark_files`` / ``funding_files`` map symbol → file (None: none given); ``stores`` maps
    a symbol whose bars came from the store to that store, read where no file is given.
    Raises `PerpInputError` for a symbol with no brackets, no funding history while funding
    is on (no file, nothing in the store), or an unreadable file (the message names it)."""
    from tessera.data.futures_files import (
        funding_rates_from_frames,
        read_funding_rates,
        read_mark_prices,
    )
    from tessera.data.futures_store import (
        FuturesStoreError,
        load_funding_rates,
        load_mark_klines,
    )

    all_brackets = load_brackets(brackets_file)
    out: dict[str, SymbolPerpInputs] = {}
    for s in series:
        brackets = all_brackets.get(s.symbol)
        if brackets is None:
            raise PerpInputError(
                f"{s.symbol}: no leverage brackets in {brackets_file} (it has "
                f"{', '.join(sorted(all_brackets))})"
            )
        interval = int(s.close_time[0] - s.open_time[0] + 1) if len(s) else 1
        mark_path = mark_files.get(s.symbol)
        stored = (stores or {}).get(s.symbol)
        marks = None
        mark_label: str | Path | None = mark_path
        store_note = ""
        try:
            if mark_path is not None:
                marks = read_mark_prices(Path(mark_path))
            elif stored is not None:
                label = f"store {stored.venue} {s.symbol} {stored.interval} mark_klines"
                try:
                    marks = load_mark_klines(stored.store, stored.venue, s.symbol, stored.interval)
                    mark_label = label
                except FuturesStoreError as exc:
                    store_note = f" ({exc})"
        except BarFileError as exc:
            raise PerpInputError(str(exc)) from None
        mo, mh, ml, mc = (s.open.copy(), s.high.copy(), s.low.copy(), s.close.copy())
        mark_bars = 0
        if marks is not None and len(marks):
            m_open = marks["open_time"].dt.epoch("ns").to_numpy()
            steps = np.diff(m_open)
            m_interval = int(np.min(steps)) if len(steps) else interval
            if m_interval == interval:
                idx = np.searchsorted(m_open, s.open_time)
                idx_c = np.minimum(idx, len(m_open) - 1)
                hit = m_open[idx_c] == s.open_time
                for col, arr in (("open", mo), ("high", mh), ("low", ml), ("close", mc)):
                    vals = marks[col].to_numpy()
                    arr[hit] = vals[idx_c[hit]]
                mark_bars = int(hit.sum())
        n = len(s)
        if mark_label is None:
            mark_source = f"none stored: the trade price for all {n:,} bars{store_note}"
        elif mark_bars == 0 and marks is not None and len(marks):
            mark_source = (
                f"{mark_label} is not at the bars' interval: the trade price for all {n:,} bars "
                "(its opens still mark the funding times)"
            )
        else:
            mark_source = f"{mark_label} for {mark_bars:,} of {n:,} bars" + (
                f", the trade price for {n - mark_bars:,}" if mark_bars < n else ""
            )
        if not funding:
            sched = FundingSchedule({})
            without = 0
            funding_source = "OFF (--no-funding): no funding paid or received"
        else:
            fpath = funding_files.get(s.symbol)
            flabel: str | Path
            if fpath is None and stored is not None:
                try:
                    rates, _ = load_funding_rates(stored.store, stored.venue, s.symbol)
                except FuturesStoreError as exc:
                    raise PerpInputError(
                        f"{s.symbol}: no funding-rate history: {exc}; or give --funding FILE, "
                        "or --no-funding to run without funding"
                    ) from None
                flabel = f"store {stored.venue} {s.symbol} funding_rates"
            elif fpath is None:
                raise PerpInputError(
                    f"{s.symbol}: no funding-rate history; give --funding FILE (or "
                    "backtest.perp.funding_file), or --no-funding to run without funding"
                )
            else:
                flabel = fpath
                try:
                    rates, _ = funding_rates_from_frames(read_funding_rates(Path(fpath)), marks)
                except BarFileError as exc:
                    raise PerpInputError(str(exc)) from None
            sched = schedule(rates, s.open_time.tolist(), interval)
            due = [r for v in sched.due.values() for r in v]
            without = sum(1 for r in due if r.mark_price is None)
            funding_source = (
                f"{flabel}: {sched.applied} funding times applied"
                + (f" ({without} marked at the trade price)" if without else "")
                + (f", {sched.before} before the bars" if sched.before else "")
                + (f", {sched.after} after them" if sched.after else "")
            )
        out[s.symbol] = SymbolPerpInputs(
            s.symbol, brackets, mo, mh, ml, mc, mark_bars, sched, without, mark_source,
            funding_source,
        )  # fmt: skip
    return PerpInputs(out, funding)


def funding_rate_at(rate: FundingRate, fallback: Decimal) -> FundingRate:
    """``rate`` with ``fallback`` as its mark when it has none."""
    if rate.mark_price is not None:
        return rate
    return FundingRate(rate.ts_ns, rate.rate, fallback)
