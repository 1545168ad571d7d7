"""Parameter sensitivity: is the optimum a plateau a trader can stand on, or a lone spike?

An optimiser reports the single best point of thousands it tried. If the points around it do
almost as well, the edge belongs to a region of parameters and survives the small drift a
market imposes; if they do much worse, the best is most likely noise that happened to fit the
sample. So the neighbourhood of the best is evaluated on a grid — for every *pair* of
parameters, a few grid steps either side of the best, all other parameters held at the best —
drawn as one heatmap per pair, and summarised as the share of neighbours whose objective lies
within a tolerance (10 % by default) of the best: a plateau when at least half do, a spike
otherwise.

The work is split in two so that the backtests stay with the caller (the optimiser runs them
like any trial, on the event engine, in its own worker pool): :func:`sensitivity_points` lists
the parameter sets to evaluate, :func:`sensitivity` turns ``(params, value)`` rows into the
heatmaps and the verdict. Give both the same ``steps``/``max_points`` so that they agree on
the grid.

A grid step is a dimension's own step (an ``IntRange``'s ``step``, a ``FloatRange``'s
``step``), a twentieth of the range for a continuous ``FloatRange``, and a twentieth of the
range *in log space* for a log range (a log range is searched multiplicatively, so its
neighbours are too). A ``Choice`` contributes all of its choices: there is no order between
them, so "near" means every one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.optimize.space import Choice, Dimension, FloatRange, IntRange

MAX_POINTS = 400
"""The grid's default size cap. Each point is a full backtest; 400 keeps the check cheap next
to a study of hundreds of trials while leaving a 2-parameter space its full 5 x 5 grid (and
a 10-parameter space 3 x 3 per pair)."""

PLATEAU_SHARE = 0.5
"""At least this share of neighbours within tolerance makes a plateau, less a spike."""

DIVISIONS = 20
"""A continuous (or log) range without a step is walked in steps of 1/DIVISIONS of its span:
``steps=2`` then looks 10 % of the range either side of the best."""

_DIGITS = 12
"""Float grid values are rounded to this many significant digits, so that ``0.1 + 2 * 0.1``
and ``0.3`` are one point, and a row's parameters match the grid point they came from."""


@dataclass(frozen=True)
class Heatmap:
    """The objective over one pair of parameters, the others at the best.

    ``z[i_y, j_x]`` is the value at ``(x_values[j_x], y_values[i_y])``; nan where the point
    was not evaluated (or its objective was not finite). A 1-parameter space gives one
    heatmap with ``y == ""`` and a single row (``y_values == [None]``): a line.
    """

    x: str
    y: str
    x_values: list[Any]
    y_values: list[Any]
    z: np.ndarray


@dataclass(frozen=True)
class Sensitivity:
    """The heatmaps around the best point and the plateau-or-spike summary.

    ``neighbours`` counts the evaluated grid points other than the best, ``within`` those whose
    objective lies within ``tolerance`` (relative to the best's magnitude) of the best or is
    better, ``share`` their ratio (nan with no neighbours). ``missing`` counts the grid's
    neighbours without an evaluation.
    """

    best: dict[str, Any]
    best_value: float
    direction: str
    heatmaps: list[Heatmap]
    tolerance: float
    neighbours: int
    within: int
    share: float
    missing: int = 0

    @property
    def is_plateau(self) -> bool:
        """True when at least half of the evaluated neighbours are within tolerance."""
        return self.neighbours > 0 and self.share >= PLATEAU_SHARE

    def verdict(self) -> str:
        """One sentence a trader reads: plateau or spike, with the share that decided it."""
        if self.neighbours == 0:
            return (
                f"Sensitivity unknown: none of the {self.missing} points around the best was "
                "evaluated, so nothing says whether the optimum is a plateau or a spike."
            )
        counted = (
            f"{self.within} of {self.neighbours} neighbours ({self.share:.0%}) score within "
            f"{self.tolerance:.0%} of the best value {self.best_value:.4g} or better"
        )
        if self.is_plateau:
            return (
                f"A plateau: {counted}, so nearby parameters do about as well and the result "
                "does not hinge on the exact values chosen."
            )
        return (
            f"A spike: only {counted}; the optimum stands alone and is likely luck of the "
            "sample, so prefer parameters from a broad good region."
        )


def sensitivity_points(
    space: Sequence[Dimension],
    best: Mapping[str, Any],
    steps: int = 2,
    *,
    max_points: int = MAX_POINTS,
) -> list[dict[str, Any]]:
    """The parameter sets to evaluate: every pair's grid around ``best``, deduplicated.

    Each dimension takes its values ``best ± k`` grid steps for ``k <= steps`` (see the module
    docstring for a step), restricted to its bounds; a ``Choice`` takes every choice. Every
    pair of dimensions contributes its full grid with the other dimensions at the best; a
    1-dimensional space contributes its line. Keys of ``best`` outside the space (fixed
    parameters) are carried into every point unchanged. The best itself comes first.

    The total is capped at ``max_points`` by lowering ``steps`` (down to 1). If every choice
    of a ``Choice`` still does not fit, its axis keeps only the choices within ``steps``
    places of the best's (in declared order) and ``steps`` is lowered again as needed. A
    space of so many dimensions that even 3 x 3 per pair exceeds the cap (15 or more with
    the default) keeps that minimal grid rather than silently dropping pairs.
    """
    axes = _plan(space, best, steps, max_points)
    return _grid(space, best, axes)


def sensitivity(
    rows: Sequence[tuple[Mapping[str, Any], float]],
    space: Sequence[Dimension],
    best: Mapping[str, Any],
    best_value: float,
    direction: str,
    tolerance: float = 0.10,
    *,
    steps: int = 2,
    max_points: int = MAX_POINTS,
) -> Sensitivity:
    """Heatmaps and the plateau/spike verdict from evaluated ``(params, value)`` rows.

    Rows are matched to the grid of :func:`sensitivity_points` (same ``steps`` and
    ``max_points``) on the space's parameters; rows off the grid (other trials of a study)
    are ignored, and a point given twice keeps its last value. The best point's value is
    ``best_value``. A neighbour is *within* when ``|value - best_value| <= tolerance *
    |best_value|`` or when it is better than the best in ``direction`` ("maximize" or
    "minimize"); one whose objective is not finite (a failed or trade-less run) is a
    neighbour outside the tolerance.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize'; got {direction!r}.")
    if not isinstance(tolerance, int | float) or not 0.0 <= tolerance < math.inf:
        raise ValueError(
            f"tolerance must be a non-negative fraction of the best value (0.10 = 10%); "
            f"got {tolerance!r}."
        )
    if not math.isfinite(best_value):
        raise ValueError(f"best_value must be a finite number; got {best_value!r}.")
    axes = _plan(space, best, steps, max_points)
    names = [d.name for d in space]
    values: dict[tuple[Any, ...], float] = {}
    for params, value in rows:
        if all(n in params for n in names):
            values[_key(params, names)] = float(value)
    best_key = _key(best, names)
    values[best_key] = float(best_value)

    heatmaps = [_heatmap(x, y, axes, best, names, values) for x, y in _pairs(names)]

    slack = tolerance * abs(best_value)
    neighbours = within = missing = 0
    for point in _grid(space, best, axes):
        key = _key(point, names)
        if key == best_key:
            continue
        if key not in values:
            missing += 1
            continue
        neighbours += 1
        v = values[key]
        if not math.isfinite(v):
            continue
        gap = best_value - v if direction == "maximize" else v - best_value
        within += gap <= slack
    return Sensitivity(
        best=dict(best),
        best_value=float(best_value),
        direction=direction,
        heatmaps=heatmaps,
        tolerance=float(tolerance),
        neighbours=neighbours,
        within=within,
        share=within / neighbours if neighbours else math.nan,
        missing=missing,
    )


# --- the grid ----------------------------------------------------------------------------------


def _plan(
    space: Sequence[Dimension], best: Mapping[str, Any], steps: int, max_points: int
) -> dict[str, list[Any]]:
    """Each dimension's values, with ``steps`` (then Choice windows) lowered to fit the cap."""
    _check_space(space, best)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(
            f"steps must be a whole number of grid steps of at least 1; got {steps!r}."
        )
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a whole number of at least 1; got {max_points!r}.")
    axes: dict[str, list[Any]] = {}
    for trim in (False, True):
        # no axis is longer than 2 * steps + 1, so a start above the cap is never needed
        for s in range(min(steps, max_points), 0, -1):
            axes = {d.name: _axis(d, best[d.name], s, trim) for d in space}
            if _count(axes) <= max_points:
                return axes
    return axes


def _count(axes: Mapping[str, list[Any]]) -> int:
    """Distinct points of the pairwise grids: the best, each line, each pair's off-line cells."""
    extra = [len(v) - 1 for v in axes.values()]
    return 1 + sum(extra) + sum(a * b for a, b in itertools.combinations(extra, 2))


def _axis(dim: Dimension, centre: Any, steps: int, trim: bool) -> list[Any]:
    if isinstance(dim, Choice):
        if not trim:
            return list(dim.choices)
        i = dim.choices.index(centre)
        return list(dim.choices[max(0, i - steps) : i + steps + 1])
    ks = [k for k in range(-steps, steps + 1) if k]
    if dim.log:
        h = (math.log(dim.high) - math.log(dim.low)) / DIVISIONS
        raw = [float(centre) * math.exp(k * h) for k in ks]
    else:
        step = dim.step if dim.step is not None else (dim.high - dim.low) / DIVISIONS
        raw = [float(centre) + k * step for k in ks]
    out: set[Any] = {centre}
    if isinstance(dim, IntRange):
        out.update(v for v in (round(r) for r in raw) if dim.low <= v <= dim.high)
        return sorted(out)
    eps = 1e-9 * max(dim.high - dim.low, abs(dim.high), 1e-300)
    for r in raw:
        if dim.low - eps <= r <= dim.high + eps:
            out.add(min(max(_round(r), dim.low), dim.high))
    return sorted(out, key=float)


def _grid(
    space: Sequence[Dimension], best: Mapping[str, Any], axes: Mapping[str, list[Any]]
) -> list[dict[str, Any]]:
    names = [d.name for d in space]
    seen = {_key(best, names)}
    points = [dict(best)]
    for x, y in _pairs(names):
        for xv in axes[x]:
            for yv in axes[y] if y else [None]:
                point = {**best, x: xv} if not y else {**best, x: xv, y: yv}
                key = _key(point, names)
                if key not in seen:
                    seen.add(key)
                    points.append(point)
    return points


def _pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of dimensions in space order; a single dimension pairs with "" (a line)."""
    if len(names) == 1:
        return [(names[0], "")]
    return list(itertools.combinations(names, 2))


def _heatmap(
    x: str,
    y: str,
    axes: Mapping[str, list[Any]],
    best: Mapping[str, Any],
    names: Sequence[str],
    values: Mapping[tuple[Any, ...], float],
) -> Heatmap:
    x_values = list(axes[x])
    y_values: list[Any] = list(axes[y]) if y else [None]
    z = np.full((len(y_values), len(x_values)), np.nan)
    for i, yv in enumerate(y_values):
        for j, xv in enumerate(x_values):
            point = {**best, x: xv} if not y else {**best, x: xv, y: yv}
            v = values.get(_key(point, names))
            if v is not None and math.isfinite(v):
                z[i, j] = v
    return Heatmap(x=x, y=y, x_values=x_values, y_values=y_values, z=z)


def _round(v: float) -> float:
    return float(f"{v:.{_DIGITS}g}")


def _norm(v: Any) -> Any:
    """A parameter value as a lookup key: numbers by value (2 == 2.0), floats rounded."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return v if _hashable(v) else repr(v)
    f = float(v)
    return _round(f) if math.isfinite(f) else f


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _key(params: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(_norm(params[n]) for n in names)


def _check_space(space: Sequence[Dimension], best: Mapping[str, Any]) -> None:
    if not space:
        raise ValueError("the search space is empty: sensitivity needs at least one dimension.")
    names = [d.name for d in space]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"the search space names {', '.join(twice)} more than once.")
    missing = [n for n in names if n not in best]
    if missing:
        raise ValueError(
            f"the best parameters lack {', '.join(missing)}, which the search space has; "
            "sensitivity needs a value for every dimension to centre its grid on."
        )
    for dim in space:
        value = best[dim.name]
        if isinstance(dim, Choice):
            if value not in dim.choices:
                shown = ", ".join(map(repr, dim.choices))
                raise ValueError(
                    f"the best {dim.name}={value!r} is not one of its choices ({shown})."
                )
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"the best {dim.name}={value!r} is not a number, but its range is.")
        if not dim.low <= value <= dim.high:
            raise ValueError(
                f"the best {dim.name}={value!r} lies outside its range {dim.low}..{dim.high}."
            )
        if isinstance(dim, FloatRange | IntRange) and dim.log and dim.low <= 0:
            raise ValueError(f"the log range of {dim.name} must start above 0; got {dim.low}.")
