"""The baseline: ridge regression and L2 multinomial logistic regression, in NumPy.

Closed-form ridge and Newton (IRLS) logistic are exact, deterministic and fast at this size
(tens of features); the baseline every model has to beat should not depend on a library's
optimiser settings. Features are standardised on the training rows; intercepts are not
penalised. ``alpha`` is the L2 strength on the *sum* of losses (scikit-learn's ``alpha`` for
ridge, ``1 / C`` for logistic regression).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from tessera.models.base import FloatArray, Model, Standardizer, Task, require_finite

_MAX_NEWTON_STEPS = 100
_TOL = 1e-10


class LinearModel(Model):
    kind = "linear"

    def __init__(self, task: Task, alpha: float = 1.0) -> None:
        super().__init__(task)
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha
        self.scaler: Standardizer | None = None
        # Regression: (features,) weights + intercept. Classification: (features + 1, K - 1)
        # coefficients against class 0, the intercept in the last row.
        self.coef_: FloatArray | None = None
        self.intercept_: float = 0.0

    def fit(self, features: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        x, target = self._prepare_fit(features, y)
        require_finite(x, "linear model")
        self.scaler = Standardizer.fit(x)
        xs = self.scaler.transform(x)
        if self.task == "regression":
            t = target.astype(np.float64)
            self.intercept_ = float(t.mean())
            gram = xs.T @ xs + self.alpha * np.eye(xs.shape[1])
            self.coef_ = _solve(gram, xs.T @ (t - self.intercept_))
        else:
            self.coef_ = _fit_multinomial(
                xs, target.astype(np.int64), len(self._classes()), self.alpha
            )
        return self

    def _predict_value(self, x: FloatArray) -> FloatArray:
        coef, scaler = self._fitted()
        require_finite(x, "linear model")
        return np.asarray(scaler.transform(x) @ coef + self.intercept_, dtype=np.float64)

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        coef, scaler = self._fitted()
        require_finite(x, "linear model")
        return _softmax_ref(_with_intercept(scaler.transform(x)) @ coef)

    def _fitted(self) -> tuple[FloatArray, Standardizer]:
        if self.coef_ is None or self.scaler is None:
            raise RuntimeError("predict() before fit()")
        return self.coef_, self.scaler

    def _save_state(self, directory: Path) -> dict[str, Any]:
        coef, scaler = self._fitted()
        return {
            "alpha": self.alpha,
            "coef": coef.tolist(),
            "intercept": self.intercept_,
            "scaler": scaler.to_json(),
        }

    @classmethod
    def _from_state(cls, directory: Path, meta: dict[str, Any]) -> Self:
        model = cls(meta["task"], alpha=float(meta["alpha"]))
        model.coef_ = np.asarray(meta["coef"], dtype=np.float64)
        model.intercept_ = float(meta["intercept"])
        model.scaler = Standardizer.from_json(meta["scaler"])
        return model


def _solve(a: FloatArray, b: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.solve(a, b), dtype=np.float64)
    except np.linalg.LinAlgError:
        # Singular (alpha = 0 with collinear features): the minimum-norm least-squares answer.
        return np.asarray(np.linalg.lstsq(a, b, rcond=None)[0], dtype=np.float64)


def _with_intercept(x: FloatArray) -> FloatArray:
    return np.hstack([x, np.ones((len(x), 1))])


def _softmax_ref(logits: FloatArray) -> FloatArray:
    """Softmax over [0, logits]: class 0 is the reference with a logit of zero."""
    full = np.hstack([np.zeros((len(logits), 1)), logits])
    full -= full.max(axis=1, keepdims=True)
    e = np.exp(full)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def _objective(
    x1: FloatArray, onehot: FloatArray, theta: FloatArray, penalty: FloatArray
) -> tuple[float, FloatArray]:
    proba = _softmax_ref(x1 @ theta)
    nll = -float(np.sum(onehot * np.log(np.clip(proba, 1e-300, 1.0))))
    return nll + 0.5 * float(np.sum(penalty[:, None] * theta**2)), proba


def _fit_multinomial(x: FloatArray, cls: npt.NDArray[np.int64], k: int, alpha: float) -> FloatArray:
    """Newton's method on the penalised multinomial log-likelihood, with backtracking."""
    x1 = _with_intercept(x)
    n, p = x1.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), cls] = 1.0
    # The intercept is not penalised, but a tiny ridge keeps the Hessian invertible when a
    # class is (almost) absent from the training rows.
    penalty = np.full(p, alpha)
    penalty[-1] = 1e-8
    theta = np.zeros((p, k - 1))
    loss, proba = _objective(x1, onehot, theta, penalty)
    for _ in range(_MAX_NEWTON_STEPS):
        grad = x1.T @ (proba[:, 1:] - onehot[:, 1:]) + penalty[:, None] * theta
        hess = np.zeros((p * (k - 1), p * (k - 1)))
        for a in range(k - 1):
            for b in range(a, k - 1):
                w = proba[:, a + 1] * ((a == b) - proba[:, b + 1])
                block = (x1 * w[:, None]).T @ x1
                if a == b:
                    block += np.diag(penalty)
                hess[a * p : (a + 1) * p, b * p : (b + 1) * p] = block
                hess[b * p : (b + 1) * p, a * p : (a + 1) * p] = block.T
        # Column-major flattening so that class a occupies rows a*p .. (a+1)*p of the Hessian.
        step = _solve(hess, grad.flatten(order="F")).reshape((p, k - 1), order="F")
        t = 1.0
        while True:
            candidate = theta - t * step
            new_loss, new_proba = _objective(x1, onehot, candidate, penalty)
            if new_loss <= loss or t < 1e-8:
                break
            t *= 0.5
        if new_loss > loss:  # no descent along the Newton direction: at the optimum
            break
        converged = loss - new_loss <= _TOL * max(1.0, abs(loss))
        theta, loss, proba = candidate, new_loss, new_proba
        if converged:
            break
    return theta
