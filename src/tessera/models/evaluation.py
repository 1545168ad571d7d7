"""Out-of-sample scores of a signal: IC, rank IC, hit rate, log-loss / MSE.

Every function takes aligned 1-d arrays and returns a float; ``nan`` means "undefined here"
(too few rows, a constant series), never 0, so that an undefined fold cannot pass for a
neutral one.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]

# Probabilities are clipped before the log so that one overconfident miss costs a lot, not inf.
_PROBA_EPS = 1e-15


def pearson(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Pearson correlation; nan for fewer than 3 rows or a constant series."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if len(a) < 3:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0 or not math.isfinite(denom):
        return math.nan
    return float(a @ b) / denom


def information_coefficient(score: npt.ArrayLike, realized: npt.ArrayLike) -> float:
    """IC: Pearson correlation of the score with the realized forward return."""
    return pearson(score, realized)


def rank_information_coefficient(score: npt.ArrayLike, realized: npt.ArrayLike) -> float:
    """Rank IC: Spearman correlation (Pearson of average ranks, so ties are handled)."""
    a = pl.Series(np.asarray(score, dtype=np.float64)).rank("average").to_numpy()
    b = pl.Series(np.asarray(realized, dtype=np.float64)).rank("average").to_numpy()
    return pearson(a, b)


def hit_rate(score: npt.ArrayLike, realized: npt.ArrayLike, dead_zone: float = 0.0) -> float:
    """Share of rows where the score's sign matches the realized return's sign.

    Rows whose ``|realized| <= dead_zone`` (a move too small to call) are excluded; a zero
    score on a remaining row counts as a miss: the model did not call it.
    """
    s = np.asarray(score, dtype=np.float64)
    r = np.asarray(realized, dtype=np.float64)
    called = np.abs(r) > dead_zone
    if not called.any():
        return math.nan
    return float(np.mean(np.sign(s[called]) == np.sign(r[called])))


def mean_squared_error(pred: npt.ArrayLike, target: npt.ArrayLike) -> float:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if len(p) == 0:
        return math.nan
    return float(np.mean((p - t) ** 2))


def row_log_loss(proba: npt.ArrayLike, classes: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """Negative log-likelihood of each row's true label; ``proba`` is (rows, classes).

    A label absent from ``classes`` (a class the fold never trained on) gets probability 0,
    clipped: it costs the maximum, it is not skipped.
    """
    p = np.asarray(proba, dtype=np.float64)
    cls = np.asarray(classes, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    idx = np.clip(np.searchsorted(cls, y), 0, max(len(cls) - 1, 0))
    known = cls[idx] == y if len(cls) else np.zeros(len(y), dtype=bool)
    picked = np.where(known, p[np.arange(len(y)), idx] if len(y) else 0.0, 0.0)
    return np.asarray(-np.log(np.clip(picked, _PROBA_EPS, 1.0)), dtype=np.float64)


def log_loss(proba: npt.ArrayLike, classes: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the true labels."""
    losses = row_log_loss(proba, classes, labels)
    return float(losses.mean()) if len(losses) else math.nan


def summarize(
    score: npt.ArrayLike,
    realized: npt.ArrayLike,
    row_losses: npt.ArrayLike,
    loss_name: Literal["mse", "log_loss"],
    dead_zone: float = 0.0,
) -> dict[str, float]:
    """IC, rank IC, hit rate and the mean row loss of one fold (or of all folds pooled).

    ``realized`` is the forward return the score is judged against, for every label kind;
    ``row_losses`` are squared errors (regression) or negative log-likelihoods.
    """
    s = np.asarray(score, dtype=np.float64)
    losses = np.asarray(row_losses, dtype=np.float64)
    return {
        "rows": float(len(s)),
        "ic": information_coefficient(s, realized),
        "rank_ic": rank_information_coefficient(s, realized),
        "hit_rate": hit_rate(s, realized, dead_zone),
        loss_name: float(losses.mean()) if len(losses) else math.nan,
    }
