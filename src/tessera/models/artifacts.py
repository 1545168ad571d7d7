"""What goes into a model artifact besides the model: the manifest, and loading it back.

An artifact directory holds ``model/`` (the family's own files), ``features.json`` (the
feature spec to recompute the inputs with), ``folds.parquet`` (the per-fold metrics) and
``manifest.json``: kind, task, label, model and validation configs, seed, feature spec hash
and feature *code* hash, data range and digest, metrics, library versions.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tessera import __version__
from tessera.models.base import Model
from tessera.models.dataset import Dataset
from tessera.models.factory import load_model
from tessera.models.registry import ArtifactRef

MANIFEST_FORMAT = 1
MODEL_DIR = "model"
FEATURES_FILE = "features.json"
FOLDS_FILE = "folds.parquet"
_LIBRARIES = ("numpy", "polars", "pyarrow", "lightgbm", "torch")


def library_versions(model: Model) -> dict[str, str]:
    """Versions of what shapes the results; torch only if it was used (or is loaded)."""
    out = {"tessera": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        if name == "torch" and model.kind != "mlp":
            continue
        if name == "lightgbm" and model.kind != "lightgbm":
            continue
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "not installed"
    return out


def dataset_digest(dataset: Dataset) -> str:
    """sha256 of the exact rows trained on: times, feature values and labels."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(dataset.open_times_ns()).tobytes())
    h.update(np.ascontiguousarray(dataset.features()).tobytes())
    h.update(np.ascontiguousarray(dataset.labels()).tobytes())
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None  # JSON has no NaN
    return value


def metrics_records(fold_metrics: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in fold_metrics.to_dicts()]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def data_summary(dataset: Dataset, source: str | None) -> dict[str, Any]:
    times = dataset.open_times_ns()
    return {
        "source": source,
        "bars": dataset.rows_total,
        "rows_used": len(dataset),
        "first_bar": _iso(int(dataset.bar_times[0])),
        "last_bar": _iso(int(dataset.bar_times[-1])),
        "first_row": _iso(int(times[0])),
        "last_row": _iso(int(times[-1])),
        "sha256": dataset_digest(dataset),
    }


def write_artifact_files(
    directory: Path,
    model: Model,
    fold_metrics: pl.DataFrame,
    feature_spec: dict[str, Any] | None,
) -> None:
    model.save(directory / MODEL_DIR)
    fold_metrics.write_parquet(directory / FOLDS_FILE)
    if feature_spec is not None:
        (directory / FEATURES_FILE).write_text(json.dumps(feature_spec, indent=2) + "\n")


@dataclass(frozen=True)
class LoadedArtifact:
    ref: ArtifactRef
    manifest: dict[str, Any]
    model: Model

    @property
    def feature_columns(self) -> list[str]:
        cols: list[str] = self.manifest["features"]["columns"]
        return cols

    def fold_metrics(self) -> pl.DataFrame:
        return pl.read_parquet(self.ref.path / FOLDS_FILE)


def load_artifact(ref: ArtifactRef) -> LoadedArtifact:
    manifest = ref.manifest()
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{ref.path}: manifest format {manifest.get('format')} not supported")
    return LoadedArtifact(ref, manifest, load_model(ref.path / MODEL_DIR))
