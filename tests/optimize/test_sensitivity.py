"""Parameter sensitivity, checked on objectives whose shape is known: a smooth bowl around the
best must read as a plateau, a lone needle as a spike; grids must stay inside the space."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.optimize.sensitivity import (
    MAX_POINTS,
    Heatmap,
    Sensitivity,
    sensitivity,
    sensitivity_points,
)
from tessera.optimize.space import Choice, Dimension, FloatRange, IntRange

SPACE: list[Dimension] = [
    IntRange("fast", 2, 50),
    FloatRange("k", 0.5, 3.0),  # no step: a twentieth of the range, 0.125
    IntRange("slow", 20, 200, step=10),
]
BEST: dict[str, Any] = {"fast": 12, "k": 1.5, "slow": 100}


def _bowl(p: Mapping[str, Any]) -> float:
    """A smooth maximum of 2.0 at BEST: two grid steps away costs a few percent."""
    return float(
        2.0
        - ((p["fast"] - 12) / 20) ** 2
        - ((p["k"] - 1.5) / 2) ** 2
        - ((p["slow"] - 100) / 200) ** 2
    )


def _needle(p: Mapping[str, Any]) -> float:
    """2.0 at BEST only, 0.5 everywhere else."""
    return 2.0 if all(p[n] == BEST[n] for n in BEST) else 0.5


def _evaluate(
    fn: Callable[[Mapping[str, Any]], float],
    space: list[Dimension] = SPACE,
    best: Mapping[str, Any] = BEST,
    **kw: Any,
) -> list[tuple[dict[str, Any], float]]:
    return [(p, fn(p)) for p in sensitivity_points(space, best, **kw)]


# --- verdicts on known shapes -----------------------------------------------------------------


def test_a_smooth_bowl_around_the_best_is_a_plateau() -> None:
    result = sensitivity(_evaluate(_bowl), SPACE, BEST, _bowl(BEST), "maximize")
    assert result.neighbours == len(sensitivity_points(SPACE, BEST)) - 1
    assert result.within == result.neighbours and result.share == 1.0
    assert result.is_plateau
    assert result.verdict().startswith("A plateau: ")
    assert f"{result.neighbours} of {result.neighbours} neighbours (100%)" in result.verdict()


def test_a_needle_where_only_the_best_scores_is_a_spike() -> None:
    result = sensitivity(_evaluate(_needle), SPACE, BEST, 2.0, "maximize")
    assert result.within == 0 and result.share == 0.0
    assert not result.is_plateau
    assert result.verdict().startswith("A spike: only 0 of ")
    assert "(0%)" in result.verdict()


def test_a_steep_bowl_gives_the_share_of_neighbours_inside_the_tolerance() -> None:
    space: list[Dimension] = [IntRange("a", 0, 100), IntRange("b", 0, 100)]
    best = {"a": 50, "b": 50}

    def cone(p: Mapping[str, Any]) -> float:  # 10 at the best, -1 per step in either
        return float(10.0 - abs(p["a"] - 50) - abs(p["b"] - 50))

    result = sensitivity(_evaluate(cone, space, best), space, best, 10.0, "maximize", 0.10)
    # within 10% of 10 = at most 1 step away in total: the 4 direct neighbours of 24
    assert (result.neighbours, result.within) == (24, 4)
    assert result.share == pytest.approx(4 / 24)
    assert "4 of 24 neighbours (17%) score within 10%" in result.verdict()
    wider = sensitivity(_evaluate(cone, space, best), space, best, 10.0, "maximize", 0.30)
    assert wider.within == 4 + 8 + 8  # |da| + |db| <= 3: 4 at 1, 8 at 2, 8 at 3 in a 5x5 grid
    assert wider.is_plateau


def test_a_minimised_objective_counts_lower_neighbours_as_within() -> None:
    space: list[Dimension] = [IntRange("a", 0, 10)]
    best = {"a": 5}
    rows = [({"a": a}, v) for a, v in [(3, 0.05), (4, 0.19), (6, 0.22), (7, 0.5)]]
    result = sensitivity(rows, space, best, 0.20, "minimize", tolerance=0.10)
    assert (result.neighbours, result.within) == (4, 3)  # 0.05 and 0.19 better, 0.22 within
    maximised = sensitivity(rows, space, best, 0.20, "maximize", tolerance=0.10)
    assert maximised.within == 3  # 0.19 and 0.22 within, 0.5 better


def test_failed_neighbours_count_outside_and_unevaluated_points_are_nan() -> None:
    space: list[Dimension] = [IntRange("a", 0, 10), IntRange("b", 0, 10)]
    best = {"a": 5, "b": 5}
    rows = [({"a": 4, "b": 5}, 1.0), ({"a": 6, "b": 5}, math.nan), ({"a": 5, "b": 6}, 0.99)]
    result = sensitivity(rows, space, best, 1.0, "maximize")
    assert (result.neighbours, result.within, result.missing) == (3, 2, 21)
    (heatmap,) = result.heatmaps
    assert heatmap.z.shape == (5, 5)
    assert heatmap.z[2, 2] == 1.0  # the best, from best_value
    assert heatmap.z[2, 1] == 1.0 and heatmap.z[3, 2] == 0.99
    assert np.isnan(heatmap.z[2, 3])  # the failed run
    assert np.isnan(heatmap.z).sum() == 25 - 3


def test_no_evaluated_neighbour_says_the_sensitivity_is_unknown() -> None:
    result = sensitivity([], [IntRange("a", 0, 10)], {"a": 5}, 1.0, "maximize")
    assert result.neighbours == 0 and math.isnan(result.share)
    assert not result.is_plateau
    assert result.verdict().startswith("Sensitivity unknown: none of the 4 points")


def test_rows_off_the_grid_are_ignored_and_a_repeated_point_keeps_its_last_value() -> None:
    space: list[Dimension] = [FloatRange("k", 0.0, 2.0)]
    best = {"k": 1.0}
    rows = [({"k": 1.05}, 0.0), ({"k": 0.9}, 0.0), ({"k": 0.1 + 0.8}, 0.97)]
    result = sensitivity(rows, space, best, 1.0, "maximize")
    assert result.neighbours == 1 and result.within == 1  # 0.1 + 0.8 is the grid point 0.9


# --- the grid --------------------------------------------------------------------------------


def test_pairs_of_dimensions_give_one_heatmap_each() -> None:
    for d in (2, 3, 4, 5):
        space: list[Dimension] = [IntRange(f"p{i}", 0, 20) for i in range(d)]
        best = {f"p{i}": 10 for i in range(d)}
        result = sensitivity([], space, best, 1.0, "maximize")
        assert len(result.heatmaps) == math.comb(d, 2)
        assert (result.heatmaps[0].x, result.heatmaps[0].y) == ("p0", "p1")


def test_a_single_dimension_gives_a_line_of_one_row() -> None:
    space: list[Dimension] = [IntRange("a", 0, 10)]
    points = sensitivity_points(space, {"a": 5})
    assert points == [{"a": 5}, {"a": 3}, {"a": 4}, {"a": 6}, {"a": 7}]
    result = sensitivity([(p, float(p["a"])) for p in points], space, {"a": 5}, 5.0, "maximize")
    (line,) = result.heatmaps
    assert (line.x, line.y, line.y_values) == ("a", "", [None])
    assert line.x_values == [3, 4, 5, 6, 7]
    np.testing.assert_array_equal(line.z, [[3.0, 4.0, 5.0, 6.0, 7.0]])


def test_each_pair_varies_its_two_dimensions_and_holds_the_others_and_fixed_keys_at_best() -> None:
    best = {**BEST, "fee_bps": 7}
    points = sensitivity_points(SPACE, best)
    assert points[0] == best
    for p in points:
        assert p["fee_bps"] == 7
        changed = [n for n in BEST if p[n] != BEST[n]]
        assert len(changed) <= 2
    keys = [tuple(sorted(p.items())) for p in points]
    assert len(keys) == len(set(keys))
    # 5 values each: 1 + 3 * 4 + 3 * 4 * 4
    assert len(points) == 61


def test_steps_follow_each_dimensions_kind() -> None:
    space: list[Dimension] = [
        IntRange("n", 10, 100, step=5),
        FloatRange("k", 0.0, 2.0, step=0.25),
        FloatRange("c", 0.0, 10.0),
        FloatRange("lr", 1e-4, 1e-1, log=True),
        IntRange("w", 1, 1000, log=True),
        Choice("mode", ("a", "b", "c", "d")),
    ]
    best = {"n": 50, "k": 1.0, "c": 5.0, "lr": 1e-2, "w": 100, "mode": "b"}
    result = sensitivity([], space, best, 1.0, "maximize")
    axes = {h.x: h.x_values for h in result.heatmaps} | {h.y: h.y_values for h in result.heatmaps}
    assert axes["n"] == [40, 45, 50, 55, 60]
    assert axes["k"] == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert axes["c"] == [4.0, 4.5, 5.0, 5.5, 6.0]
    ratios = np.diff(np.log(axes["lr"]))
    np.testing.assert_allclose(ratios, math.log(1000) / 20, rtol=1e-9)  # even in log space
    assert axes["w"] == [50, 71, 100, 141, 200]  # 100 * 1000 ** (k / 20), rounded
    assert axes["mode"] == ["a", "b", "c", "d"]  # every choice


def test_grids_at_the_edge_of_the_space_stay_inside_it() -> None:
    space: list[Dimension] = [IntRange("a", 1, 50), FloatRange("k", 0.5, 3.0, step=0.5)]
    points = sensitivity_points(space, {"a": 1, "k": 3.0})
    assert sorted({p["a"] for p in points}) == [1, 2, 3]
    assert sorted({p["k"] for p in points}) == [2.0, 2.5, 3.0]
    assert len(points) == 9


def test_the_total_is_capped_by_lowering_the_steps() -> None:
    space: list[Dimension] = [IntRange("a", 0, 100), IntRange("b", 0, 100)]
    best = {"a": 50, "b": 50}
    assert len(sensitivity_points(space, best, steps=9)) == 19 * 19  # 361: fits
    capped = sensitivity_points(space, best, steps=10)  # 21 x 21 = 441 > 400
    assert len(capped) == 19 * 19
    small = sensitivity_points(space, best, steps=10, max_points=30)
    assert len(small) == 25  # steps 2
    many: list[Dimension] = [IntRange(f"p{i}", 0, 10) for i in range(10)]
    many_best = {f"p{i}": 5 for i in range(10)}
    assert len(sensitivity_points(many, many_best)) == 1 + 10 * 2 + 45 * 4  # steps 1: 201
    assert len(sensitivity_points(many, many_best)) <= MAX_POINTS
    wide: list[Dimension] = [IntRange(f"p{i}", 0, 10) for i in range(15)]
    wide_best = {f"p{i}": 5 for i in range(15)}
    # 3 x 3 per pair of 15 no longer fits; no pair is dropped to make it
    assert len(sensitivity_points(wide, wide_best)) == 1 + 15 * 2 + 105 * 4


def test_a_choice_with_many_values_is_narrowed_to_the_best_and_its_neighbours_over_the_cap() -> (
    None
):
    space: list[Dimension] = [Choice("x", tuple(range(30))), Choice("y", tuple(range(30)))]
    points = sensitivity_points(space, {"x": 0, "y": 17})  # all choices: 30 x 30 > 400
    assert {p["x"] for p in points} == {0, 1, 2}  # the best's index +- 2 steps
    assert {p["y"] for p in points} == {15, 16, 17, 18, 19}
    assert len(points) == 15


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_every_grid_point_lies_inside_its_range_and_on_its_step(data: st.DataObject) -> None:
    low = data.draw(st.integers(-50, 50))
    high = low + data.draw(st.integers(0, 100))
    step = data.draw(st.integers(1, 7))
    high = low + (high - low) // step * step
    a = low + step * data.draw(st.integers(0, (high - low) // step))
    flo = data.draw(st.floats(-10, 10))
    fhi = flo + data.draw(st.floats(1e-3, 20))
    k = data.draw(st.floats(flo, fhi))
    log_lo = data.draw(st.floats(1e-4, 1.0))
    log_hi = log_lo * data.draw(st.floats(1.0, 1e4))
    lr = data.draw(st.floats(log_lo, log_hi))
    space: list[Dimension] = [
        IntRange("a", low, high, step=step),
        FloatRange("k", flo, fhi),
        FloatRange("lr", log_lo, log_hi, log=True),
    ]
    steps = data.draw(st.integers(1, 4))
    points = sensitivity_points(space, {"a": a, "k": k, "lr": lr}, steps=steps)
    assert 1 <= len(points) <= MAX_POINTS
    for p in points:
        assert low <= p["a"] <= high and (p["a"] - low) % step == 0
        assert flo <= p["k"] <= fhi
        assert log_lo <= p["lr"] <= log_hi
    result = sensitivity([(p, 1.0) for p in points], space, points[0], 1.0, "maximize", steps=steps)
    assert result.share == (1.0 if result.neighbours else result.share)
    for h in result.heatmaps:
        assert h.z.shape == (len(h.y_values), len(h.x_values))
        assert not np.isnan(h.z).any()  # every grid cell was among the points


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "best", "kw", "message"),
    [
        ([], {}, {}, "the search space is empty"),
        ([IntRange("a", 0, 9)], {"b": 1}, {}, "the best parameters lack a"),
        ([IntRange("a", 0, 9)], {"a": 12}, {}, r"the best a=12 lies outside its range 0\.\.9"),
        ([Choice("m", ("x", "y"))], {"m": "z"}, {}, "not one of its choices"),
        ([FloatRange("k", 0.0, 1.0)], {"k": "high"}, {}, "is not a number"),
        ([IntRange("a", 0, 9), IntRange("a", 0, 5)], {"a": 1}, {}, "names a more than once"),
        ([IntRange("a", 0, 9)], {"a": 1}, {"steps": 0}, "steps must be a whole number"),
        ([IntRange("a", 0, 9)], {"a": 1}, {"max_points": 0}, "max_points must be"),
    ],
)
def test_bad_spaces_and_best_points_are_refused_with_a_sentence(
    space: list[Dimension], best: dict[str, Any], kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sensitivity_points(space, best, **kw)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"direction": "up"}, "direction must be 'maximize' or 'minimize'; got 'up'"),
        ({"tolerance": -0.1}, "tolerance must be a non-negative fraction"),
        ({"tolerance": math.inf}, "tolerance must be"),
        ({"best_value": math.nan}, "best_value must be a finite number"),
    ],
)
def test_bad_sensitivity_arguments_are_refused_with_a_sentence(
    kw: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"best_value": 1.0, "direction": "maximize"} | kw
    with pytest.raises(ValueError, match=message):
        sensitivity([], [IntRange("a", 0, 9)], {"a": 1}, **args)


def test_the_result_types_are_the_contracts() -> None:
    result = sensitivity(_evaluate(_bowl), SPACE, BEST, _bowl(BEST), "maximize")
    assert isinstance(result, Sensitivity)
    assert all(isinstance(h, Heatmap) for h in result.heatmaps)
    assert result.best == BEST and result.direction == "maximize" and result.tolerance == 0.1
