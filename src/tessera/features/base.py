"""What a feature is: one definition, executed two ways.

A `Feature` turns bars into one or more float columns. It has

* a **batch** execution (`Feature.batch`): polars expressions over a whole bar frame, for
  research and for materialising feature sets from the Parquet store; and
* an **incremental** execution (`Feature.incremental`): a small object whose ``update(bar)``
  does O(1) work per new bar, for the live bot.

Both produce the same numbers (a test holds them to 1e-9 on the real data) and both are causal:
the value at bar ``t`` uses bars ``<= t`` only (checked by `tessera.features.checks`). Values
are NaN while a feature warms up, in both executions, at the same bars.

A bar's features are known when the bar closes; a model trained on them may act from the next
bar on. New features subclass `Feature` and register with `@register_feature("name")`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import polars as pl

from tessera.config.models import FeatureSpec

ParamValue = int | float | str | bool
BarValue = float | int | datetime
NAN = math.nan

# Feature queries slice and append whole columns (EMA seeds); polars 2.1's slice pushdown
# mis-plans such expressions (an assertion panic), and there is nothing to push down here.
QUERY_FLAGS = pl.QueryOptFlags(slice_pushdown=False)

# Bar columns every bar source provides; others (taker_buy_base, bid_price, ...) are optional
# and declared by the features that need them.
OHLCV = ("open_time", "open", "high", "low", "close", "volume")


class FeatureError(ValueError):
    """A feature cannot be computed: unknown name, bad parameter, or a missing bar column."""


class IncrementalFeature(ABC):
    """The live execution of a feature: fed bars in order, one call per bar."""

    @abstractmethod
    def update(self, bar: Mapping[str, Any]) -> tuple[float, ...]:
        """Consume the newest closed bar; return this bar's values (NaN while warming up)."""


class Feature(ABC):
    """A parametrised feature. Subclasses declare `name`, `params` defaults and `requires`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, ParamValue]] = {}
    requires: ClassVar[tuple[str, ...]] = ("close",)
    doc: ClassVar[str] = ""

    def __init__(self, params: Mapping[str, ParamValue] | None = None, alias: str | None = None):
        given = dict(params or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise FeatureError(
                f"feature {self.name!r}: unknown parameter(s) {unknown} (known: {known})"
            )
        self.params: dict[str, ParamValue] = {**self.defaults, **given}
        self.alias = alias
        self.validate()

    # --- parameters ---------------------------------------------------------------------------

    def validate(self) -> None:  # noqa: B027  (optional hook: most features have no checks)
        """Check parameters; raise `FeatureError` naming the bad one."""

    def int_param(self, key: str, minimum: int = 1) -> int:
        value = self.params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise FeatureError(
                f"feature {self.name!r}: {key} must be an integer >= {minimum}, got {value!r}"
            )
        return value

    def float_param(self, key: str, minimum: float = 0.0) -> float:
        value = self.params[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > minimum:
            raise FeatureError(
                f"feature {self.name!r}: {key} must be a number > {minimum}, got {value!r}"
            )
        return float(value)

    # --- naming -------------------------------------------------------------------------------

    @property
    def base_name(self) -> str:
        """``alias``, or the name followed by the parameter values: ``rsi_14``, ``macd_12_26_9``."""
        if self.alias:
            return self.alias
        parts = [self.name, *(_fmt(self.params[k]) for k in self.defaults)]
        return "_".join(parts)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output column suffixes; a single-output feature has ``("",)``."""
        return ("",)

    @property
    def columns(self) -> list[str]:
        return [self.base_name + (f"_{o}" if o else "") for o in self.outputs]

    @property
    def warmup(self) -> int:
        """Bars before the first value (the first ``warmup`` rows are NaN)."""
        return 0

    # --- executions ---------------------------------------------------------------------------

    def stages(self) -> list[dict[str, pl.Expr]]:
        """Intermediate columns computed before `expressions`, stage by stage.

        Polars does not share a rolling window or an EMA used twice in one expression tree, so
        a feature that reuses one (Bollinger's mean and deviation) names it here, once, and
        refers to it with ``pl.col(self.tmp(...))``. Later stages may use earlier ones.
        """
        return []

    def tmp(self, name: str) -> str:
        """The column name of an intermediate of this feature (never an output column)."""
        return f"__{self.base_name}__{name}"

    @abstractmethod
    def expressions(self) -> list[pl.Expr]:
        """Polars expressions, one per output, over a bar frame sorted by ``open_time``."""

    @abstractmethod
    def incremental(self) -> IncrementalFeature:
        """A fresh incremental state for a new bar sequence."""

    def batch(self, bars: pl.DataFrame) -> pl.DataFrame:
        """The batch execution: one float column per output, NaN where not yet defined."""
        self.check_columns(bars.columns)
        lf = bars.lazy()
        if len(bars) > self.warmup:
            for stage in self.stages():
                lf = lf.with_columns(**stage)
        return lf.select(self.batch_expressions(len(bars))).collect(optimizations=QUERY_FLAGS)

    def batch_expressions(self, rows: int) -> list[pl.Expr]:
        """The output expressions, named, as floats with NaN (not null) before the warm-up."""
        if rows <= self.warmup:  # too short to leave the warm-up: all NaN
            return [pl.repeat(NAN, rows, dtype=pl.Float64).alias(c) for c in self.columns]
        return [
            e.cast(pl.Float64).fill_null(NAN).alias(c)
            for e, c in zip(self.expressions(), self.columns, strict=True)
        ]

    def check_columns(self, columns: Sequence[str]) -> None:
        missing = [c for c in self.requires if c not in columns]
        if missing:
            raise FeatureError(
                f"feature {self.name!r} needs bar column(s) {missing}, which these bars lack"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _fmt(value: ParamValue) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace(".", "p")


_REGISTRY: dict[str, type[Feature]] = {}


def register_feature(name: str) -> Callable[[type[Feature]], type[Feature]]:
    """Class decorator: make a `Feature` subclass available under ``name`` in configs."""

    def wrap(cls: type[Feature]) -> type[Feature]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise FeatureError(f"feature name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    """Register the built-in features (importing `tessera.features.library` does; once).

    Called by the lookups rather than by the package's import, so that importing
    `tessera.features` (the CLI does, to parse its options) costs nothing until a feature is
    looked up.
    """
    import tessera.features.library  # noqa: F401


def registered() -> dict[str, type[Feature]]:
    """Name -> class of every registered feature (built-in and user)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def make_feature(spec: FeatureSpec) -> Feature:
    _load_builtins()
    cls = _REGISTRY.get(spec.name)
    if cls is None:
        raise FeatureError(
            f"unknown feature {spec.name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        )
    return cls(spec.params, spec.alias)


def make_features(specs: Sequence[FeatureSpec]) -> list[Feature]:
    """Build and check a feature list: names resolve, parameters are valid, columns unique."""
    feats = [make_feature(s) for s in specs]
    seen: dict[str, str] = {}
    for f in feats:
        for c in f.columns:
            if c in seen:
                raise FeatureError(f"feature column {c!r} produced twice; set an alias")
            seen[c] = f.name
    return feats
