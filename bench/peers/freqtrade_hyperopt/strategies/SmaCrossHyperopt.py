"""Tessera's SmaCross (long/flat) written for freqtrade's hyperopt, for bench/bench_optimize.py.

The rules are those of `tessera.strategies.SmaCross` with ``allow_short=False``: buy when the
fast SMA of the close crosses strictly above the slow one (before < 0, now > 0), sell when it
crosses strictly below; the order fills at the next candle's open. The SMAs are computed with
the very float operations of Tessera's (``(cumsum[i] - cumsum[i-n]) / n`` from a cumulative sum
that starts at 0.0), so both engines see bit-identical averages and the same crossings.
freqtrade's own ``qtpylib.crossed_above`` counts a touch (``<=`` before) as a cross, so it is not
used. ROI and stop-loss are off (exits by signal only), as SmaCross has none.

Hyperopt computes ``populate_indicators`` once, so every SMA length of both ranges is computed
up front (freqtrade's documented pattern: ``self.fast.range`` is the whole range while
hyperopting and the one value otherwise). The search space must equal the one the benchmark
gives Tessera: FAST and SLOW below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from freqtrade.strategy import IntParameter, IStrategy

FAST = (5, 30)
SLOW = (40, 120)


def sma(close: np.ndarray, n: int) -> np.ndarray:
    """`tessera.backtest.vectorized.sma`: NaN for the first n-1 bars."""
    cs = np.concatenate([[0.0], np.cumsum(close)])
    out = np.full(len(close), np.nan)
    if len(close) >= n:
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


class SmaCrossHyperopt(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    can_short = False
    minimal_roi = {"0": 100.0}  # noqa: RUF012 - never reached: SmaCross exits by signal only
    stoploss = -0.99  # freqtrade needs one; -99 % is never reached on this month
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    process_only_new_candles = True
    startup_candle_count = 0  # Tessera trades from the first bar too (signals wait for the SMA)

    fast = IntParameter(*FAST, default=10, space="buy")
    slow = IntParameter(*SLOW, default=60, space="sell")

    class HyperOpt:
        @staticmethod
        def generate_estimator(dimensions: list[Any], **kwargs: Any) -> str:
            # Tessera's benchmark runs Optuna's TPE; freqtrade's default is NSGA-III.
            return "TPESampler"

    def populate_indicators(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        close = dataframe["close"].to_numpy(dtype=np.float64)
        lengths = sorted(set(self.fast.range) | set(self.slow.range))
        cols = {f"sma_{n}": sma(close, n) for n in lengths}
        return pd.concat([dataframe, pd.DataFrame(cols, index=dataframe.index)], axis=1)

    def _diff(self, dataframe: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        diff = dataframe[f"sma_{self.fast.value}"] - dataframe[f"sma_{self.slow.value}"]
        return diff.shift(1), diff

    def populate_entry_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        prev, diff = self._diff(dataframe)
        dataframe["enter_long"] = ((prev < 0) & (diff > 0)).astype(int)
        return dataframe

    def populate_exit_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        prev, diff = self._diff(dataframe)
        dataframe["exit_long"] = ((prev > 0) & (diff < 0)).astype(int)
        return dataframe
