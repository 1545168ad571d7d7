"""The NumPy baseline: ridge and multinomial logistic regression, checked against their
optimality conditions on the real bars (not against hard-coded numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.models.base import Task, score_from_proba
from tessera.models.dataset import Dataset
from tessera.models.factory import load_model
from tessera.models.linear import LinearModel


def test_ridge_without_penalty_is_least_squares(real_dataset: Dataset) -> None:
    x, y = real_dataset.features(), real_dataset.labels()
    model = LinearModel("regression", alpha=0.0).fit(x, y)
    design = np.hstack([x, np.ones((len(x), 1))])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(model.predict(x), design @ beta, rtol=1e-7, atol=1e-12)


def test_ridge_solves_its_normal_equations(real_dataset: Dataset) -> None:
    x, y = real_dataset.features(), real_dataset.labels()
    alpha = 500.0
    model = LinearModel("regression", alpha=alpha).fit(x, y)
    assert model.scaler is not None and model.coef_ is not None
    xs = model.scaler.transform(x)
    resid = y - model.predict(x)
    # d/dw [ |y - Xw - b|^2 + alpha |w|^2 ] = 0 and d/db = 0
    grad_w = -2 * xs.T @ resid + 2 * alpha * model.coef_
    assert np.abs(grad_w).max() < 1e-9 * np.abs(xs.T @ y).max()
    assert abs(resid.sum()) < 1e-9 * len(y) * np.abs(y).mean()
    # and the penalty shrinks the coefficients
    free = LinearModel("regression", alpha=0.0).fit(x, y)
    assert free.coef_ is not None
    assert np.linalg.norm(model.coef_) < np.linalg.norm(free.coef_)


def test_logistic_meets_the_optimality_conditions(sign_dataset: Dataset) -> None:
    x, y = sign_dataset.features(), sign_dataset.labels().astype(int)
    alpha = 10.0
    model = LinearModel("classification", alpha=alpha).fit(x, y)
    assert model.classes_ is not None and model.classes_.tolist() == [-1, 0, 1]
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    onehot = (y[:, None] == model.classes_[None, :]).astype(float)
    # Unpenalised intercepts: predicted class frequencies equal the observed ones.
    np.testing.assert_allclose(proba.sum(axis=0), onehot.sum(axis=0), rtol=1e-6)
    # Penalised weights: the gradient of the penalised log-likelihood is zero.
    assert model.scaler is not None and model.coef_ is not None
    xs = model.scaler.transform(x)
    grad = xs.T @ (proba[:, 1:] - onehot[:, 1:]) + alpha * model.coef_[:-1]
    assert np.abs(grad).max() < 1e-5
    # The score is P(up) - P(down).
    np.testing.assert_allclose(model.predict(x), proba[:, 2] - proba[:, 0])
    np.testing.assert_allclose(model.predict(x), score_from_proba(proba, model.classes_))


def test_binary_logistic_matches_the_log_odds_of_a_single_feature() -> None:
    # One binary feature: the unpenalised MLE reproduces the empirical frequencies exactly.
    x = np.repeat([[0.0], [1.0]], [400, 600], axis=0)
    y = np.concatenate([np.r_[np.ones(100), -np.ones(300)], np.r_[np.ones(450), -np.ones(150)]])
    model = LinearModel("classification", alpha=0.0).fit(x, y)
    p_up = model.predict_proba(np.array([[0.0], [1.0]]))[:, 1]
    np.testing.assert_allclose(p_up, [0.25, 0.75], rtol=1e-9)


def test_save_and_load_predict_bit_identically(sign_dataset: Dataset, tmp_path: Path) -> None:
    x, y = sign_dataset.features(), sign_dataset.labels()
    cases: list[tuple[Task, np.ndarray]] = [
        ("regression", sign_dataset.forward_returns()),
        ("classification", y),
    ]
    for task, target in cases:
        model = LinearModel(task, alpha=3.0).fit(x, target)
        model.save(tmp_path / task)
        loaded = load_model(tmp_path / task)
        assert isinstance(loaded, LinearModel) and loaded.task == task
        assert np.array_equal(loaded.predict(x), model.predict(x))


def test_non_finite_features_are_refused(real_dataset: Dataset) -> None:
    x, y = real_dataset.features()[:100].copy(), real_dataset.labels()[:100]
    x[5, 2] = np.nan
    with pytest.raises(ValueError, match="1 rows with NaN"):
        LinearModel("regression").fit(x, y)


def test_classification_needs_integer_labels_and_two_classes() -> None:
    x = np.arange(10.0).reshape(-1, 1)
    with pytest.raises(ValueError, match="integers"):
        LinearModel("classification").fit(x, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearModel("classification").fit(x, np.ones(10))
