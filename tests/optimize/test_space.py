"""Search spaces: the spec forms, the spaces strategies declare, and --space overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from tessera.optimize.space import (
    Choice,
    FloatRange,
    IntRange,
    declared_space,
    format_dimension,
    neighbours,
    parse_dimension,
    resolve_space,
)
from tessera.strategies import Strategy, StrategyParams
from tessera.strategies.loader import load_strategies
from tessera.strategies.template import render_template

FIXTURES = Path(__file__).resolve().parents[1] / "strategies" / "fixtures"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fast=int:5..50", IntRange("fast", 5, 50)),
        ("fast=int:5..50:5", IntRange("fast", 5, 50, step=5)),
        ("n=int:1..1000:log", IntRange("n", 1, 1000, log=True)),
        ("k=float:0.5..3", FloatRange("k", 0.5, 3.0)),
        ("k=float:0.5..3:0.25", FloatRange("k", 0.5, 3.0, step=0.25)),
        ("lr=float:1e-4..1e-1:log", FloatRange("lr", 1e-4, 1e-1, log=True)),
        ("z=float:-0.5..0.5", FloatRange("z", -0.5, 0.5)),
        ("mode=cat:a,b,c", Choice("mode", ("a", "b", "c"))),
        ("mixed=cat:1,2.5,true,x", Choice("mixed", (1, 2.5, True, "x"))),
    ],
)
def test_every_documented_form_parses_and_prints_back(spec: str, expected: Any) -> None:
    dim = parse_dimension(spec)
    assert dim == expected
    assert parse_dimension(format_dimension(dim)) == dim


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("fast", "must start with a parameter name"),
        ("fast=5..50", "kind"),
        ("fast=int:5", "LOW..HIGH"),
        ("fast=int:a..5", "'a' is not an integer"),
        ("fast=int:1.5..5", "not an integer"),
        ("x=foo:1..2", "unknown kind 'foo'"),
        ("k=float:3..1", "above HIGH"),
        ("k=float:0..1:log", "LOW > 0"),
        ("k=float:1..2:-1", "must be positive"),
        ("k=float:1..inf", "finite"),
        ("m=cat:a,a", "each value once"),
        ("m=cat:", "kind"),
    ],
)
def test_a_malformed_spec_is_refused_naming_it_and_the_accepted_forms(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match="search dimension") as err:
        parse_dimension(spec)
    text = str(err.value)
    assert repr(spec) in text and why in text
    assert "NAME=int:LOW..HIGH" in text and "NAME=cat:A,B,C" in text


def test_the_builtin_strategies_declare_their_search_space() -> None:
    assert declared_space("sma_cross") == [IntRange("fast", 5, 40), IntRange("slow", 50, 200)]
    assert [d.name for d in declared_space("mean_reversion")] == ["window", "entry_z", "exit_z"]


def test_the_rsi_template_and_the_user_fixture_declare_spaces(tmp_path: Path) -> None:
    path = tmp_path / "tmpl_rsi.py"
    path.write_text(render_template("tmpl_rsi"))
    load_strategies(path, entry_points=False)
    load_strategies(FIXTURES / "my_rsi.py", entry_points=False)
    assert [d.name for d in declared_space("tmpl_rsi")] == [
        "period",
        "oversold",
        "overbought",
        "stop_loss_pct",
        "take_profit_pct",
    ]
    assert declared_space("my_rsi")[0] == IntRange("period", 5, 30)


def _register(name: str, **fields: Any) -> str:
    """A strategy class with ``fields`` as its Params, registered under a unique name."""
    from tessera.strategies import base

    annotations = {k: v[0] for k, v in fields.items()}
    namespace: dict[str, Any] = {"__annotations__": annotations}
    namespace.update({k: v[1] for k, v in fields.items()})
    params = type("Params", (StrategyParams,), namespace)
    cls = type(name, (Strategy,), {"name": name, "Params": params})
    base._REGISTRY[name] = cls
    return name


@pytest.fixture
def scratch_strategy() -> Any:
    from tessera.strategies import base

    made: list[str] = []

    def make(name: str, **fields: Any) -> str:
        made.append(_register(name, **fields))
        return name

    yield make
    for name in made:
        base._REGISTRY.pop(name, None)


def test_a_declared_range_outside_the_fields_constraints_is_refused_when_read(
    scratch_strategy: Any,
) -> None:
    name = scratch_strategy(
        "space_bad_bound", n=(int, Field(5, gt=1, json_schema_extra={"search": "int:0..10"}))
    )
    with pytest.raises(ValueError, match=r"space_bad_bound.*n=int:0..10.*reaches 0.*integer > 1"):
        declared_space(name)


def test_a_declared_float_range_on_an_integer_field_is_refused(scratch_strategy: Any) -> None:
    name = scratch_strategy(
        "space_bad_kind", n=(int, Field(5, gt=0, json_schema_extra={"search": "float:1..10"}))
    )
    with pytest.raises(ValueError, match="a range of numbers, but n accepts integer"):
        declared_space(name)


def test_a_declared_choice_outside_an_upper_bound_is_refused(scratch_strategy: Any) -> None:
    name = scratch_strategy(
        "space_bad_choice",
        p=(float, Field(0.5, gt=0, lt=1, json_schema_extra={"search": "cat:0.2,0.5,1.0"})),
    )
    with pytest.raises(ValueError, match=r"reaches 1\.0"):
        declared_space(name)


def test_a_declared_spec_that_does_not_parse_names_the_strategy_and_parameter(
    scratch_strategy: Any,
) -> None:
    name = scratch_strategy(
        "space_bad_spec", n=(int, Field(5, gt=0, json_schema_extra={"search": "int:5-10"}))
    )
    with pytest.raises(ValueError, match="strategy space_bad_spec, parameter n"):
        declared_space(name)


def test_space_overrides_a_declared_dimension_by_name_and_keeps_the_others() -> None:
    space = resolve_space("sma_cross", ["slow=int:60..120:10"])
    assert space == [IntRange("fast", 5, 40), IntRange("slow", 60, 120, step=10)]


def test_space_adds_a_dimension_the_strategy_does_not_declare() -> None:
    space = resolve_space("sma_cross", ["size=float:0.5..1"])
    assert space[-1] == FloatRange("size", 0.5, 1.0)


def test_space_with_an_unknown_parameter_names_the_strategys_parameters() -> None:
    with pytest.raises(ValueError, match="has no parameter") as err:
        resolve_space("sma_cross", ["fsat=int:5..20"])
    text = str(err.value)
    assert "'fsat'" in text and "fast" in text and "slow" in text and "allow_short" in text


def test_space_outside_the_fields_constraints_is_refused() -> None:
    with pytest.raises(ValueError, match="reaches 0"):
        resolve_space("sma_cross", ["fast=int:0..20"])


def test_a_strategy_without_a_declared_space_needs_one_on_the_command_line() -> None:
    with pytest.raises(ValueError, match="declares no search space"):
        resolve_space("buy_and_hold", [])
    assert resolve_space("buy_and_hold", ["size=float:0.1..1"]) == [FloatRange("size", 0.1, 1.0)]


def test_neighbours_step_around_the_best_inside_each_range() -> None:
    space = [IntRange("fast", 5, 50), IntRange("slow", 30, 200, step=10), Choice("m", ("a", "b"))]
    near = neighbours(space, {"fast": 6, "slow": 200, "m": "a"}, steps=2)
    assert near == {"fast": [5, 6, 7, 8], "slow": [180, 190, 200], "m": ["a", "b"]}
    cont = neighbours([FloatRange("k", 0.0, 10.0)], {"k": 5.0}, points=5)["k"]
    assert cont == [4.0, 4.5, 5.0, 5.5, 6.0]
