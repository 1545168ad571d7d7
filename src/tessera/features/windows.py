"""Building blocks of both executions: O(1) window states (live) and their polars twins (batch).

Sliding sums drift: adding and subtracting floats for months accumulates rounding, and a
variance from sums of squares of prices (~1e9 each) cancels catastrophically. So the window
states keep their sums relative to a reference value (a recent window element) and recompute
them exactly from the window every ``window`` updates — amortised O(1), error bounded to a few
ulps of the window's spread instead of growing with the run's length.

EMAs follow TA-Lib: the first value is the simple mean of the first ``period`` inputs, then
``y = y_prev + alpha * (x - y_prev)``; Wilder's smoothing is ``alpha = 1/period``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import polars as pl

NAN = math.nan


class Lag:
    """The value ``n`` updates ago (NaN until there is one)."""

    def __init__(self, n: int) -> None:
        self.buf: deque[float] = deque(maxlen=n + 1)

    def update(self, x: float) -> float:
        self.buf.append(x)
        return self.buf[0] if len(self.buf) == self.buf.maxlen else NAN


class RollingMoments:
    """Count, mean and variance of the last ``window`` values."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.buf: deque[float] = deque(maxlen=window)
        self.ref = 0.0
        self.s1 = 0.0  # sum of (x - ref)
        self.s2 = 0.0  # sum of (x - ref)^2
        self.since_rebase = 0

    def update(self, x: float) -> None:
        if len(self.buf) == self.window:
            old = self.buf[0] - self.ref
            self.s1 -= old
            self.s2 -= old * old
        self.buf.append(x)
        d = x - self.ref
        self.s1 += d
        self.s2 += d * d
        self.since_rebase += 1
        if self.since_rebase >= self.window:
            self._rebase()

    def _rebase(self) -> None:
        self.ref = self.buf[-1]
        self.s1 = math.fsum(v - self.ref for v in self.buf)
        self.s2 = math.fsum((v - self.ref) ** 2 for v in self.buf)
        self.since_rebase = 0

    @property
    def full(self) -> bool:
        return len(self.buf) == self.window

    def mean(self) -> float:
        return self.ref + self.s1 / len(self.buf) if self.full else NAN

    def var(self, ddof: int = 1) -> float:
        n = len(self.buf)
        if not self.full or n - ddof <= 0:
            return NAN
        m2 = self.s2 - self.s1 * self.s1 / n
        return max(m2, 0.0) / (n - ddof)

    def std(self, ddof: int = 1) -> float:
        v = self.var(ddof)
        return math.sqrt(v) if v == v else NAN


class RollingSum:
    """Sum of the last ``window`` values, recomputed exactly every ``window`` updates."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.buf: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.since_rebase = 0

    def update(self, x: float) -> float:
        if len(self.buf) == self.window:
            self.total -= self.buf[0]
        self.buf.append(x)
        self.total += x
        self.since_rebase += 1
        if self.since_rebase >= self.window:
            self.total = math.fsum(self.buf)
            self.since_rebase = 0
        return self.total if len(self.buf) == self.window else NAN


class SeededEma:
    """TA-Lib's EMA: NaN for ``period - 1`` inputs, then their mean, then the recursion."""

    def __init__(self, period: int, alpha: float) -> None:
        self.period = period
        self.alpha = alpha
        self.seed: list[float] = []
        self.value = NAN

    def update(self, x: float) -> float:
        if self.value == self.value:  # seeded
            self.value = self.value + self.alpha * (x - self.value)
        else:
            self.seed.append(x)
            if len(self.seed) == self.period:
                self.value = math.fsum(self.seed) / self.period
                self.seed = []
        return self.value


# --- batch twins ------------------------------------------------------------------------------
# The recursive ones and Bollinger bands run compiled loops (`tessera.features.kernels`) inside
# the polars query: polars' own `ewm_mean` ran at half TA-Lib's speed, `rolling_std` and the
# band arithmetic at about a fifth of BBANDS'.

MACD_FIELDS = ("line", "signal", "hist")
BBANDS_FIELDS = ("pctb", "width")


def _column(s: pl.Series) -> Any:
    return s.cast(pl.Float64).to_numpy()


def seeded_ema(x: pl.Expr, period: int, alpha: float, start: int = 0) -> pl.Expr:
    """Batch twin of `SeededEma` fed from row ``start`` on (``x`` defined from there).

    Rows before ``start + period - 1`` are NaN; that row holds the simple mean of the first
    ``period`` inputs, and the EMA recursion runs from it (one compiled loop). The built-in
    indicators fuse their EMAs into one loop each; this is for features of your own.
    """

    def run(s: pl.Series) -> pl.Series:
        from tessera.features import kernels

        return pl.Series(s.name, kernels.seeded_ema(_column(s), period, alpha, start))

    return x.map_batches(run, return_dtype=pl.Float64)


def rsi_expr(close: pl.Expr, period: int) -> pl.Expr:
    """Batch twin of two Wilder `SeededEma` of gains and losses: TA-Lib's RSI, fused."""

    def run(s: pl.Series) -> pl.Series:
        from tessera.features import kernels

        return pl.Series(s.name, kernels.rsi(_column(s), period))

    return close.map_batches(run, return_dtype=pl.Float64)


def atr_expr(high: pl.Expr, low: pl.Expr, close: pl.Expr, period: int) -> pl.Expr:
    """Batch twin of a Wilder `SeededEma` of the true range: TA-Lib's ATR, fused."""

    def run(cols: Sequence[pl.Series]) -> pl.Series:
        from tessera.features import kernels

        h, lo, c = (_column(s) for s in cols)
        return pl.Series("atr", kernels.atr(h, lo, c, period))

    return pl.map_batches([high, low, close], run, return_dtype=pl.Float64)


def macd_expr(close: pl.Expr, fast: int, slow: int, signal: int) -> pl.Expr:
    """Batch twin of MACD's three `SeededEma`: a struct of `MACD_FIELDS`, fused."""

    def run(s: pl.Series) -> pl.Series:
        from tessera.features import kernels

        outs = kernels.macd(_column(s), fast, slow, signal)
        return pl.DataFrame(dict(zip(MACD_FIELDS, outs, strict=True))).to_struct(s.name)

    dtype = pl.Struct(dict.fromkeys(MACD_FIELDS, pl.Float64))
    return close.map_batches(run, return_dtype=dtype)


def bbands_expr(close: pl.Expr, window: int, k: float) -> pl.Expr:
    """Batch twin of `RollingMoments` for Bollinger bands: a struct of `BBANDS_FIELDS`, fused."""

    def run(s: pl.Series) -> pl.Series:
        from tessera.features import kernels

        outs = kernels.bbands(_column(s), window, k)
        return pl.DataFrame(dict(zip(BBANDS_FIELDS, outs, strict=True))).to_struct(s.name)

    dtype = pl.Struct(dict.fromkeys(BBANDS_FIELDS, pl.Float64))
    return close.map_batches(run, return_dtype=dtype)
