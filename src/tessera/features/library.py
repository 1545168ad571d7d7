"""The built-in features. Each class holds both executions of one definition side by side.

Conventions (where a definition has several in the wild, the one chosen is stated here):

* returns are over ``window`` bars, close to close; ``realized_vol`` is the sample standard
  deviation (ddof=1) of 1-bar log returns over ``window`` bars, not annualised;
* ``zscore`` and ``volume_zscore`` use the sample standard deviation (ddof=1); a window with
  zero spread gives NaN, not infinity;
* ``rsi``, ``macd``, ``atr`` follow TA-Lib exactly (SMA-seeded EMAs, Wilder smoothing, and
  MACD's fast EMA seeded so that both EMAs start at the same bar; MACD's three outputs start
  together at bar ``slow + signal - 2``, as TA-Lib's do);
* ``bbands`` uses TA-Lib's population standard deviation (ddof=0); outputs ``pctb``
  ((close - lower) / (upper - lower)) and ``width`` ((upper - lower) / middle);
* ``hour`` and ``weekday`` (Monday = 0) are of the bar's open time in UTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import polars as pl

from tessera.features.base import (
    Feature,
    FeatureError,
    IncrementalFeature,
    ParamValue,
    register_feature,
)
from tessera.features.windows import (
    BBANDS_FIELDS,
    MACD_FIELDS,
    NAN,
    Lag,
    RollingMoments,
    RollingSum,
    SeededEma,
    atr_expr,
    bbands_expr,
    macd_expr,
    rsi_expr,
)

C, H, L, V = pl.col("close"), pl.col("high"), pl.col("low"), pl.col("volume")


def _nan_if_not_positive(den: pl.Expr, value: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(value).otherwise(NAN)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else NAN


class _Windowed(Feature):
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 14}

    def validate(self) -> None:
        self.window = self.int_param("window")


# --- returns and volatility -------------------------------------------------------------------


class _LogReturnState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.lag = Lag(window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        x = math.log(bar["close"])
        return (x - self.lag.update(x),)


@register_feature("log_return")
class LogReturn(_Windowed):
    doc = "ln(close_t / close_{t-window})"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 1}

    @property
    def warmup(self) -> int:
        return self.window

    def expressions(self) -> list[pl.Expr]:
        x = C.log()
        return [x - x.shift(self.window)]

    def incremental(self) -> IncrementalFeature:
        return _LogReturnState(self.window)


class _SimpleReturnState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.lag = Lag(window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        c = float(bar["close"])
        return (c / self.lag.update(c) - 1.0,)


@register_feature("simple_return")
class SimpleReturn(_Windowed):
    doc = "close_t / close_{t-window} - 1"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 1}

    @property
    def warmup(self) -> int:
        return self.window

    def expressions(self) -> list[pl.Expr]:
        return [C / C.shift(self.window) - 1.0]

    def incremental(self) -> IncrementalFeature:
        return _SimpleReturnState(self.window)


class _RealizedVolState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.prev = NAN
        self.mom = RollingMoments(window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        x = math.log(bar["close"])
        if self.prev == self.prev:
            self.mom.update(x - self.prev)
        self.prev = x
        return (self.mom.std(1),)


@register_feature("realized_vol")
class RealizedVol(_Windowed):
    doc = "sample std of 1-bar log returns over window bars"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 30}

    def validate(self) -> None:
        self.window = self.int_param("window", 2)

    @property
    def warmup(self) -> int:
        return self.window

    def expressions(self) -> list[pl.Expr]:
        r = C.log().diff()
        return [r.rolling_std(self.window, min_samples=self.window, ddof=1)]

    def incremental(self) -> IncrementalFeature:
        return _RealizedVolState(self.window)


class _ZScoreState(IncrementalFeature):
    def __init__(self, window: int, column: str, log1p: bool) -> None:
        self.mom = RollingMoments(window)
        self.column = column
        self.log1p = log1p

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        x = float(bar[self.column])
        if self.log1p:
            x = math.log1p(x)
        self.mom.update(x)
        sd = self.mom.std(1)
        return ((x - self.mom.mean()) / sd if sd > 0 else NAN,)


def _zscore_stages(feat: Feature, x: pl.Expr, window: int) -> list[dict[str, pl.Expr]]:
    xs = pl.col(feat.tmp("x"))
    return [
        {feat.tmp("x"): x},
        {
            feat.tmp("mean"): xs.rolling_mean(window, min_samples=window),
            feat.tmp("sd"): xs.rolling_std(window, min_samples=window, ddof=1),
        },
    ]


def _zscore_expr(feat: Feature) -> pl.Expr:
    x, mean, sd = (pl.col(feat.tmp(k)) for k in ("x", "mean", "sd"))
    return _nan_if_not_positive(sd, (x - mean) / sd)


@register_feature("zscore")
class ZScore(_Windowed):
    doc = "(close - mean) / std over window bars"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 60}

    def validate(self) -> None:
        self.window = self.int_param("window", 2)

    @property
    def warmup(self) -> int:
        return self.window - 1

    def stages(self) -> list[dict[str, pl.Expr]]:
        return _zscore_stages(self, C, self.window)

    def expressions(self) -> list[pl.Expr]:
        return [_zscore_expr(self)]

    def incremental(self) -> IncrementalFeature:
        return _ZScoreState(self.window, "close", log1p=False)


@register_feature("volume_zscore")
class VolumeZScore(ZScore):
    doc = "z-score of ln(1 + volume) over window bars"
    requires = ("volume",)

    def stages(self) -> list[dict[str, pl.Expr]]:
        return _zscore_stages(self, V.log1p(), self.window)

    def incremental(self) -> IncrementalFeature:
        return _ZScoreState(self.window, "volume", log1p=True)


# --- TA-Lib indicators ------------------------------------------------------------------------


class _RsiState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.prev = NAN
        self.gain = SeededEma(window, 1.0 / window)
        self.loss = SeededEma(window, 1.0 / window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        c = float(bar["close"])
        prev, self.prev = self.prev, c
        if prev != prev:
            return (NAN,)
        d = c - prev
        g = self.gain.update(max(d, 0.0))
        loss = self.loss.update(max(-d, 0.0))
        total = g + loss
        if total != total:
            return (NAN,)
        return (100.0 * g / total if total > 0 else 0.0,)


@register_feature("rsi")
class Rsi(_Windowed):
    doc = "Wilder's RSI (TA-Lib RSI), 0..100"

    @property
    def warmup(self) -> int:
        return self.window

    def expressions(self) -> list[pl.Expr]:
        # one compiled loop: both Wilder averages, and a flat window (0/0) is 0 as in TA-Lib
        return [rsi_expr(C, self.window)]

    def incremental(self) -> IncrementalFeature:
        return _RsiState(self.window)


class _MacdState(IncrementalFeature):
    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self.n = 0
        self.fast_start = slow - fast
        self.slow_ema = SeededEma(slow, 2.0 / (slow + 1))
        self.fast_ema = SeededEma(fast, 2.0 / (fast + 1))
        self.signal_ema = SeededEma(signal, 2.0 / (signal + 1))

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        c = float(bar["close"])
        slow = self.slow_ema.update(c)
        fast = self.fast_ema.update(c) if self.n >= self.fast_start else NAN
        self.n += 1
        if slow != slow:
            return (NAN, NAN, NAN)
        line = fast - slow
        sig = self.signal_ema.update(line)
        if sig != sig:
            return (NAN, NAN, NAN)
        return (line, sig, line - sig)


@register_feature("macd")
class Macd(Feature):
    doc = "MACD line, signal and histogram (TA-Lib MACD)"
    defaults: ClassVar[dict[str, ParamValue]] = {"fast": 12, "slow": 26, "signal": 9}

    def validate(self) -> None:
        self.fast = self.int_param("fast", 2)
        self.slow = self.int_param("slow", 2)
        self.signal = self.int_param("signal", 1)
        if self.fast >= self.slow:
            raise FeatureError(f"feature 'macd': fast ({self.fast}) must be < slow ({self.slow})")

    @property
    def base_name(self) -> str:
        return self.alias or f"macd_{self.fast}_{self.slow}_{self.signal}"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("line", "signal", "hist")

    @property
    def warmup(self) -> int:
        return self.slow + self.signal - 2

    def stages(self) -> list[dict[str, pl.Expr]]:
        # one compiled loop for the three EMAs; all three outputs start together, as TA-Lib's
        return [{self.tmp("macd"): macd_expr(C, self.fast, self.slow, self.signal)}]

    def expressions(self) -> list[pl.Expr]:
        macd = pl.col(self.tmp("macd"))
        return [macd.struct.field(f) for f in MACD_FIELDS]

    def incremental(self) -> IncrementalFeature:
        return _MacdState(self.fast, self.slow, self.signal)


class _BBandsState(IncrementalFeature):
    def __init__(self, window: int, k: float) -> None:
        self.mom = RollingMoments(window)
        self.k = k

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        c = float(bar["close"])
        self.mom.update(c)
        mid, sd = self.mom.mean(), self.mom.std(0)
        if sd != sd:
            return (NAN, NAN)
        upper, lower = mid + self.k * sd, mid - self.k * sd
        return (_ratio(c - lower, upper - lower), _ratio(upper - lower, mid))


@register_feature("bbands")
class BBands(Feature):
    doc = "Bollinger %b and width (TA-Lib BBANDS, SMA and population std)"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 20, "k": 2.0}
    requires = ("close",)

    def validate(self) -> None:
        self.window = self.int_param("window", 2)
        self.k = self.float_param("k")

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("pctb", "width")

    @property
    def warmup(self) -> int:
        return self.window - 1

    def stages(self) -> list[dict[str, pl.Expr]]:
        # one compiled loop: the window's mean and deviation (as `RollingMoments`), the bands
        return [{self.tmp("bb"): bbands_expr(C, self.window, self.k)}]

    def expressions(self) -> list[pl.Expr]:
        bb = pl.col(self.tmp("bb"))
        return [bb.struct.field(f) for f in BBANDS_FIELDS]

    def incremental(self) -> IncrementalFeature:
        return _BBandsState(self.window, self.k)


class _AtrState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.prev = NAN
        self.ema = SeededEma(window, 1.0 / window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        h, low, c = float(bar["high"]), float(bar["low"]), float(bar["close"])
        prev, self.prev = self.prev, c
        if prev != prev:
            return (NAN,)
        tr = max(h - low, abs(h - prev), abs(low - prev))
        return (self.ema.update(tr),)


@register_feature("atr")
class Atr(_Windowed):
    doc = "Average true range, Wilder-smoothed (TA-Lib ATR), price units"
    requires = ("high", "low", "close")

    @property
    def warmup(self) -> int:
        return self.window

    def expressions(self) -> list[pl.Expr]:
        # one compiled loop: the true range from bar 1 on (bar 0 has no previous close), smoothed
        return [atr_expr(H, L, C, self.window)]

    def incremental(self) -> IncrementalFeature:
        return _AtrState(self.window)


# --- volume and flow --------------------------------------------------------------------------


class _VwapState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.pv = RollingSum(window)
        self.v = RollingSum(window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        h, low, c, v = (float(bar[k]) for k in ("high", "low", "close", "volume"))
        pv = self.pv.update((h + low + c) / 3.0 * v)
        vol = self.v.update(v)
        if vol != vol or not vol > 0:
            return (NAN,)
        return (c / (pv / vol) - 1.0,)


@register_feature("vwap_distance")
class VwapDistance(_Windowed):
    doc = "close / rolling VWAP (typical price) - 1 over window bars"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 60}
    requires = ("high", "low", "close", "volume")

    @property
    def warmup(self) -> int:
        return self.window - 1

    def expressions(self) -> list[pl.Expr]:
        tp = (H + L + C) / 3.0
        pv = (tp * V).rolling_sum(self.window, min_samples=self.window)
        vol = V.rolling_sum(self.window, min_samples=self.window)
        return [_nan_if_not_positive(vol, C / (pv / vol) - 1.0)]

    def incremental(self) -> IncrementalFeature:
        return _VwapState(self.window)


class _TakerState(IncrementalFeature):
    def __init__(self, window: int) -> None:
        self.buy = RollingSum(window)
        self.vol = RollingSum(window)

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        b = self.buy.update(float(bar["taker_buy_base"]))
        v = self.vol.update(float(bar["volume"]))
        if v != v or not v > 0:
            return (NAN,)
        return ((2.0 * b - v) / v,)


@register_feature("taker_imbalance")
class TakerImbalance(_Windowed):
    doc = "(taker buy - taker sell) / volume over window bars, -1..1 (needs taker_buy_base)"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 30}
    requires = ("volume", "taker_buy_base")

    @property
    def warmup(self) -> int:
        return self.window - 1

    def expressions(self) -> list[pl.Expr]:
        b = pl.col("taker_buy_base").rolling_sum(self.window, min_samples=self.window)
        v = V.rolling_sum(self.window, min_samples=self.window)
        return [_nan_if_not_positive(v, (2.0 * b - v) / v)]

    def incremental(self) -> IncrementalFeature:
        return _TakerState(self.window)


# --- order book (bars carrying the top of book at their close) --------------------------------


class _BookState(IncrementalFeature):
    def __init__(self, window: int, spread: bool) -> None:
        self.sum = RollingSum(window)
        self.window = window
        self.spread = spread

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        if self.spread:
            bid, ask = float(bar["bid_price"]), float(bar["ask_price"])
            x = (ask - bid) / ((ask + bid) / 2.0) * 1e4
        else:
            bq, aq = float(bar["bid_qty"]), float(bar["ask_qty"])
            x = (bq - aq) / (bq + aq) if bq + aq > 0 else NAN
        return (self.sum.update(x) / self.window,)


@register_feature("book_imbalance")
class BookImbalance(_Windowed):
    doc = "(bid qty - ask qty) / (bid qty + ask qty) at the top of book, mean over window bars"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 1}
    requires = ("bid_qty", "ask_qty")

    @property
    def warmup(self) -> int:
        return self.window - 1

    def expressions(self) -> list[pl.Expr]:
        bq, aq = pl.col("bid_qty"), pl.col("ask_qty")
        x = _nan_if_not_positive(bq + aq, (bq - aq) / (bq + aq))
        return [x.rolling_sum(self.window, min_samples=self.window) / self.window]

    def incremental(self) -> IncrementalFeature:
        return _BookState(self.window, spread=False)


@register_feature("spread_bps")
class SpreadBps(_Windowed):
    doc = "(ask - bid) / mid in basis points at the top of book, mean over window bars"
    defaults: ClassVar[dict[str, ParamValue]] = {"window": 1}
    requires = ("bid_price", "ask_price")

    @property
    def warmup(self) -> int:
        return self.window - 1

    def expressions(self) -> list[pl.Expr]:
        bid, ask = pl.col("bid_price"), pl.col("ask_price")
        x = (ask - bid) / ((ask + bid) / 2.0) * 1e4
        return [x.rolling_sum(self.window, min_samples=self.window) / self.window]

    def incremental(self) -> IncrementalFeature:
        return _BookState(self.window, spread=True)


# --- calendar ---------------------------------------------------------------------------------


class _CalendarState(IncrementalFeature):
    def __init__(self, part: str) -> None:
        self.part = part

    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        t: datetime = bar["open_time"]
        return (float(t.hour) if self.part == "hour" else float(t.weekday()),)


@register_feature("hour")
class Hour(Feature):
    doc = "hour of the bar's open time, UTC (0..23)"
    defaults: ClassVar[dict[str, ParamValue]] = {}
    requires = ("open_time",)

    def expressions(self) -> list[pl.Expr]:
        return [pl.col("open_time").dt.hour()]

    def incremental(self) -> IncrementalFeature:
        return _CalendarState("hour")


@register_feature("weekday")
class Weekday(Feature):
    doc = "weekday of the bar's open time, UTC (Monday = 0)"
    defaults: ClassVar[dict[str, ParamValue]] = {}
    requires = ("open_time",)

    def expressions(self) -> list[pl.Expr]:
        return [pl.col("open_time").dt.weekday() - 1]

    def incremental(self) -> IncrementalFeature:
        return _CalendarState("weekday")
