"""Objectives: the number an optimiser maximises (or minimises) for one backtest.

An objective is a plain function of a `BacktestResult` and a direction. The built-ins read the
very metrics ``tessera backtest`` prints (`tessera.backtest.results.compute_metrics`), so the
value a trial was chosen by is the value the trader sees for that point.

A custom objective is registered like a strategy — in the user's strategy files (beside a
strategy, or in a file of objectives only), which every command (and every worker process of
a parallel study, through the strategy loader's state) imports before it resolves names::

    from tessera.optimize.objectives import register_objective

    @register_objective("return_over_drawdown", direction="maximize")
    def return_over_drawdown(result):
        m = result.metrics
        return m["total_return"] / max(m["max_drawdown"], 0.01)

A NaN value (no trades, no volatility) makes the trial a failed one, never a winner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from tessera.strategies.loader import OBJECTIVE_MARK

if TYPE_CHECKING:
    from tessera.backtest.results import BacktestResult

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")
F = TypeVar("F", bound=Callable[..., float])


@dataclass(frozen=True)
class ObjectiveSpec:
    """A named objective: its function and whether higher or lower is better."""

    name: str
    fn: Callable[[BacktestResult], float]
    direction: Direction
    builtin: bool = False

    def __call__(self, result: BacktestResult) -> float:
        return float(self.fn(result))


_REGISTRY: dict[str, ObjectiveSpec] = {}


def _direction(name: str, direction: str) -> Direction:
    if direction not in DIRECTIONS:
        raise ValueError(
            f"objective {name!r}: direction {direction!r} is neither 'maximize' nor 'minimize'"
        )
    return direction


def register_objective(name: str, direction: str = "maximize") -> Callable[[F], F]:
    """Register ``fn(result) -> float`` under ``name``. A built-in name cannot be taken; a name
    taken by another function is an error, except the same function registered again (a
    strategy file imported again after it changed, or by a worker process)."""
    way = _direction(name, direction)
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"objective name {name!r}: letters, digits, _ and - only (it is a CLI value)"
        )

    def decorate(fn: F) -> F:
        old = _REGISTRY.get(name)
        if old is not None and old.builtin:
            raise ValueError(
                f"objective name {name!r} is a built-in objective: name yours differently "
                f"(built-ins: {', '.join(n for n, s in _REGISTRY.items() if s.builtin)})"
            )
        if old is not None and _key(old.fn) != _key(fn):
            raise ValueError(
                f"objective name {name!r} is registered twice: by {_where(old.fn)} and by "
                f"{_where(fn)}; objective names are unique"
            )
        _REGISTRY[name] = ObjectiveSpec(name, fn, way)
        with contextlib.suppress(AttributeError, TypeError):  # a builtin or a slotted callable
            setattr(fn, OBJECTIVE_MARK, name)  # the strategy loader accepts a file of objectives
        return fn

    return decorate


def _key(fn: Callable[..., float]) -> tuple[str, str]:
    module = getattr(fn, "__module__", "") or ""
    return module, getattr(fn, "__qualname__", repr(fn))


def _where(fn: Callable[..., float]) -> str:
    module, qualname = _key(fn)
    return f"{module}.{qualname}"


def objective(name: str) -> ObjectiveSpec:
    """The registered objective ``name``; `ValueError` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; known: {', '.join(objective_names())} (a custom "
            "objective is a function registered with @register_objective in a strategy file)"
        ) from None


def objective_names() -> list[str]:
    """Built-ins first (in their fixed order), then custom ones by name."""
    builtins = [n for n, s in _REGISTRY.items() if s.builtin]
    return builtins + sorted(n for n, s in _REGISTRY.items() if not s.builtin)


def _metric(key: str) -> Callable[[BacktestResult], float]:
    def read(result: BacktestResult) -> float:
        return float(result.metrics.get(key, float("nan")))

    read.__name__ = read.__qualname__ = key
    return read


# The built-ins: (objective name, metric key, direction). "profit" is the total return (a
# fraction), as in the sweep's and the backtest's metrics.
_BUILTINS: tuple[tuple[str, str, Direction], ...] = (
    ("sharpe", "sharpe", "maximize"),
    ("sortino", "sortino", "maximize"),
    ("calmar", "calmar", "maximize"),
    ("profit", "total_return", "maximize"),
    ("max_drawdown", "max_drawdown", "minimize"),
    ("profit_factor", "profit_factor", "maximize"),
    ("win_rate", "win_rate", "maximize"),
)
for _name, _key_name, _way in _BUILTINS:
    _REGISTRY[_name] = ObjectiveSpec(_name, _metric(_key_name), _way, builtin=True)

# The metric each built-in reads: the study reports its running value for pruning.
BUILTIN_METRIC = {name: key for name, key, _ in _BUILTINS}
