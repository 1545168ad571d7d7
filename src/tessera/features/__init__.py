"""Features: one definition per feature, a batch execution (polars) and an incremental one (live).

>>> from tessera.features import build_features, IncrementalFeatures

The names load on first use (PEP 562) and the built-in features register when a feature is
first looked up (`registered`, `make_feature`), so importing the package — the CLI does —
pulls neither polars nor the feature library in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.lazy import lazy_getattr

if TYPE_CHECKING:
    from tessera.features.base import (
        Feature,
        FeatureError,
        IncrementalFeature,
        make_feature,
        make_features,
        register_feature,
        registered,
    )
    from tessera.features.engine import (
        IncrementalFeatures,
        build_features,
        prepare_bars,
        run_incremental,
    )

__all__ = [
    "Feature",
    "FeatureError",
    "IncrementalFeature",
    "IncrementalFeatures",
    "build_features",
    "make_feature",
    "make_features",
    "prepare_bars",
    "register_feature",
    "registered",
    "run_incremental",
]

_ENGINE = {"IncrementalFeatures", "build_features", "prepare_bars", "run_incremental"}
__getattr__ = lazy_getattr(
    __name__,
    {n: "tessera.features.engine" if n in _ENGINE else "tessera.features.base" for n in __all__},
)
