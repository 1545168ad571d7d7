"""Backtesting: the event-driven engine shared with live, results and reports."""

from tessera.backtest.data import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.results import BacktestResult, Trade

__all__ = ["BacktestEngine", "BacktestResult", "BarSeries", "Trade"]
