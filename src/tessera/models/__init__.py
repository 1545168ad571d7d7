"""Models, leak-free validation and the local model registry.

Notebook API::

    from tessera.models import train, predict
    result = train(bars, ModelConfig(kind="lightgbm"), registry_dir=Path("data/models"))
    result.fold_metrics          # polars: model vs baseline, per fold and pooled
    predict(result.artifact, new_bars)

Importing this package is cheap: LightGBM and torch are imported when a model is fitted.
"""

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
