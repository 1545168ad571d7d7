"""The indicators TA-Lib has match it to 1e-9 on the real data, from TA-Lib's first value on."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest

from tessera.config.models import FeatureSpec
from tessera.features import build_features

talib = pytest.importorskip("talib")


def _assert_close(ours: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> None:
    # same warm-up: NaN exactly where TA-Lib has no value yet
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert ok.sum() > 40_000
    assert np.max(np.abs(ours[ok] - ref[ok])) < 1e-9


@pytest.fixture(scope="module")
def ohlc(real_bars: pl.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
    return {c: real_bars[c].to_numpy().astype(np.float64) for c in ("high", "low", "close")}


@pytest.mark.parametrize("window", [2, 14, 50])
def test_rsi(
    real_bars: pl.DataFrame, ohlc: dict[str, npt.NDArray[np.float64]], window: int
) -> None:
    f = build_features(real_bars, [FeatureSpec(name="rsi", params={"window": window})])
    _assert_close(f[f"rsi_{window}"].to_numpy(), talib.RSI(ohlc["close"], window))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd(
    real_bars: pl.DataFrame,
    ohlc: dict[str, npt.NDArray[np.float64]],
    fast: int,
    slow: int,
    signal: int,
) -> None:
    params = {"fast": fast, "slow": slow, "signal": signal}
    f = build_features(real_bars, [FeatureSpec(name="macd", params=params)])
    line, sig, hist = talib.MACD(ohlc["close"], fast, slow, signal)
    name = f"macd_{fast}_{slow}_{signal}"
    _assert_close(f[f"{name}_line"].to_numpy(), line)
    _assert_close(f[f"{name}_signal"].to_numpy(), sig)
    _assert_close(f[f"{name}_hist"].to_numpy(), hist)


@pytest.mark.parametrize(("window", "k"), [(20, 2.0), (50, 1.5)])
def test_bbands(
    real_bars: pl.DataFrame, ohlc: dict[str, npt.NDArray[np.float64]], window: int, k: float
) -> None:
    f = build_features(real_bars, [FeatureSpec(name="bbands", params={"window": window, "k": k})])
    c = ohlc["close"]
    upper, middle, lower = talib.BBANDS(c, window, k, k)
    name = f"bbands_{window}_{k:g}".replace(".", "p")
    _assert_close(f[f"{name}_pctb"].to_numpy(), (c - lower) / (upper - lower))
    _assert_close(f[f"{name}_width"].to_numpy(), (upper - lower) / middle)


@pytest.mark.parametrize("window", [14, 30])
def test_atr(
    real_bars: pl.DataFrame, ohlc: dict[str, npt.NDArray[np.float64]], window: int
) -> None:
    f = build_features(real_bars, [FeatureSpec(name="atr", params={"window": window})])
    ref = talib.ATR(ohlc["high"], ohlc["low"], ohlc["close"], window)
    _assert_close(f[f"atr_{window}"].to_numpy(), ref)


def test_realized_vol_is_talib_stddev_with_the_sample_convention(
    real_bars: pl.DataFrame, ohlc: dict[str, npt.NDArray[np.float64]]
) -> None:
    """TA-Lib's STDDEV is the population one (ddof=0); ours is the sample one (ddof=1)."""
    w = 30
    f = build_features(real_bars, [FeatureSpec(name="realized_vol", params={"window": w})])
    logret = np.diff(np.log(ohlc["close"]), prepend=np.nan)
    ref = talib.STDDEV(logret, w, 1.0) * np.sqrt(w / (w - 1))
    _assert_close(f[f"realized_vol_{w}"].to_numpy(), ref)


def test_log_return_is_talib_rocr(
    real_bars: pl.DataFrame, ohlc: dict[str, npt.NDArray[np.float64]]
) -> None:
    f = build_features(real_bars, [FeatureSpec(name="log_return", params={"window": 15})])
    _assert_close(f["log_return_15"].to_numpy(), np.log(talib.ROCR(ohlc["close"], 15)))
