"""Tessera's SmaCross(10, 30), long/flat, all-in, for freqtrade's backtesting (bench_backtest.py).

The rules of `tessera.strategies.SmaCross` with its defaults (``size=1.0``: all the equity,
``allow_short=False``): enter long when the fast SMA of the close crosses strictly above the slow
one (before < 0, now > 0), exit when it crosses strictly below; both fill at the next candle's
open (freqtrade's backtesting fills a signal of candle i at the open of candle i+1, as Tessera's
``fill_at: next_open`` does). The SMAs are computed with the very float operations of Tessera's
(``(cumsum[i] - cumsum[i-n]) / n`` from a cumulative sum that starts at 0.0), so both engines see
bit-identical averages and the same crossings. freqtrade's own ``qtpylib.crossed_above`` counts a
touch (``<=`` before) as a cross, so it is not used. ROI and stop-loss are off (exits by signal
only), as SmaCross has neither. The stake (all-in) and the fee are in ../config.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from freqtrade.strategy import IStrategy

FAST = 10
SLOW = 30


def sma(close: np.ndarray, n: int) -> np.ndarray:
    """`tessera.backtest.vectorized.sma`: NaN for the first n-1 bars."""
    cs = np.concatenate([[0.0], np.cumsum(close)])
    out = np.full(len(close), np.nan)
    if len(close) >= n:
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


class SmaCross(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    can_short = False
    minimal_roi = {"0": 100.0}  # noqa: RUF012 - never reached: SmaCross exits by signal only
    stoploss = -0.99  # freqtrade needs one; a 99 % fall within one trade never happens here
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    process_only_new_candles = True
    startup_candle_count = 0  # Tessera trades from the first bar too (signals wait for the SMA)

    def populate_indicators(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        close = dataframe["close"].to_numpy(dtype=np.float64)
        diff = sma(close, FAST) - sma(close, SLOW)
        dataframe["diff"] = diff
        dataframe["diff_prev"] = np.concatenate([[np.nan], diff[:-1]])
        return dataframe

    def populate_entry_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        dataframe["enter_long"] = ((dataframe["diff_prev"] < 0) & (dataframe["diff"] > 0)).astype(
            int
        )
        return dataframe

    def populate_exit_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        dataframe["exit_long"] = ((dataframe["diff_prev"] > 0) & (dataframe["diff"] < 0)).astype(
            int
        )
        return dataframe
