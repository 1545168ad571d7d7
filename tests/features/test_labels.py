"""Labels on the real bars: values recomputed by hand, and `event_end` exact (purging needs it)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tessera.config.models import LabelConfig
from tessera.features.labels import make_labels


def test_forward_return_and_its_time(real_bars: pl.DataFrame) -> None:
    lab = make_labels(real_bars, LabelConfig(kind="forward_return", horizon=15))
    assert lab.columns == ["open_time", "label", "forward_return", "event_end"]
    c = real_bars["close"].to_numpy()
    for i in (0, 1000, 30_000, len(c) - 16):
        assert lab["label"][i] == pytest.approx(math.log(c[i + 15] / c[i]), abs=1e-12)
        assert lab["event_end"][i] == real_bars["open_time"][i + 15]
    assert lab["label"].tail(15).null_count() == 15
    assert lab["event_end"].tail(15).null_count() == 15


def test_sign_with_a_dead_zone(real_bars: pl.DataFrame) -> None:
    lab = make_labels(real_bars, LabelConfig(kind="sign", horizon=5, dead_zone_bps=10.0))
    fwd = lab["forward_return"].to_numpy()
    y = lab["label"].to_numpy()
    ok = ~np.isnan(fwd)
    assert set(np.unique(y[ok].astype(int))) == {-1, 0, 1}
    assert (y[ok][fwd[ok] > 1e-3] == 1).all()
    assert (y[ok][fwd[ok] < -1e-3] == -1).all()
    assert (y[ok][np.abs(fwd[ok]) <= 1e-3] == 0).all()
    assert lab["label"].tail(5).null_count() == 5


def _triple_barrier_by_hand(bars: pl.DataFrame, cfg: LabelConfig, i: int) -> tuple[int, int]:
    """The definition, one bar at a time: (label, index of the deciding bar)."""
    logc = np.log(bars["close"].to_numpy())
    r = np.diff(logc)
    vol = np.std(r[i - cfg.vol_window : i], ddof=1)  # returns of bars i-w+1..i
    width = cfg.barrier_vol_mult * vol * math.sqrt(cfg.horizon)
    hi, lo = np.log(bars["high"].to_numpy()), np.log(bars["low"].to_numpy())
    for j in range(i + 1, i + cfg.horizon + 1):
        up, down = hi[j] - logc[i] >= width, lo[j] - logc[i] <= -width
        if up and down:
            return int(np.sign(logc[j] - logc[i])), j
        if up:
            return 1, j
        if down:
            return -1, j
    return 0, i + cfg.horizon


def test_triple_barrier_matches_its_definition(real_bars: pl.DataFrame) -> None:
    cfg = LabelConfig(kind="triple_barrier", horizon=30, barrier_vol_mult=1.0, vol_window=60)
    lab = make_labels(real_bars, cfg)
    y = lab["label"].to_numpy()
    ends = lab["event_end"]
    times = real_bars["open_time"]
    rng = np.random.default_rng(3)
    for i in [60, 61, 5000, len(real_bars) - 31, *rng.integers(61, len(real_bars) - 31, 300)]:
        want, j = _triple_barrier_by_hand(real_bars, cfg, int(i))
        assert y[i] == want, i
        assert ends[int(i)] == times[j], i
    counts = lab["label"].value_counts()
    assert set(counts["label"].drop_nulls().to_list()) == {-1, 0, 1}
    # early exits: some labels are settled before the time limit
    early = (lab["event_end"] < lab["open_time"].shift(-30)).sum()
    assert early > 1000
    # no label where the volatility window or the future is incomplete
    assert lab["label"].head(60).null_count() == 60
    assert lab["label"].tail(30).null_count() == 30
