"""Labels: what a model learns to predict, and when each label becomes known.

Every label frame has ``open_time``, ``label``, ``forward_return`` (log return from this bar's
close to the close ``horizon`` bars later: what every score is judged on) and ``event_end``
(the open time of the bar whose close settles the label). Validation purges training rows
whose ``[open_time, event_end]`` overlaps a test fold, so ``event_end`` must be exact.

* ``forward_return``: the forward log return itself (regression).
* ``sign``: +1 / -1 when the forward return is beyond ``dead_zone_bps``, else 0.
* ``triple_barrier`` (López de Prado): barriers at ``± barrier_vol_mult * vol * sqrt(horizon)``
  in log-price around this bar's close, ``vol`` being the standard deviation of 1-bar log
  returns over the ``vol_window`` bars up to this one (known now, so the barrier width does
  not peek). The first later bar whose high (low) touches the upper (lower) barrier decides
  +1 (-1); a bar touching both is decided by its close (the path inside a bar is unknown);
  no touch within ``horizon`` bars is 0 at the time limit.

The last ``horizon`` bars have no label (null): their future is not in the data.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tessera.config.models import LabelConfig

OPEN_TIME = "open_time"


def make_labels(bars: pl.DataFrame, cfg: LabelConfig) -> pl.DataFrame:
    """``open_time``, ``label``, ``forward_return``, ``event_end`` for every bar."""
    frame = bars.sort(OPEN_TIME)
    h = cfg.horizon
    logc = pl.col("close").cast(pl.Float64).log()
    base = frame.select(
        OPEN_TIME,
        (logc.shift(-h) - logc).alias("forward_return"),
        pl.col(OPEN_TIME).shift(-h).alias("event_end"),
    )
    fwd = pl.col("forward_return")
    if cfg.kind == "forward_return":
        return base.with_columns(fwd.alias("label")).select(_ORDER)
    if cfg.kind == "sign":
        dz = cfg.dead_zone_bps / 1e4
        label = (
            pl.when(fwd.is_null())
            .then(None)
            .when(fwd > dz)
            .then(1)
            .when(fwd < -dz)
            .then(-1)
            .otherwise(0)
            .cast(pl.Int64)
        )
        return base.with_columns(label.alias("label")).select(_ORDER)
    return _triple_barrier(frame, base, cfg)


_ORDER = [OPEN_TIME, "label", "forward_return", "event_end"]


def _triple_barrier(frame: pl.DataFrame, base: pl.DataFrame, cfg: LabelConfig) -> pl.DataFrame:
    h = cfg.horizon
    close = np.log(frame["close"].cast(pl.Float64).to_numpy())
    high = np.log(frame["high"].cast(pl.Float64).to_numpy())
    low = np.log(frame["low"].cast(pl.Float64).to_numpy())
    n = len(close)
    vol = (
        frame.select(
            pl.col("close").cast(pl.Float64).log().diff().rolling_std(cfg.vol_window, ddof=1)
        )
        .to_series()
        .fill_null(np.nan)
        .to_numpy()
    )
    width = cfg.barrier_vol_mult * vol * np.sqrt(h)
    label = np.zeros(n, dtype=np.int64)
    end = np.full(n, -1, dtype=np.int64)  # index of the deciding bar
    decided = np.zeros(n, dtype=bool)
    idx = np.arange(n)
    for k in range(1, h + 1):
        j = idx + k
        inside = j < n
        jj = np.where(inside, j, 0)
        up = inside & (high[jj] - close >= width)
        down = inside & (low[jj] - close <= -width)
        both = up & down
        new = ~decided & (up | down)
        # both barriers in one bar: its close says which side the bar ended on
        side = np.where(both, np.sign(close[jj] - close), np.where(up, 1, -1))
        label[new] = side[new]
        end[new] = j[new]
        decided |= new
    timeout = ~decided
    end[timeout] = idx[timeout] + h
    valid = (idx + h < n) & np.isfinite(width)
    times = frame[OPEN_TIME]
    end_times = times.gather(np.clip(end, 0, n - 1))
    out = base.with_columns(
        pl.Series("label", np.where(valid, label, 0), dtype=pl.Int64),
        end_times.alias("event_end"),
        pl.Series("valid", valid),
    )
    return out.with_columns(
        pl.when(pl.col("valid")).then(pl.col("label")).alias("label"),
        pl.when(pl.col("valid")).then(pl.col("event_end")).alias("event_end"),
        pl.when(pl.col("valid")).then(pl.col("forward_return")).alias("forward_return"),
    ).select(_ORDER)
