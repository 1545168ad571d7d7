"""The notebook path on real data: bars -> features -> train -> predict, and the live twin.

The same model scores the same bar identically whether its features came from the batch
execution (research) or from the incremental one fed bar by bar (the live bot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.config.models import FeatureConfig, LightGBMParams, ModelConfig, ValidationConfig
from tessera.features import IncrementalFeatures, build_features
from tessera.features.bars import SAMPLE_BARS, load_bars
from tessera.models import load_artifact, predict, train


def test_bars_features_train_predict_and_live_scores_agree(tmp_path: Path) -> None:
    bars = load_bars(SAMPLE_BARS).head(12_000)
    spec = FeatureConfig()
    feats = build_features(bars, spec)
    assert feats.to_pandas().shape == feats.shape  # pandas on request
    config = ModelConfig(
        name="notebook",
        lightgbm=LightGBMParams(n_estimators=40, num_leaves=15),
        validation=ValidationConfig(n_splits=3, min_train_bars=4_000),
    )
    result = train(bars, config, features=spec, registry_dir=tmp_path, seed=7)
    assert result.artifact is not None
    assert set(result.fold_metrics["model"].unique()) == {"model", "baseline"}
    scores = predict(result.artifact, bars)
    assert scores.height == bars.height
    assert scores["score"].head(59).null_count() == 59  # warm-up bars are not scored
    assert scores["score"].tail(100).null_count() == 0

    loaded = load_artifact(result.artifact)
    live = IncrementalFeatures(spec)
    live_scores = []
    for bar in bars.iter_rows(named=True):
        row = live.update(bar)
        if live.ready:
            x = np.array([[row[c] for c in loaded.feature_columns]])
            live_scores.append(float(loaded.model.predict(x)[0]))
    batch_scores = scores["score"].drop_nulls().to_numpy()
    assert len(live_scores) == len(batch_scores)
    assert np.asarray(live_scores) == pytest.approx(batch_scores, rel=1e-9, abs=1e-12)
