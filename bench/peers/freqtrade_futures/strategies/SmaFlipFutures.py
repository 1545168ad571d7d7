"""SMA 10/30 long/short flip on closes, for the freqtrade side of the perpetual cross-check.

The rule both engines state identically: after the close of candle t, the position wanted
over candle t+1 is long when SMA10(close) > SMA30(close) at t, short when SMA10 < SMA30,
unchanged when they are equal (never happened on the bundled data: the runner reports the
smallest gap). freqtrade shifts signals by one candle and fills market orders at the next
candle's open, so each flip is an exit and an entry at the same open. No stoploss, no ROI
(stoploss -0.99 is 33 % of price at 3x, never reached here), fixed leverage 3.
Runs only inside bench/.venv-freqtrade (it imports freqtrade).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from freqtrade.strategy import IStrategy
from pandas import DataFrame


class SmaFlipFutures(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1h"
    can_short = True
    stoploss = -0.99
    minimal_roi: ClassVar[dict[str, float]] = {"0": 100}
    trailing_stop = False
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    process_only_new_candles = True
    startup_candle_count = 30
    order_types: ClassVar[dict[str, str | bool]] = {
        "entry": "market",
        "exit": "market",
        "emergency_exit": "market",
        "force_entry": "market",
        "force_exit": "market",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }
    LEVERAGE = 3.0
    FAST = 10
    SLOW = 30

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["sma_fast"] = dataframe["close"].rolling(self.FAST).mean()
        dataframe["sma_slow"] = dataframe["close"].rolling(self.SLOW).mean()
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        up = dataframe["sma_fast"] > dataframe["sma_slow"]
        down = dataframe["sma_fast"] < dataframe["sma_slow"]
        dataframe.loc[up, "enter_long"] = 1
        dataframe.loc[down, "enter_short"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        up = dataframe["sma_fast"] > dataframe["sma_slow"]
        down = dataframe["sma_fast"] < dataframe["sma_slow"]
        dataframe.loc[down, "exit_long"] = 1
        dataframe.loc[up, "exit_short"] = 1
        return dataframe

    def leverage(
        self,
        pair: str,
        current_time: datetime,
        current_rate: float,
        proposed_leverage: float,
        max_leverage: float,
        entry_tag: str | None,
        side: str,
        **kwargs: object,
    ) -> float:
        # the runner's --leverage (config key "cross_check_leverage"), else 3
        return float(self.config.get("cross_check_leverage", self.LEVERAGE))
