"""Monte Carlo resampling of a backtest: how much of its path was the order the dice fell in.

One backtest is one draw. Its final return, its worst drawdown and how long it spent below a
previous high depend on the order and the particular trades that happened; a trader sizing a
strategy needs the spread of those figures, not the single value. Two resamplings answer two
questions:

- :func:`resample_trades` draws the strategy's *trades* again. With replacement (the default),
  it asks "had the same edge produced a different handful of trades?" and spreads the final
  return as well as the drawdown; without replacement (a shuffle) the final return is fixed by
  construction and only the path, hence the drawdown, varies — the "same trades, other order"
  question, a common sanity check on a drawdown that looks too small.
- :func:`block_bootstrap` draws *per-period returns* in contiguous circular blocks, so that
  autocorrelation and volatility clustering inside a block survive (an iid draw would break
  every losing streak apart and understate drawdowns).

Both return a :class:`MonteCarlo`: distributions of final return, maximum drawdown (a fraction of
the running peak) and time under water (the share of steps spent below the running peak), the
same three figures for the actual series (``observed``), and percentile bands of the equity
paths for a fan chart. Everything is vectorised over a (runs x steps) matrix, processed in
chunks of runs so that memory stays bounded on long series (a year of minute returns).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
"""The percentiles every distribution and the fan chart report: the middle half and 90 %."""

MAX_BAND_POINTS = 1000
"""At most this many steps of the equity paths are kept for the bands. A fan chart has no use
for more points than a screen has pixels; longer series are sampled at evenly spaced steps
(the first and last always included) and :attr:`MonteCarlo.band_steps` says which."""

_CHUNK_ELEMENTS = 4_000_000
"""Runs are simulated in chunks of about this many path elements (32 MB of float64 each), so
1,000 runs of a year of minute returns do not need gigabytes at once."""

_UNDER_WATER_RTOL = 1e-12
"""A step counts as under water only when equity is below its peak by more than rounding: a
path that recovers exactly to its high (say +10 % then a loss that undoes it on the same
compounded figure) must not be counted under water because of the last bit of a float."""


@dataclass(frozen=True)
class Distribution:
    """The values one figure took over the runs (one per run), with its percentiles."""

    name: str
    values: np.ndarray

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100, linear interpolation between runs)."""
        if not 0.0 <= q <= 100.0 or math.isnan(q):
            raise ValueError(f"a percentile must lie between 0 and 100; got {q}.")
        return float(np.percentile(self.values, q))

    def percentiles(self) -> dict[int, float]:
        """The 5th, 25th, 50th, 75th and 95th percentiles, keyed by percentile."""
        found = np.percentile(self.values, PERCENTILES)
        return {q: float(v) for q, v in zip(PERCENTILES, found, strict=True)}


@dataclass(frozen=True)
class MonteCarlo:
    """The outcome of one resampling: distributions, bands and the actual run's figures.

    Returns and drawdowns are fractions (0.12 = 12 %); time under water is the share of steps
    (trades or periods) spent below the running peak. ``bands`` maps a percentile to the equity
    path (growth of 1.0, starting at 1.0 before the first step) that percentile of the runs
    had at each step; the bands are taken step by step, so the median band is not any one
    run's path. ``band_steps`` gives the step index (0 = the start) of each band point.
    """

    method: str
    runs: int
    seed: int
    final_return: Distribution
    max_drawdown: Distribution
    time_under_water: Distribution
    bands: dict[int, np.ndarray]
    observed: dict[str, float]
    band_steps: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def summary(self) -> str:
        """One line a trader reads: the median and 90 % range of each figure beside the actual."""
        fr, dd, uw = (d.percentiles() for d in self.distributions())
        return (
            f"{self.method}, {self.runs} runs: final return {_pct(fr[50])} "
            f"(5-95%: {_pct(fr[5])} to {_pct(fr[95])}; "
            f"actual {_pct(self.observed['final_return'])}), "
            f"max drawdown {_share(dd[50])} (95th percentile {_share(dd[95])}; "
            f"actual {_share(self.observed['max_drawdown'])}), time under water "
            f"{_share(uw[50])} (95th percentile {_share(uw[95])}; "
            f"actual {_share(self.observed['time_under_water'])})."
        )

    def distributions(self) -> tuple[Distribution, Distribution, Distribution]:
        """Final return, max drawdown and time under water, in that order."""
        return self.final_return, self.max_drawdown, self.time_under_water


def resample_trades(
    trade_returns: Sequence[float] | np.ndarray,
    runs: int = 1000,
    seed: int = 0,
    *,
    replace: bool = True,
) -> MonteCarlo:
    """Resample the trades' fractional returns (a trade's PnL over the equity it risked).

    Each run draws ``len(trade_returns)`` trades — with replacement by default (method
    ``"trades"``), or as a permutation of the actual trades when ``replace=False`` (method
    ``"trades (shuffled)"``: the final return is then the actual one in every run, and only the
    drawdown and time under water vary). Each run compounds its trades into an equity curve
    that starts at 1.0. The draws come from ``numpy.random.default_rng(seed)``, so a seed
    reproduces a result exactly.
    """
    r = _checked_returns(trade_returns, "trade_returns", "trade return")
    _check_runs_and_seed(runs, seed)
    rng = np.random.default_rng(seed)
    n = r.size

    def draw(count: int) -> np.ndarray:
        if replace:
            return r[rng.integers(0, n, size=(count, n))]
        return rng.permuted(np.broadcast_to(r, (count, n)), axis=1)

    method = "trades" if replace else "trades (shuffled)"
    return _simulate(r, draw, runs, seed, method)


def block_bootstrap(
    returns: np.ndarray | Sequence[float],
    runs: int = 1000,
    block: int | None = None,
    seed: int = 0,
) -> MonteCarlo:
    """Resample per-period returns in circular blocks of ``block`` consecutive periods.

    This is the circular moving-block bootstrap (fixed block length, not the stationary
    bootstrap's random one): each run is built from blocks that start at uniformly drawn
    periods and wrap around the end of the series, cut to the series' length. Blocks keep
    whatever autocorrelation and volatility clustering the returns have *inside* each block —
    a losing streak stays a streak — which an iid draw (``block=1``) would destroy, making
    drawdowns look smaller than the strategy's. The default block, ``round(n ** (1/3))``, is
    the order of the length that minimises the bootstrap's error for variance-type statistics
    (Hall, Horowitz & Jing, 1995): long enough to keep short-range dependence, short enough
    that a run is still a fresh mix of many blocks (720 hourly returns give blocks of 9).
    """
    r = _checked_returns(returns, "returns", "return")
    _check_runs_and_seed(runs, seed)
    n = r.size
    if block is None:
        block = max(1, round(n ** (1.0 / 3.0)))
    if isinstance(block, bool) or not isinstance(block, int | np.integer):
        raise ValueError(f"block must be a whole number of periods; got {block!r}.")
    block = int(block)
    if not 1 <= block <= n:
        raise ValueError(
            f"block must lie between 1 and the number of returns ({n}) so that a block fits "
            f"in the series; got {block}."
        )
    rng = np.random.default_rng(seed)
    blocks_per_run = -(-n // block)
    offsets = np.arange(block)

    def draw(count: int) -> np.ndarray:
        starts = rng.integers(0, n, size=(count, blocks_per_run))
        idx: np.ndarray = (starts[:, :, None] + offsets) % n
        drawn: np.ndarray = r[idx.reshape(count, blocks_per_run * block)[:, :n]]
        return drawn

    return _simulate(r, draw, runs, seed, f"returns (block bootstrap, block={block})")


# --- the shared machinery --------------------------------------------------------------------


def path_figures(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equity paths and their three figures for a (runs x steps) matrix of returns.

    Returns ``(equity, final_return, max_drawdown, time_under_water)``, ``equity`` of shape
    (runs x steps+1) starting at 1.0. The start counts as a peak: a first losing trade is a
    drawdown from the capital one began with.
    """
    runs, steps = returns.shape
    equity = np.empty((runs, steps + 1), dtype=np.float64)
    equity[:, 0] = 1.0
    np.cumprod(1.0 + returns, axis=1, out=equity[:, 1:])
    peak = np.maximum.accumulate(equity, axis=1)
    drawdown = np.clip(1.0 - equity / peak, 0.0, 1.0)
    under = equity[:, 1:] < peak[:, 1:] * (1.0 - _UNDER_WATER_RTOL)
    return (
        equity,
        equity[:, -1] - 1.0,
        drawdown.max(axis=1),
        under.mean(axis=1) if steps else np.zeros(runs),
    )


def _simulate(
    actual: np.ndarray,
    draw: Callable[[int], np.ndarray],
    runs: int,
    seed: int,
    method: str,
) -> MonteCarlo:
    n = actual.size
    band_steps = _band_steps(n + 1)
    final = np.empty(runs)
    max_dd = np.empty(runs)
    under = np.empty(runs)
    sampled = np.empty((runs, band_steps.size))
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, runs, chunk):
        stop = min(runs, start + chunk)
        equity, f, d, u = path_figures(draw(stop - start))
        final[start:stop], max_dd[start:stop], under[start:stop] = f, d, u
        sampled[start:stop] = equity[:, band_steps]
    levels = np.percentile(sampled, PERCENTILES, axis=0)
    _, f_obs, d_obs, u_obs = path_figures(actual[None, :])
    return MonteCarlo(
        method=method,
        runs=runs,
        seed=seed,
        final_return=Distribution("final_return", final),
        max_drawdown=Distribution("max_drawdown", max_dd),
        time_under_water=Distribution("time_under_water", under),
        bands={q: levels[i] for i, q in enumerate(PERCENTILES)},
        observed={
            "final_return": float(f_obs[0]),
            "max_drawdown": float(d_obs[0]),
            "time_under_water": float(u_obs[0]),
        },
        band_steps=band_steps,
    )


def _band_steps(points: int) -> np.ndarray:
    if points <= MAX_BAND_POINTS:
        return np.arange(points, dtype=np.int64)
    return np.unique(np.linspace(0, points - 1, MAX_BAND_POINTS).round().astype(np.int64))


def _checked_returns(
    values: Sequence[float] | np.ndarray, field_name: str, noun: str
) -> np.ndarray:
    try:
        r = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field_name} must be a sequence of numbers ({exc}).") from None
    if r.ndim != 1:
        raise ValueError(f"{field_name} must be one-dimensional; got an array of shape {r.shape}.")
    if r.size == 0:
        raise ValueError(
            f"{field_name} is empty: Monte Carlo needs at least one {noun} to resample "
            "(a run without trades has nothing to say about luck)."
        )
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        where = ", ".join(str(i) for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ValueError(
            f"{field_name} holds {bad.size} NaN or infinite value(s), at position(s) {where}; "
            "drop or fix them before resampling."
        )
    lost = np.flatnonzero(r < -1.0)
    if lost.size:
        raise ValueError(
            f"{field_name} holds a {noun} below -100% ({r[lost[0]]:.6g} at position "
            f"{lost[0]}); a fractional {noun} cannot lose more than all of the equity."
        )
    return r


def _check_runs_and_seed(runs: int, seed: int) -> None:
    if isinstance(runs, bool) or not isinstance(runs, int | np.integer) or runs < 1:
        raise ValueError(f"runs must be a whole number of at least 1; got {runs!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number; got {seed!r}.")


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _share(x: float) -> str:
    return f"{x * 100:.1f}%"
