"""Validation and training on the real bars, from a ready dataset frame (the feature library
path is covered by test_pipeline_cli.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tessera.config.models import (
    LabelConfig,
    LightGBMParams,
    ModelConfig,
    ValidationConfig,
)
from tessera.models import Dataset, ModelRegistry, load_artifact, train
from tessera.models.evaluation import information_coefficient, rank_information_coefficient
from tessera.models.training import cross_validate, make_splits

FAST_GBM = LightGBMParams(n_estimators=40, num_leaves=15)


def _config(**kw: object) -> ModelConfig:
    base: dict[str, object] = {
        "name": "t",
        "lightgbm": FAST_GBM,
        "validation": ValidationConfig(n_splits=4, min_train_bars=8_000),
    }
    return ModelConfig.model_validate({**base, **kw})


def test_splits_of_the_real_dataset_respect_label_intervals(real_dataset: Dataset) -> None:
    start, end = real_dataset.start_positions(), real_dataset.end_positions()
    # The label of row t ends 15 bars later; warm-up rows were dropped, positions kept.
    assert (end - start == 15).all() and start[0] == 59
    for scheme in ("walk_forward", "purged_kfold"):
        cfg = _config(validation=ValidationConfig(scheme=scheme, n_splits=4, embargo_bars=60))
        for split in make_splits(real_dataset, cfg):
            test_lo, test_hi = start[split.test].min(), end[split.test].max()
            train_s, train_e = start[split.train], end[split.train]
            assert not ((train_s <= test_hi) & (train_e >= test_lo)).any()
            assert not ((train_s > test_hi) & (train_s <= test_hi + 60)).any()


def test_cross_validation_reports_model_and_baseline_side_by_side(
    real_dataset: Dataset,
) -> None:
    cfg = _config()
    metrics, oos = cross_validate(real_dataset, cfg, seed=1)
    assert metrics["model"].to_list() == ["model"] * 5 + ["baseline"] * 5
    assert metrics["fold"].to_list() == ["0", "1", "2", "3", "all"] * 2
    assert metrics["kind"].unique().sort().to_list() == ["lightgbm", "linear"]
    assert metrics.filter(pl.col("model") == "model")["train_rows"].to_list()[:4] == sorted(
        metrics.filter(pl.col("model") == "model")["train_rows"].to_list()[:4]
    )
    # Every out-of-sample row is predicted once, after the first training window.
    assert oos["open_time"].is_unique().all()
    assert len(oos) == metrics.filter(pl.col("fold") == "all")["test_rows"][0]
    # The pooled row is exactly the metrics of the pooled out-of-sample predictions.
    for role, col in (("model", "score"), ("baseline", "baseline_score")):
        pooled = metrics.filter((pl.col("model") == role) & (pl.col("fold") == "all"))
        s, r = oos[col].to_numpy(), oos["forward_return"].to_numpy()
        assert pooled["ic"][0] == pytest.approx(information_coefficient(s, r), abs=1e-12)
        assert pooled["rank_ic"][0] == pytest.approx(rank_information_coefficient(s, r))
        assert pooled["mse"][0] == pytest.approx(np.mean((s - r) ** 2))
        assert math.isnan(pooled["log_loss"][0])
        # A real signal on real data: bounded, defined, not a constant.
        assert -0.5 < pooled["ic"][0] < 0.5 and np.std(s) > 0


def test_classification_with_purged_kfold_reports_log_loss(sign_dataset: Dataset) -> None:
    cfg = _config(
        label=LabelConfig(kind="sign"),
        validation=ValidationConfig(scheme="purged_kfold", n_splits=3, embargo_bars=60),
    )
    metrics, oos = cross_validate(sign_dataset, cfg, seed=1)
    pooled = metrics.filter(pl.col("fold") == "all")
    assert pooled["log_loss"].is_finite().all() and pooled["mse"].is_nan().all()
    # Purged k-fold tests every usable row exactly once.
    assert len(oos) == len(sign_dataset)
    assert ((oos["score"] >= -1) & (oos["score"] <= 1)).all()


def test_train_publishes_a_reproducible_artifact(real_frame: pl.DataFrame, tmp_path: Path) -> None:
    cfg = _config()
    registry = tmp_path / "models"
    first = train(real_frame, cfg, seed=5, registry_dir=registry, source="sample", run_id="r1")
    second = train(real_frame, cfg, seed=5, registry_dir=registry, source="sample", run_id="r2")
    assert first.artifact is not None and second.artifact is not None
    assert (first.artifact.version, second.artifact.version) == ("v0001", "v0002")
    # Same seed, data and config: identical metrics, models and data digest.
    drop = ["seconds"]
    assert first.fold_metrics.drop(drop).equals(second.fold_metrics.drop(drop))
    x = Dataset.from_frame(real_frame).features()
    assert np.array_equal(first.model.predict(x), second.model.predict(x))
    m1, m2 = first.manifest, second.manifest
    assert m1["data"]["sha256"] == m2["data"]["sha256"]
    # The manifest says what was trained, on what, how, and how well.
    assert m1["name"] == "t" and m1["version"] == "v0001" and m1["seed"] == 5
    assert m1["kind"] == "lightgbm" and m1["task"] == "regression"
    assert m1["label"] == cfg.label.model_dump(mode="json")
    assert (
        m1["validation"]["scheme"] == "walk_forward" and m1["validation"]["window"] == "expanding"
    )
    assert m1["data"]["bars"] == 45_031 and m1["data"]["first_bar"].startswith("2021-12-31T23:01")
    assert m1["data"]["rows_used"] == len(x)
    assert m1["libraries"]["lightgbm"] == "4.7.0" and "torch" not in m1["libraries"]
    assert m1["features"]["columns"] == Dataset.from_frame(real_frame).feature_columns
    assert set(m1["metrics"]["overall"]) == {"model", "baseline"}
    assert len(m1["metrics"]["folds"]) == 10
    # The manifest on disk is the one returned, and the saved model predicts the same.
    on_disk = json.loads((first.artifact.path / "manifest.json").read_text())
    assert on_disk == m1
    loaded = load_artifact(ModelRegistry(registry).resolve("t", "v0001"))
    assert np.array_equal(loaded.model.predict(x), first.model.predict(x))
    assert loaded.fold_metrics().drop(drop).equals(first.fold_metrics.drop(drop))


def test_a_different_seed_gives_a_different_model(real_frame: pl.DataFrame) -> None:
    cfg = _config(lightgbm=FAST_GBM.model_copy(update={"subsample": 0.7}))
    a = train(real_frame, cfg, seed=1)
    b = train(real_frame, cfg, seed=2)
    assert a.artifact is None  # no registry: nothing written
    x = Dataset.from_frame(real_frame).features()
    assert not np.array_equal(a.model.predict(x), b.model.predict(x))


def test_too_little_data_is_a_clear_error(real_frame: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="cannot give 8000 training rows"):
        train(real_frame.head(8_050), _config())
