"""Model scores for a backtest: from one registered model, or walk-forward with retraining.

Walk-forward: the bars after ``min_train_bars`` are cut into ``windows`` consecutive test
windows. For each, a model is trained (and published to the registry) on the bars *before*
the window only — the last ``horizon`` of them carry no label, as their future lies inside the
window, so no training label overlaps what is tested — and scores the window. Features of the
window's bars are computed with history from before it (the features are causal: proved by
`tessera.features.checks`), so every score in the backtest comes from a model that never saw
the bars it trades on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.config.models import FeatureConfig, ModelConfig
from tessera.logging import get_logger

log = get_logger(__name__)
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Window:
    """One walk-forward step: trained on rows ``[0, test_start)``, scores ``[start, end)``."""

    index: int
    test_start: int
    test_end: int
    model: str  # NAME:VERSION in the registry
    trained_through: str  # open time of the last training bar (UTC)
    test_from: str  # open time of the first scored bar (UTC)
    oos_ic: float  # the window model's own cross-validated IC on its training data


def scores_from_model(ref: str, frame: pl.DataFrame, registry_dir: Path) -> F64:
    """Scores of a registered model (``NAME`` or ``NAME:VERSION``), aligned to ``frame``'s rows.

    NaN where a feature is still warming up.
    """
    from tessera.models import load_artifact, predict
    from tessera.models.registry import ModelRegistry

    loaded = load_artifact(ModelRegistry(registry_dir).resolve_ref(ref))
    preds = predict(loaded, frame)
    return preds["score"].fill_null(np.nan).to_numpy().astype(np.float64)


def walk_forward_scores(
    frame: pl.DataFrame,
    config: ModelConfig,
    features: FeatureConfig,
    registry_dir: Path,
    *,
    windows: int = 4,
    min_train_bars: int = 10_000,
    seed: int = 42,
    on_window: Callable[[Window], None] | None = None,
) -> tuple[F64, list[Window]]:
    """Scores for every bar (NaN before the first test window) and the windows' models."""
    from tessera.models import predict, train

    n = len(frame)
    if windows < 1:
        raise ValueError("walk-forward needs at least one window")
    if min_train_bars >= n:
        raise ValueError(f"min_train_bars ({min_train_bars}) must be below the bar count ({n})")
    edges = np.linspace(min_train_bars, n, windows + 1).astype(int)
    scores = np.full(n, np.nan)
    done: list[Window] = []
    times = frame["open_time"]
    for k in range(windows):
        start, end = int(edges[k]), int(edges[k + 1])
        result = train(
            frame.slice(0, start),
            config,
            features=features,
            seed=seed,
            registry_dir=registry_dir,
            source=f"walk-forward window {k}: bars [0, {start})",
        )
        assert result.artifact is not None
        # history before the window lets its first bars' features warm up
        preds = predict(result.artifact, frame.slice(0, end))
        window_scores = preds["score"].fill_null(np.nan).to_numpy()[start:end]
        scores[start:end] = window_scores
        win = Window(
            k,
            start,
            end,
            f"{result.artifact.name}:{result.artifact.version}",
            str(times[start - 1]),
            str(times[start]),
            float(result.overall()["ic"]),
        )
        done.append(win)
        log.info(
            "walk-forward window done",
            window=k,
            model=win.model,
            trained_through=win.trained_through,
            test=f"{win.test_from} .. {times[end - 1]}",
        )
        if on_window is not None:
            on_window(win)
    return scores, done
