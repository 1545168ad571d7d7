"""Features: one definition per feature, a batch execution (polars) and an incremental one (live).

>>> from tessera.features import build_features, IncrementalFeatures
"""

from tessera.features import library as _library  # noqa: F401  (registers the built-ins)
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
