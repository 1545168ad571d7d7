"""Bar data for the backtest: column arrays per symbol (fast to iterate, cheap to slice)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.data.intervals import interval_ns

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BarSeries:
    """One symbol's bars. Times are ns since the epoch (UTC); prices and volumes float64."""

    symbol: str
    open_time: I64
    close_time: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    quote_volume: F64
    taker_buy_volume: F64
    predictions: F64 | None = None  # model score known at each bar's close
    features: Mapping[str, F64] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.open_time)
        for name in ("close_time", "open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{self.symbol}: column {name} has a different length")
        if n and np.any(np.diff(self.open_time) <= 0):
            raise ValueError(f"{self.symbol}: bar open times must be strictly increasing")
        if self.predictions is not None and len(self.predictions) != n:
            raise ValueError(f"{self.symbol}: predictions are not aligned with the bars")

    def __len__(self) -> int:
        return len(self.open_time)

    @classmethod
    def from_frame(
        cls,
        symbol: str,
        frame: pl.DataFrame,
        interval: str = "1m",
        predictions: str | None = None,
    ) -> BarSeries:
        """From a polars frame with ``open_time`` (datetime or int ns) and OHLCV columns.

        Optional columns: ``close_time``, ``quote_volume``, ``taker_buy_base`` (or
        ``taker_buy_volume``); ``predictions`` names a score column to attach.
        """
        missing = {"open_time", "open", "high", "low", "close", "volume"} - set(frame.columns)
        if missing:
            raise ValueError(f"{symbol}: bar frame lacks columns {sorted(missing)}")
        ot = frame["open_time"]
        open_time = (
            ot.dt.epoch("ns").to_numpy() if ot.dtype.is_temporal() else ot.cast(pl.Int64).to_numpy()
        ).astype(np.int64)
        if "close_time" in frame.columns:
            ct = frame["close_time"]
            close_time = (
                ct.dt.epoch("ns").to_numpy() if ct.dtype.is_temporal() else ct.to_numpy()
            ).astype(np.int64)
            # Binance's close time is the bar's last millisecond; a `Bar`'s is its last
            # nanosecond (see `Bar`): millisecond-resolution close times gain 999,999 ns
            if len(close_time) and not np.any(close_time % 1_000_000):
                close_time = close_time + 999_999
        else:
            close_time = open_time + interval_ns(interval) - 1

        def col(name: str, *alts: str) -> F64:
            for n in (name, *alts):
                if n in frame.columns:
                    return frame[n].cast(pl.Float64).to_numpy().astype(np.float64)
            return np.zeros(len(frame), dtype=np.float64)

        return cls(
            symbol=symbol,
            open_time=open_time,
            close_time=close_time,
            open=col("open"),
            high=col("high"),
            low=col("low"),
            close=col("close"),
            volume=col("volume"),
            quote_volume=col("quote_volume"),
            taker_buy_volume=col("taker_buy_base", "taker_buy_volume"),
            predictions=col(predictions) if predictions else None,
        )

    def slice(self, start: int, stop: int) -> BarSeries:
        sl = slice(start, stop)
        preds = self.predictions[sl] if self.predictions is not None else None
        return BarSeries(
            self.symbol,
            self.open_time[sl],
            self.close_time[sl],
            self.open[sl],
            self.high[sl],
            self.low[sl],
            self.close[sl],
            self.volume[sl],
            self.quote_volume[sl],
            self.taker_buy_volume[sl],
            preds,
            {k: v[sl] for k, v in self.features.items()},
        )

    def with_predictions(self, predictions: F64) -> BarSeries:
        kw: dict[str, Any] = {f: getattr(self, f) for f in self.__dataclass_fields__}
        kw["predictions"] = np.asarray(predictions, dtype=np.float64)
        return BarSeries(**kw)
