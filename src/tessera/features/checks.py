"""Proofs a feature must pass: no look-ahead, and its two executions agree.

**No look-ahead.** For cut points ``t`` spread over the data, the bars after ``t`` are replaced
by different data (prices scaled by a random walk, volumes and other columns scrambled, bars
after the cut shuffled) and the batch execution is run again: every value at or before ``t``
must be unchanged, bit for bit (NaN equal to NaN). A feature that reads the future — a
negative shift, a centred window, a normalisation over the whole column — changes there.

**Parity.** The incremental execution, fed the bars one by one, must equal the batch execution
to ``tolerance`` (relative to ``max(1, |value|)``), with NaN in the same places.

Both run for every registered feature in the tests, and for a user's own features with
``tessera features check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.features.base import Feature
from tessera.features.engine import OPEN_TIME, prepare_bars

PARITY_TOLERANCE = 1e-9


@dataclass
class CheckResult:
    feature: str
    columns: list[str]
    lookahead_ok: bool = True
    lookahead_detail: str = ""
    cuts_checked: int = 0
    parity_ok: bool = True
    parity_max_error: float = 0.0
    parity_detail: str = ""
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lookahead_ok and self.parity_ok


def _perturb_after(frame: pl.DataFrame, cut: int, rng: np.random.Generator) -> pl.DataFrame:
    """Bars ``<= cut`` untouched; after it, plausible but different data."""
    n = len(frame)
    tail = n - cut - 1
    if tail <= 0:
        return frame
    head = frame.slice(0, cut + 1)
    rest = frame.slice(cut + 1)
    order = rng.permutation(tail)
    rest = rest.with_columns(pl.col(c).gather(order) for c in rest.columns if c != OPEN_TIME)
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.01, tail)))
    scale = pl.Series(walk * rng.uniform(0.5, 1.5))
    prices = [c for c in ("open", "high", "low", "close", "bid_price", "ask_price") if c in rest]
    others = [
        c for c in rest.columns if c not in prices and c != OPEN_TIME and rest[c].dtype.is_numeric()
    ]
    rest = rest.with_columns(
        *(pl.col(c) * scale for c in prices),
        *(pl.col(c) * pl.Series(rng.uniform(0.1, 3.0, tail)) for c in others),
    )
    return pl.concat([head, rest.select(head.columns)])


def _same(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    same: npt.NDArray[np.bool_] = (a == b) | (np.isnan(a) & np.isnan(b))
    return same


def check_lookahead(
    feature: Feature, bars: pl.DataFrame, cuts: int = 12, seed: int = 7
) -> tuple[bool, str, int]:
    """(ok, detail, cuts checked) of the perturb-the-future test on ``bars``."""
    frame = prepare_bars(bars)
    n = len(frame)
    rng = np.random.default_rng(seed)
    full = feature.batch(frame)
    # cut points: early (inside warm-up), spread over the data, and near the end
    points = sorted(
        {min(feature.warmup, n - 2), 1, *np.linspace(0, n - 2, cuts).astype(int).tolist()}
    )
    points = [p for p in points if 0 <= p < n - 1]
    for cut in points:
        changed = feature.batch(_perturb_after(frame, cut, rng))
        for col in full.columns:
            a = full[col].to_numpy()[: cut + 1]
            b = changed[col].to_numpy()[: cut + 1]
            bad = np.flatnonzero(~_same(a, b))
            if bad.size:
                i = int(bad[0])
                when = frame[OPEN_TIME][i]
                return (
                    False,
                    f"{col}: changing bars after row {cut} changed row {i} ({when}): "
                    f"{a[i]!r} -> {b[i]!r}",
                    len(points),
                )
    return True, "", len(points)


def check_parity(
    feature: Feature, bars: pl.DataFrame, tolerance: float = PARITY_TOLERANCE
) -> tuple[bool, float, str]:
    """(ok, max relative error, detail): incremental vs batch over every bar."""
    frame = prepare_bars(bars)
    batch = feature.batch(frame)
    state = feature.incremental()
    rows = np.array([state.update(bar) for bar in frame.iter_rows(named=True)], dtype=np.float64)
    worst = 0.0
    for k, col in enumerate(batch.columns):
        a = batch[col].to_numpy()
        b = rows[:, k] if len(rows) else np.empty(0)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if (nan_a != nan_b).any():
            i = int(np.flatnonzero(nan_a != nan_b)[0])
            return False, np.inf, f"{col}: row {i} is {a[i]!r} in batch but {b[i]!r} incremental"
        ok = ~nan_a
        if ok.any():
            err = np.abs(a[ok] - b[ok]) / np.maximum(1.0, np.abs(a[ok]))
            worst = max(worst, float(err.max()))
            if err.max() > tolerance:
                i = int(np.flatnonzero(ok)[int(err.argmax())])
                return False, worst, f"{col}: row {i} batch {a[i]!r} vs incremental {b[i]!r}"
    return True, worst, ""


def check_feature(feature: Feature, bars: pl.DataFrame, cuts: int = 12) -> CheckResult:
    res = CheckResult(feature.base_name, feature.columns, rows=len(bars))
    res.lookahead_ok, res.lookahead_detail, res.cuts_checked = check_lookahead(feature, bars, cuts)
    res.parity_ok, res.parity_max_error, res.parity_detail = check_parity(feature, bars)
    return res
