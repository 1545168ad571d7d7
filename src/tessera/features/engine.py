"""Running a feature list: the batch execution over a bar frame, the incremental one bar by bar."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tessera.config.models import FeatureConfig, FeatureSpec
from tessera.features.base import (
    OHLCV,
    QUERY_FLAGS,
    Feature,
    FeatureError,
    IncrementalFeature,
    make_features,
)

OPEN_TIME = "open_time"


def prepare_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars as the features expect them: sorted by a unique UTC ``open_time``, OHLCV as floats.

    Raises `FeatureError` on what would silently corrupt features: missing OHLCV columns,
    duplicate bar times, or missing (null/NaN) prices.
    """
    missing = [c for c in OHLCV if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack column(s) {missing}")
    numeric = [
        c
        for c in bars.columns
        if c != OPEN_TIME and bars[c].dtype.is_numeric() and bars[c].dtype != pl.Float64
    ]
    frame = bars.with_columns(pl.col(numeric).cast(pl.Float64)) if numeric else bars
    prices = list(OHLCV[1:])
    # One pass for the common case (5M bars: ~3 scans instead of ~8): times strictly
    # increasing (smallest step > 0: sorted and unique), and each column's sum finite, which a
    # NaN anywhere makes NaN (nulls are counted from metadata); the precise checks run only
    # when these fail.
    step, *sums = frame.select(
        pl.col(OPEN_TIME).to_physical().diff().min(), *(pl.col(c).sum() for c in prices)
    ).row(0)
    if step is not None and step <= 0:
        frame = frame if frame[OPEN_TIME].is_sorted() else frame.sort(OPEN_TIME)
        if frame.select((pl.col(OPEN_TIME).diff() == pl.duration(nanoseconds=0)).any()).item():
            raise FeatureError("bars have duplicate open_time values")
    holes = any(frame[c].null_count() for c in prices)
    if not holes and not all(v is None or math.isfinite(v) for v in sums):
        holes = bool(frame.select(pl.any_horizontal(pl.col(prices).is_nan().any())).item())
    if holes:
        raise FeatureError("bars have missing (null or NaN) OHLCV values; fill or drop them first")
    return frame


def _specs(spec: FeatureConfig | Sequence[FeatureSpec]) -> list[Feature]:
    return make_features(spec.features if isinstance(spec, FeatureConfig) else list(spec))


def build_features(
    bars: pl.DataFrame,
    spec: FeatureConfig | Sequence[FeatureSpec],
    on_feature: Callable[[Feature], None] | None = None,
) -> pl.DataFrame:
    """The batch execution: ``open_time`` plus one float column per feature output."""
    feats = _specs(spec)
    frame = prepare_bars(bars)
    exprs: list[pl.Expr] = [pl.col(OPEN_TIME)]
    stages: list[dict[str, pl.Expr]] = []
    for feat in feats:
        feat.check_columns(frame.columns)
        exprs.extend(feat.batch_expressions(len(frame)))
        if len(frame) > feat.warmup:
            for k, stage in enumerate(feat.stages()):
                if k == len(stages):
                    stages.append({})
                stages[k].update(stage)
    # One lazy query: each stage's intermediates (shared windows, EMAs), then the outputs of
    # all features, each stage evaluated in parallel over polars' threads.
    lf = frame.lazy()
    for stage in stages:
        lf = lf.with_columns(**stage)
    out = lf.select(exprs).collect(optimizations=QUERY_FLAGS)
    if on_feature is not None:
        for feat in feats:
            on_feature(feat)
    return out


class IncrementalFeatures:
    """The live execution: ``update(bar)`` per closed bar returns that bar's feature row."""

    def __init__(self, spec: FeatureConfig | Sequence[FeatureSpec]) -> None:
        self.features = _specs(spec)
        self.states: list[IncrementalFeature] = [f.incremental() for f in self.features]
        self.columns = [c for f in self.features for c in f.columns]
        self.warmup = max((f.warmup for f in self.features), default=0)
        self.bars_seen = 0

    def update(self, bar: Mapping[str, Any]) -> dict[str, float]:
        values: list[float] = []
        for state in self.states:
            values.extend(state.update(bar))
        self.bars_seen += 1
        return dict(zip(self.columns, values, strict=True))

    @property
    def ready(self) -> bool:
        """Every feature has passed its warm-up."""
        return self.bars_seen > self.warmup


def run_incremental(
    bars: pl.DataFrame, spec: FeatureConfig | Sequence[FeatureSpec]
) -> pl.DataFrame:
    """Feed ``bars`` one by one through `IncrementalFeatures`; same layout as `build_features`."""
    frame = prepare_bars(bars)
    inc = IncrementalFeatures(spec)
    rows = np.full((len(frame), len(inc.columns)), math.nan)
    for i, bar in enumerate(frame.iter_rows(named=True)):
        rows[i] = list(inc.update(bar).values())
    return frame.select(OPEN_TIME).hstack(
        pl.DataFrame(rows, schema=dict.fromkeys(inc.columns, pl.Float64), orient="row")
    )
