"""The RSI strategy of the docs (`tessera strategy new my_rsi`) written for freqtrade's hyperopt.

Tessera's template: when Wilder's RSI of the close (over ``period`` bars) is below ``oversold``
and the strategy is flat, buy for 1000 USDT at market with a bracket (an OCO selling at
+1.5 % limit or -1.0 % stop); when the RSI is above ``overbought`` while long, cancel the
bracket and sell at market. Here, as freqtrade expresses it:

- the RSI is the template's own recursion (the first average a plain mean of ``period``
  changes, then Wilder's smoothing; 100 when no loss, 50 when neither), not TA-Lib's, so both
  engines see the same values;
- entry: ``rsi < oversold`` (freqtrade opens only when no trade is open: max_open_trades 1),
  filled at the next candle's open, stake 1000 USDT (the template's ``notional``);
- exit signal: ``rsi > overbought``, filled at the next candle's open;
- stop-loss: ``stoploss = -0.01``, i.e. 1 % below the *entry fill* (Tessera: 1 % below the
  signal candle's close, rounded to the 0.01 tick);
- take-profit: ``minimal_roi`` set so that freqtrade's ROI exit price is exactly 1.5 % above
  the entry fill (freqtrade's ROI is a profit net of both fees, so 1.5 % gross is
  ``1.015 * (1 - fee) / (1 + fee) - 1`` = 1.2972 % at the 0.1 % fee); Tessera's limit is 1.5 %
  above the signal candle's close.

The search space must equal the one the benchmark gives Tessera: PERIOD, OVERSOLD, OVERBOUGHT.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from freqtrade.strategy import IntParameter, IStrategy

PERIOD = (5, 30)
OVERSOLD = (15, 40)
OVERBOUGHT = (60, 85)
FEE = 0.001  # the benchmark's config.json fee; the ROI below is derived from it
TAKE_PROFIT = 0.015
STOP_LOSS = 0.01


def template_rsi(close: np.ndarray, period: int) -> np.ndarray:
    """The `_Rsi.update` of Tessera's strategy template, bar by bar (NaN while not ready)."""
    out = np.full(len(close), np.nan)
    gain = loss = 0.0
    prev: float | None = None
    count = 0
    for i, c in enumerate(close.tolist()):
        if prev is None:
            prev = c
            continue
        change, prev = c - prev, c
        up, down = max(change, 0.0), max(-change, 0.0)
        count += 1
        if count <= period:
            gain += up / period
            loss += down / period
            if count < period:
                continue
        else:
            gain = (gain * (period - 1) + up) / period
            loss = (loss * (period - 1) + down) / period
        if loss == 0.0:
            out[i] = 100.0 if gain > 0.0 else 50.0
        else:
            out[i] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


class MyRsiHyperopt(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    can_short = False
    minimal_roi = {"0": (1.0 + TAKE_PROFIT) * (1.0 - FEE) / (1.0 + FEE) - 1.0}  # noqa: RUF012
    stoploss = -STOP_LOSS
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    process_only_new_candles = True
    startup_candle_count = 0

    period = IntParameter(*PERIOD, default=14, space="buy")
    oversold = IntParameter(*OVERSOLD, default=30, space="buy")
    overbought = IntParameter(*OVERBOUGHT, default=70, space="sell")

    class HyperOpt:
        @staticmethod
        def generate_estimator(dimensions: list[Any], **kwargs: Any) -> str:
            return "TPESampler"

    def populate_indicators(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        close = dataframe["close"].to_numpy(dtype=np.float64)
        cols = {f"rsi_{n}": template_rsi(close, n) for n in self.period.range}
        return pd.concat([dataframe, pd.DataFrame(cols, index=dataframe.index)], axis=1)

    def populate_entry_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        rsi = dataframe[f"rsi_{self.period.value}"]
        dataframe["enter_long"] = (rsi < self.oversold.value).astype(int)
        return dataframe

    def populate_exit_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        rsi = dataframe[f"rsi_{self.period.value}"]
        dataframe["exit_long"] = (rsi > self.overbought.value).astype(int)
        return dataframe
