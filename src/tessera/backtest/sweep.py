"""Parameter sweeps of any strategy: grid or random, local or on Ray.

A sweep point is a strategy name plus parameters; its row carries exactly the metrics
`tessera backtest` reports for it (the keys and units of `BacktestResult.metrics`: fractions,
not percent), because each point is `BacktestEngine(config, risk).run(...)` — the same engine,
risk and fills — or, for ``engine="vectorized"``, the vectorized `SmaCross` path where it
provably gives that very result (`tessera.backtest.vectorized`; elsewhere the point runs on the
event engine and its row says why). The ``engine`` column names the engine that ran each row.

Points run in parallel:

* locally in worker processes (the default; the bars are sent to each worker once);
* on a Ray cluster with ``ray_address`` (``"local"`` starts a private Ray on this machine,
  ``"auto"`` joins the running cluster, ``"ray://host:10001"`` a remote one). The bars are put
  in Ray's object store once and shared by every task. Ray is an optional extra
  (``pip install tessera[ray]``).

Results are a polars frame, one row per point, best first by the chosen metric (NaN last).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import polars as pl

from tessera.backtest.data import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.results import BacktestResult
from tessera.backtest.vectorized import NotProvablyEqualError, backtest_sma_cross, static_refusal
from tessera.config import BacktestConfig, RiskConfig
from tessera.logging import get_logger
from tessera.optimize.space import parse_scalar
from tessera.strategies import SmaCross, strategy_class
from tessera.strategies.guard import StrategyError
from tessera.strategies.loader import LoaderState, loader_state, restore_loader_state

log = get_logger(__name__)

Point = dict[str, Any]
ENGINES = ("event", "vectorized")
# The keys of `BacktestResult.metrics` (`results.compute_metrics`), in its order: a sweep row's
# metric columns (a test holds this list to a real result's keys).
METRIC_KEYS = (
    "bars",
    "initial_equity",
    "final_equity",
    "total_return",
    "annualized_return",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration_s",
    "calmar",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "fees_paid",
    "slippage_paid",
)
# Metrics where less is better: a sweep sorted by one of them puts the lowest first.
LOWER_IS_BETTER = frozenset(
    {
        "max_drawdown",
        "max_drawdown_duration_s",
        "volatility",
        "fees_paid",
        "slippage_paid",
        "turnover",
    }
)


def parse_values(spec: str) -> list[Any]:
    """``"5:50:5"`` (start:stop:step, ints or floats), ``"a,b,c"``, or one value."""

    if spec.count(":") == 2:
        a, b, c = (parse_scalar(x) for x in spec.split(":"))
        if not all(isinstance(v, int | float) for v in (a, b, c)) or not c > 0:
            raise ValueError(f"{spec!r}: start:stop:step needs numbers and a positive step")
        if all(isinstance(v, int) for v in (a, b, c)):
            return list(range(a, b, c))
        n = math.ceil((b - a) / c - 1e-9)  # stop excluded, as in range()
        return [round(a + i * c, 12) for i in range(max(n, 0))]
    return [parse_scalar(x) for x in spec.split(",") if x != ""]


def grid_points(space: Mapping[str, Sequence[Any]]) -> list[Point]:
    """Every combination of the parameter values (the cartesian product), in a stable order."""
    keys = sorted(space)
    combos = itertools.product(*(space[k] for k in keys))
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def random_points(space: Mapping[str, Sequence[Any]], n: int, seed: int) -> list[Point]:
    """``n`` distinct points drawn from the grid without replacement (all if the grid is small)."""
    grid = grid_points(space)
    if n >= len(grid):
        return grid
    return random.Random(seed).sample(grid, n)


def _run_point(
    data: Sequence[BarSeries],
    strategy: str,
    params: Point,
    config: BacktestConfig,
    risk: RiskConfig | None,
    loads: LoaderState | None = None,
    engine: str = "event",
) -> dict[str, Any]:
    """One point's row: the parameters, ``engine``, every metric of its `BacktestResult`,
    ``halted`` (the kill-switch fired), ``fallback`` (why a vectorized point ran on the event
    engine) and ``error``."""
    row: dict[str, Any] = dict(params)
    row["engine"] = "event"
    row["fallback"] = ""
    try:
        if loads is not None:  # user strategies, in a process that has not loaded them
            restore_loader_state(loads)
        strat = strategy_class(strategy)([s.symbol for s in data], **params)
    except (KeyError, ValueError, TypeError) as exc:
        row["error"] = str(exc)
        return row
    result: BacktestResult | None = None
    if engine == "vectorized" and len(data) > 1:
        row["fallback"] = "the vectorized path simulates one symbol"
    elif engine == "vectorized":
        try:
            result = backtest_sma_cross(data[0], params, config, risk)
            row["engine"] = "vectorized"
        except NotProvablyEqualError as exc:
            row["fallback"] = str(exc)
    if result is None:
        try:
            result = BacktestEngine(config, risk).run(data, [strat])
        except StrategyError as exc:  # this grid point's strategy raised: its row says where
            row["error"] = str(exc)
            return row
    row.update(result.metrics)
    row["halted"] = result.halted_at is not None
    row["error"] = ""
    return row


# Local workers receive the bars once, through the pool initializer, not with every point.
_WORKER_SERIES: tuple[BarSeries, ...] | None = None


def _init_worker(data: tuple[BarSeries, ...]) -> None:
    global _WORKER_SERIES
    _WORKER_SERIES = data


def _local_point(
    args: tuple[str, Point, BacktestConfig, RiskConfig | None, LoaderState, str],
) -> dict[str, Any]:
    assert _WORKER_SERIES is not None
    return _run_point(_WORKER_SERIES, *args)


def run_sweep(
    series: BarSeries | Sequence[BarSeries],
    strategy: str,
    points: Sequence[Point],
    config: BacktestConfig,
    risk: RiskConfig | None = None,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    sort_by: str = "sharpe",
    engine: str = "event",
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> pl.DataFrame:
    """Backtest every point; rows best first by ``sort_by`` (a metric or a parameter;
    descending, ascending for `LOWER_IS_BETTER`), NaN and failed points last.

    ``engine="vectorized"`` (``sma_cross`` only) runs each point on the vectorized path where
    it provably equals the event engine and on the event engine elsewhere; ``"event"`` runs
    every point on the event engine. Several series: each point is one portfolio backtest
    over all of them (one account), on the event engine."""
    data = (series,) if isinstance(series, BarSeries) else tuple(series)
    if not points:
        raise ValueError("the sweep has no points")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "vectorized":
        why = vectorized_refusal(strategy, config)
        if why is not None:
            raise ValueError(f"the vectorized path cannot run here: {why}")
    if ray_address:
        rows = _run_ray(data, strategy, points, config, risk, ray_address, engine, on_result)
    elif workers > 1 and len(points) > 1:
        loads = loader_state()
        jobs = [(strategy, p, config, risk, loads, engine) for p in points]
        rows = []
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(data,)
        ) as pool:
            for row in pool.map(_local_point, jobs):
                rows.append(row)
                if on_result:
                    on_result(row)
    else:
        rows = []
        for p in points:
            row = _run_point(data, strategy, p, config, risk, engine=engine)
            rows.append(row)
            if on_result:
                on_result(row)
    return _frame(rows, points, sort_by)


def vectorized_refusal(strategy: str, config: BacktestConfig) -> str | None:
    """Why no point of this sweep may run on the vectorized path (None: each point is checked
    on its own when it runs)."""
    if strategy_class(strategy) is not SmaCross:
        return f"it simulates the built-in sma_cross only, not {strategy!r}"
    return static_refusal(config)


def _frame(rows: list[dict[str, Any]], points: Sequence[Point], sort_by: str) -> pl.DataFrame:
    """Rows in a fixed column order: parameters, engine, metrics, halted, fallback, error."""
    frame = pl.DataFrame(rows, infer_schema_length=None)
    params = list(dict.fromkeys(k for p in points for k in p))
    tail = ["halted", "fallback", "error"]
    metrics = [c for c in frame.columns if c not in {*params, "engine", *tail}]
    frame = frame.select([c for c in (*params, "engine", *metrics, *tail) if c in frame.columns])
    if sort_by in frame.columns:
        key = pl.col(sort_by)
        if frame.schema[sort_by].is_float():
            key = key.fill_nan(None)
        frame = frame.sort(
            key, descending=sort_by not in LOWER_IS_BETTER, nulls_last=True, maintain_order=True
        )
    return frame


@contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """The ``ray`` module, connected to ``address`` (``"local"`` starts a private cluster), for
    the ``with`` block; Ray is shut down after it only if this call started it, so a caller that
    had already connected keeps its session. ``tessera sweep`` and ``tessera optimize`` share it
    so both name the same missing extra and connect the same way."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(
            "--ray-address needs Ray: pip install 'tessera[ray]' (or pip install ray)"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _run_ray(
    data: tuple[BarSeries, ...],
    strategy: str,
    points: Iterable[Point],
    config: BacktestConfig,
    risk: RiskConfig | None,
    address: str,
    engine: str,
    on_result: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    with ray_session(address) as ray:
        remote = ray.remote(_run_point)
        ref = ray.put(data)  # once into the object store, shared by every task
        loads = loader_state()
        pending = [remote.remote(ref, strategy, p, config, risk, loads, engine) for p in points]
        by_ref = {id(r): i for i, r in enumerate(pending)}
        rows: list[dict[str, Any] | None] = [None] * len(pending)
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for r in done:
                row = ray.get(r)
                rows[by_ref[id(r)]] = row
                if on_result:
                    on_result(row)
        log.info("ray sweep done", points=len(rows), address=address)
        return [r for r in rows if r is not None]
