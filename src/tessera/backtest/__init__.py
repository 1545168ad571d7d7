"""Backtesting: the event-driven engine shared with live, results and reports.

The names below load on first use (PEP 562), so that importing a submodule — the CLI's
`tessera.backtest.cli` — does not pull the engine, NumPy and polars in with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.lazy import lazy_getattr

if TYPE_CHECKING:
    from tessera.backtest.data import BarSeries
    from tessera.backtest.engine import BacktestEngine
    from tessera.backtest.results import BacktestResult, Trade

__all__ = ["BacktestEngine", "BacktestResult", "BarSeries", "Trade"]

_WHERE = {
    "BarSeries": "tessera.backtest.data",
    "BacktestEngine": "tessera.backtest.engine",
    "BacktestResult": "tessera.backtest.results",
    "Trade": "tessera.backtest.results",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
