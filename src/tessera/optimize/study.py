"""Bayesian search of a strategy's parameters with Optuna, every trial on the event engine.

A trial is exactly `backtest_point`: ``BacktestEngine(config, risk).run(data, [strategy])``,
the run ``tessera backtest`` and ``tessera sweep`` do — same risk limits, fees, slippage and
fills — so the figures of the chosen point are the figures a backtest of it prints (a test
holds a trial's metrics equal to `backtest_point` and to a sweep row of the same point).

What a study does, and why:

* **Samplers**: ``tpe`` (default), ``cmaes`` (only when every dimension is an int or float
  range: CMA-ES has no notion of a category), ``random``, ``nsga2``. ``auto`` is TPE for one
  objective and for several (Optuna's multi-objective TPE beats NSGA-II on the budgets of a
  backtest search, a few hundred trials; ask for ``nsga2`` by name).
* **Failures are data, not crashes**: a point the strategy refuses (``fast >= slow``), a
  strategy that raises, an objective that is NaN (no trades) is a *failed* trial with its error
  recorded; the study goes on.
* **Pruning** (one objective): the engine reports its equity about ten times a run; the trial
  reports the running objective (Sharpe, Sortino, drawdown, or the return so far) and stops when
  Optuna's median pruner says it is behind the median of earlier trials at that point.
* **Storage**: in memory by default in the library (the CLI gives a SQLite file); a path or a
  ``sqlite:///`` URL makes the study resumable; a PostgreSQL URL lets several processes or
  machines share it. The study's name is derived from the strategy, space, objectives, data and
  costs, so the same command resumes the same study; a named study resumed with a different
  space or objectives is refused. Each trial keeps its metrics and per-period returns in the
  storage, so a resumed study still has every trial for the overfitting statistics.
* **Reproducibility**: ``seed`` seeds the sampler. With ``workers=1`` two runs with one seed
  try the same parameters; with several workers (each seeded ``seed + i``) the order trials
  finish in decides what the sampler sees, so parallel studies are not reproducible (as
  Optuna documents for any parallel optimisation).
* **Parallel**: ``workers > 1`` runs that many local processes, each with the bars given once
  (the pool initializer) and the user's strategy files loaded again (the loader's state), each
  asking the shared storage for trials; ``ray_address`` runs them as Ray tasks (the bars put in
  the object store once). The storage must be reachable from every worker: a SQLite file on
  this machine, or PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.backtest.data import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.results import YEAR_NS, BacktestResult
from tessera.backtest.sweep import ray_session
from tessera.config import BacktestConfig, RiskConfig
from tessera.data.intervals import INTERVAL_NS
from tessera.logging import get_logger
from tessera.optimize.objectives import BUILTIN_METRIC, Direction, ObjectiveSpec, objective
from tessera.optimize.space import Choice, Dimension, FloatRange, IntRange, format_dimension
from tessera.strategies import strategy_class
from tessera.strategies.guard import StrategyError
from tessera.strategies.loader import LoaderState, loader_state, restore_loader_state

if TYPE_CHECKING:
    import optuna

log = get_logger(__name__)

SAMPLERS = ("auto", "tpe", "cmaes", "random", "nsga2")
STATES = ("complete", "pruned", "failed")
# Optuna's median pruner: no pruning before 5 trials are complete nor before the 4th checkpoint
# (a run's first tenths say little about its end).
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_STEPS = 3
# The key of the study's user attributes that records what the study is a search of.
SIGNATURE_KEY = "tessera"

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the reports and statistics read it."""

    number: int
    params: dict[str, Any]  # every parameter the strategy ran with (searched and fixed)
    values: tuple[float, ...]  # one per objective; () if not complete
    state: str  # "complete" | "pruned" | "failed"
    metrics: dict[str, float]  # BacktestResult.metrics (complete trials)
    returns: F64  # per-period simple returns of the equity (OptimizationResult.period)
    error: str = ""


@dataclass
class OptimizationResult:
    """A study's every trial, its best (or Pareto front), and how it was searched."""

    strategy: str
    study_name: str
    storage: str  # URL, password masked ("memory" for an in-memory study)
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    space: tuple[Dimension, ...]
    period: str  # the returns' sampling period, e.g. "1h"
    periods_per_year: float
    trials: list[TrialRecord]  # every finished trial of the study (resumed ones too), by number
    best: TrialRecord | None
    pareto: list[TrialRecord] = field(default_factory=list)
    seed: int | None = None
    sampler: str = "tpe"

    def complete(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "complete"]

    def trials_frame(self) -> pl.DataFrame:
        """One row per trial: number, state, the parameters, ``value_<objective>`` per
        objective, every metric, and the error of a failed trial."""
        params = list(dict.fromkeys(k for t in self.trials for k in t.params))
        metrics = list(dict.fromkeys(k for t in self.trials for k in t.metrics))
        taken = {"number", "state", "error", *params, *(f"value_{o}" for o in self.objectives)}
        # a categorical dimension may mix kinds (cat:1,a): such a column is text
        mixed = set()
        for p in params:
            kinds = {type(t.params[p]) for t in self.trials if t.params.get(p) is not None}
            if len(kinds) > 1 and not kinds <= {int, float}:
                mixed.add(p)
        rows = []
        for t in self.trials:
            row: dict[str, Any] = {"number": t.number, "state": t.state}
            for p in params:
                value = t.params.get(p)
                row[p] = str(value) if p in mixed and value is not None else value
            for i, name in enumerate(self.objectives):
                row[f"value_{name}"] = t.values[i] if t.values else None
            for m in metrics:
                row[f"metric_{m}" if m in taken else m] = t.metrics.get(m)
            row["error"] = t.error
            rows.append(row)
        return pl.DataFrame(rows, infer_schema_length=None)

    def returns_matrix(self) -> F64:
        """Per-period returns of the complete trials, T periods x N trials (for PBO)."""
        done = [t.returns for t in self.complete()]
        if not done:
            return np.zeros((0, 0), dtype=np.float64)
        lengths = {len(r) for r in done}
        if len(lengths) != 1:
            raise ValueError(f"the trials' return series differ in length ({sorted(lengths)})")
        return np.column_stack(done).astype(np.float64)


# --- one point ---------------------------------------------------------------------------------


def _as_tuple(data: BarSeries | Sequence[BarSeries]) -> tuple[BarSeries, ...]:
    return (data,) if isinstance(data, BarSeries) else tuple(data)


def backtest_point(
    data: BarSeries | Sequence[BarSeries],
    strategy: str,
    params: Mapping[str, Any],
    config: BacktestConfig,
    risk: RiskConfig | None = None,
    *,
    progress: Callable[[int, int, np.ndarray], None] | None = None,
) -> BacktestResult:
    """Exactly the run a trial does (and ``tessera backtest`` and a sweep point): the strategy
    built from ``params`` over ``data``, one account, ``config``'s costs and ``risk``."""
    series = _as_tuple(data)
    strat = strategy_class(strategy)([s.symbol for s in series], **dict(params))
    return BacktestEngine(config, risk).run(series, [strat], progress=progress)


def period_ns(period: str) -> int:
    try:
        return INTERVAL_NS[period]
    except KeyError:
        raise ValueError(
            f"period {period!r}: use a bar interval such as 1m, 5m, 15m, 1h, 4h or 1d "
            f"(known: {', '.join(INTERVAL_NS)})"
        ) from None


def period_returns(result: BacktestResult, period: str = "1h") -> F64:
    """Simple returns of the equity sampled at the end of each ``period`` (the last bar that
    closes in it), the first against the initial cash. Bars coarser than ``period`` give one
    return per bar."""
    equity, times = result.equity, result.times
    if len(equity) == 0:
        return np.zeros(0, dtype=np.float64)
    buckets = times // period_ns(period)
    last = np.flatnonzero(np.diff(buckets) != 0)
    ends = np.append(last, len(equity) - 1)
    sampled = equity[ends]
    initial = float(result.metrics.get("initial_equity", equity[0]))
    series = np.concatenate([[initial], sampled])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.diff(series) / series[:-1], dtype=np.float64)


def _effective_period(data: Sequence[BarSeries], period: str) -> str:
    """``period``, or the bar interval when bars are coarser (one return per bar then)."""
    wanted = period_ns(period)
    spacing = [int(np.median(np.diff(s.open_time))) for s in data if len(s) > 1]
    if not spacing or max(spacing) <= wanted:
        return period
    bar = max(spacing)
    fits = [name for name, ns in INTERVAL_NS.items() if ns >= bar]
    return min(fits, key=lambda n: INTERVAL_NS[n]) if fits else period


# --- the trial ---------------------------------------------------------------------------------


def _encode(returns: F64) -> str:
    return base64.b64encode(np.ascontiguousarray(returns, dtype="<f8").tobytes()).decode()


def _decode(text: Any) -> F64:
    if not isinstance(text, str) or not text:
        return np.zeros(0, dtype=np.float64)
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


def _running_value(spec: ObjectiveSpec, equity: F64, initial: float) -> float:
    """The objective so far, for the pruner (comparable between trials at one checkpoint):
    the un-annualised Sharpe or Sortino, the drawdown, or else the return so far (negated for
    a custom objective that is minimised). No trade yet is 0, never NaN (NaN would prune)."""
    series = np.concatenate([[initial], equity])
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.diff(series) / series[:-1]
    metric = BUILTIN_METRIC.get(spec.name) if spec.builtin else None
    value: float
    if metric == "sharpe":
        std = float(np.std(rets, ddof=1)) if len(rets) > 1 else 0.0
        value = float(np.mean(rets)) / std if std > 0 else 0.0
    elif metric == "sortino":
        down = rets[rets < 0]
        dstd = float(np.sqrt(np.mean(np.square(down)))) if len(down) else 0.0
        value = float(np.mean(rets)) / dstd if dstd > 0 else 0.0
    elif metric == "max_drawdown":
        peak = np.maximum.accumulate(series)
        value = float(np.max((peak - series) / peak))
    else:
        value = float(series[-1] / initial - 1.0)
        if spec.direction == "minimize":
            value = -value
    return value if math.isfinite(value) else 0.0


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs besides the bars (which it receives once)."""

    strategy: str
    space: tuple[Dimension, ...]
    config: BacktestConfig
    risk: RiskConfig | None
    objectives: tuple[str, ...]
    fixed: tuple[tuple[str, Any], ...]
    prune: bool
    period: str
    storage: str
    study_name: str
    trials: int
    seed: int | None
    sampler: str
    loads: LoaderState | None = None


class _TrialFailedError(Exception):
    """A trial that cannot give a value: its error goes to the trial's ``error``."""


def _suggest(trial: optuna.Trial, dim: Dimension) -> Any:
    if isinstance(dim, IntRange):
        return trial.suggest_int(dim.name, dim.low, dim.high, step=dim.step, log=dim.log)
    if isinstance(dim, FloatRange):
        return trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step, log=dim.log)
    return trial.suggest_categorical(dim.name, list(dim.choices))


def _run_trial(
    trial: optuna.Trial, data: Sequence[BarSeries], job: _Job, specs: Sequence[ObjectiveSpec]
) -> tuple[float, ...]:
    """One trial: suggest, backtest (reporting for the pruner), score. `_TrialFailedError` with a
    sentence when the point cannot be scored; Optuna's ``TrialPruned`` when pruned."""
    import optuna

    params = dict(job.fixed)
    params.update({d.name: _suggest(trial, d) for d in job.space})
    initial = float(job.config.initial_cash)
    prune = job.prune and len(specs) == 1
    checkpoint = [0]

    def progress(done: int, total: int, equity: np.ndarray) -> None:
        if done >= total or not len(equity):
            return
        checkpoint[0] += 1
        if checkpoint[0] < PRUNER_WARMUP_STEPS:  # the pruner never looks before: no write
            return
        trial.report(_running_value(specs[0], equity, initial), checkpoint[0])
        if trial.should_prune():
            raise optuna.TrialPruned(f"behind the median at bar {done} of {total}")

    try:
        result = backtest_point(
            data, job.strategy, params, job.config, job.risk, progress=progress if prune else None
        )
    except (KeyError, ValueError, TypeError) as exc:  # the strategy refused these parameters
        raise _TrialFailedError(str(exc)) from None
    except StrategyError as exc:  # the strategy raised while running
        raise _TrialFailedError(str(exc)) from None
    trial.set_user_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
    trial.set_user_attr("returns", _encode(period_returns(result, job.period)))
    values: list[float] = []
    for spec in specs:
        try:
            value = spec(result)
        except Exception as exc:  # a custom objective is user code
            raise _TrialFailedError(
                f"objective {spec.name} raised {type(exc).__name__}: {exc}"
            ) from None
        if math.isnan(value):
            trades = int(result.metrics.get("trades", 0))
            raise _TrialFailedError(
                f"objective {spec.name} is NaN for this point ({trades} closed trades): it "
                "cannot be ranked"
            )
        values.append(value)
    return tuple(values)


def _optimize_loop(
    study: optuna.Study,
    data: Sequence[BarSeries],
    job: _Job,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """``job.trials`` trials by ask and tell (a failed point is told FAIL with its error,
    quietly: it is data, not a crash)."""
    import optuna
    from optuna.trial import TrialState

    specs = [objective(o) for o in job.objectives]
    for _ in range(job.trials):
        trial = study.ask()
        try:
            values = _run_trial(trial, data, job, specs)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        except _TrialFailedError as exc:
            trial.set_user_attr("error", str(exc))
            frozen = study.tell(trial, state=TrialState.FAIL)
        except BaseException as exc:  # a bug or an interrupt: record it, then stop
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            frozen = study.tell(trial, list(values))
        if on_trial is not None:
            on_trial(frozen)


# --- samplers, storage, the study's identity ---------------------------------------------------


def _sampler_name(sampler: str, space: Sequence[Dimension], n_objectives: int) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    name = "tpe" if sampler == "auto" else sampler
    if name == "cmaes":
        categorical = [d for d in space if isinstance(d, Choice)]
        if categorical:
            shown = ", ".join(format_dimension(d) for d in categorical)
            raise ValueError(
                f"sampler cmaes searches int and float ranges only, and {shown} is categorical: "
                "use --sampler tpe (or make the dimension a range)"
            )
        if n_objectives > 1:
            raise ValueError(
                "sampler cmaes optimises one objective: use --sampler tpe or nsga2 for several"
            )
    return name


def _make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _make_pruner(prune: bool, n_objectives: int) -> optuna.pruners.BasePruner:
    import optuna

    if prune and n_objectives == 1:
        return optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS
        )
    return optuna.pruners.NopPruner()


def storage_url(storage: str | Path) -> str:
    """A storage URL: a ``sqlite:///`` or PostgreSQL URL as given (``postgresql://`` uses the
    psycopg 3 driver), a path to a SQLite file (a folder: ``<folder>/optuna.db``), created."""
    text = str(storage)
    if "://" in text:
        for prefix in ("postgresql://", "postgres://"):
            if text.startswith(prefix):
                return "postgresql+psycopg://" + text[len(prefix) :]
        return text
    path = Path(text).expanduser()
    if path.is_dir() or text.endswith(("/", "\\")):
        path = path / "optuna.db"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"the study storage {path}: its folder cannot be created ({exc.strerror or exc})"
        ) from None
    return f"sqlite:///{path.resolve()}"


def masked(url: str) -> str:
    """``url`` with its password hidden, for output."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show its scheme only
        return url.split("://", 1)[0] + "://***"


def _open_storage(url: str) -> optuna.storages.BaseStorage:
    """The study storage at ``url``; `ValueError` with a sentence when it cannot be opened
    (no server, a wrong password, a driver that is not installed, a folder not writable)."""
    import optuna

    try:
        if url.startswith("sqlite"):
            # Several processes write one file: wait for the lock instead of failing at once.
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}}
            )
            _fast_sqlite(storage)
            return storage
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:
        reason = " ".join(str(exc).split("\n")[0].split())[:300]
        raise ValueError(
            f"the study storage {masked(url)} cannot be opened ({type(exc).__name__}: {reason}). "
            "Give a writable SQLite path, or a PostgreSQL URL such as "
            "postgresql://user@host:5432/dbname whose server answers."
        ) from None


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging, synced at checkpoints rather than at each of a trial's dozen small
    commits: a SQLite study then costs milliseconds a trial, not a third of a second (the
    commits are still atomic; a power cut may lose the last trials, never corrupt the file).
    WAL also lets the worker processes read while one writes."""
    from sqlalchemy import event

    def pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections opened before the listener get it too


def _signature(
    data: Sequence[BarSeries],
    strategy: str,
    space: Sequence[Dimension],
    config: BacktestConfig,
    risk: RiskConfig | None,
    objectives: Sequence[str],
    directions: Sequence[str],
    fixed: Mapping[str, Any],
    period: str,
) -> dict[str, Any]:
    """What a study is a search of: trials of two different signatures must not mix."""
    cfg = config.model_dump(mode="json", exclude={"report_dir", "strategy", "symbols"})
    cfg.pop("start", None)
    cfg.pop("end", None)
    return {
        "strategy": strategy,
        "space": [format_dimension(d) for d in space],
        "objectives": list(objectives),
        "directions": list(directions),
        "fixed_params": {k: _jsonable(v) for k, v in sorted(fixed.items())},
        "data": [
            [
                s.symbol,
                len(s),
                int(s.open_time[0]) if len(s) else 0,
                int(s.open_time[-1]) if len(s) else 0,
            ]
            for s in data
        ],
        "config": cfg,
        "risk": risk.model_dump(mode="json") if risk is not None else None,
        "period": period,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def default_study_name(strategy: str, signature: Mapping[str, Any]) -> str:
    """``<strategy>-<12 hex digits of the signature>``: the same run resumes the same study."""
    text = json.dumps(signature, sort_keys=True, separators=(",", ":"))
    return f"{strategy}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _check_signature(
    name: str, url: str, stored: Mapping[str, Any], wanted: Mapping[str, Any]
) -> None:
    differ = [k for k in wanted if stored.get(k) != wanted[k]]
    if not differ:
        return
    lines = "; ".join(f"{k}: stored {stored.get(k)!r}, now {wanted[k]!r}" for k in differ)
    raise ValueError(
        f"study {name!r} in {masked(url)} is a search of something else ({lines}). Resume it "
        "with the same strategy, space, objectives, data and costs, or start another study "
        "(another --study name, or none: the name is derived from the run)."
    )


def _open_study(
    url: str | None,
    name: str,
    directions: Sequence[Direction],
    signature: Mapping[str, Any],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create or resume the study (and return its storage); refuse one whose signature
    differs from this run's."""
    import optuna

    storage = _open_storage(url) if url is not None else optuna.storages.InMemoryStorage()
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            study_name=name,
            directions=list(directions),
            load_if_exists=True,  # another process may create it at the same moment
        )
    stored = study.user_attrs.get(SIGNATURE_KEY)
    if stored is None:
        if study.trials:
            raise ValueError(
                f"study {name!r} in {masked(url or 'memory')} was not created by tessera "
                "optimize: give another --study name"
            )
        study.set_user_attr(SIGNATURE_KEY, dict(signature))
    else:
        _check_signature(name, url or "memory", stored, signature)
    return study, storage


# --- workers -----------------------------------------------------------------------------------

_WORKER_SERIES: tuple[BarSeries, ...] | None = None


def _init_worker(data: tuple[BarSeries, ...]) -> None:
    global _WORKER_SERIES
    _WORKER_SERIES = data


def _work(data: tuple[BarSeries, ...], job: _Job) -> int:
    """One worker: load the user's strategies (and objectives), open the shared study, run
    ``job.trials`` trials. Returns the number run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if job.loads is not None:
        restore_loader_state(job.loads)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=_open_storage(job.storage),
        sampler=_make_sampler(job.sampler, job.seed),
        pruner=_make_pruner(job.prune, len(job.objectives)),
    )
    _optimize_loop(study, data, job)
    return job.trials


def _local_work(job: _Job) -> int:
    assert _WORKER_SERIES is not None
    return _work(_WORKER_SERIES, job)


def _split(trials: int, workers: int) -> list[int]:
    return [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]


# --- the study ---------------------------------------------------------------------------------


def optimize(
    data: BarSeries | Sequence[BarSeries],
    strategy: str,
    space: Sequence[Dimension],
    config: BacktestConfig,
    risk: RiskConfig | None = None,
    *,
    objectives: Sequence[str] = ("sharpe",),
    trials: int = 100,
    seed: int | None = 42,
    sampler: str = "auto",
    prune: bool = True,
    storage: str | Path | None = None,
    study_name: str | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    period: str = "1h",
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> OptimizationResult:
    """Run ``trials`` more trials of the study (created, or resumed from ``storage``) and
    return every trial it holds. See the module docstring for samplers, pruning, storage,
    seeds and parallelism; `ValueError` with a sentence for a bad argument."""
    import optuna

    series = _as_tuple(data)
    if not series:
        raise ValueError("optimize needs at least one bar series")
    fixed = dict(fixed_params or {})
    space = tuple(space)
    _check_arguments(strategy, space, objectives, trials, workers, fixed)
    specs = [objective(o) for o in objectives]
    directions = tuple(s.direction for s in specs)
    sampler_name = _sampler_name(sampler, space, len(specs))
    effective = _effective_period(series, period)
    signature = _signature(
        series, strategy, space, config, risk, objectives, directions, fixed, effective
    )
    name = study_name or default_study_name(strategy, signature)
    parallel = workers > 1 or bool(ray_address)
    scratch: Path | None = None
    if storage is None and parallel:  # workers need a shared storage: a private file
        scratch = Path(tempfile.mkdtemp(prefix="tessera-optuna-"))
        url: str | None = storage_url(scratch / "optuna.db")
    else:
        url = storage_url(storage) if storage is not None else None
    shown = "memory" if url is None else ("sqlite (temporary)" if scratch else masked(url))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    job = _Job(
        strategy=strategy,
        space=space,
        config=config,
        risk=risk,
        objectives=tuple(objectives),
        fixed=tuple(fixed.items()),
        prune=prune,
        period=effective,
        storage=url or "",
        study_name=name,
        trials=trials,
        seed=seed,
        sampler=sampler_name,
    )
    try:
        study, opened = _open_study(
            url,
            name,
            directions,
            signature,
            _make_sampler(sampler_name, seed),
            _make_pruner(prune, len(specs)),
        )
        started = time.perf_counter()
        before = len(study.trials)
        if not parallel:
            callback = None
            if on_trial is not None:
                hook = on_trial

                def callback(frozen: optuna.trial.FrozenTrial) -> None:
                    record = _record(frozen, fixed)
                    if record is not None:
                        hook(record)

            _optimize_loop(study, series, job, callback)
        else:
            assert url is not None
            if isinstance(opened, optuna.storages.RDBStorage):
                # no pooled connection of this process is inherited by a forked worker (two
                # processes on one socket corrupt it); this process reconnects when it reads
                opened.engine.dispose()
            jobs = [
                _job_for(job, n, None if seed is None else seed + i)
                for i, n in enumerate(_split(trials, max(workers, 1)))
                if n > 0
            ]
            if ray_address:
                _run_ray(series, jobs, ray_address, fixed, on_trial, before)
            else:
                _run_local(series, jobs, fixed, on_trial, before)
        result = _result(
            study,
            strategy,
            shown,
            objectives,
            directions,
            space,
            effective,
            seed,
            sampler_name,
            fixed,
        )
        log.info(
            "optimisation done",
            study=name,
            storage=shown,
            trials=len(study.trials) - before,
            seconds=round(time.perf_counter() - started, 2),
        )
        return result
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _check_arguments(
    strategy: str,
    space: Sequence[Dimension],
    objectives: Sequence[str],
    trials: int,
    workers: int,
    fixed: Mapping[str, Any],
) -> None:
    try:
        fields = strategy_class(strategy).Params.model_fields
    except KeyError as exc:
        raise ValueError(str(exc).strip("'\"")) from None
    if not space:
        raise ValueError(f"the search space of {strategy} is empty: give at least one dimension")
    names = [d.name for d in space]
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ValueError(
            f"strategy {strategy} has no parameter {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(fields) or 'no parameters'}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"the search space names {', '.join(twice)} twice")
    both = sorted(set(names) & set(fixed))
    if both:
        raise ValueError(f"{', '.join(both)} is both searched and fixed: give it one way")
    if not objectives:
        raise ValueError("give at least one objective")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"an objective is given twice: {', '.join(objectives)}")
    if trials < 1:
        raise ValueError(f"trials must be at least 1, not {trials}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")


def _job_for(job: _Job, trials: int, seed: int | None) -> _Job:
    return _Job(
        strategy=job.strategy,
        space=job.space,
        config=job.config,
        risk=job.risk,
        objectives=job.objectives,
        fixed=job.fixed,
        prune=job.prune,
        period=job.period,
        storage=job.storage,
        study_name=job.study_name,
        trials=trials,
        seed=seed,
        sampler=job.sampler,
        loads=loader_state(),
    )


class _Watcher:
    """Calls ``on_trial`` for each trial the workers finish, read back from the storage one
    trial at a time (a long study is not re-read whole at every poll)."""

    def __init__(
        self,
        url: str,
        name: str,
        fixed: Mapping[str, Any],
        on_trial: Callable[[TrialRecord], None] | None,
        before: int,
    ) -> None:
        self.fixed, self.on_trial = fixed, on_trial
        self.storage = _open_storage(url) if on_trial is not None else None
        self.study_id = self.storage.get_study_id_from_name(name) if self.storage else -1
        self.next = before  # trial numbers from here on are this run's or another process's
        self.waiting: set[int] = set()  # numbers seen running, not finished yet

    def poll(self) -> None:
        if self.storage is None or self.on_trial is None:
            return
        total = self.storage.get_n_trials(self.study_id)
        self.waiting.update(range(self.next, total))
        self.next = max(self.next, total)
        for number in sorted(self.waiting):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
            record = _record(self.storage.get_trial(trial_id), self.fixed)
            if record is not None:
                self.waiting.discard(number)
                self.on_trial(record)


def _run_local(
    data: tuple[BarSeries, ...],
    jobs: Sequence[_Job],
    fixed: Mapping[str, Any],
    on_trial: Callable[[TrialRecord], None] | None,
    before: int,
) -> None:
    watcher = _Watcher(jobs[0].storage, jobs[0].study_name, fixed, on_trial, before)
    with ProcessPoolExecutor(
        max_workers=len(jobs), initializer=_init_worker, initargs=(data,)
    ) as pool:
        pending: set[Future[int]] = {pool.submit(_local_work, j) for j in jobs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()  # a worker's crash is this call's
            watcher.poll()
    watcher.poll()


def _run_ray(
    data: tuple[BarSeries, ...],
    jobs: Sequence[_Job],
    address: str,
    fixed: Mapping[str, Any],
    on_trial: Callable[[TrialRecord], None] | None,
    before: int,
) -> None:
    with ray_session(address) as ray:
        watcher = _Watcher(jobs[0].storage, jobs[0].study_name, fixed, on_trial, before)
        remote = ray.remote(_work)
        ref = ray.put(data)  # once into the object store, shared by every task
        waiting = [remote.remote(ref, j) for j in jobs]
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1, timeout=0.5)
            for r in done:
                ray.get(r)
            watcher.poll()
        watcher.poll()


# --- reading the study back --------------------------------------------------------------------


def _record(frozen: optuna.trial.FrozenTrial, fixed: Mapping[str, Any]) -> TrialRecord | None:
    from optuna.trial import TrialState

    state = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
    }.get(frozen.state)
    if state is None:  # running or waiting (another worker's)
        return None
    attrs = frozen.user_attrs
    complete = state == "complete"
    metrics = attrs.get("metrics") or {}
    return TrialRecord(
        number=frozen.number,
        params={**fixed, **frozen.params},
        values=tuple(float(v) for v in frozen.values) if complete and frozen.values else (),
        state=state,
        metrics={k: float(v) for k, v in metrics.items()} if complete else {},
        returns=_decode(attrs.get("returns")) if complete else np.zeros(0, dtype=np.float64),
        error=str(attrs.get("error", "")) if state == "failed" else "",
    )


def _result(
    study: optuna.Study,
    strategy: str,
    storage: str,
    objectives: Sequence[str],
    directions: Sequence[str],
    space: Sequence[Dimension],
    period: str,
    seed: int | None,
    sampler: str,
    fixed: Mapping[str, Any],
) -> OptimizationResult:
    records = [r for t in study.get_trials(deepcopy=False) if (r := _record(t, fixed)) is not None]
    records.sort(key=lambda r: r.number)
    by_number = {r.number: r for r in records}
    complete = [r for r in records if r.state == "complete"]
    pareto: list[TrialRecord] = []
    best: TrialRecord | None = None
    if complete:
        sign = 1.0 if directions[0] == "maximize" else -1.0
        if len(objectives) == 1:
            best = max(complete, key=lambda r: (sign * r.values[0], -r.number))
            pareto = [best]
        else:
            front = sorted(t.number for t in study.best_trials)
            pareto = [by_number[n] for n in front if n in by_number]
            best = max(pareto, key=lambda r: (sign * r.values[0], -r.number)) if pareto else None
    return OptimizationResult(
        strategy=strategy,
        study_name=study.study_name,
        storage=storage,
        objectives=tuple(objectives),
        directions=tuple(directions),
        space=tuple(space),
        period=period,
        periods_per_year=YEAR_NS / period_ns(period),
        trials=records,
        best=best,
        pareto=pareto,
        seed=seed,
        sampler=sampler,
    )
