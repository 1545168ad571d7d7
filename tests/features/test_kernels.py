"""The compiled loops (`tessera.features.kernels`) equal plain-Python loops of the same recursions.

The references below are written the obvious way, separately per indicator stage (seeded EMA
first, the indicator from EMAs after), with the same floating-point operations in the same
order, so the compiled fused loops must match them bit for bit (NaN where NaN), on random
series of every length, including ones shorter than the warm-up and inputs that are NaN
before the EMA's start. Bollinger bands are checked against a two-pass mean and deviation per
window instead (the kernel's running sums are an optimisation, not a definition). TA-Lib
agreement and live parity are in test_talib_parity.py and test_parity_and_lookahead.py.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.features import kernels
from tessera.features.windows import seeded_ema

Floats = npt.NDArray[np.float64]
NAN = math.nan
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- plain-Python references --------------------------------------------------------------------


def ref_seeded_ema(x: list[float], period: int, alpha: float, start: int = 0) -> list[float]:
    out = [NAN] * len(x)
    first = start + period - 1
    if first >= len(x):
        return out
    total = 0.0
    for v in x[start : first + 1]:
        total += v
    y = total / period
    out[first] = y
    for i in range(first + 1, len(x)):
        y = y + alpha * (x[i] - y)
        out[i] = y
    return out


def ref_rsi(close: list[float], period: int) -> list[float]:
    moves = [NAN] * min(len(close), 1) + [close[i] - close[i - 1] for i in range(1, len(close))]
    gains = ref_seeded_ema([max(d, 0.0) for d in moves], period, 1.0 / period, start=1)
    losses = ref_seeded_ema([max(-d, 0.0) for d in moves], period, 1.0 / period, start=1)
    out = []
    for g, lo in zip(gains, losses, strict=True):
        t = g + lo
        out.append(NAN if t != t else (100.0 * g / t if t > 0 else 0.0))
    return out


def ref_atr(high: list[float], low: list[float], close: list[float], period: int) -> list[float]:
    tr = [NAN] * min(len(close), 1) + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        for i in range(1, len(close))
    ]
    return ref_seeded_ema(tr, period, 1.0 / period, start=1)


def ref_macd(
    close: list[float], fast: int, slow: int, signal: int
) -> tuple[list[float], list[float], list[float]]:
    slow_ema = ref_seeded_ema(close, slow, 2.0 / (slow + 1))
    fast_ema = ref_seeded_ema(close, fast, 2.0 / (fast + 1), start=slow - fast)
    line = [f - s for f, s in zip(fast_ema, slow_ema, strict=True)]
    sig = ref_seeded_ema(line, signal, 2.0 / (signal + 1), start=slow - 1)
    first = slow + signal - 2
    line = [v if i >= first else NAN for i, v in enumerate(line)]
    return line, sig, [v - s for v, s in zip(line, sig, strict=True)]


def two_pass_bbands(close: list[float], window: int, k: float) -> tuple[Floats, Floats, Floats]:
    """(pctb, width, population std) from each window's own mean and deviation."""
    n = len(close)
    pctb, width, sd = np.full(n, NAN), np.full(n, NAN), np.full(n, NAN)
    for i in range(window - 1, n):
        w = close[i + 1 - window : i + 1]
        mid = math.fsum(w) / window
        sd[i] = math.sqrt(math.fsum((v - mid) ** 2 for v in w) / window)
        upper, lower = mid + k * sd[i], mid - k * sd[i]
        pctb[i] = (close[i] - lower) / (upper - lower) if upper > lower else NAN
        width[i] = (upper - lower) / mid if mid > 0 else NAN
    return pctb, width, sd


def same(ours: Floats, ref: list[float] | Floats) -> bool:
    return bool(np.array_equal(ours, np.asarray(ref, dtype=np.float64), equal_nan=True))


# --- strategies ---------------------------------------------------------------------------------

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
prices = st.floats(1.0, 1e5, allow_nan=False, allow_infinity=False)


@st.composite
def bars(draw: st.DrawFn, max_size: int = 200) -> tuple[list[float], list[float], list[float]]:
    """(high, low, close) with low <= close <= high."""
    close = draw(st.lists(prices, max_size=max_size))
    up = draw(st.lists(st.floats(0.0, 50.0), min_size=len(close), max_size=len(close)))
    down = draw(st.lists(st.floats(0.0, 50.0), min_size=len(close), max_size=len(close)))
    high = [c + u for c, u in zip(close, up, strict=True)]
    low = [max(c - d, 0.5) for c, d in zip(close, down, strict=True)]
    return high, low, close


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(
    x=st.lists(values, max_size=200),
    period=st.integers(1, 40),
    alpha=st.floats(1e-3, 1.0),
    start=st.integers(0, 30),
)
def test_the_compiled_ema_equals_the_plain_recursion_and_never_reads_before_its_start(
    x: list[float], period: int, alpha: float, start: int
) -> None:
    # inputs before `start` are NaN: they must not leak into the seed or the recursion
    padded = [NAN] * start + x
    ours = kernels.seeded_ema(np.array(padded), period, alpha, start)
    assert same(ours, ref_seeded_ema(padded, period, alpha, start))


@PROPERTY
@given(x=st.lists(values, max_size=120), period=st.integers(1, 20), start=st.integers(0, 10))
def test_the_polars_ema_expression_runs_the_same_loop_with_nulls_before_its_start(
    x: list[float], period: int, start: int
) -> None:
    frame = pl.DataFrame({"x": [None] * start + x}, schema={"x": pl.Float64})
    out = frame.select(seeded_ema(pl.col("x"), period, 0.25, start=start))["x"].to_numpy()
    assert same(out, ref_seeded_ema([NAN] * start + x, period, 0.25, start))


@PROPERTY
@given(close=st.lists(prices, max_size=200), period=st.integers(1, 30))
def test_the_compiled_rsi_equals_wilder_emas_of_gains_and_losses(
    close: list[float], period: int
) -> None:
    assert same(kernels.rsi(np.array(close), period), ref_rsi(close, period))


def test_the_compiled_rsi_of_a_flat_window_is_zero_as_in_talib() -> None:
    out = kernels.rsi(np.full(30, 100.0), 14)
    assert np.isnan(out[:14]).all()
    assert (out[14:] == 0.0).all()


@PROPERTY
@given(hlc=bars(), period=st.integers(1, 30))
def test_the_compiled_atr_equals_a_wilder_ema_of_the_true_range(
    hlc: tuple[list[float], list[float], list[float]], period: int
) -> None:
    high, low, close = hlc
    ours = kernels.atr(np.array(high), np.array(low), np.array(close), period)
    assert same(ours, ref_atr(high, low, close, period))


@PROPERTY
@given(
    close=st.lists(prices, max_size=200),
    fast=st.integers(2, 15),
    extra=st.integers(1, 25),
    signal=st.integers(1, 12),
)
def test_the_compiled_macd_equals_three_seeded_emas(
    close: list[float], fast: int, extra: int, signal: int
) -> None:
    slow = fast + extra
    ours = kernels.macd(np.array(close), fast, slow, signal)
    for got, ref in zip(ours, ref_macd(close, fast, slow, signal), strict=True):
        assert same(got, ref)


@PROPERTY
@given(
    steps=st.lists(st.floats(-0.02, 0.02), max_size=300),
    level=st.floats(10.0, 1e5),
    window=st.integers(2, 40),
    k=st.floats(0.5, 3.0),
)
def test_the_compiled_bollinger_bands_equal_each_windows_own_mean_and_deviation(
    steps: list[float], level: float, window: int, k: float
) -> None:
    close = list(level * np.exp(np.cumsum(steps))) if steps else []
    pctb, width = kernels.bbands(np.array(close), window, k)
    ref_pctb, ref_width, sd = two_pass_bbands(close, window, k)
    assert np.array_equal(np.isnan(width), np.isnan(ref_width))
    assert np.nanmax(np.abs(width - ref_width), initial=0.0) < 1e-9
    # %b divides by the bands' width: compare where the window has a spread to divide by
    spread = sd > 1e-7 * np.asarray(close if close else [0.0] * len(sd))
    assert np.max(np.abs(pctb - ref_pctb)[spread], initial=0.0) < 1e-6
    assert np.isnan(pctb[: window - 1]).all()


# --- compilation: lazy import, cache fallback ----------------------------------------------


def _fresh_interpreter(code: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(180)
def test_numba_is_imported_only_when_an_indicator_is_computed() -> None:
    seen = _fresh_interpreter(
        """
        import json, sys
        sys.argv = ["tessera", "features", "--help"]
        import tessera.cli
        try:
            tessera.cli.main()
        except SystemExit:
            pass
        after_help = "numba" in sys.modules
        import polars as pl
        from tessera.config.models import FeatureConfig, FeatureSpec
        from tessera.features import IncrementalFeatures, build_features, make_features
        make_features(FeatureConfig().features)
        IncrementalFeatures(FeatureConfig())
        after_setup = "numba" in sys.modules
        n = 40
        bars = pl.DataFrame(
            {
                "open_time": pl.datetime_range(
                    pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1, 0, n - 1), "1m",
                    time_zone="UTC", eager=True,
                ),
                **{c: [100.0 + (i % 7) for i in range(n)] for c in ("open", "high", "low")},
                "close": [100.0 + (i % 5) for i in range(n)],
                "volume": [1.0] * n,
            }
        )
        build_features(bars, [FeatureSpec(name="rsi")])
        after_build = "numba" in sys.modules
        print(json.dumps({"help": after_help, "setup": after_setup, "build": after_build}))
        """
    )
    assert seen == {"help": False, "setup": False, "build": True}


def test_without_a_writable_cache_the_loops_compile_in_memory_and_say_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import numba

    real_njit = numba.njit

    def njit_without_cache(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available for file")
        return real_njit(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(numba, "njit", njit_without_cache)
    kernels._compiled.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="tessera.features.kernels"):
            close = np.array([10.0, 11.0, 10.5, 12.0, 11.5, 11.0, 12.5])
            assert same(kernels.rsi(close, 3), ref_rsi(list(close), 3))
        assert "on-disk cache is unavailable" in caplog.text
        assert "NUMBA_CACHE_DIR" in caplog.text
    finally:
        monkeypatch.undo()
        kernels._compiled.cache_clear()


def test_without_numba_the_same_loops_run_as_plain_python_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    kernels._compiled.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="tessera.features.kernels"):
            close = [10.0, 11.0, 10.5, 12.0, 11.5, 11.0, 12.5, 12.0, 13.0]
            assert same(kernels.rsi(np.array(close), 3), ref_rsi(close, 3))
            ours = kernels.macd(np.array(close), 2, 4, 2)
            for got, ref in zip(ours, ref_macd(close, 2, 4, 2), strict=True):
                assert same(got, ref)
        assert "numba is not installed" in caplog.text
        assert kernels._compiled()["rsi"] is kernels._rsi_loop
    finally:
        monkeypatch.undo()
        kernels._compiled.cache_clear()
