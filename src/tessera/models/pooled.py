"""One model trained across several symbols ("pooled"), and its scores for each symbol.

Why pool: a daily model of one coin has a few hundred to a couple of thousand rows; the same
features on several coins give it several times that, and the cross-sectional strategy
(`tessera.strategies.cross_sectional`) ranks the coins by one model's scores, which is only
meaningful if one model scored them all.

How, and what keeps it honest:

* **Features and labels per symbol.** `pooled_dataset` builds each symbol's dataset frame on
  its own bars (`featureset.build_dataset_frame`, the single-symbol code), so no rolling window
  and no forward-return label reaches from one symbol's bars into another's. The frames are
  then stacked, sorted by time (and symbol within a time).
* **Time-ordered validation.** The splitters (`models.splits`) work on bar positions. Pooled,
  each bar time has one position per symbol: row ``(t, s)`` sits at ``t * S + s`` and its
  label is known at the end of ``event_end * S + S - 1`` (after every symbol's row of that
  bar). So a test fold spans whole bar times, and a training row of *any* symbol whose label
  interval overlaps the fold is purged — the same-day row of another coin (strongly correlated)
  cannot train a fold that tests that day. As positions are S per bar, ``embargo_bars`` and
  ``min_train_bars`` are multiplied by S before the splits are made, keeping their meaning in
  bars (the artifact's manifest records the multiplied values and says so in its source).
* **Reuse.** Training, validation against the linear baseline, the manifest and publishing are
  `pipeline.train`'s, given the pooled `Dataset`; scoring is `pipeline.predict`'s per symbol.
* **Symbol as a feature** (``symbol_feature=True``): one 0/1 column per symbol,
  ``symbol_is_<SYMBOL>``, lets the model learn per-coin offsets. One-hot, not an integer code:
  the linear baseline, validated side by side on the same columns, would read a code as an
  order between coins; and the column names alone tell the scorer which symbols the model
  knows (a model with symbol columns refuses to score a symbol it was not trained on). Without
  it the model is symbol-agnostic and scores any symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.config.models import FeatureConfig, LabelConfig, ModelConfig
from tessera.models import featureset
from tessera.models.artifacts import LoadedArtifact, load_artifact
from tessera.models.dataset import EVENT_END, OPEN_TIME, Dataset
from tessera.models.pipeline import TrainResult, predict, train
from tessera.models.registry import ArtifactRef, ModelRegistry
from tessera.models.splits import IntArray, Window, event_end_positions
from tessera.models.training import ProgressFn

F64 = npt.NDArray[np.float64]
SYMBOL = "symbol"
SYMBOL_PREFIX = "symbol_is_"


@dataclass(frozen=True)
class PooledDataset(Dataset):
    """A `Dataset` of several symbols' rows, sorted by (time, symbol), with the position grid
    of S positions per bar time that the splitters need (see the module docstring).

    ``frame`` carries a ``symbol`` column (not a feature); ``bar_times`` are the union of the
    symbols' bar open times."""

    symbols: tuple[str, ...] = ()

    def _time_index(self) -> IntArray:
        return np.searchsorted(self.bar_times, self.open_times_ns()).astype(np.int64)

    def _symbol_index(self) -> IntArray:
        index = {s: k for k, s in enumerate(self.symbols)}
        return np.asarray([index[s] for s in self.frame[SYMBOL].to_list()], dtype=np.int64)

    def start_positions(self) -> IntArray:
        return self._time_index() * len(self.symbols) + self._symbol_index()

    def end_positions(self) -> IntArray:
        event_end = self.frame[EVENT_END].dt.epoch("ns").to_numpy().astype(np.int64)
        ends = event_end_positions(self.bar_times, event_end, self._time_index())
        n = len(self.symbols)
        return ends * n + (n - 1)

    def rows_of(self, symbol: str) -> int:
        return int((self.frame[SYMBOL] == symbol).sum())


def symbol_columns(symbols: list[str] | tuple[str, ...]) -> list[str]:
    return [f"{SYMBOL_PREFIX}{s}" for s in symbols]


def pooled_dataset(
    frames: Mapping[str, pl.DataFrame],
    features: FeatureConfig,
    label: LabelConfig,
    symbol_feature: bool = False,
) -> PooledDataset:
    """The pooled dataset of ``frames`` (symbol -> OHLCV bars with ``open_time``): features
    and labels computed per symbol, rows with every feature and the label known, stacked and
    sorted by (time, symbol); with ``symbol_feature``, one 0/1 ``symbol_is_<S>`` column per
    symbol. Symbols are taken in name order (the one-hot columns' order)."""
    if not frames:
        raise ValueError("a pooled dataset needs at least one symbol")
    symbols = tuple(sorted(frames))
    onehot = symbol_columns(symbols) if symbol_feature else []
    parts: list[pl.DataFrame] = []
    times: list[IntArray] = []
    columns: list[str] | None = None
    total = 0
    for symbol in symbols:
        frame, cols = featureset.build_dataset_frame(frames[symbol], features, label)
        try:
            ds = Dataset.from_frame(frame, cols)
        except ValueError as exc:
            raise ValueError(f"{symbol}: {exc}") from None
        if columns is None:
            columns = cols
        elif cols != columns:  # the same spec gives the same columns: a guard, not expected
            raise ValueError(f"{symbol}: feature columns differ from {symbols[0]}'s")
        part = ds.frame.with_columns(pl.lit(symbol).alias(SYMBOL))
        if onehot:
            part = part.with_columns(
                pl.lit(1.0 if name == f"{SYMBOL_PREFIX}{symbol}" else 0.0).alias(name)
                for name in onehot
            )
        parts.append(part)
        times.append(ds.bar_times)
        total += ds.rows_total
    assert columns is not None
    stacked = pl.concat(parts, how="vertical").sort(OPEN_TIME, SYMBOL)
    return PooledDataset(
        frame=stacked,
        feature_columns=[*columns, *onehot],
        bar_times=np.unique(np.concatenate(times)),
        rows_total=total,
        symbols=symbols,
    )


def pooled_validation(config: ModelConfig, n_symbols: int) -> ModelConfig:
    """``config`` with ``embargo_bars`` and ``min_train_bars`` in pooled positions (S per bar)."""
    v = config.validation
    scaled = v.model_copy(
        update={
            "embargo_bars": v.embargo_bars * n_symbols,
            "min_train_bars": v.min_train_bars * n_symbols,
        }
    )
    return config.model_copy(update={"validation": scaled})


def train_pooled(
    bars: Mapping[str, pl.DataFrame],
    config: ModelConfig,
    *,
    features: FeatureConfig | None = None,
    symbol_feature: bool = False,
    seed: int = 42,
    registry_dir: Path | None = None,
    window: Window = "expanding",
    source: str | None = None,
    run_id: str | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train (validate against the baseline, fit on all rows) and publish one model across
    ``bars`` (symbol -> OHLCV bars), as `pipeline.train` does for one symbol.

    What ``tessera train --symbol A --symbol B [--symbol-feature]`` calls. ``features``
    default `FeatureConfig()`; ``config.validation``'s bar counts keep their meaning in bars
    (see `pooled_validation`). ``source`` is recorded in the manifest after a line naming the
    symbols, their rows and the symbol feature."""
    spec = features or FeatureConfig()
    dataset = pooled_dataset(bars, spec, config.label, symbol_feature)
    n = len(dataset.symbols)
    described = (
        f"pooled over {', '.join(f'{s} ({dataset.rows_of(s)} rows)' for s in dataset.symbols)}; "
        f"symbol feature: {'one-hot' if symbol_feature else 'none'}; validation positions "
        f"are {n} per bar (embargo_bars and min_train_bars x{n})"
    )
    return train(
        dataset,
        pooled_validation(config, n),
        features=spec,
        seed=seed,
        registry_dir=registry_dir,
        window=window,
        source=f"{described}; {source}" if source else described,
        run_id=run_id,
        progress=progress,
    )


def model_symbols(artifact: LoadedArtifact) -> list[str]:
    """The symbols a model with symbol columns was trained on (empty: symbol-agnostic)."""
    return [
        c.removeprefix(SYMBOL_PREFIX)
        for c in artifact.feature_columns
        if c.startswith(SYMBOL_PREFIX)
    ]


def pooled_scores(
    model: str | ArtifactRef | LoadedArtifact,
    frames: Mapping[str, pl.DataFrame],
    registry_dir: Path | None = None,
    *,
    allow_feature_drift: bool = False,
) -> dict[str, F64]:
    """Each symbol's scores, aligned to its frame's rows (NaN while a feature warms up), for
    `BarSeries.with_predictions` — the pooled counterpart of
    `tessera.backtest.walkforward.scores_from_model`.

    ``model``: a registry reference ``NAME[:VERSION]`` (needs ``registry_dir``), an
    `ArtifactRef` or a loaded artifact. A model trained with symbol columns scores only the
    symbols it knows (``ValueError`` naming them otherwise); a symbol-agnostic one scores any.
    """
    if isinstance(model, str):
        if registry_dir is None:
            raise ValueError(f"model {model!r} by name needs the registry directory")
        model = ModelRegistry(registry_dir).resolve_ref(model)
    loaded = model if isinstance(model, LoadedArtifact) else load_artifact(model)
    known = model_symbols(loaded)
    unknown = sorted(set(frames) - set(known)) if known else []
    if unknown:
        raise ValueError(
            f"model {loaded.ref.name}:{loaded.ref.version} was trained with the symbol as a "
            f"feature on {', '.join(known)}; it cannot score {', '.join(unknown)}"
        )
    out: dict[str, F64] = {}
    for symbol, bars in frames.items():
        constants = {c: float(c == f"{SYMBOL_PREFIX}{symbol}") for c in symbol_columns(known)}
        preds = predict(
            loaded, bars, allow_feature_drift=allow_feature_drift, constants=constants or None
        )
        out[symbol] = preds["score"].fill_null(np.nan).to_numpy().astype(np.float64)
    return out
