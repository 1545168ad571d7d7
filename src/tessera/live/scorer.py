"""`ModelScorer`: a registered model applied to features computed bar by bar in the live bot.

The features are the research library's, computed incrementally (`IncrementalFeatures`), so
the live scores equal the backtest's on the same bars; a model whose feature code changed
since it was trained is said at load (`check_feature_code`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tessera.logging import get_logger
from tessera.strategies.base import Bar

log = get_logger(__name__)


def bar_row(bar: Bar) -> dict[str, Any]:
    """A `Bar` as the feature library's row mapping."""
    return {
        "open_time": datetime.fromtimestamp(bar.open_time / 1e9, UTC),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "quote_volume": bar.quote_volume,
        "taker_buy_base": bar.taker_buy_volume,
    }


class ModelScorer:
    """A registered model applied to incrementally computed features, one state per symbol."""

    def __init__(self, ref: str, registry_dir: Path, symbols: Sequence[str]) -> None:
        from tessera.features.engine import IncrementalFeatures
        from tessera.models import load_artifact
        from tessera.models.featureset import spec_from_document
        from tessera.models.pipeline import check_feature_code
        from tessera.models.registry import ModelRegistry

        self.artifact = load_artifact(ModelRegistry(registry_dir).resolve_ref(ref))
        warning = check_feature_code(self.artifact)
        if warning:
            log.warning("model features drifted", detail=warning)
        spec = spec_from_document(self.artifact.manifest["features"]["spec"])
        self.columns = self.artifact.feature_columns
        self.states = {s: IncrementalFeatures(spec) for s in symbols}
        self.warmup = next(iter(self.states.values())).warmup if self.states else 0
        self.name = f"{self.artifact.ref.name}:{self.artifact.ref.version}"

    def update(self, bar: Bar) -> tuple[dict[str, float], float | None]:
        import math

        import numpy as np

        feats = self.states[bar.symbol].update(bar_row(bar))
        x = [feats.get(c, math.nan) for c in self.columns]
        if not all(math.isfinite(v) for v in x):
            return feats, None
        score = self.artifact.model.predict_row(np.asarray(x, dtype=np.float64))
        return feats, score
