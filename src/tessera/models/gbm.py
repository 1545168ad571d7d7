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
from tessera.models.base import FloatArray, Model, Task, score_from_proba

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
        self._fast: _SingleRowPredictor | None = None

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

    def predict_row(self, row: npt.ArrayLike) -> float:
        """LightGBM's prepared single-row predictor: the live bot scores one row per bar, and
        ``Booster.predict`` rebuilds its predictor on every call (measured ~400 µs per call
        from a cold cache against ~130 µs this way; ~20 µs against ~4 µs hot)."""
        if self.booster is None:
            raise RuntimeError("predict() before fit()")
        if self._fast is None:
            self._fast = _SingleRowPredictor(self.booster, int(self.n_features_ or 0))
        out = self._fast.predict(np.asarray(row, dtype=np.float64).reshape(-1))
        if self.task == "regression":
            return float(out[0])
        proba = np.column_stack([1.0 - out, out]) if len(out) == 1 else out.reshape(1, -1)
        return float(score_from_proba(proba, self._classes())[0])

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


class _SingleRowPredictor:
    """``LGBM_BoosterPredictForMatSingleRowFast``: a predictor prepared once per booster."""

    def __init__(self, booster: Any, n_features: int) -> None:
        import ctypes
        import importlib

        # LightGBM's own ctypes handles (private names, stable across 3.x and 4.x)
        basic = importlib.import_module("lightgbm.basic")
        lib: Any = basic._LIB
        c_str: Any = basic._c_str
        safe_call: Any = basic._safe_call

        self._lib = lib
        self._booster = booster  # keeps the booster (and its handle) alive
        self.n_features = n_features
        n_out = max(int(booster.num_model_per_iteration()), 1)
        self._row = np.zeros(n_features, dtype=np.float64)
        self._out = np.zeros(n_out, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._handle = ctypes.c_void_p()
        safe_call(
            lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(n_features),
                c_str("num_threads=1"),
                ctypes.byref(self._handle),
            )
        )
        self._args = (
            self._handle,
            self._row.ctypes.data_as(ctypes.c_void_p),
            ctypes.byref(self._out_len),
            self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
        self._safe_call = safe_call

    def predict(self, row: FloatArray) -> FloatArray:
        if row.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} features, got {row.shape}")
        self._row[:] = row
        self._safe_call(self._lib.LGBM_BoosterPredictForMatSingleRowFast(*self._args))
        return self._out.copy()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.LGBM_FastConfigFree(handle)
