"""Running a feature list: the batch execution over a bar frame, the incremental one bar by bar."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tessera.config.models import FeatureConfig, FeatureSpec
from tessera.features.base import OHLCV, Feature, FeatureError, IncrementalFeature, make_features

OPEN_TIME = "open_time"


def prepare_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars as the features expect them: sorted by a unique UTC ``open_time``, OHLCV as floats.

    Raises `FeatureError` on what would silently corrupt features: missing OHLCV columns,
    duplicate bar times, or missing (null/NaN) prices.
    """
    missing = [c for c in OHLCV if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack column(s) {missing}")
    frame = bars.sort(OPEN_TIME)
    if frame[OPEN_TIME].is_duplicated().any():
        raise FeatureError("bars have duplicate open_time values")
    numeric = [c for c in frame.columns if c != OPEN_TIME and frame[c].dtype.is_numeric()]
    frame = frame.with_columns(pl.col(numeric).cast(pl.Float64))
    bad = frame.select(
        pl.any_horizontal(pl.col(c).is_null() | pl.col(c).is_nan() for c in OHLCV[1:])
    )
    if bad.to_series().any():
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
    frame = prepare_bars(bars)
    out = frame.select(OPEN_TIME)
    for feat in _specs(spec):
        out = out.hstack(feat.batch(frame))
        if on_feature is not None:
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
