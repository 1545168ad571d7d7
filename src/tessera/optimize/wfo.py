"""Walk-forward optimisation: the parameters are chosen on the past and judged on what came next.

One in-sample optimisation says how well a strategy *could* have done with parameters picked
after the fact. Walk-forward optimisation repeats the choice the way a trader would have made
it: the bars' timeline is cut into windows, each an in-sample part followed by an
out-of-sample part; in each window `tessera.optimize.study.optimize` searches on the in-sample
bars only, and the parameters it picks are then traded on the out-of-sample bars, which no
choice saw. The out-of-sample parts are consecutive and do not overlap, so their equity curves,
chained, are one honest track record: the result.

Windows (`split_windows`): with ``K`` windows and the in-sample fraction ``f``, the out-of-sample
parts have ``s = n // (K + f / (1 - f))`` bars each and end at the last bar; the first
in-sample part has the ``L = n - K * s`` bars before the first out-of-sample part.

* ``rolling``: every in-sample part has ``L`` bars and slides forward by ``s`` (the parameters
  follow the recent market);
* ``anchored``: every in-sample part starts at the first bar and grows by ``s`` (the first
  window's split is the same, so both modes judge the very same out-of-sample bars).

Warm-up: the event engine has no "start trading at bar i" and strategies do not look at
``ctx.warming`` in a backtest, so each out-of-sample run is given the strategy's
``warmup_bars`` (for the chosen parameters) of history in front of the out-of-sample part — its
indicators are warm on the first out-of-sample bar — and an engine that holds back every order
decided before the out-of-sample start (`trade_out_of_sample`). Those history bars lie before
the out-of-sample start (in the in-sample part), so no bar after the window is ever seen. A
strategy whose ``warmup_bars`` covers what it needs places no order in its history bars, and
then the run is exactly `tessera.optimize.study.backtest_point` on the same bars (a test holds
the two equal).

Stitching: window ``k`` trades with the account window ``k-1`` ended with (its final equity as
the starting cash, positions closed at the mark without fees at the boundary), so the curves
join without rescaling, trades and fees stay in money (risk limits start afresh in each window:
a drawdown halt in one does not stop the next), and ``oos_metrics`` is
`compute_metrics` of the stitched curve. The in-sample curve beside it is one time line too:
window 0's in-sample run, then for each later window its in-sample run over the bars its
in-sample part adds (the bars after the previous in-sample end), chained by returns. Where both
curves cover the same bars, one shows the parameters chosen with hindsight, the other the
parameters chosen beforehand. ``efficiency`` is the ratio of their annualised returns (Pardo's
walk-forward efficiency).

Model-driven strategies: with ``model`` given, each window retrains the model on the bars
before its out-of-sample start only (`tessera.backtest.walkforward`, the path of ``tessera
backtest --walk-forward``) and the bars carry that model's scores up to the out-of-sample end:
the in-sample optimisation sees scores the model was fitted on (so the in-sample figures are
flattered twice), the out-of-sample trading sees scores of bars the model never saw.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tessera.backtest.data import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.results import BacktestResult, compute_metrics
from tessera.config import BacktestConfig, RiskConfig
from tessera.config.models import FeatureConfig, ModelConfig
from tessera.logging import get_logger

if TYPE_CHECKING:
    import polars as pl

    from tessera.execution.orders import Order, OrderList
    from tessera.optimize.space import Dimension

log = get_logger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MODES = ("rolling", "anchored")
# Fewer bars than this in a part leave nothing to optimise on or to judge by.
MIN_PART_BARS = 20
# Metrics of the stitched in-sample curve that it cannot know (trades, fees: its segments are
# pieces of runs whose trades straddle the joins); the rest are curve statistics.
_CURVE_ONLY = ("trades", "win_rate", "profit_factor", "turnover", "fees_paid", "slippage_paid")


@dataclass(frozen=True)
class WindowSpan:
    """One window as bar positions on the timeline: in-sample ``[is_start, is_end)``, then
    out-of-sample ``[oos_start, oos_end)`` (``is_end == oos_start``)."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


@dataclass(frozen=True)
class WfoWindow:
    """What one window chose and what it made. Times are bar open times, ns, ``[start, end)``."""

    index: int
    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    params: dict[str, Any]  # the chosen parameters (fixed ones included)
    in_sample_value: float  # the chosen trial's value of the first objective
    oos_metrics: dict[str, float]  # compute_metrics of this window's out-of-sample part
    model: str | None  # NAME:VERSION of the window's model (in a temporary registry, gone after
    # the walk, unless registry_dir was given)
    in_sample_metrics: dict[str, float] = field(default_factory=dict)  # the chosen trial's run
    warmup_bars: int = 0  # history bars in front of the out-of-sample part
    oos_cash: Decimal | None = None  # the account the out-of-sample run started with


@dataclass
class WalkForward:
    """The stitched out-of-sample track record, the in-sample curve beside it, and the windows."""

    mode: str  # "rolling" | "anchored"
    windows: list[WfoWindow]
    oos_times: I64  # close times; the first point is the start (initial cash) just before
    oos_equity: F64
    is_times: I64
    is_equity: F64
    oos_metrics: dict[str, float]
    efficiency: float  # OOS annualised return / IS annualised return; NaN unless IS's is > 0
    is_metrics: dict[str, float] = field(default_factory=dict)  # curve statistics only


def split_windows(
    n_bars: int,
    windows: int = 4,
    mode: str = "rolling",
    in_sample_fraction: float = 0.75,
    min_bars: int = MIN_PART_BARS,
) -> list[WindowSpan]:
    """The windows over ``n_bars`` timeline positions (see the module docstring).

    ValueError, naming the value, for a bad mode, window count or fraction, and, with the
    numbers, when a part would have fewer than ``min_bars`` bars.
    """
    if mode not in MODES:
        raise ValueError(f"walk-forward mode {mode!r} is neither 'rolling' nor 'anchored'")
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ValueError(f"walk-forward needs at least one window (got windows={windows!r})")
    f = float(in_sample_fraction)
    if not (0.0 < f < 1.0):
        raise ValueError(
            f"in_sample_fraction must be between 0 and 1, both excluded (got {in_sample_fraction})"
        )
    oos = int(n_bars // (windows + f / (1.0 - f)))
    first_is = n_bars - windows * oos
    if oos < min_bars or first_is < min_bars:
        raise ValueError(
            f"walk-forward: {windows} window(s) over {n_bars} bars with in_sample_fraction {f:g} "
            f"give in-sample parts of {first_is} bars and out-of-sample parts of {oos} bars; "
            f"each part needs at least {min_bars} bars: use fewer windows, another in-sample "
            "fraction, or more bars"
        )
    spans = []
    for k in range(windows):
        oos_start = first_is + k * oos
        is_start = k * oos if mode == "rolling" else 0
        spans.append(WindowSpan(k, is_start, oos_start, oos_start, oos_start + oos))
    return spans


# --- out-of-sample trading ----------------------------------------------------------------------


@dataclass
class _FromEngine(BacktestEngine):
    """The event engine, except that orders decided before ``trade_from`` (ns) are not sent:
    the bars before it are the strategy's warm-up history. Every order passes `submit` or
    `submit_oco` (the context's helpers and target positions included), so holding back those
    two holds back every order; after ``trade_from`` nothing differs from the engine."""

    trade_from: int = 0
    held_back: int = 0

    def submit(self, *args: Any, **kwargs: Any) -> Order | None:
        if self.now < self.trade_from:
            self.held_back += 1
            return None
        return super().submit(*args, **kwargs)

    def submit_oco(self, *args: Any, **kwargs: Any) -> OrderList | None:
        if self.now < self.trade_from:
            self.held_back += 1
            return None
        return super().submit_oco(*args, **kwargs)


def _strategy(name: str, symbols: list[str], params: Mapping[str, Any]) -> Any:
    from tessera.strategies import strategy_class

    return strategy_class(name)(symbols, **params)


def warmup_bars(strategy: str, params: Mapping[str, Any], symbols: Sequence[str]) -> int:
    """The strategy's ``warmup_bars`` with these parameters (0 if it declares none)."""
    return max(0, int(_strategy(strategy, list(symbols), params).warmup_bars))


def trade_out_of_sample(
    data: Sequence[BarSeries],
    strategy: str,
    params: Mapping[str, Any],
    config: BacktestConfig,
    risk: RiskConfig | None,
    start: int,
) -> BacktestResult:
    """Run ``strategy`` on ``data``, whose bars opening before ``start`` (ns) are warm-up history:
    the strategy sees them, but no order decided on them is sent. The result covers every bar
    given; `out_of_sample_part` cuts the history off."""
    engine = _FromEngine(config, risk, trade_from=start)
    result = engine.run(data, [_strategy(strategy, [s.symbol for s in data], params)])
    if engine.held_back:
        log.info(
            "walk-forward warm-up held orders back",
            strategy=strategy,
            orders=engine.held_back,
            hint="the strategy's warmup_bars is shorter than the history it trades on",
        )
    return result


def out_of_sample_part(result: BacktestResult, start: int) -> tuple[I64, F64, F64]:
    """Times, equity and exposure of the bars of ``result`` opening at or after ``start``.

    A bar's close time is after its open time and before the next bar's open, so the bars
    closing at or after ``start`` are exactly those opening at or after it.
    """
    keep = result.times >= start
    return result.times[keep], result.equity[keep], result.exposure[keep]


# --- data helpers -------------------------------------------------------------------------------


def _timeline(data: Sequence[BarSeries]) -> I64:
    return np.unique(np.concatenate([s.open_time for s in data])).astype(np.int64)


def _cut(series: BarSeries, start: int, end: int, history: int = 0) -> BarSeries:
    """The bars opening in ``[start, end)``, with up to ``history`` bars before them."""
    i = int(np.searchsorted(series.open_time, start, side="left"))
    j = int(np.searchsorted(series.open_time, end, side="left"))
    return series.slice(max(0, i - history), j)


def _bars_frame(series: BarSeries) -> pl.DataFrame:
    """The series as the OHLCV frame the feature and model pipeline reads (optional columns
    only where the series has them: an all-zero taker column is a missing one)."""
    import polars as pl

    cols: dict[str, Any] = {
        "open_time": pl.Series(series.open_time)
        .cast(pl.Datetime("ns"))
        .dt.replace_time_zone("UTC"),
        "open": series.open,
        "high": series.high,
        "low": series.low,
        "close": series.close,
        "volume": series.volume,
    }
    if series.quote_volume.any():
        cols["quote_volume"] = series.quote_volume
    if series.taker_buy_volume.any():
        cols["taker_buy_base"] = series.taker_buy_volume
    return pl.DataFrame(cols)


def _window_scores(
    frame: pl.DataFrame,
    oos_start: int,
    oos_end: int,
    model: ModelConfig,
    features: FeatureConfig,
    registry: Path,
    seed: int,
    index: int,
) -> tuple[F64, str]:
    """Scores of rows ``[0, oos_end)`` by a model trained on rows ``[0, oos_start)`` only, and
    the model's NAME:VERSION (`walk_forward_scores` trains it, as ``backtest --walk-forward``
    does; the in-sample rows are scored by it too, for the in-sample optimisation)."""
    from tessera.backtest.walkforward import scores_from_model, walk_forward_scores

    try:
        _, (win,) = walk_forward_scores(
            frame.slice(0, oos_end),
            model,
            features,
            registry,
            windows=1,
            min_train_bars=oos_start,
            seed=seed,
        )
    except ValueError as exc:  # e.g. too few bars for the model's validation folds
        raise ValueError(
            f"walk-forward window {index}: training the model on the {oos_start} bars before "
            f"the out-of-sample start failed: {exc}"
        ) from exc
    scores = np.full(len(frame), np.nan)
    scores[:oos_end] = scores_from_model(win.model, frame.slice(0, oos_end), registry)
    log.info("walk-forward optimisation: window model trained", window=index, model=win.model)
    return scores, win.model


# --- the walk ---------------------------------------------------------------------------------


def _curve_metrics(
    times: I64,
    equity: F64,
    exposure: F64,
    trades: list[Any],
    fills: list[Any],
) -> dict[str, float]:
    """`compute_metrics` of a curve whose first point is its starting equity."""
    return compute_metrics(times[1:], equity[1:], exposure, trades, fills, float(equity[0]))


def walk_forward_optimize(
    data: Sequence[BarSeries],
    strategy: str,
    space: Sequence[Dimension],
    config: BacktestConfig,
    risk: RiskConfig | None = None,
    *,
    windows: int = 4,
    mode: str = "rolling",
    in_sample_fraction: float = 0.75,
    objectives: Sequence[str] = ("sharpe",),
    trials: int = 50,
    seed: int | None = 42,
    workers: int = 1,
    ray_address: str | None = None,
    model: ModelConfig | None = None,
    features: FeatureConfig | None = None,
    registry_dir: Path | None = None,
    on_window: Callable[[WfoWindow], None] | None = None,
    sampler: str = "auto",
    prune: bool = True,
    fixed_params: Mapping[str, Any] | None = None,
    period: str = "1h",
) -> WalkForward:
    """Optimise on each window's in-sample bars, trade the choice on its out-of-sample bars,
    and stitch the out-of-sample runs into one curve (see the module docstring).

    Each window's study is in memory and seeded ``seed + index``; ``sampler``, ``prune``,
    ``fixed_params`` and ``period`` go to `optimize` as they are. ``model``: retrain this model
    per window on the bars before the out-of-sample start (one symbol only); its registry is
    ``registry_dir``, or a temporary one removed afterwards. ``on_window`` hears each window as
    it is done. ValueError for bad windows (with the numbers), several symbols with a model, or
    a window none of whose trials completed.
    """
    from tessera.optimize.study import backtest_point, optimize

    if not data:
        raise ValueError("walk-forward optimisation needs bars: no series given")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"walk-forward needs at least one trial per window (got {trials!r})")
    if model is not None and len(data) != 1:
        raise ValueError(
            f"walk-forward with a model retrains on one symbol's bars; got {len(data)} symbols"
        )
    # names first: a typo stops here, not after a window's model has been trained
    from tessera.optimize.objectives import objective
    from tessera.strategies import strategy_class

    for name in objectives:
        objective(name)
    try:
        strategy_class(strategy)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    timeline = _timeline(data)
    spans = split_windows(len(timeline), windows, mode, in_sample_fraction)
    end_ns = int(timeline[-1]) + 1

    def at(pos: int) -> int:
        return int(timeline[pos]) if pos < len(timeline) else end_ns

    fixed = dict(fixed_params or {})
    symbols = [s.symbol for s in data]
    initial = config.initial_cash
    cash: Decimal = initial
    oos_times: list[I64] = [np.array([at(spans[0].oos_start) - 1], dtype=np.int64)]
    oos_equity: list[F64] = [np.array([float(initial)])]
    oos_exposure: list[F64] = []
    is_times: list[I64] = [np.array([at(spans[0].is_start) - 1], dtype=np.int64)]
    is_equity: list[F64] = [np.array([float(initial)])]
    is_exposure: list[F64] = []
    trades: list[Any] = []
    fills: list[Any] = []
    done: list[WfoWindow] = []
    is_level = float(initial)
    with tempfile.TemporaryDirectory(prefix="tessera-wfo-") as scratch:
        registry = registry_dir if registry_dir is not None else Path(scratch) / "registry"
        frame = _bars_frame(data[0]) if model is not None else None
        for span in spans:
            k = span.index
            is_a, is_b = at(span.is_start), at(span.is_end)
            oos_a, oos_b = at(span.oos_start), at(span.oos_end)
            series = list(data)
            model_ref: str | None = None
            if model is not None:
                assert frame is not None
                scores, model_ref = _window_scores(
                    frame,
                    span.oos_start,
                    span.oos_end,
                    model,
                    features or FeatureConfig(),
                    registry,
                    42 if seed is None else seed + k,
                    k,
                )
                series = [data[0].with_predictions(scores)]
            in_sample = [_cut(s, is_a, is_b) for s in series]
            study = optimize(
                in_sample,
                strategy,
                space,
                config,
                risk,
                objectives=objectives,
                trials=trials,
                seed=None if seed is None else seed + k,
                sampler=sampler,
                prune=prune,
                storage=None,
                study_name=f"wfo-{strategy}-{mode}-window-{k}",
                workers=workers,
                ray_address=ray_address,
                fixed_params=fixed,
                period=period,
            )
            best = study.best
            if best is None:
                errors = {t.error for t in study.trials if t.error}
                raise ValueError(
                    f"walk-forward window {k}: none of the {len(study.trials)} trials on the "
                    f"in-sample bars completed"
                    + (f" ({'; '.join(sorted(errors)[:3])})" if errors else "")
                )
            params = {**fixed, **best.params}

            # the chosen trial's run, for the in-sample curve: the bars it adds to the curve
            is_run = backtest_point(in_sample, strategy, params, config, risk)
            prev_end = at(spans[k - 1].is_end) if k else is_a
            keep = is_run.times >= prev_end
            before = is_run.equity[~keep]
            base = float(before[-1]) if len(before) else float(config.initial_cash)
            seg = is_run.equity[keep] / base * is_level
            if len(seg):
                is_level = float(seg[-1])
            is_times.append(is_run.times[keep])
            is_equity.append(seg)
            is_exposure.append(is_run.exposure[keep])

            # out of sample, with warm-up history before it and the account carried over
            history = warmup_bars(strategy, params, symbols)
            oos_data = [_cut(s, oos_a, oos_b, history) for s in series]
            window_cfg = config.model_copy(update={"initial_cash": cash})
            run = trade_out_of_sample(oos_data, strategy, params, window_cfg, risk, oos_a)
            t, e, x = out_of_sample_part(run, oos_a)
            metrics = compute_metrics(t, e, x, run.trades, run.fills, float(cash))
            oos_times.append(t)
            oos_equity.append(e)
            oos_exposure.append(x)
            trades.extend(run.trades)
            fills.extend(run.fills)
            win = WfoWindow(
                index=k,
                in_sample=(is_a, is_b),
                out_of_sample=(oos_a, oos_b),
                params=params,
                in_sample_value=float(best.values[0]) if best.values else math.nan,
                oos_metrics=metrics,
                model=model_ref,
                in_sample_metrics=dict(is_run.metrics),
                warmup_bars=history,
                oos_cash=cash,
            )
            done.append(win)
            log.info(
                "walk-forward optimisation: window done",
                window=k,
                params=params,
                in_sample_value=win.in_sample_value,
                oos_return=metrics.get("total_return"),
            )
            if on_window is not None:
                on_window(win)
            cash = run.final_equity
            if cash <= 0:  # a wiped-out account cannot start the next window
                log.warning("walk-forward stopped: the account is wiped out", window=k)
                break

    ot, oe = np.concatenate(oos_times), np.concatenate(oos_equity)
    it, ie = np.concatenate(is_times), np.concatenate(is_equity)
    oos_metrics = _curve_metrics(ot, oe, np.concatenate(oos_exposure), trades, fills)
    is_metrics = {
        key: v
        for key, v in _curve_metrics(it, ie, np.concatenate(is_exposure), [], []).items()
        if key not in _CURVE_ONLY
    }
    return WalkForward(
        mode=mode,
        windows=done,
        oos_times=ot,
        oos_equity=oe,
        is_times=it,
        is_equity=ie,
        oos_metrics=oos_metrics,
        efficiency=efficiency(oos_metrics, is_metrics),
        is_metrics=is_metrics,
    )


def efficiency(oos_metrics: Mapping[str, float], is_metrics: Mapping[str, float]) -> float:
    """Walk-forward efficiency: the out-of-sample annualised return over the in-sample one.

    NaN when the in-sample annualised return is not positive (a ratio to a loss says nothing
    the two returns do not say) or either is unknown.
    """
    oos = float(oos_metrics.get("annualized_return", math.nan))
    ins = float(is_metrics.get("annualized_return", math.nan))
    if not (math.isfinite(oos) and math.isfinite(ins)) or ins <= 0:
        return math.nan
    return oos / ins
