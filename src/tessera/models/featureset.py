"""The bridge to the feature library: bars -> features + labels, and feature identity.

A model is only valid on the features it was trained on. Two hashes pin them down:

* the **spec hash** — of the feature list and parameters (`FeatureConfig` minus where it
  caches): the same spec always gives the same columns;
* the **code hash** — of the feature library's source: the same spec computed by changed
  code may mean something else, so ``predict`` refuses a model whose code hash differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tessera.config.models import FeatureConfig, LabelConfig
from tessera.features.store import code_hash, spec_document, spec_hash
from tessera.models.dataset import EVENT_END, FORWARD_RETURN, LABEL, OPEN_TIME


def load_bars(path: Path | None) -> tuple[pl.DataFrame, str]:
    """OHLCV bars from ``path`` (.csv, .csv.gz, .parquet), default the bundled real sample."""
    from tessera.features.bars import SAMPLE_BARS
    from tessera.features.bars import load_bars as read_bars

    target = path or SAMPLE_BARS
    return read_bars(target), str(target)


def compute_features(bars: pl.DataFrame, spec: FeatureConfig) -> pl.DataFrame:
    """``open_time`` plus one column per feature, one row per bar."""
    from tessera.features import build_features

    return build_features(bars, spec)


def feature_columns(features: pl.DataFrame) -> list[str]:
    return [c for c in features.columns if c != OPEN_TIME]


def build_dataset_frame(
    bars: pl.DataFrame, spec: FeatureConfig, label: LabelConfig
) -> tuple[pl.DataFrame, list[str]]:
    """A dataset frame (features, label, forward return, event end) and its feature columns."""
    from tessera.features.labels import make_labels

    feats = compute_features(bars, spec)
    labels = make_labels(bars, label)
    frame = feats.join(
        labels.select(OPEN_TIME, LABEL, FORWARD_RETURN, EVENT_END), on=OPEN_TIME, how="left"
    )
    return frame, feature_columns(feats)


def spec_from_document(doc: dict[str, Any]) -> FeatureConfig:
    return FeatureConfig.model_validate(doc)


__all__ = [
    "build_dataset_frame",
    "code_hash",
    "compute_features",
    "feature_columns",
    "load_bars",
    "spec_document",
    "spec_from_document",
    "spec_hash",
]
