"""Models, leak-free validation and the local model registry.

Notebook API::

    from tessera.models import train, predict
    result = train(bars, ModelConfig(kind="lightgbm"), registry_dir=Path("data/models"))
    result.fold_metrics          # polars: model vs baseline, per fold and pooled
    predict(result.artifact, new_bars)

Importing this package is cheap: its names load on first use (PEP 562), so that the CLI's
`tessera.models.cli` does not pull polars in with the package; LightGBM and torch are imported
when a model is fitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.lazy import lazy_getattr

if TYPE_CHECKING:
    from tessera.models.artifacts import LoadedArtifact, load_artifact
    from tessera.models.base import Model, Task
    from tessera.models.dataset import Dataset
    from tessera.models.factory import load_model, make_baseline, make_model, task_of
    from tessera.models.gbm import LightGBMModel
    from tessera.models.linear import LinearModel
    from tessera.models.mlp import MLPModel
    from tessera.models.pipeline import FeatureDriftError, TrainResult, predict, train
    from tessera.models.registry import ArtifactRef, ModelRegistry, RegistryError
    from tessera.models.splits import Split, purged_kfold_splits, walk_forward_splits
    from tessera.models.training import cross_validate

__all__ = [
    "ArtifactRef",
    "Dataset",
    "FeatureDriftError",
    "LightGBMModel",
    "LinearModel",
    "LoadedArtifact",
    "MLPModel",
    "Model",
    "ModelRegistry",
    "RegistryError",
    "Split",
    "Task",
    "TrainResult",
    "cross_validate",
    "load_artifact",
    "load_model",
    "make_baseline",
    "make_model",
    "predict",
    "purged_kfold_splits",
    "task_of",
    "train",
    "walk_forward_splits",
]

_WHERE = {
    "LoadedArtifact": "tessera.models.artifacts",
    "load_artifact": "tessera.models.artifacts",
    "Model": "tessera.models.base",
    "Task": "tessera.models.base",
    "Dataset": "tessera.models.dataset",
    "load_model": "tessera.models.factory",
    "make_baseline": "tessera.models.factory",
    "make_model": "tessera.models.factory",
    "task_of": "tessera.models.factory",
    "LightGBMModel": "tessera.models.gbm",
    "LinearModel": "tessera.models.linear",
    "MLPModel": "tessera.models.mlp",
    "FeatureDriftError": "tessera.models.pipeline",
    "TrainResult": "tessera.models.pipeline",
    "predict": "tessera.models.pipeline",
    "train": "tessera.models.pipeline",
    "ArtifactRef": "tessera.models.registry",
    "ModelRegistry": "tessera.models.registry",
    "RegistryError": "tessera.models.registry",
    "Split": "tessera.models.splits",
    "purged_kfold_splits": "tessera.models.splits",
    "walk_forward_splits": "tessera.models.splits",
    "cross_validate": "tessera.models.training",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
