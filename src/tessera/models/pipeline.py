"""The notebook API: ``train(bars_or_features, config) -> TrainResult`` and ``predict``.

``train`` validates (model and baseline, fold by fold), fits the final model on every usable
row, and — given a registry — publishes an artifact. ``predict`` loads an artifact,
recomputes its features with the artifact's own feature spec and scores every bar.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tessera.config.models import FeatureConfig, ModelConfig
from tessera.logging import get_logger
from tessera.models import featureset
from tessera.models.artifacts import (
    FEATURES_FILE,
    MANIFEST_FORMAT,
    LoadedArtifact,
    data_summary,
    library_versions,
    load_artifact,
    metrics_records,
    write_artifact_files,
)
from tessera.models.base import Model
from tessera.models.dataset import LABEL, OPEN_TIME, Dataset
from tessera.models.factory import make_model, task_of
from tessera.models.registry import ArtifactRef, ModelRegistry
from tessera.models.splits import Window
from tessera.models.training import METRIC_COLUMNS, ProgressFn, cross_validate

log = get_logger(__name__)


class FeatureDriftError(RuntimeError):
    """The feature code changed since the model was trained: its inputs may mean otherwise."""


@dataclass
class TrainResult:
    """Fold metrics (model and baseline), the final model, out-of-sample scores, artifact."""

    fold_metrics: pl.DataFrame
    model: Model
    oos: pl.DataFrame
    feature_columns: list[str]
    artifact: ArtifactRef | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def artifact_path(self) -> Path | None:
        return None if self.artifact is None else self.artifact.path

    def overall(self, role: str = "model") -> dict[str, float]:
        """Pooled out-of-sample metrics of ``"model"`` or ``"baseline"``."""
        return overall_metrics(self.fold_metrics, role)


def overall_metrics(fold_metrics: pl.DataFrame, role: str = "model") -> dict[str, float]:
    row = fold_metrics.filter((pl.col("model") == role) & (pl.col("fold") == "all"))
    if row.is_empty():
        raise KeyError(f"no pooled metrics for {role!r}")
    return {c: float(row[c][0]) for c in (*METRIC_COLUMNS, "test_rows")}


def as_dataset(
    data: pl.DataFrame | Dataset, config: ModelConfig, features: FeatureConfig | None
) -> tuple[Dataset, FeatureConfig | None]:
    """Bars -> features + labels; a dataset frame or `Dataset` is taken as it is.

    A frame with a ``label`` column is a dataset frame (its feature spec is unknown unless
    given); anything else must be OHLCV bars.
    """
    if isinstance(data, Dataset):
        return data, features
    if LABEL in data.columns:
        return Dataset.from_frame(data), features
    spec = features or FeatureConfig()
    frame, columns = featureset.build_dataset_frame(data, spec, config.label)
    return Dataset.from_frame(frame, columns), spec


def train(
    data: pl.DataFrame | Dataset,
    config: ModelConfig,
    *,
    features: FeatureConfig | None = None,
    seed: int = 42,
    registry_dir: Path | None = None,
    window: Window = "expanding",
    source: str | None = None,
    run_id: str | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Validate, fit on everything, and publish to ``registry_dir`` (if given).

    ``data``: OHLCV bars (features and labels are built with ``features`` — default
    `FeatureConfig()` — and ``config.label``), or a ready dataset frame / `Dataset`.
    """
    t0 = time.perf_counter()
    dataset, spec = as_dataset(data, config, features)
    log.info(
        "training started",
        model=config.name,
        kind=config.kind,
        label=config.label.kind,
        rows=len(dataset),
        features=len(dataset.feature_columns),
        scheme=config.validation.scheme,
    )
    fold_metrics, oos = cross_validate(
        dataset, config, seed, window=window, progress=progress, extra_steps=1
    )
    folds = int(oos["fold"].n_unique())
    if progress:
        progress(2 * folds, 2 * folds + 1, "final fit on all rows")
    model = make_model(config, seed).fit(dataset.features(), dataset.labels())
    if progress:
        progress(2 * folds + 1, 2 * folds + 1, "done")
    result = TrainResult(fold_metrics, model, oos, list(dataset.feature_columns))
    manifest = _manifest(result, dataset, config, spec, seed, window, source, run_id)
    manifest["training_seconds"] = round(time.perf_counter() - t0, 3)
    result.manifest = manifest
    if registry_dir is not None:
        spec_doc = None if spec is None else featureset.spec_document(spec)

        def write(tmp: Path) -> dict[str, Any]:
            write_artifact_files(tmp, model, fold_metrics, spec_doc)
            return manifest

        result.artifact = ModelRegistry(registry_dir).publish(config.name, write)
        result.manifest = result.artifact.manifest()
        log.info("model published", path=str(result.artifact.path))
    log.info(
        "training done",
        seconds=manifest["training_seconds"],
        oos_ic=result.overall()["ic"],
        baseline_ic=result.overall("baseline")["ic"],
    )
    return result


def _manifest(
    result: TrainResult,
    dataset: Dataset,
    config: ModelConfig,
    spec: FeatureConfig | None,
    seed: int,
    window: Window,
    source: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "run_id": run_id,
        "kind": config.kind,
        "task": task_of(config.label),
        "seed": seed,
        "label": config.label.model_dump(mode="json"),
        "validation": {**config.validation.model_dump(mode="json"), "window": window},
        "model_config": config.model_dump(mode="json", exclude={"registry_dir"}),
        "classes": None if result.model.classes_ is None else result.model.classes_.tolist(),
        "features": {
            "columns": result.feature_columns,
            "spec": None if spec is None else featureset.spec_document(spec),
            "spec_hash": None if spec is None else featureset.spec_hash(spec),
            "code_hash": featureset.code_hash() if spec is not None else None,
        },
        "data": data_summary(dataset, source),
        "metrics": {
            "overall": {
                role: overall_metrics(result.fold_metrics, role) for role in ("model", "baseline")
            },
            "folds": metrics_records(result.fold_metrics),
        },
        "libraries": library_versions(result.model),
    }


# --- prediction -------------------------------------------------------------------------


def check_feature_code(artifact: LoadedArtifact, allow_drift: bool = False) -> str | None:
    """Refuse (`FeatureDriftError`) if the feature code changed since training.

    Returns a warning text when drift is allowed and present, else None.
    """
    feats = artifact.manifest["features"]
    if feats.get("spec") is None:
        raise FeatureDriftError(
            f"{artifact.ref.name}:{artifact.ref.version} was trained on a prebuilt feature "
            "frame without a feature spec: its features cannot be recomputed from bars"
        )
    trained, current = feats["code_hash"], featureset.code_hash()
    if trained == current:
        return None
    msg = (
        f"feature code changed since {artifact.ref.name}:{artifact.ref.version} was trained "
        f"(code hash {trained[:12]} then, {current[:12]} now)"
    )
    if not allow_drift:
        raise FeatureDriftError(msg + "; retrain, or pass --allow-feature-drift to score anyway")
    return msg


def predict(
    artifact: LoadedArtifact | ArtifactRef,
    bars: pl.DataFrame,
    *,
    allow_feature_drift: bool = False,
    constants: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """Score every bar: ``open_time``, ``score`` (null where a feature is not yet known)
    and, for classifiers, one ``p_<class>`` column per class.

    ``constants``: input columns the feature spec does not compute, one value for every bar —
    a pooled model's symbol indicators (`tessera.models.pooled`)."""
    loaded = artifact if isinstance(artifact, LoadedArtifact) else load_artifact(artifact)
    warning = check_feature_code(loaded, allow_feature_drift)
    if warning:
        log.warning("scoring despite feature drift", detail=warning)
    spec_doc = loaded.manifest["features"]["spec"]
    spec = featureset.spec_from_document(spec_doc)
    if featureset.spec_hash(spec) != loaded.manifest["features"]["spec_hash"]:
        raise ValueError(f"{loaded.ref.path / FEATURES_FILE}: feature spec does not match its hash")
    feats = featureset.compute_features(bars, spec)
    if constants:
        feats = feats.with_columns(pl.lit(v, pl.Float64).alias(k) for k, v in constants.items())
    columns = loaded.feature_columns
    missing = [c for c in columns if c not in feats.columns]
    if missing:
        raise FeatureDriftError(f"the feature code no longer produces columns {missing}")
    x = feats.select(columns).cast(pl.Float64).to_numpy()
    # Rows with a feature still warming up were not trained on: no score, for every family.
    ok = np.isfinite(x).all(axis=1)
    out: dict[str, Any] = {OPEN_TIME: feats[OPEN_TIME]}
    score = np.full(len(x), np.nan)
    if ok.any():
        score[ok] = loaded.model.predict(x[ok])
    out["score"] = score
    if loaded.model.task == "classification":
        classes = loaded.manifest["classes"]
        proba = np.full((len(x), len(classes)), np.nan)
        if ok.any():
            proba[ok] = loaded.model.predict_proba(x[ok])
        for i, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, i]
    return pl.DataFrame(out).with_columns(pl.col("^(score|p_.*)$").fill_nan(None))
