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


def seeded_ema(x: pl.Expr, period: int, alpha: float, start: int = 0) -> pl.Expr:
    """Batch twin of `SeededEma` fed from row ``start`` on (``x`` defined from there).

    Rows before ``start + period - 1`` are null; that row holds the simple mean of the first
    ``period`` inputs, and the EMA recursion runs from it. Built from slices (no per-row
    conditionals): the seed is a scalar mean, the recursion one ``ewm_mean`` pass.
    """
    first = start + period - 1
    seed = x.slice(start, period).mean().cast(pl.Float64)
    ema = seed.append(x.slice(first + 1).cast(pl.Float64)).ewm_mean(alpha=alpha, adjust=False)
    return null_before(first, ema)


def null_before(n: int, tail: pl.Expr) -> pl.Expr:
    """``n`` nulls followed by ``tail`` (which must have the frame's length minus ``n``)."""
    return pl.repeat(None, n, dtype=pl.Float64).append(tail)
