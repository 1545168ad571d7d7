"""The supervised dataset a model is validated and trained on.

A *dataset frame* has one row per bar: ``open_time`` (UTC), one float column per feature,
``label`` (forward return, or a signed class), ``forward_return`` (what every score is judged
against, whatever the label) and ``event_end`` (UTC time at which the label is known).
:class:`Dataset` keeps the usable rows (every feature finite, label known) and the open
times of *all* bars, so that label intervals and embargoes are measured in bars even where
rows were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.models.splits import IntArray, event_end_positions

OPEN_TIME = "open_time"
LABEL = "label"
FORWARD_RETURN = "forward_return"
EVENT_END = "event_end"
NON_FEATURES = frozenset({OPEN_TIME, LABEL, FORWARD_RETURN, EVENT_END})

FloatArray = npt.NDArray[np.float64]


def _ns(col: pl.Series) -> IntArray:
    return col.dt.epoch("ns").to_numpy().astype(np.int64)


@dataclass(frozen=True)
class Dataset:
    """Usable rows of a dataset frame, with everything validation needs."""

    frame: pl.DataFrame
    feature_columns: list[str]
    bar_times: IntArray
    rows_total: int

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, feature_columns: list[str] | None = None) -> Dataset:
        """Validate ``frame`` and keep the rows whose features and label are all known."""
        missing = [c for c in (OPEN_TIME, LABEL, FORWARD_RETURN, EVENT_END) if c not in frame]
        if missing:
            raise ValueError(f"dataset frame lacks columns {missing}")
        cols = feature_columns or [c for c in frame.columns if c not in NON_FEATURES]
        if not cols:
            raise ValueError("dataset frame has no feature columns")
        unknown = [c for c in cols if c not in frame.columns]
        if unknown:
            raise ValueError(f"feature columns not in the frame: {unknown}")
        frame = frame.sort(OPEN_TIME)
        if frame[OPEN_TIME].is_duplicated().any():
            raise ValueError("dataset frame has duplicate open_time values")
        bar_times = _ns(frame[OPEN_TIME])
        usable = (
            pl.all_horizontal([pl.col(c).cast(pl.Float64).is_finite() for c in cols])
            .fill_null(False)
            .alias("_usable")
        )
        known = (
            pl.col(LABEL).is_not_null()
            & pl.col(LABEL).cast(pl.Float64).is_finite()
            & pl.col(FORWARD_RETURN).is_not_null()
            & pl.col(FORWARD_RETURN).is_finite()
            & pl.col(EVENT_END).is_not_null()
        ).fill_null(False)
        kept = frame.filter(usable & known).select(
            OPEN_TIME, *cols, LABEL, FORWARD_RETURN, EVENT_END
        )
        if kept.is_empty():
            raise ValueError("no row has every feature and the label known")
        return cls(kept, list(cols), bar_times, len(frame))

    def __len__(self) -> int:
        return len(self.frame)

    def features(self) -> FloatArray:
        return self.frame.select(self.feature_columns).cast(pl.Float64).to_numpy()

    def labels(self) -> npt.NDArray[np.float64]:
        return self.frame[LABEL].cast(pl.Float64).to_numpy()

    def forward_returns(self) -> FloatArray:
        return self.frame[FORWARD_RETURN].cast(pl.Float64).to_numpy()

    def open_times_ns(self) -> IntArray:
        return _ns(self.frame[OPEN_TIME])

    def start_positions(self) -> IntArray:
        """Bar position of each row (positions count every bar, dropped rows included)."""
        return np.searchsorted(self.bar_times, self.open_times_ns()).astype(np.int64)

    def end_positions(self) -> IntArray:
        """Bar position at which each row's label is known."""
        start = self.start_positions()
        return event_end_positions(self.bar_times, _ns(self.frame[EVENT_END]), start)
