"""Search spaces: what an optimiser may try for each strategy parameter.

A dimension is written the same way everywhere — on the command line (``--space
fast=int:5..50``) and beside the parameter it searches, in the strategy's own ``Params`` model
(``Field(10, gt=0, json_schema_extra={"search": "int:5..50"})``) — so a strategy carries its
search space with it and ``tessera optimize --strategy NAME`` needs no ``--space``.

The forms (``NAME=`` is left out in a ``Field``'s ``search``)::

    fast=int:5..50          integers 5 to 50, both included
    fast=int:5..50:5        5, 10, ..., 50 (a step)
    k=float:0.5..3          any float in [0.5, 3]
    k=float:0.5..3:0.25     0.5, 0.75, ..., 3
    lr=float:1e-4..1e-1:log log-uniform (also int:1..1000:log)
    mode=cat:a,b,c          one of the listed values (numbers and true/false are typed)

Why a declared dimension is checked against the field's own constraints when it is read: a
range reaching outside what the parameter accepts (``int:0..50`` for a ``gt=0`` field) would
fail trials silently one by one; it is a mistake in the strategy file, said once, at start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, get_args

from pydantic.fields import FieldInfo

FORMS = (
    "NAME=int:LOW..HIGH, NAME=int:LOW..HIGH:STEP, NAME=float:LOW..HIGH, "
    "NAME=float:LOW..HIGH:STEP, NAME=float:LOW..HIGH:log (int too), NAME=cat:A,B,C"
)


@dataclass(frozen=True)
class IntRange:
    """Integers ``low..high``, both included, every ``step``-th from ``low`` (or log-uniform)."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[low, high]``; ``step`` makes it a grid from ``low``; ``log`` log-uniform."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (no order between them is assumed)."""

    name: str
    choices: tuple[Any, ...]


Dimension = IntRange | FloatRange | Choice


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(f"search dimension {spec!r}: {why}. Accepted forms: {FORMS}.")


def _number(text: str, kind: type[int] | type[float], spec: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise _bad(spec, f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(spec, f"{text!r} is not a finite number")
    return value


def parse_scalar(text: str) -> Any:
    """A categorical value: an int, a float, true/false, or the text itself (shared with
    ``tessera sweep``'s value lists so one spelling means the same value in both commands)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_dimension(spec: str) -> Dimension:
    """``"fast=int:5..50"`` and the other forms of the module docstring; `ValueError` naming
    the spec and the accepted forms otherwise."""
    name, eq, rest = spec.partition("=")
    name = name.strip()
    if not eq or not name or not name.isidentifier():
        raise _bad(spec, "it must start with a parameter name and '='")
    kind, colon, body = rest.strip().partition(":")
    if not colon or not body:
        raise _bad(spec, "the kind (int, float or cat) and its values are missing")
    kind = kind.strip().lower()
    if kind == "cat":
        values = tuple(parse_scalar(v.strip()) for v in body.split(",") if v.strip() != "")
        if not values:
            raise _bad(spec, "a cat dimension lists at least one value")
        if len({(type(v), v) for v in values}) != len(values):
            raise _bad(spec, "a cat dimension lists each value once")
        return Choice(name, values)
    if kind not in ("int", "float"):
        raise _bad(spec, f"unknown kind {kind!r} (int, float or cat)")
    span, _, extra = body.partition(":")
    low_text, dots, high_text = span.partition("..")
    if not dots:
        raise _bad(spec, "a range is LOW..HIGH")
    cast: type[int] | type[float] = int if kind == "int" else float
    low, high = _number(low_text.strip(), cast, spec), _number(high_text.strip(), cast, spec)
    if low > high:
        raise _bad(spec, f"LOW {low} is above HIGH {high}")
    extra = extra.strip()
    log = extra.lower() == "log"
    step: Any = None
    if extra and not log:
        step = _number(extra, cast, spec)
        if step <= 0:
            raise _bad(spec, f"the step {extra} must be positive")
    if log and low <= 0:
        raise _bad(spec, "a log range needs LOW > 0")
    if kind == "int":
        return IntRange(name, int(low), int(high), int(step) if step is not None else 1, log)
    return FloatRange(name, float(low), float(high), float(step) if step is not None else None, log)


def format_dimension(dim: Dimension) -> str:
    """The spec `parse_dimension` reads back into ``dim`` (for study names and reports)."""
    if isinstance(dim, Choice):
        shown = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in dim.choices)
        return f"{dim.name}=cat:{shown}"
    kind = "int" if isinstance(dim, IntRange) else "float"
    tail = ":log" if dim.log else ""
    if isinstance(dim, IntRange) and dim.step != 1:
        tail = f":{dim.step}"
    elif isinstance(dim, FloatRange) and dim.step is not None:
        tail = f":{dim.step!r}"
    low, high = (repr(dim.low), repr(dim.high)) if kind == "float" else (dim.low, dim.high)
    return f"{dim.name}={kind}:{low}..{high}{tail}"


def _strategy_params(strategy: str) -> Mapping[str, FieldInfo]:
    from tessera.strategies import strategy_class

    return strategy_class(strategy).Params.model_fields


def _bounds(info: FieldInfo) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for meta in info.metadata:
        for attr in ("gt", "ge", "lt", "le"):
            bound = getattr(meta, attr, None)
            if bound is not None:
                out.append((attr, bound))
    return out


def _inside(value: Any, bounds: list[tuple[str, Any]]) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return True  # text choices are for the field's own validation
    for attr, bound in bounds:
        b = float(bound)
        if (
            (attr == "gt" and not value > b)
            or (attr == "ge" and not value >= b)
            or (attr == "lt" and not value < b)
            or (attr == "le" and not value <= b)
        ):
            return False
    return True


def _kinds(info: FieldInfo) -> set[Any]:
    args = get_args(info.annotation)
    return {a for a in (args or (info.annotation,)) if a is not type(None)}


def check_dimension(strategy: str, dim: Dimension, info: FieldInfo) -> None:
    """`ValueError` unless every value of ``dim`` has the field's type and lies inside its
    constraints (``gt``/``ge``/``lt``/``le``)."""
    from tessera.strategies.base import _accepted

    kinds = _kinds(info)
    where = f"strategy {strategy}: the search space of {dim.name} ({format_dimension(dim)})"
    accepts = f"{dim.name} accepts {_accepted(info)}"
    if isinstance(dim, IntRange) and not kinds & {int, float, Decimal}:
        raise ValueError(f"{where} is a range of integers, but {accepts}.")
    if isinstance(dim, FloatRange) and not kinds & {float, Decimal}:
        raise ValueError(f"{where} is a range of numbers, but {accepts}.")
    bounds = _bounds(info)
    if isinstance(dim, Choice):
        values: tuple[Any, ...] = dim.choices
    else:
        values = (dim.low, dim.high)
    outside = [v for v in values if not _inside(v, bounds)]
    if outside:
        shown = ", ".join(str(v) for v in outside)
        raise ValueError(f"{where} reaches {shown}, outside what it accepts: {accepts}.")


def declared_space(strategy: str) -> list[Dimension]:
    """The dimensions the strategy declares beside its parameters (``json_schema_extra=
    {"search": "int:5..50"}``), in declaration order; each checked against its field."""
    out: list[Dimension] = []
    for name, info in _strategy_params(strategy).items():
        extra = info.json_schema_extra
        spec = extra.get("search") if isinstance(extra, dict) else None
        if spec is None:
            continue
        if not isinstance(spec, str):
            raise ValueError(
                f"strategy {strategy}: the search space of {name} must be text such as "
                f"'int:5..50', not {spec!r}"
            )
        try:
            dim = parse_dimension(f"{name}={spec}")
        except ValueError as exc:
            raise ValueError(f"strategy {strategy}, parameter {name}: {exc}") from None
        check_dimension(strategy, dim, info)
        out.append(dim)
    return out


def resolve_space(strategy: str, specs: Sequence[str]) -> list[Dimension]:
    """The declared space with each ``--space`` spec replacing the declared dimension of its
    name (or adding one); unknown names and values outside a field's constraints are
    `ValueError`, as is an empty space."""
    fields = _strategy_params(strategy)
    dims = {d.name: d for d in declared_space(strategy)}
    for spec in specs:
        dim = parse_dimension(spec)
        info = fields.get(dim.name)
        if info is None:
            known = ", ".join(fields) or "no parameters"
            raise ValueError(
                f"--space {spec}: strategy {strategy} has no parameter {dim.name!r}; it takes: "
                f"{known}."
            )
        check_dimension(strategy, dim, info)
        dims[dim.name] = dim
    if not dims:
        raise ValueError(
            f"strategy {strategy} declares no search space and no --space was given: give "
            f"one per parameter to search, e.g. --space NAME=int:5..50 (forms: {FORMS})."
        )
    return list(dims.values())


def neighbours(
    space: Sequence[Dimension], best: Mapping[str, Any], steps: int = 2, points: int = 5
) -> dict[str, list[Any]]:
    """Values of each dimension around ``best``: ``steps`` grid steps either side for a stepped
    range (the step, or 1 for integers), ``points`` values spread over a fifth of the range
    for a continuous one, every choice for a categorical one; clipped to the range, sorted."""
    out: dict[str, list[Any]] = {}
    for dim in space:
        centre = best.get(dim.name)
        if isinstance(dim, Choice):
            out[dim.name] = list(dim.choices)
            continue
        if centre is None:
            continue
        if isinstance(dim, IntRange):
            vals = {int(centre) + k * dim.step for k in range(-steps, steps + 1)}
            out[dim.name] = sorted(v for v in vals if dim.low <= v <= dim.high)
        elif dim.step is not None:
            fvals = {round(float(centre) + k * dim.step, 12) for k in range(-steps, steps + 1)}
            out[dim.name] = sorted(v for v in fvals if dim.low <= v <= dim.high)
        else:
            half = (dim.high - dim.low) / 10.0
            n = max(points, 2)
            grid = [float(centre) - half + 2 * half * i / (n - 1) for i in range(n)]
            out[dim.name] = sorted({min(max(v, dim.low), dim.high) for v in grid})
    return out
