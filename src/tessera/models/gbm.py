"""LightGBM, the default model family (native API: scikit-learn is not a dependency).

Reproducible by construction: ``deterministic`` with ``force_row_wise`` (LightGBM's
documented recipe), every seed derived from one ``seed``, and a fixed thread count — the
histogram sums are floating-point, so their order, and thus the trees, depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from tessera.config.models import LightGBMParams
from tessera.models.base import FloatArray, Model, Task

# Fixed, not os.cpu_count(): the same config must give the same model on any machine. One
# thread: at ~45k rows the histograms are tiny, and on a 2-core box with another busy process
# two OpenMP threads measured 4-8x *slower* than one (spin-waiting on the shared core).
LIGHTGBM_THREADS = 1
_MODEL_FILE = "lightgbm.txt"


class LightGBMModel(Model):
    kind = "lightgbm"

    def __init__(
        self,
        task: Task,
        params: LightGBMParams | None = None,
        seed: int = 42,
        num_threads: int = LIGHTGBM_THREADS,
    ) -> None:
        super().__init__(task)
        self.params = params or LightGBMParams()
        self.seed = seed
        self.num_threads = num_threads
        self.booster: Any = None  # lightgbm.Booster, imported lazily (1.5 s import)

    def native_params(self, n_classes: int = 0) -> dict[str, Any]:
        """The parameters handed to ``lightgbm.train``."""
        p = self.params
        out: dict[str, Any] = {
            "boosting_type": "gbdt",
            "num_leaves": p.num_leaves,
            "learning_rate": p.learning_rate,
            "min_data_in_leaf": p.min_child_samples,
            "bagging_fraction": p.subsample,
            # bagging_fraction does nothing unless bagging is on: resample every iteration.
            "bagging_freq": 1 if p.subsample < 1 else 0,
            "feature_fraction": p.colsample_bytree,
            "lambda_l2": p.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }
        if self.task == "regression":
            out["objective"] = "regression"
        elif n_classes == 2:
            out["objective"] = "binary"
        else:
            out["objective"] = "multiclass"
            out["num_class"] = n_classes
        return out

    def fit(self, features: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        import lightgbm as lgb

        x, target = self._prepare_fit(features, y)
        n_classes = 0 if self.classes_ is None else len(self.classes_)
        params = self.native_params(n_classes)
        data = lgb.Dataset(x, label=target, params={"verbosity": -1})
        self.booster = lgb.train(params, data, num_boost_round=self.params.n_estimators)
        return self

    def _raw(self, x: FloatArray) -> FloatArray:
        if self.booster is None:
            raise RuntimeError("predict() before fit()")
        return np.asarray(self.booster.predict(x, num_threads=self.num_threads), np.float64)

    def _predict_value(self, x: FloatArray) -> FloatArray:
        return self._raw(x)

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        raw = self._raw(x)
        if raw.ndim == 1:  # binary objective: P(second class)
            return np.column_stack([1.0 - raw, raw])
        return raw

    def feature_importance(self) -> FloatArray:
        """Total split gain of each feature (column order of the features)."""
        if self.booster is None:
            raise RuntimeError("not fitted")
        return np.asarray(self.booster.feature_importance("gain"), dtype=np.float64)

    def _save_state(self, directory: Path) -> dict[str, Any]:
        if self.booster is None:
            raise RuntimeError("save() before fit()")
        self.booster.save_model(str(directory / _MODEL_FILE))
        return {
            "params": self.params.model_dump(),
            "seed": self.seed,
            "num_threads": self.num_threads,
            "file": _MODEL_FILE,
        }

    @classmethod
    def _from_state(cls, directory: Path, meta: dict[str, Any]) -> Self:
        import lightgbm as lgb

        model = cls(
            meta["task"],
            LightGBMParams.model_validate(meta["params"]),
            seed=int(meta["seed"]),
            num_threads=int(meta["num_threads"]),
        )
        model.booster = lgb.Booster(model_file=str(directory / meta["file"]))
        return model
