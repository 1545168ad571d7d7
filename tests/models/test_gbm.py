"""LightGBM: reproducible to the bit, saved and loaded exactly, both tasks, on real bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.config.models import LightGBMParams
from tessera.models.dataset import Dataset
from tessera.models.factory import load_model
from tessera.models.gbm import LightGBMModel

# Small but with row and feature subsampling on, so that the seed matters.
FAST = LightGBMParams(n_estimators=40, num_leaves=15, subsample=0.7, colsample_bytree=0.7)


def _split(ds: Dataset, n: int = 12_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = ds.features(), ds.labels()
    return x[:n], y[:n], x[n : n + 4_000]


def test_same_seed_same_predictions_other_seed_other_model(real_dataset: Dataset) -> None:
    x, y, x_test = _split(real_dataset)
    a = LightGBMModel("regression", FAST, seed=7).fit(x, y).predict(x_test)
    b = LightGBMModel("regression", FAST, seed=7).fit(x, y).predict(x_test)
    c = LightGBMModel("regression", FAST, seed=8).fit(x, y).predict(x_test)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.std(a) > 0  # it learned something, not a constant


def test_reproducible_with_nan_features(real_dataset: Dataset) -> None:
    # LightGBM takes missing values natively (the other families refuse them).
    x, y, x_test = _split(real_dataset)
    x = x.copy()
    x[::7, 1] = np.nan
    a = LightGBMModel("regression", FAST, seed=1).fit(x, y).predict(x_test)
    b = LightGBMModel("regression", FAST, seed=1).fit(x, y).predict(x_test)
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_multiclass_scores_are_p_up_minus_p_down(sign_dataset: Dataset, tmp_path: Path) -> None:
    x, y, x_test = _split(sign_dataset)
    model = LightGBMModel("classification", FAST, seed=3).fit(x, y)
    assert model.classes_ is not None and model.classes_.tolist() == [-1, 0, 1]
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(model.predict(x_test), proba[:, 2] - proba[:, 0])
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, LightGBMModel)
    assert np.array_equal(loaded.predict_proba(x_test), proba)


def test_binary_labels_use_the_binary_objective(sign_dataset: Dataset) -> None:
    x, y, x_test = _split(sign_dataset)
    keep = y != 0
    model = LightGBMModel("classification", FAST, seed=3).fit(x[keep], y[keep])
    assert model.native_params(2)["objective"] == "binary"
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), 2)
    np.testing.assert_allclose(model.predict(x_test), proba[:, 1] - proba[:, 0])


def test_regression_round_trips_bit_identically(real_dataset: Dataset, tmp_path: Path) -> None:
    x, y, x_test = _split(real_dataset)
    model = LightGBMModel("regression", FAST, seed=5).fit(x, y)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert np.array_equal(loaded.predict(x_test), model.predict(x_test))
    assert model.feature_importance().shape == (x.shape[1],)


def test_native_params_follow_the_config() -> None:
    p = LightGBMModel("regression", LightGBMParams(subsample=1.0), seed=9).native_params()
    assert p["bagging_freq"] == 0  # no row subsampling asked for
    assert p["deterministic"] and p["force_row_wise"] and p["seed"] == 9
    assert p["num_threads"] == 1
    m = LightGBMModel("classification").native_params(3)
    assert m["objective"] == "multiclass" and m["num_class"] == 3


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_single_row_fast_path_equals_batch_predict(task: str, tmp_path: Path) -> None:
    """The live bot's one-row path (LightGBM's prepared predictor) gives the batch scores,
    also after a save/load round trip."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 5))
    y = x[:, 0] * 0.5 + rng.normal(scale=0.1, size=600)
    labels = y if task == "regression" else np.sign(np.round(y)).astype(np.int64)
    model = LightGBMModel(task, LightGBMParams(n_estimators=20, min_child_samples=20))  # type: ignore[arg-type]
    model.fit(x, labels)
    model.save(tmp_path / "m")
    loaded = LightGBMModel.load(tmp_path / "m")
    batch = model.predict(x[:50])
    for m in (model, loaded):
        rows = np.array([m.predict_row(r) for r in x[:50]])
        np.testing.assert_allclose(rows, batch, rtol=0, atol=1e-12)
