"""Model families by name: build one from a `ModelConfig`, load any saved one."""

from __future__ import annotations

from pathlib import Path

from tessera.config.models import LabelConfig, ModelConfig
from tessera.models.base import Model, Task, read_meta
from tessera.models.gbm import LightGBMModel
from tessera.models.linear import LinearModel
from tessera.models.mlp import MLPModel

FAMILIES: dict[str, type[Model]] = {
    LightGBMModel.kind: LightGBMModel,
    MLPModel.kind: MLPModel,
    LinearModel.kind: LinearModel,
}


def task_of(label: LabelConfig) -> Task:
    """Forward returns are regressed; sign and triple-barrier labels are classes."""
    return "regression" if label.kind == "forward_return" else "classification"


def make_model(config: ModelConfig, seed: int, kind: str | None = None) -> Model:
    """A fresh model of ``kind`` (default ``config.kind``) for ``config``'s label."""
    kind = kind or config.kind
    task = task_of(config.label)
    if kind == "lightgbm":
        return LightGBMModel(task, config.lightgbm, seed=seed)
    if kind == "mlp":
        return MLPModel(task, config.mlp, seed=seed)
    if kind == "linear":
        return LinearModel(task, alpha=config.linear.alpha)
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(sorted(FAMILIES))}")


def make_baseline(config: ModelConfig) -> Model:
    """The linear/logistic baseline every model is compared with."""
    return LinearModel(task_of(config.label), alpha=config.linear.alpha)


def load_model(directory: Path) -> Model:
    """Load whichever family ``directory`` holds (named in its model.json)."""
    kind = read_meta(directory)["kind"]
    if kind not in FAMILIES:
        raise ValueError(f"{directory}: unknown model kind {kind!r}")
    return FAMILIES[kind].load(directory)
