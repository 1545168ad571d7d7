"""Strategy parameters are declared, typed and constrained, and checked when a strategy is built.

A bad value used to run: ``qty=-0.001`` turned a long-only strategy short, ``qty=nan`` crashed
every signal, ``qty=0``/``inf`` and ``entry_z=nan`` never traded, ``qty_step=0`` divided by zero.
The bad values here are generated from each parameter's own declaration, so a parameter added
later (or a user strategy with declared parameters) is covered the same way.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from tessera.strategies import (
    Strategy,
    StrategyParamError,
    StrategyParams,
    registered_strategies,
    strategy_class,
    strategy_params,
)

BUILTIN = ("sma_cross", "mean_reversion", "model_signal", "buy_and_hold")
REPO = Path(__file__).resolve().parents[2]
# What pydantic reads as a boolean: everything else is a wrong value for allow_short.
BOOL_WORDS = {"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def _base(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _bound(info: FieldInfo, name: str) -> Any:
    for meta in info.metadata:
        value = getattr(meta, name, None)
        if value is not None:
            return value
    return None


def bad_values(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Values this declared parameter must refuse: out of range, nan/inf, wrong type."""
    kind = _base(info.annotation)
    words = st.from_regex(r"[a-zA-Z]{1,8}", fullmatch=True)
    if kind is bool:
        return st.one_of(
            words.filter(lambda w: w.lower() not in BOOL_WORDS),
            st.integers().filter(lambda i: i not in (0, 1)),
            st.lists(st.booleans(), min_size=1, max_size=2),
        )
    infinite_ok = any(getattr(m, "allow_inf_nan", None) for m in info.metadata)
    options: list[st.SearchStrategy[Any]] = [
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),  # `fast=true` is not 1
        words.filter(lambda w: w.lower() not in ("nan", "inf", "infinity")),
        st.lists(st.integers(), max_size=2),
    ]
    if not infinite_ok:
        options.append(st.just(-math.inf))
    gt, ge, le = _bound(info, "gt"), _bound(info, "ge"), _bound(info, "le")
    low = gt if gt is not None else ge
    if low is not None:  # zero and negative for gt=0, anything below the bound
        top = float(low)
        options.append(st.floats(max_value=top, exclude_max=gt is None, allow_nan=False))
        options.append(st.just(low if gt is not None else low - 1))
    if le is not None:
        options.append(st.floats(min_value=float(le), exclude_min=True, allow_infinity=False))
    if kind is int:
        options.append(
            st.floats(min_value=1.01, max_value=1e6).filter(lambda f: not f.is_integer())
        )
    return st.one_of(options)


CASES = [
    (name, field, info)
    for name in BUILTIN
    for field, info in strategy_class(name).Params.model_fields.items()
]


@pytest.mark.parametrize(("name", "field", "info"), CASES, ids=[f"{n}.{f}" for n, f, _ in CASES])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_bad_value_of_every_parameter_is_refused_with_a_sentence_naming_it(
    name: str, field: str, info: FieldInfo, data: st.DataObject
) -> None:
    value = data.draw(bad_values(info), label=f"{name}.{field}")
    with pytest.raises(StrategyParamError) as caught:
        strategy_class(name)(["BTCUSDT"], **{field: value})
    message = str(caught.value)
    assert message.startswith(f"strategy {name}: ")
    assert f"{field}=" in message and "accepts" in message  # the parameter and what it takes
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("name", BUILTIN)
@settings(max_examples=40, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
def test_an_unknown_parameter_is_refused_and_the_known_ones_are_listed(name: str, key: str) -> None:
    declared = set(strategy_class(name).Params.model_fields)
    if key in declared:
        return
    with pytest.raises(StrategyParamError, match=rf"unknown parameter\(s\) {key}\b") as caught:
        strategy_class(name)(["BTCUSDT"], **{key: 1})
    assert all(p in str(caught.value) for p in declared)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sma_cross", {"qty": -0.001}),  # flipped a long-only strategy short
        ("sma_cross", {"qty": math.nan}),  # crashed every signal
        ("mean_reversion", {"qty": 0}),  # never traded
        ("model_signal", {"qty": math.inf}),
        ("mean_reversion", {"entry_z": math.nan}),  # never traded
        ("buy_and_hold", {"qty_step": 0}),  # divided by zero
        ("sma_cross", {"fast": 30, "slow": 10}),
        ("mean_reversion", {"entry_z": 1.0, "exit_z": 1.5}),
        ("model_signal", {"short_threshold": 0.5, "long_threshold": 0.1}),
    ],
)
def test_the_reported_values_are_refused(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(StrategyParamError, match=f"strategy {name}"):
        strategy_class(name)(["BTCUSDT"], **params)


class _Ctx:
    """Just enough of a `StrategyContext` for sizing."""

    def equity(self) -> Decimal:
        return Decimal(10_000)


@pytest.mark.parametrize("name", BUILTIN)
@settings(max_examples=50, deadline=None)
@given(
    qty=st.decimals(min_value="0.00000001", max_value="1000", places=8),
    size=st.floats(min_value=0.001, max_value=1.0),
    step=st.sampled_from(["0.00001", "0.001", "1"]),
    price=st.floats(min_value=1.0, max_value=1e6),
)
def test_good_values_build_and_a_long_entry_is_never_short(
    name: str, qty: Decimal, size: float, step: str, price: float
) -> None:
    fixed = strategy_class(name)(["BTCUSDT"], qty=str(qty), size=size, qty_step=step)
    sized = strategy_class(name)(["BTCUSDT"], size=size, qty_step=step)
    assert fixed.target_qty(1, price, _Ctx()) == qty  # type: ignore[attr-defined]
    assert fixed.target_qty(-1, price, _Ctx()) == 0  # type: ignore[attr-defined]
    assert sized.target_qty(1, price, _Ctx()) >= 0  # type: ignore[attr-defined]


def test_a_float_quantity_is_kept_exactly_as_written() -> None:
    strat = strategy_class("sma_cross")(["BTCUSDT"], qty=0.001, qty_step="0.0001")
    assert strat.params.qty == Decimal("0.001")  # type: ignore[attr-defined]
    assert strat.params.qty_step == Decimal("0.0001")  # type: ignore[attr-defined]


def test_strategy_params_lists_every_parameter_with_type_default_and_constraint() -> None:
    specs = {p.name: p for p in strategy_params("mean_reversion")}
    assert list(specs) == ["size", "qty", "allow_short", "qty_step", "window", "entry_z", "exit_z"]
    assert specs["window"].type == "integer" and specs["window"].default == 60
    assert specs["qty"].type == "decimal" and specs["qty"].default is None
    assert "> 0" in specs["qty"].accepted and "finite" in specs["qty"].accepted
    assert specs["entry_z"].description
    with pytest.raises(KeyError, match="unknown strategy"):
        strategy_params("nope")


def test_a_strategy_declares_its_parameters_by_a_nested_model() -> None:
    """The mechanism a user-written strategy uses: a ``Params`` model and nothing else."""
    from pydantic import Field

    class Breakout(Strategy):
        name = "test_breakout_params"

        class Params(StrategyParams):
            lookback: int = Field(20, gt=1, description="bars of the range")

    assert Breakout(["BTCUSDT"], lookback=5).params.lookback == 5  # type: ignore[attr-defined]
    with pytest.raises(StrategyParamError, match=r"lookback=1 is not accepted"):
        Breakout(["BTCUSDT"], lookback=1)
    with pytest.raises(StrategyParamError, match=r"unknown parameter\(s\) qty"):
        Breakout(["BTCUSDT"], qty=1)
    assert "test_breakout_params" not in registered_strategies()


# --- the commands refuse at start, with exit code 2 ------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A port that accepts TCP connections and answers nothing: did anyone connect?"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield f"127.0.0.1:{sock.getsockname()[1]}", sock


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def tessera(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    base.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200", **env)
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "--metrics-port", "0", *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("sma_cross", "qty", "-0.001"),
        ("mean_reversion", "entry_z", "nan"),
        ("model_signal", "qty", "inf"),
        ("buy_and_hold", "qty_step", "0"),
    ],
)
def test_backtest_refuses_a_bad_parameter_with_exit_2_and_one_paragraph(
    tmp_path: Path, name: str, param: str, value: str
) -> None:
    res = tessera(tmp_path, "backtest", "--strategy", name, "-p", f"{param}={value}")
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert f"strategy {name}: {param}={value} is not accepted" in res.stderr
    assert not (tmp_path / "data" / "reports").exists()  # nothing ran


@pytest.mark.parametrize(
    ("mode", "spec", "expected"),
    [
        ("live", "sma_cross:qty=-0.001", "qty=-0.001 is not accepted"),
        ("paper", "mean_reversion:entry_z=nan", "entry_z=nan is not accepted"),
        ("dev", "sma_cross:qty_step=0", "qty_step=0 is not accepted"),
        ("live", "sma_cross:fst=3", "unknown parameter(s) fst"),
    ],
)
def test_run_refuses_a_bad_parameter_before_connecting_anywhere(
    tmp_path: Path, listener: tuple[str, socket.socket], mode: str, spec: str, expected: str
) -> None:
    address, sock = listener
    res = tessera(
        tmp_path,
        "run",
        "--mode",
        mode,
        "--i-understand-live-trading",
        "--strategy",
        spec,
        "--duration",
        "5",
        TESSERA_EXCHANGE__REST_URL=f"http://{address}",
        TESSERA_EXCHANGE__WS_URL=f"ws://{address}",
        TESSERA_DATA__REST_URL=f"http://{address}",
        TESSERA_DATA__WS_URL=f"ws://{address}",
        TESSERA_DATABASE_URL=f"postgresql://u:p@{address}/db",
        TESSERA_REDIS_URL=f"redis://{address}/0",
        TESSERA_EXCHANGE__API_KEY="gate-test-key",
        TESSERA_EXCHANGE__API_SECRET="gate-test-secret",
    )
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert expected in res.stderr and spec.split(":")[0] in res.stderr
    assert not _connected(sock), "the run connected somewhere before refusing its parameters"
