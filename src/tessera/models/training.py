"""Validation: out-of-sample folds of the model and the linear baseline, side by side.

Both are fitted on exactly the same training rows of every fold and scored on the same test
rows. Metrics are reported per fold and pooled over all out-of-sample rows (``fold="all"``),
the headline numbers: with few folds, the mean of per-fold ICs says less than the IC of all
out-of-sample predictions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.config.models import ModelConfig
from tessera.models.base import Model
from tessera.models.dataset import FORWARD_RETURN, LABEL, OPEN_TIME, Dataset
from tessera.models.evaluation import row_log_loss, summarize
from tessera.models.factory import make_baseline, make_model, task_of
from tessera.models.splits import Split, Window, purged_kfold_splits, walk_forward_splits

FloatArray = npt.NDArray[np.float64]
Role = Literal["model", "baseline"]
ROLES: tuple[Role, Role] = ("model", "baseline")
# (steps done, total steps, what runs next) -> None; the CLI draws a progress bar with it.
ProgressFn = Callable[[int, int, str], None]
METRIC_COLUMNS = ("ic", "rank_ic", "hit_rate", "mse", "log_loss")


def make_splits(dataset: Dataset, config: ModelConfig, window: Window = "expanding") -> list[Split]:
    """The folds of ``config.validation`` over the dataset's usable rows."""
    v = config.validation
    start, end = dataset.start_positions(), dataset.end_positions()
    if v.scheme == "walk_forward":
        return walk_forward_splits(start, end, v.n_splits, v.min_train_bars, window=window)
    return purged_kfold_splits(start, end, v.n_splits, v.embargo_bars)


@dataclass
class _Scored:
    score: FloatArray
    losses: FloatArray
    seconds: float


def _fit_score(model: Model, x: FloatArray, y: FloatArray, split: Split) -> _Scored:
    t0 = time.perf_counter()
    model.fit(x[split.train], y[split.train])
    x_test, y_test = x[split.test], y[split.test]
    score = model.predict(x_test)
    if model.task == "regression":
        losses = (score - y_test) ** 2
    else:
        assert model.classes_ is not None  # set by fit
        losses = row_log_loss(model.predict_proba(x_test), model.classes_, y_test)
    return _Scored(score, losses, time.perf_counter() - t0)


def cross_validate(
    dataset: Dataset,
    config: ModelConfig,
    seed: int,
    *,
    window: Window = "expanding",
    progress: ProgressFn | None = None,
    extra_steps: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(fold metrics, out-of-sample scores) of the model and the baseline.

    ``fold_metrics`` has one row per (model, fold) plus ``fold="all"`` pooled rows;
    ``oos`` has one row per out-of-sample prediction with both scores. ``extra_steps`` are
    added to the progress total for work the caller does afterwards.
    """
    splits = make_splits(dataset, config, window)
    x, y, realized = dataset.features(), dataset.labels(), dataset.forward_returns()
    times = dataset.frame[OPEN_TIME]
    loss_name: Literal["mse", "log_loss"] = (
        "mse" if task_of(config.label) == "regression" else "log_loss"
    )
    dead_zone = config.label.dead_zone_bps / 1e4
    total = len(ROLES) * len(splits) + extra_steps
    rows: list[dict[str, Any]] = []
    pooled: dict[Role, list[_Scored]] = {"model": [], "baseline": []}
    step = 0

    def record(
        role: Role, fold: str, test: npt.NDArray[np.int64], s: _Scored, n_train: int | None
    ) -> None:
        m = summarize(s.score, realized[test], s.losses, loss_name, dead_zone)
        rows.append(
            {
                "model": role,
                "kind": config.kind if role == "model" else "linear",
                "fold": fold,
                "train_rows": n_train,
                "test_rows": len(test),
                "test_start": times[int(test.min())],
                "test_end": times[int(test.max())],
                **{c: m.get(c, math.nan) for c in METRIC_COLUMNS},
                "seconds": s.seconds,
            }
        )

    for split in splits:
        for role in ROLES:
            if progress:
                progress(step, total, f"fold {split.fold + 1}/{len(splits)} {role}")
            model = make_model(config, seed) if role == "model" else make_baseline(config)
            scored = _fit_score(model, x, y, split)
            step += 1
            pooled[role].append(scored)
            record(role, str(split.fold), split.test, scored, len(split.train))
    if progress:
        progress(step, total, "pooling")
    test_all = np.concatenate([s.test for s in splits])
    for role in ROLES:
        parts = pooled[role]
        merged = _Scored(
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.losses for p in parts]),
            sum(p.seconds for p in parts),
        )
        record(role, "all", test_all, merged, None)
    metrics = pl.DataFrame(rows).sort("model", descending=True, maintain_order=True)
    oos = pl.DataFrame(
        {
            OPEN_TIME: times.gather(test_all),
            "fold": np.concatenate([np.full(len(s.test), s.fold, np.int32) for s in splits]),
            FORWARD_RETURN: realized[test_all],
            LABEL: y[test_all],
            "score": np.concatenate([p.score for p in pooled["model"]]),
            "baseline_score": np.concatenate([p.score for p in pooled["baseline"]]),
        }
    )
    return metrics, oos
