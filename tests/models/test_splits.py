"""The splitters never leak: checked directly, pair by pair, on random label intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.models.splits import (
    Split,
    event_end_positions,
    purge_mask,
    purged_kfold_splits,
    walk_forward_splits,
)


@st.composite
def label_intervals(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Rows on strictly increasing bar positions (gaps = dropped rows), random label spans."""
    n = draw(st.integers(min_value=4, max_value=120))
    gaps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    start = np.cumsum(gaps).astype(np.int64)
    spans = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    return start, start + np.asarray(spans, dtype=np.int64)


def _overlaps(start: np.ndarray, end: np.ndarray, i: int, j: int) -> bool:
    return bool(start[i] <= end[j] and start[j] <= end[i])


def _assert_no_leak(start: np.ndarray, end: np.ndarray, split: Split, embargo: int) -> None:
    train, test = set(split.train.tolist()), set(split.test.tolist())
    assert not train & test
    test_end = int(end[split.test].max())
    for i in split.train:
        for j in split.test:
            assert not _overlaps(start, end, int(i), int(j)), (int(i), int(j))
        # Embargo: no training row starts within `embargo` bars after the test labels end.
        assert not test_end < start[i] <= test_end + embargo


@settings(max_examples=300, deadline=None)
@given(data=label_intervals(), k=st.integers(2, 6), embargo=st.integers(0, 10))
def test_purged_kfold_never_leaks(
    data: tuple[np.ndarray, np.ndarray], k: int, embargo: int
) -> None:
    start, end = data
    k = min(k, len(start))
    splits = purged_kfold_splits(start, end, k, embargo)
    assert len(splits) == k
    # Every row is tested exactly once, in contiguous, ordered folds.
    tested = np.concatenate([s.test for s in splits])
    assert tested.tolist() == list(range(len(start)))
    for s in splits:
        _assert_no_leak(start, end, s, embargo)
        # Purging is not over-eager: every row it removed really overlaps or is embargoed.
        test_start, test_end = start[s.test].min(), end[s.test].max()
        for i in set(range(len(start))) - set(s.train.tolist()) - set(s.test.tolist()):
            overlap = any(_overlaps(start, end, i, int(j)) for j in s.test)
            embargoed = test_end < start[i] <= test_end + embargo
            spans_fold = start[i] <= test_end and end[i] >= test_start
            assert overlap or embargoed or spans_fold, i


@settings(max_examples=300, deadline=None)
@given(
    data=label_intervals(),
    k=st.integers(1, 5),
    min_train=st.integers(1, 40),
    rolling=st.booleans(),
)
def test_walk_forward_trains_only_on_known_past(
    data: tuple[np.ndarray, np.ndarray], k: int, min_train: int, rolling: bool
) -> None:
    start, end = data
    window = "rolling" if rolling else "expanding"
    try:
        splits = walk_forward_splits(start, end, k, min_train, window=window)
    except ValueError:
        # Only when there is genuinely no room: fewer test rows than folds.
        first = min_train
        while first < len(start) and np.count_nonzero(end[:first] < start[first]) < min_train:
            first += 1
        assert len(start) - first < k
        return
    assert len(splits) == k
    previous_test_end = -1
    for s in splits:
        _assert_no_leak(start, end, s, embargo=0)
        # Every training label is known before the first test bar; tests move forward.
        assert (end[s.train] < start[s.test].min()).all()
        assert s.test.min() > previous_test_end
        previous_test_end = int(s.test.max())
        assert len(s.train) >= min_train
        if rolling:
            assert len(s.train) == min_train
    # Test folds are contiguous and cover everything after the first one starts.
    tested = np.concatenate([s.test for s in splits])
    assert tested.tolist() == list(range(int(tested[0]), len(start)))


def test_walk_forward_purges_the_horizon_before_each_test_block() -> None:
    n, horizon = 100, 5
    start = np.arange(n)
    splits = walk_forward_splits(start, start + horizon, n_splits=2, min_train_bars=40)
    # The first test row must have 40 known labels before it: row 45 (rows 0..39 end by 44).
    assert splits[0].test[0] == 45
    assert splits[0].train.tolist() == list(range(40))
    second = splits[1]
    assert second.test[0] == 73
    # Expanding: everything whose label ends before bar 73, i.e. rows 0..67.
    assert second.train.tolist() == list(range(68))


def test_purged_kfold_example_with_embargo() -> None:
    start = np.arange(30)
    splits = purged_kfold_splits(start, start + 2, n_splits=3, embargo_bars=4)
    middle = splits[1]
    assert middle.test.tolist() == list(range(10, 20))
    # Rows 8, 9 end in the test fold (purged); the fold's labels end at bar 21, so rows up
    # to 21 overlap it and rows 22..25 are embargoed.
    assert middle.train.tolist() == list(range(8)) + list(range(26, 30))


def test_purge_mask_handles_labels_that_span_the_whole_test_fold() -> None:
    start = np.array([0, 1, 2, 3, 4, 5])
    end = np.array([10, 1, 2, 3, 4, 5])  # row 0's label covers the rows 2..3 tested below
    keep = purge_mask(start, end, np.array([2, 3]), embargo_bars=1)
    assert keep.tolist() == [False, True, False, False, False, True]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="increasing"):
        purged_kfold_splits([0, 0, 1], [1, 1, 2], 2)
    with pytest.raises(ValueError, match="end at or after"):
        purged_kfold_splits([0, 1, 2], [0, 0, 2], 2)
    with pytest.raises(ValueError, match="cannot give"):
        walk_forward_splits(np.arange(10), np.arange(10) + 1, 5, 8)


def test_event_end_positions_map_times_to_bars() -> None:
    minute = 60_000_000_000
    times = np.arange(10) * minute
    ends = np.array([2 * minute, 2 * minute + 1, 9 * minute, 99 * minute])
    assert event_end_positions(times, ends).tolist() == [2, 2, 9, 9]
    # An end inside the row's own bar stays at the row.
    assert event_end_positions(times, [0], start=[0]).tolist() == [0]
