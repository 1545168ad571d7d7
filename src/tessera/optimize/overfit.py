"""How much of the best backtest is luck: the Deflated Sharpe Ratio and the Probability of
Backtest Overfitting.

An optimiser that tries N parameter sets and reports the best one reports a maximum, and the
maximum of N noisy estimates is biased upwards even when every strategy is worthless. The two
statistics here put a number on that bias, each from a different angle:

* **Deflated Sharpe Ratio** (Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting
  for Selection Bias, Backtest Overfitting and Non-Normality", *Journal of Portfolio
  Management* 40(5), 2014). The Probabilistic Sharpe Ratio (Bailey & López de Prado, "The
  Sharpe Ratio Efficient Frontier", *Journal of Risk* 15(2), 2012) is the probability that the
  true Sharpe ratio exceeds a benchmark, given the track length and the skew and kurtosis of
  the returns (fat tails and negative skew widen the estimate's error). The DSR is the PSR
  against the Sharpe ratio that the best of N *noise* strategies is expected to reach, SR0,
  from the number of trials and the dispersion of their Sharpe ratios.
* **Probability of Backtest Overfitting** by combinatorially symmetric cross-validation, CSCV
  (Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting", *Journal
  of Computational Finance* 20(4), 2017; SSRN 2326253, 2014). The T x N matrix of the trials'
  per-period returns is cut into S blocks of time; every half of the blocks serves once as
  in-sample and its complement as out-of-sample. PBO is the share of those splits in which the
  in-sample best lands in the bottom half out of sample: 0.5 means picking the in-sample best
  is no better than picking at random.

Conventions (they matter: mixing them silently wrecks both numbers):

* Sharpe ratios are **per period** (mean / standard deviation of the per-period returns, no
  risk-free rate, not annualised); annualised figures are only for display.
* Kurtosis is the plain fourth standardised moment (a normal distribution has 3), not excess.
* Skew and kurtosis are the population (biased) moments, as in the paper; they always satisfy
  Pearson's inequality kurtosis >= 1 + skew², which keeps the PSR's denominator real.

Standard-normal functions come from the standard library (``math.erfc``,
``statistics.NormalDist``) so that this module needs nothing beyond NumPy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "EULER_GAMMA",
    "MAX_SPLITS",
    "MIN_OBSERVATIONS",
    "DeflatedSharpe",
    "Pbo",
    "deflated_sharpe",
    "expected_max_sharpe",
    "pbo_cscv",
    "probabilistic_sharpe_ratio",
    "sharpe_ratios",
]

EULER_GAMMA: Final = 0.5772156649015329
"""The Euler-Mascheroni constant, the weight of the two quantiles in SR0 (the expected maximum of
N standard normals is approximated through the Gumbel limit, whose mean is this constant)."""

MIN_OBSERVATIONS: Final = 10
"""Fewest returns the DSR accepts: skew and kurtosis of fewer points are noise themselves."""

MAX_SPLITS: Final = 20
"""Most blocks CSCV accepts: C(20, 10) = 184,756 splits; C(22, 11) would be 705,432, minutes of
work for a statistic that the paper computes with S = 16."""

_NORMAL: Final = NormalDist()
_BUDGET: Final = 4_000_000
"""Floats (32 MB) held at once per batch of combinations: S = 16 at N = 200 is 12,870 x 200
values per half, and a custom metric's stacked rows would be far more if not batched."""
_FLAT: Final = 1e-9
"""A standard deviation this small relative to the largest |return| is rounding, not risk: a
constant column (a trial that never traded) has mean - value of order 1e-17, not exactly 0."""

FloatArray = npt.NDArray[np.float64]


# --- Probabilistic and Deflated Sharpe Ratio --------------------------------------------------


def _normal_cdf(z: float) -> float:
    """Phi(z) through ``erfc``, which keeps its precision in the far tails (``erf`` does not)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _finite(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return number


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """The probability that the true per-period Sharpe ratio exceeds ``benchmark``.

    PSR(SR*) = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR²)),
    with SR and SR* per period and ``kurtosis`` not excess (normal = 3). For normal returns the
    denominator is Lo's (2002) 1 + SR²/2; negative skew and fat tails enlarge it, so the same
    Sharpe ratio earns less confidence.
    """
    sharpe = _finite("sharpe", sharpe)
    benchmark = _finite("benchmark", benchmark)
    skew = _finite("skew", skew)
    kurtosis = _finite("kurtosis", kurtosis)
    if isinstance(n_obs, bool) or int(n_obs) != n_obs or n_obs < 2:
        raise ValueError(
            f"n_obs must be an integer of at least 2 (the number of returns), got {n_obs!r}."
        )
    if kurtosis < 1.0 + skew * skew - 1e-9:
        raise ValueError(
            f"kurtosis {kurtosis:g} with skew {skew:g} is impossible: every distribution has "
            f"kurtosis >= 1 + skew² = {1.0 + skew * skew:g} (kurtosis here is not excess: "
            f"a normal distribution has 3)."
        )
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    # Pearson's inequality makes this (1 - skew SR / 2)² or more; it reaches 0 only for a
    # two-point distribution exactly at SR = 2 / skew, where the Sharpe ratio has no error.
    if variance <= 0.0:
        diff = sharpe - benchmark
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return _normal_cdf(z)


def expected_max_sharpe(trials: int, sharpe_variance: float) -> float:
    """SR0: the Sharpe ratio the best of ``trials`` zero-skill strategies is expected to show.

    SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), where V is the
    variance of the trials' Sharpe ratios (in the same units as the result, so per-period
    variance gives a per-period SR0) and gamma the Euler-Mascheroni constant. It grows with N:
    the more one tries, the higher the bar. With one trial nothing was selected and SR0 is 0.
    """
    if isinstance(trials, bool) or int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}.")
    sharpe_variance = _finite("sharpe_variance", sharpe_variance)
    if sharpe_variance < 0.0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance!r}.")
    if trials == 1:
        return 0.0
    n = float(trials)
    quantiles = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n) + EULER_GAMMA * (
        _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    )
    return math.sqrt(sharpe_variance) * quantiles


@dataclass(frozen=True)
class DeflatedSharpe:
    """The Deflated Sharpe Ratio of the chosen trial, with every input that went into it."""

    sharpe: float  # per-period (not annualised) Sharpe of the chosen trial
    annualised_sharpe: float
    n_obs: int
    skew: float
    kurtosis: float  # NOT excess: a normal distribution has 3
    trials: int
    sharpe_variance: float  # variance of the trials' per-period Sharpes
    # SR0, per period: the Sharpe the best of `trials` noise strategies is expected to reach
    expected_max_sharpe: float
    dsr: float  # P(true SR > SR0), in [0, 1]
    periods_per_year: float = 1.0  # to show SR0 annualised beside the annualised Sharpe

    @property
    def annualised_expected_max_sharpe(self) -> float:
        """SR0 annualised like :attr:`annualised_sharpe`, for a trader's eyes."""
        return self.expected_max_sharpe * math.sqrt(self.periods_per_year)

    def passes(self, confidence: float = 0.95) -> bool:
        """Whether the edge survives the selection at ``confidence`` (the paper uses 0.95)."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}.")
        return self.dsr >= confidence

    def verdict(self) -> str:
        """One line for a trader: does the best Sharpe beat what this many tries of noise reach?"""
        best = f"the best Sharpe ({self.annualised_sharpe:.2f} annualised)"
        noise = (
            f"what {self.trials} trials of noise reach ({self.annualised_expected_max_sharpe:.2f})"
        )
        if self.trials == 1:
            noise = "zero (one trial, nothing selected)"
        if self.passes():
            return f"DSR {self.dsr:.2f} >= 0.95: {best} beats {noise}; the edge is unlikely luck."
        return f"DSR {self.dsr:.2f} < 0.95: {best} does not beat {noise}; treat it as luck."


def _moments(returns: FloatArray) -> tuple[float, float, float, float]:
    """Mean, standard deviation (ddof 1), population skew and population kurtosis."""
    mean = float(returns.mean())
    centred = returns - mean
    m2 = float(np.mean(centred**2))
    std = float(returns.std(ddof=1))
    if std <= _FLAT * float(np.max(np.abs(returns))):
        return mean, 0.0, 0.0, 3.0
    skew = float(np.mean(centred**3)) / m2**1.5
    kurtosis = float(np.mean(centred**4)) / m2**2
    return mean, std, skew, kurtosis


def deflated_sharpe(
    returns: np.ndarray,
    trial_sharpes: Sequence[float] | np.ndarray,
    periods_per_year: float,
    *,
    trials: int | None = None,
) -> DeflatedSharpe:
    """The Deflated Sharpe Ratio of the chosen trial.

    ``returns`` are the chosen trial's per-period simple returns (1-D); ``trial_sharpes`` the
    **per-period** Sharpe ratios of every trial of the search, the chosen one included (their
    count and spread set the bar SR0; :func:`sharpe_ratios` computes them from the study's
    returns matrix); ``periods_per_year`` only annualises the figures shown.

    ``trials`` is the number of trials the search *tried* when that exceeds the Sharpes given:
    an optimiser that stopped hopeless trials early (pruning) still chose among all of them,
    and the paper's N is every trial attempted — leaving the pruned ones out would lower the
    bar SR0 and flatter the chosen trial. The variance still comes from the Sharpes given.
    """
    series = np.asarray(returns, dtype=np.float64)
    if series.ndim != 1:
        raise ValueError(
            f"returns must be the chosen trial's 1-D per-period returns, got shape {series.shape}."
        )
    if series.size < MIN_OBSERVATIONS:
        raise ValueError(
            f"returns has {series.size} periods; the Deflated Sharpe Ratio needs at least "
            f"{MIN_OBSERVATIONS} (skew and kurtosis of fewer points are noise)."
        )
    if not np.all(np.isfinite(series)):
        bad = int(np.flatnonzero(~np.isfinite(series))[0])
        raise ValueError(f"returns[{bad}] is {float(series[bad])}; every return must be finite.")
    periods_per_year = _finite("periods_per_year", periods_per_year)
    if periods_per_year <= 0.0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}.")
    sharpes = np.asarray(trial_sharpes, dtype=np.float64)
    if sharpes.ndim != 1 or sharpes.size < 1:
        raise ValueError("trial_sharpes must list the per-period Sharpe of every trial (>= 1).")
    if not np.all(np.isfinite(sharpes)):
        bad = int(np.flatnonzero(~np.isfinite(sharpes))[0])
        raise ValueError(
            f"trial_sharpes[{bad}] is {float(sharpes[bad])}; every Sharpe must be finite."
        )

    mean, std, skew, kurtosis = _moments(series)
    if std == 0.0:
        raise ValueError(
            "the chosen trial's returns are constant (did it never trade?): its Sharpe ratio "
            "is undefined, so there is nothing to deflate."
        )
    sharpe = mean / std
    _reject_annualised(sharpe, sharpes, periods_per_year)
    if trials is not None and trials < sharpes.size:
        raise ValueError(
            f"trials ({trials}) must count at least the {sharpes.size} trials whose Sharpes "
            "are given."
        )
    variance = float(sharpes.var(ddof=1)) if sharpes.size > 1 else 0.0
    trials = int(sharpes.size) if trials is None else int(trials)
    sr0 = expected_max_sharpe(trials, variance)
    dsr = probabilistic_sharpe_ratio(sharpe, sr0, int(series.size), skew, kurtosis)
    return DeflatedSharpe(
        sharpe=sharpe,
        annualised_sharpe=sharpe * math.sqrt(periods_per_year),
        n_obs=int(series.size),
        skew=skew,
        kurtosis=kurtosis,
        trials=trials,
        sharpe_variance=variance,
        expected_max_sharpe=sr0,
        dsr=dsr,
        periods_per_year=periods_per_year,
    )


def _reject_annualised(sharpe: float, sharpes: FloatArray, periods_per_year: float) -> None:
    """Catch the easy mistake of passing annualised trial Sharpes (e.g. from a backtest's
    metrics): the chosen trial's annualised Sharpe sits among them while its per-period one
    does not. Annualised Sharpes inflate V by ``periods_per_year`` and turn every DSR into 0."""
    if periods_per_year <= 1.0 or sharpe == 0.0:
        return
    annualised = sharpe * math.sqrt(periods_per_year)
    near = np.isclose(sharpes, annualised, rtol=1e-3, atol=0.0)
    if near.any() and not np.isclose(sharpes, sharpe, rtol=1e-3, atol=0.0).any():
        raise ValueError(
            f"trial_sharpes look annualised: trial_sharpes[{int(np.flatnonzero(near)[0])}] "
            f"equals the chosen trial's annualised Sharpe {annualised:.4g}, its per-period "
            f"Sharpe is {sharpe:.4g}. Pass per-period Sharpes (see sharpe_ratios)."
        )


# --- Probability of Backtest Overfitting (CSCV) -----------------------------------------------


def sharpe_ratios(returns: np.ndarray) -> FloatArray:
    """Per-period Sharpe ratio of each column of a (T x N) returns matrix: mean / std (ddof 1).

    A column without variance (a trial that never traded) scores 0: it shows no measurable
    risk-adjusted performance. This is CSCV's default metric and the input DSR wants.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(
            f"returns must be a (T x N) matrix with T >= 2 periods, got shape {matrix.shape}."
        )
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0, ddof=1)
    out = np.zeros(matrix.shape[1], dtype=np.float64)
    np.divide(mean, std, out=out, where=std > _FLAT * np.abs(matrix).max(axis=0))
    return out


@dataclass(frozen=True)
class Pbo:
    """CSCV's result: the PBO and what the report plots (logits, degradation pairs)."""

    pbo: float  # share of splits whose in-sample best ranks in the bottom half out of sample
    splits: int  # S, the number of time blocks
    combinations: int  # C(S, S/2), one in-sample/out-of-sample split each
    logits: np.ndarray  # one per combination: ln(w / (1 - w)), w = OOS relative rank of IS best
    is_best: np.ndarray  # in-sample performance of the in-sample best, per combination
    oos_of_is_best: np.ndarray  # its out-of-sample performance, same combination
    prob_oos_loss: float  # share of combinations whose in-sample best lost out of sample

    def verdict(self) -> str:
        """One line: does the in-sample best keep its rank out of sample, or is it fitting noise?"""
        head = (
            f"PBO {self.pbo:.2f}: the in-sample best ranked in the bottom half out of sample "
            f"in {self.pbo:.0%} of {self.combinations:,} splits"
        )
        if self.pbo >= 0.5:
            return f"{head}; the optimisation is fitting noise, treat its best as luck."
        if self.pbo > 0.1:
            return f"{head}; a real risk of overfitting, trust the best with care."
        return f"{head}; the selection holds up out of sample."


def _metric_over(
    metric: Callable[[np.ndarray], np.ndarray],
    blocks: FloatArray,
    chosen: npt.NDArray[np.intp],
) -> FloatArray:
    """Evaluate ``metric`` on the rows of the chosen blocks, for each combination at once.

    ``blocks`` is (S, t, N); ``chosen`` is (C, S/2) block indices. The combinations' row sets
    are stacked side by side as one (S/2 t, c N) matrix per batch of c combinations, so a
    column-wise metric runs once per batch instead of once per combination.
    """
    n_comb, half = chosen.shape
    _, rows, n = blocks.shape
    out = np.empty((n_comb, n), dtype=np.float64)
    batch = max(1, _BUDGET // (half * rows * n))
    for start in range(0, n_comb, batch):
        idx = chosen[start : start + batch]
        c = idx.shape[0]
        # one gather straight into (S/2, t, c, N) order: row j*t + r, column k*N + i holds
        # blocks[idx[k, j], r, i], so the reshape below needs no second copy
        wide = blocks[idx.T[:, None, :], np.arange(rows)[None, :, None]]
        wide = wide.reshape(half * rows, c * n)
        values = np.asarray(metric(wide), dtype=np.float64)
        if values.shape != (c * n,):
            raise ValueError(
                f"metric must return one value per column: given a ({half * rows} x {c * n}) "
                f"matrix it returned shape {values.shape}."
            )
        out[start : start + c] = values.reshape(c, n)
    return out


def _sharpe_over(blocks: FloatArray, chosen: npt.NDArray[np.intp]) -> FloatArray:
    """The default metric, vectorised: per-period Sharpe of each trial over the rows of the
    chosen blocks, for every combination at once. Each half's mean and variance are pooled from
    the blocks' own means and sums of squared deviations (Chan et al.'s parallel formula), so a
    combination costs a few small array operations instead of a pass over its rows, and a
    trial that is flat within a half comes out flat rather than as rounding noise."""
    _, rows, n = blocks.shape
    block_mean = blocks.mean(axis=1)  # (S, N)
    block_m2 = ((blocks - block_mean[:, None, :]) ** 2).sum(axis=1)  # (S, N)
    scale = _FLAT * np.abs(blocks).max(axis=(0, 1))  # (N,)
    half_rows = chosen.shape[1] * rows
    out = np.empty((chosen.shape[0], n), dtype=np.float64)
    batch = max(1, _BUDGET // (chosen.shape[1] * n))
    for start in range(0, chosen.shape[0], batch):
        idx = chosen[start : start + batch]
        means = block_mean[idx]  # (c, S/2, N)
        mean = means.mean(axis=1)
        m2 = block_m2[idx].sum(axis=1) + rows * ((means - mean[:, None, :]) ** 2).sum(axis=1)
        std = np.sqrt(m2 / (half_rows - 1))
        ratio = np.zeros_like(mean)
        np.divide(mean, std, out=ratio, where=std > scale)
        out[start : start + idx.shape[0]] = ratio
    return out


def pbo_cscv(
    returns: np.ndarray,
    splits: int = 16,
    metric: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Pbo:
    """The Probability of Backtest Overfitting of picking the best of N trials, by CSCV.

    ``returns`` is the (T x N) matrix of the trials' per-period returns (one column per trial,
    rows aligned in time). The rows are cut into ``splits`` (S, even) consecutive blocks of
    equal length; the oldest T mod S rows are dropped so that every block, and so every
    in-sample and out-of-sample half, has the same length (the "symmetric" of CSCV). For each
    of the C(S, S/2) ways to pick half of the blocks as in-sample (the rest out-of-sample), the
    trial best in-sample by ``metric`` is located in the out-of-sample ranking: w = rank / (N+1)
    (rank 1 = worst, ties averaged), logit = ln(w / (1 - w)). PBO is the share of logits <= 0.

    ``metric`` maps a (t x N) matrix to N values, each from its own column only (it is applied
    to many combinations stacked side by side); higher is better. Default: per-period Sharpe
    (:func:`sharpe_ratios`), pooled from per-block moments without passing over the rows again.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(
            f"returns must be a (T periods x N trials) matrix, got shape {matrix.shape}."
        )
    t_rows, n = matrix.shape
    if n < 2:
        raise ValueError(
            f"returns has {n} trial column(s); overfitting by selection needs at least 2 trials."
        )
    if isinstance(splits, bool) or int(splits) != splits or splits < 2 or splits % 2:
        raise ValueError(
            f"splits must be an even integer of at least 2 (e.g. 16): half of the blocks are "
            f"in-sample, half out-of-sample; got {splits!r}."
        )
    splits = int(splits)
    if splits > MAX_SPLITS:
        raise ValueError(
            f"splits={splits} means C({splits}, {splits // 2}) = "
            f"{math.comb(splits, splits // 2):,} combinations; use at most {MAX_SPLITS} "
            f"(the paper uses 16)."
        )
    if splits > t_rows:
        raise ValueError(
            f"splits={splits} is more than the {t_rows} periods of returns: every block needs "
            f"at least one period (use fewer splits or more data)."
        )
    if (t_rows // splits) * (splits // 2) < 2:
        raise ValueError(
            f"{t_rows} periods in {splits} blocks leave one period per half: a Sharpe ratio "
            f"needs at least 2 (use more data)."
        )
    if not np.all(np.isfinite(matrix)):
        row, col = (int(v) for v in np.argwhere(~np.isfinite(matrix))[0])
        raise ValueError(
            f"returns[{row}, {col}] is {float(matrix[row, col])}; every return must be finite."
        )

    rows = t_rows // splits
    used = matrix[t_rows - rows * splits :]
    blocks = np.ascontiguousarray(used.reshape(splits, rows, n))
    chosen = np.array(
        list(itertools.combinations(range(splits), splits // 2)), dtype=np.intp
    )  # (C, S/2)
    mask = np.ones((chosen.shape[0], splits), dtype=bool)
    np.put_along_axis(mask, chosen, False, axis=1)
    complement = np.nonzero(mask)[1].reshape(chosen.shape[0], splits // 2).astype(np.intp)

    if metric is None:
        is_perf, oos_perf = _sharpe_over(blocks, chosen), _sharpe_over(blocks, complement)
    else:
        is_perf = _metric_over(metric, blocks, chosen)
        oos_perf = _metric_over(metric, blocks, complement)
        for name, perf in (("in-sample", is_perf), ("out-of-sample", oos_perf)):
            if not np.all(np.isfinite(perf)):
                raise ValueError(f"metric returned a non-finite {name} value; it must be finite.")

    combos = np.arange(chosen.shape[0])
    best = np.argmax(is_perf, axis=1)  # ties: the first trial
    best_oos = oos_perf[combos, best]
    below = (oos_perf < best_oos[:, None]).sum(axis=1)
    equal = (oos_perf == best_oos[:, None]).sum(axis=1)  # includes the trial itself
    rank = below + (equal + 1) / 2.0  # average rank among ties, 1 = worst
    w = rank / (n + 1)
    logits = np.log(w / (1.0 - w))
    return Pbo(
        pbo=float(np.mean(logits <= 0.0)),
        splits=splits,
        combinations=int(chosen.shape[0]),
        logits=logits,
        is_best=is_perf[combos, best],
        oos_of_is_best=best_oos,
        prob_oos_loss=float(np.mean(best_oos < 0.0)),
    )
