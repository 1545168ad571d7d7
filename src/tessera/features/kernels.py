"""Compiled loops for RSI, MACD, ATR (EMA, Wilder smoothing) and Bollinger bands.

Why: an EMA is a recursion (each value needs the previous one), which columnar engines cannot
vectorise; polars' ``ewm_mean`` ran at about half TA-Lib's speed, and RSI + MACD + ATR need
six EMAs. Bollinger's rolling mean and deviation plus the band arithmetic took polars about
five times TA-Lib's time. Here each indicator is one fused loop compiled by numba (inputs read
once, the EMAs or window sums advanced side by side, each output written once), which is what
TA-Lib's C does.

The loops are written in plain Python and compiled on first use, not at import: importing
numba costs a few hundred milliseconds and must not slow down ``tessera --help`` or a command
that never computes these indicators. Compiled code is cached on disk (``cache=True``, next to
this file or in numba's user cache directory); where no cache directory is writable the
kernels are compiled in memory on each first use and a log line says so.

The recursions are exactly those of `tessera.features.windows.SeededEma` (the live execution):
the first value is the mean of the first ``period`` inputs (summed in order), then
``y = y + alpha * (x - y)``. Floating-point results therefore agree with the live states to a
few ulps (the live seed uses an exactly rounded sum) and with TA-Lib to well under 1e-9.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]
NAN = math.nan


# --- the loops (plain Python; compiled by `_compiled`) -----------------------------------------


def _seeded_ema_loop(x: Floats, out: Floats, period: int, alpha: float, start: int) -> None:
    """TA-Lib's EMA of ``x[start:]`` into ``out``; ``out`` is NaN before ``start + period - 1``.

    Inputs before ``start`` are never read (they may be NaN).
    """
    n = x.shape[0]
    first = start + period - 1
    for i in range(min(first, n)):
        out[i] = NAN
    if first >= n:
        return
    s = 0.0
    for i in range(start, first + 1):
        s += x[i]
    y = s / period
    out[first] = y
    for i in range(first + 1, n):
        y = y + alpha * (x[i] - y)
        out[i] = y


def _rsi_loop(close: Floats, out: Floats, period: int) -> None:
    """TA-Lib's RSI: Wilder-smoothed gains and losses of close-to-close moves, 0..100.

    A window with neither gains nor losses (0/0) is 0, as in TA-Lib.
    """
    n = close.shape[0]
    for i in range(min(period, n)):
        out[i] = NAN
    if n <= period:
        return
    alpha = 1.0 / period
    g = 0.0
    lo = 0.0
    for i in range(1, period + 1):
        d = close[i] - close[i - 1]
        g += max(d, 0.0)
        lo += max(-d, 0.0)
    g = g / period
    lo = lo / period
    t = g + lo
    out[period] = 100.0 * g / t if t > 0 else 0.0
    for i in range(period + 1, n):
        d = close[i] - close[i - 1]
        g = g + alpha * (max(d, 0.0) - g)
        lo = lo + alpha * (max(-d, 0.0) - lo)
        t = g + lo
        out[i] = 100.0 * g / t if t > 0 else 0.0


def _atr_loop(high: Floats, low: Floats, close: Floats, out: Floats, period: int) -> None:
    """TA-Lib's ATR: the true range from bar 1 on, Wilder-smoothed; NaN before bar ``period``."""
    n = close.shape[0]
    for i in range(min(period, n)):
        out[i] = NAN
    if n <= period:
        return
    alpha = 1.0 / period
    s = 0.0
    for i in range(1, period + 1):
        pc = close[i - 1]
        s += max(high[i] - low[i], abs(high[i] - pc), abs(low[i] - pc))
    y = s / period
    out[period] = y
    for i in range(period + 1, n):
        pc = close[i - 1]
        tr = max(high[i] - low[i], abs(high[i] - pc), abs(low[i] - pc))
        y = y + alpha * (tr - y)
        out[i] = y


def _macd_loop(
    close: Floats,
    line_out: Floats,
    signal_out: Floats,
    hist_out: Floats,
    fast: int,
    slow: int,
    signal: int,
) -> None:
    """TA-Lib's MACD: both EMAs start at bar ``slow - 1`` (the fast one seeded from bar
    ``slow - fast``), the signal EMA of the line from there; all three outputs from bar
    ``slow + signal - 2``, NaN before.
    """
    n = close.shape[0]
    first_line = slow - 1
    first_out = slow + signal - 2
    for i in range(min(first_out, n)):
        line_out[i] = NAN
        signal_out[i] = NAN
        hist_out[i] = NAN
    if first_out >= n:
        return
    a_fast = 2.0 / (fast + 1)
    a_slow = 2.0 / (slow + 1)
    a_sig = 2.0 / (signal + 1)
    s_slow = 0.0
    for i in range(0, slow):
        s_slow += close[i]
    s_fast = 0.0
    for i in range(slow - fast, slow):
        s_fast += close[i]
    ys = s_slow / slow
    yf = s_fast / fast
    # the signal's seed: the mean of the first `signal` lines
    s_sig = yf - ys
    for i in range(first_line + 1, first_out + 1):
        c = close[i]
        ys = ys + a_slow * (c - ys)
        yf = yf + a_fast * (c - yf)
        s_sig += yf - ys
    line = yf - ys
    sig = s_sig / signal
    line_out[first_out] = line
    signal_out[first_out] = sig
    hist_out[first_out] = line - sig
    for i in range(first_out + 1, n):
        c = close[i]
        ys = ys + a_slow * (c - ys)
        yf = yf + a_fast * (c - yf)
        line = yf - ys
        sig = sig + a_sig * (line - sig)
        line_out[i] = line
        signal_out[i] = sig
        hist_out[i] = line - sig


def _bbands_loop(close: Floats, pctb_out: Floats, width_out: Floats, window: int, k: float) -> None:
    """Bollinger %b and width from the SMA and population std of ``window`` closes.

    The same arithmetic as `tessera.features.windows.RollingMoments` (the live execution):
    sums of differences from a reference value (a recent close), recomputed from the window
    every ``window`` bars, so that rounding neither cancels (prices squared are ~1e9) nor
    accumulates over millions of bars. NaN before bar ``window - 1``, and where the bands
    have no width (%b) or the middle band is not positive (width).
    """
    n = close.shape[0]
    for i in range(min(window - 1, n)):
        pctb_out[i] = NAN
        width_out[i] = NAN
    inv = 1.0 / window
    ref = 0.0
    s1 = 0.0
    s2 = 0.0
    since_rebase = 0
    for i in range(n):
        x = close[i]
        if i >= window:
            old = close[i - window] - ref
            s1 -= old
            s2 -= old * old
        d = x - ref
        s1 += d
        s2 += d * d
        since_rebase += 1
        if since_rebase == window:  # rebase on this close: the sums afresh from the window
            since_rebase = 0
            ref = x
            s1 = 0.0
            s2 = 0.0
            for j in range(i + 1 - window, i + 1):
                e = close[j] - ref
                s1 += e
                s2 += e * e
        if i >= window - 1:
            m = s1 * inv  # multiplications, not divisions: a division per bar costs ~1/3 here
            mid = ref + m
            sd = math.sqrt(max(s2 * inv - m * m, 0.0))
            upper = mid + k * sd
            lower = mid - k * sd
            span = upper - lower
            pctb_out[i] = (x - lower) / span if span > 0 else NAN
            width_out[i] = span / mid if mid > 0 else NAN


# --- compilation -------------------------------------------------------------------------------

_LOOPS: dict[str, Callable[..., None]] = {
    "seeded_ema": _seeded_ema_loop,
    "rsi": _rsi_loop,
    "atr": _atr_loop,
    "macd": _macd_loop,
    "bbands": _bbands_loop,
}


_COMPILE_LOCK = threading.Lock()


@functools.cache
def _compiled() -> dict[str, Callable[..., None]]:
    """The loops compiled by numba (imported here, on first use), cached on disk if possible.

    ``nogil`` lets polars run several indicators on its threads at once. Without numba the
    plain Python loops run instead: the same numbers, a hundred times slower, and a warning.
    """
    with _COMPILE_LOCK:  # polars may call two indicators' first use from two threads
        try:
            import numba
        except ImportError:
            log.warning(
                "numba is not installed: RSI, MACD, ATR and Bollinger bands run as plain Python "
                "loops (correct but slow); install the pinned numba to compile them"
            )
            return dict(_LOOPS)
        out: dict[str, Callable[..., None]] = {}
        for name, fn in _LOOPS.items():
            try:
                out[name] = numba.njit(cache=True, nogil=True)(fn)
            except RuntimeError as exc:  # no writable cache directory ("no locator available")
                log.info(
                    "feature kernel %s: numba's on-disk cache is unavailable (%s); compiling "
                    "in memory on each first use (set NUMBA_CACHE_DIR to a writable directory)",
                    name,
                    exc,
                )
                out[name] = numba.njit(cache=False, nogil=True)(fn)
        return out


def _floats(a: Any) -> Floats:
    arr: Floats = np.ascontiguousarray(a, dtype=np.float64)
    return arr


# --- the public entry points (numpy in, numpy out) ----------------------------------------------


def seeded_ema(x: Any, period: int, alpha: float, start: int = 0) -> Floats:
    """TA-Lib's EMA of ``x`` fed from index ``start`` on; NaN before ``start + period - 1``."""
    xs = _floats(x)
    out = np.empty_like(xs)
    _compiled()["seeded_ema"](xs, out, period, alpha, start)
    return out


def rsi(close: Any, period: int) -> Floats:
    """TA-Lib's RSI(``period``) of ``close``; NaN for the first ``period`` bars."""
    c = _floats(close)
    out = np.empty_like(c)
    _compiled()["rsi"](c, out, period)
    return out


def atr(high: Any, low: Any, close: Any, period: int) -> Floats:
    """TA-Lib's ATR(``period``); NaN for the first ``period`` bars."""
    c = _floats(close)
    out = np.empty_like(c)
    _compiled()["atr"](_floats(high), _floats(low), c, out, period)
    return out


def macd(close: Any, fast: int, slow: int, signal: int) -> tuple[Floats, Floats, Floats]:
    """TA-Lib's MACD(``fast``, ``slow``, ``signal``): (line, signal, histogram)."""
    c = _floats(close)
    line, sig, hist = np.empty_like(c), np.empty_like(c), np.empty_like(c)
    _compiled()["macd"](c, line, sig, hist, fast, slow, signal)
    return line, sig, hist


def bbands(close: Any, window: int, k: float) -> tuple[Floats, Floats]:
    """Bollinger (%b, width) over ``window`` closes, ``k`` population deviations wide."""
    c = _floats(close)
    pctb, width = np.empty_like(c), np.empty_like(c)
    _compiled()["bbands"](c, pctb, width, window, k)
    return pctb, width
