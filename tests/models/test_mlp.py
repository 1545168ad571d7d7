"""The torch MLP: bit-identical on CPU for a seed, side-effect free, saved exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.config.models import MLPParams
from tessera.models.dataset import Dataset
from tessera.models.factory import load_model
from tessera.models.mlp import MLPModel

FAST = MLPParams(hidden=[32, 16], epochs=3, batch_size=256, dropout=0.1)


def _split(ds: Dataset, n: int = 8_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = ds.features(), ds.labels()
    return x[:n], y[:n], x[n : n + 3_000]


def test_same_seed_is_bit_identical_and_leaves_torch_as_it_was(real_dataset: Dataset) -> None:
    import torch

    x, y, x_test = _split(real_dataset)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = MLPModel("regression", FAST, seed=11).fit(x, y)
    b = MLPModel("regression", FAST, seed=11).fit(x, y)
    c = MLPModel("regression", FAST, seed=12).fit(x, y)
    # The global torch RNG, threads and determinism flag are untouched by fitting.
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.get_num_threads() == threads
    pa, pb, pc = a.predict(x_test), b.predict(x_test), c.predict(x_test)
    assert np.array_equal(pa, pb)
    assert a.train_losses == b.train_losses
    assert not np.array_equal(pa, pc)
    assert np.isfinite(pa).all() and np.std(pa) > 0
    # Training reduced the (standardised) loss.
    assert a.train_losses[-1] < a.train_losses[0]


def test_classification_probabilities_and_round_trip(sign_dataset: Dataset, tmp_path: Path) -> None:
    x, y, x_test = _split(sign_dataset)
    model = MLPModel("classification", FAST, seed=2).fit(x, y)
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x_test), proba[:, 2] - proba[:, 0])
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, MLPModel)
    assert np.array_equal(loaded.predict_proba(x_test), proba)
    assert np.array_equal(loaded.predict(x_test), model.predict(x_test))


def test_regression_round_trip(real_dataset: Dataset, tmp_path: Path) -> None:
    x, y, x_test = _split(real_dataset)
    model = MLPModel("regression", FAST, seed=4).fit(x, y)
    model.save(tmp_path / "m")
    assert np.array_equal(load_model(tmp_path / "m").predict(x_test), model.predict(x_test))


def test_refuses_nan_and_predict_before_fit(real_dataset: Dataset) -> None:
    x, y, _ = _split(real_dataset, 500)
    with pytest.raises(RuntimeError, match="before fit"):
        MLPModel("regression", FAST).predict(x)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        MLPModel("regression", FAST).fit(bad, y)
