"""Out-of-sample splitters that do not leak: walk-forward and purged k-fold with embargo.

Pure functions over bar positions. Row ``i`` is a sample whose features are known at bar
``start[i]`` and whose label is only known at bar ``end[i]`` (``start + horizon`` for a
forward return, the first barrier touch for a triple-barrier label). Its *label interval* is
``[start[i], end[i]]``. Positions are bar numbers, not row numbers, so that rows dropped for
warm-up or missing labels do not shrink an embargo measured in bars.

Two leaks are closed here (López de Prado, *Advances in Financial Machine Learning*, ch. 7):

* **purging** — a training row whose label interval overlaps the interval a test fold spans
  was labelled with prices from the test period; it is removed;
* **embargo** — features look back in time, so training rows just *after* a test fold are
  computed from test-period bars; ``embargo_bars`` bars after the end of each test fold's
  last label interval are removed from training too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
Window = Literal["expanding", "rolling"]


@dataclass(frozen=True, slots=True)
class Split:
    """One fold: row indices (into the arrays given to the splitter) to train and test on."""

    fold: int
    train: IntArray
    test: IntArray


def _check(start: npt.ArrayLike, end: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    s = np.asarray(start, dtype=np.int64)
    e = np.asarray(end, dtype=np.int64)
    if s.ndim != 1 or s.shape != e.shape:
        raise ValueError("start and end must be 1-d arrays of the same length")
    if len(s) and np.any(np.diff(s) <= 0):
        raise ValueError("start positions must be strictly increasing (one row per bar)")
    if np.any(e < s):
        raise ValueError("every label must end at or after its start")
    return s, e


def purge_mask(
    start: IntArray, end: IntArray, test: IntArray, embargo_bars: int = 0
) -> npt.NDArray[np.bool_]:
    """Rows that may train against ``test``: not in it, no label overlap, not embargoed.

    The test fold spans ``[min start, max end]`` of its rows; a row overlaps it when
    ``start <= max end`` and ``end >= min start``. Rows starting within ``embargo_bars`` bars
    after ``max end`` are embargoed.
    """
    keep = np.ones(len(start), dtype=bool)
    if len(test) == 0:
        return keep
    keep[test] = False
    test_start = int(start[test].min())
    test_end = int(end[test].max())
    keep &= ~((start <= test_end) & (end >= test_start))
    keep &= ~((start > test_end) & (start <= test_end + embargo_bars))
    return keep


def walk_forward_splits(
    start: npt.ArrayLike,
    end: npt.ArrayLike,
    n_splits: int,
    min_train_bars: int,
    *,
    window: Window = "expanding",
) -> list[Split]:
    """Train on the past, test on the next block, ``n_splits`` times.

    The rows after the first ``min_train_bars`` usable training rows are cut into
    ``n_splits`` contiguous test blocks. Fold ``k`` trains on every earlier row whose label is
    known before the block starts (its label interval is purged otherwise) — all of them
    (``expanding``) or the last ``min_train_bars`` of them (``rolling``). No training row
    follows a test row, so no embargo is needed.
    """
    s, e = _check(start, end)
    if n_splits < 1 or min_train_bars < 1:
        raise ValueError("n_splits and min_train_bars must be positive")
    n = len(s)
    # First test row: the earliest at which min_train_bars earlier labels are already known.
    first = min_train_bars
    while first < n and int(np.count_nonzero(e[:first] < s[first])) < min_train_bars:
        first += 1
    if n - first < n_splits:
        raise ValueError(
            f"{n} rows cannot give {min_train_bars} training rows and {n_splits} test folds"
        )
    splits = []
    for k, block in enumerate(np.array_split(np.arange(first, n, dtype=np.int64), n_splits)):
        lo = int(block[0])
        train = np.flatnonzero(e[:lo] < s[lo]).astype(np.int64)
        if window == "rolling":
            train = train[-min_train_bars:]
        splits.append(Split(fold=k, train=train, test=block))
    return splits


def purged_kfold_splits(
    start: npt.ArrayLike, end: npt.ArrayLike, n_splits: int, embargo_bars: int = 0
) -> list[Split]:
    """K contiguous test folds; train on every other row after purging and embargo.

    Unlike walk-forward, training rows may come after the test fold: that is what the
    embargo is for. Every row is tested exactly once.
    """
    s, e = _check(start, end)
    if not 2 <= n_splits <= len(s):
        raise ValueError(f"n_splits must be in [2, {len(s)}], got {n_splits}")
    if embargo_bars < 0:
        raise ValueError("embargo_bars must be >= 0")
    splits = []
    for k, test in enumerate(np.array_split(np.arange(len(s), dtype=np.int64), n_splits)):
        train = np.flatnonzero(purge_mask(s, e, test, embargo_bars)).astype(np.int64)
        splits.append(Split(fold=k, train=train, test=test))
    return splits


def event_end_positions(
    open_time: npt.ArrayLike, event_end: npt.ArrayLike, start: npt.ArrayLike | None = None
) -> IntArray:
    """Bar positions of label end times: the last bar opening at or before each end time.

    ``open_time`` are the bars' open times (sorted, any integer unit, e.g. ns); ``event_end``
    the label end times in the same unit. ``start`` (positions) keeps each end at or after
    its start, for labels that end within their own bar.
    """
    times = np.asarray(open_time, dtype=np.int64)
    ends = np.asarray(event_end, dtype=np.int64)
    pos = np.searchsorted(times, ends, side="right").astype(np.int64) - 1
    if start is not None:
        pos = np.maximum(pos, np.asarray(start, dtype=np.int64))
    return pos
