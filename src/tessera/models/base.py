"""The one small interface every model family implements, and what they share.

A model maps a float feature matrix to a *score* usable as a trading signal:

* regression (forward-return labels): the predicted forward return;
* classification (sign / triple-barrier labels, classes are signed integers such as
  -1, 0, +1): ``P(up) - P(down)`` = sum over classes of ``sign(class) * P(class)``.

Each family saves itself into a directory with a ``model.json`` naming its kind, so that
:func:`tessera.models.factory.load_model` can load any of them without being told which.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Task = Literal["regression", "classification"]
MODEL_META = "model.json"


class Model(ABC):
    """A fitted-or-not model of one family for one task."""

    kind: ClassVar[str]

    def __init__(self, task: Task) -> None:
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be regression or classification, got {task!r}")
        self.task: Task = task
        self.classes_: npt.NDArray[np.int64] | None = None
        self.n_features_: int | None = None

    # --- the interface -----------------------------------------------------------------

    @abstractmethod
    def fit(self, features: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        """Fit on rows of ``features`` (n, k) and targets ``y`` (n,); returns self."""

    def predict(self, features: npt.ArrayLike) -> FloatArray:
        """The signal score of each row (see the module docstring)."""
        x = self._check_x(features)
        if self.task == "regression":
            return self._predict_value(x)
        return score_from_proba(self._predict_proba(x), self._classes())

    def predict_row(self, row: npt.ArrayLike) -> float:
        """The score of one feature row (the live path: one call per closed bar).

        Same value as ``predict`` on a one-row matrix; families override it with a faster
        single-row path where they have one."""
        return float(self.predict(np.asarray(row, dtype=np.float64).reshape(1, -1))[0])

    def predict_proba(self, features: npt.ArrayLike) -> FloatArray:
        """Class probabilities (rows, classes), columns in the order of ``classes_``."""
        if self.task != "classification":
            raise TypeError("predict_proba is for classification models")
        return self._predict_proba(self._check_x(features))

    def save(self, directory: Path) -> None:
        """Write the fitted model into ``directory`` (created if needed)."""
        if self.n_features_ is None:
            raise RuntimeError("save() before fit()")
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "task": self.task,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "n_features": self.n_features_,
            **self._save_state(directory),
        }
        (directory / MODEL_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Self:
        meta = read_meta(directory)
        if meta["kind"] != cls.kind:
            raise ValueError(f"{directory} holds a {meta['kind']} model, not {cls.kind}")
        model = cls._from_state(directory, meta)
        model.classes_ = (
            None if meta["classes"] is None else np.asarray(meta["classes"], dtype=np.int64)
        )
        model.n_features_ = int(meta["n_features"])
        return model

    # --- what each family provides ---------------------------------------------------

    def _predict_value(self, x: FloatArray) -> FloatArray:
        raise NotImplementedError(f"{self.kind} has no regression output")

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        raise NotImplementedError(f"{self.kind} has no classification output")

    @abstractmethod
    def _save_state(self, directory: Path) -> dict[str, Any]:
        """Write family-specific files; return extra JSON-able entries for model.json."""

    @classmethod
    @abstractmethod
    def _from_state(cls, directory: Path, meta: dict[str, Any]) -> Self:
        """Rebuild from ``directory`` and model.json's ``meta``."""

    # --- shared helpers ----------------------------------------------------------------

    def _prepare_fit(
        self, features: npt.ArrayLike, y: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray | npt.NDArray[np.int64]]:
        """Validate; for classification, return class indices and set ``classes_``."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        target = np.asarray(y)
        if x.ndim != 2 or target.ndim != 1 or len(x) != len(target):
            raise ValueError(f"features must be (n, k) and y (n,), got {x.shape}, {target.shape}")
        if len(x) == 0:
            raise ValueError("cannot fit on zero rows")
        self.n_features_ = x.shape[1]
        if self.task == "regression":
            t = target.astype(np.float64)
            if not np.isfinite(t).all():
                raise ValueError("regression targets must be finite")
            return x, t
        if not np.all(np.isfinite(target.astype(np.float64))) or np.any(
            target.astype(np.float64) != np.round(target.astype(np.float64))
        ):
            raise ValueError("classification labels must be integers (e.g. -1, 0, 1)")
        classes, index = np.unique(target.astype(np.int64), return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"classification needs at least 2 classes, got {classes.tolist()}")
        self.classes_ = classes.astype(np.int64)
        return x, index.astype(np.int64)

    def _check_x(self, features: npt.ArrayLike) -> FloatArray:
        if self.n_features_ is None:
            raise RuntimeError("predict() before fit()")
        x = np.ascontiguousarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_:
            raise ValueError(f"expected (n, {self.n_features_}) features, got {x.shape}")
        return x

    def _classes(self) -> npt.NDArray[np.int64]:
        if self.classes_ is None:
            raise RuntimeError("classification model has no classes: not fitted")
        return self.classes_


def score_from_proba(proba: FloatArray, classes: npt.NDArray[np.int64]) -> FloatArray:
    """``P(up) - P(down)``: probabilities weighted by the sign of their class."""
    weights = np.sign(classes).astype(np.float64)
    return np.asarray(proba @ weights, dtype=np.float64)


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_META
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {MODEL_META} (not a saved model)")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


class Standardizer:
    """Column means and scales of the training rows; constant columns get scale 1.

    Linear models and the MLP need features on one scale; tree models do not.
    """

    def __init__(self, mean: FloatArray, scale: FloatArray) -> None:
        self.mean = mean
        self.scale = scale

    @classmethod
    def fit(cls, x: FloatArray) -> Standardizer:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        return cls(mean, scale)

    def transform(self, x: FloatArray) -> FloatArray:
        return np.asarray((x - self.mean) / self.scale, dtype=np.float64)

    def to_json(self) -> dict[str, list[float]]:
        # floats round-trip exactly through JSON (repr is shortest-exact), so a loaded model
        # predicts bit-identically.
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> Standardizer:
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64))


def require_finite(x: FloatArray, what: str) -> None:
    """Linear and neural models cannot take NaN/inf; tree models can (and are not checked)."""
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
        raise ValueError(f"{what}: {bad} rows with NaN/inf features; drop or fill them first")
