"""Perpetual-futures backtest speed beside the spot engine on the same bars (issue 17).

    .venv/bin/python bench/bench_perp_backtest.py [--bars 200000] [--repeat 5]

One engine, two accounts: the same SmaCross(10, 30) with a fixed 0.01 BTC size on the same
1-minute bars, once as spot (`Portfolio`) and once as a USDⓈ-M perpetual (`PerpAccount`: mark
price per bar, the liquidation check on the mark's high/low, funding every 8 h, initial-margin
checks per order, margin stats per bar). The long-only perpetual run makes the same trades as
spot, so the difference is the funding and margin bookkeeping; a long/short run
(``allow_short``) is shown too. In this process, ``--repeat`` interleaved rounds (each engine
once per round, garbage collected before each run); reported: the median and min-max bars/s,
the best run, and "vs spot" as the median (min-max) of the per-round time ratios, so that a
burst of load on a shared machine hits both sides of a ratio. Each round prints as it ends.

Synthetic data (benchmarks may use it; correctness tests use the real bars in samples/): a
seeded random walk for the trade bars, a mark 0.01 % above the trade price with its own
high/low, and a constant funding rate of 0.0001 every 8 h, written as freqtrade-layout files so
they go through `load_perp_inputs` as real files do. The brackets are Binance's real BTCUSDT
ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

FAST, SLOW = 10, 30
MIN_NS = 60_000_000_000
T0 = 1_600_000_000_000_000_000 - 1_600_000_000_000_000_000 % (8 * 3600 * 1_000_000_000)


def make_files(n: int, root: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(7)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate([[40_000.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0003, n)))
    t = np.arange(n, dtype=np.int64) * MIN_NS + T0
    date = pl.Series(t).cast(pl.Datetime("ns", "UTC"))
    bars, mark, funding = root / "bars.parquet", root / "mark.parquet", root / "funding.parquet"
    pl.DataFrame(
        {
            "open_time": date,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 100, n),
        }
    ).write_parquet(bars)
    pl.DataFrame(
        {
            "open_time": date,
            "open": open_ * 1.0001,
            "high": high * 1.0001,
            "low": low * 1.0001,
            "close": close * 1.0001,
            "volume": np.zeros(n),  # read_bar_file wants one; read_mark_prices drops it
        }
    ).write_parquet(mark)
    ft = np.arange(T0 + 8 * 3600 * 10**9, int(t[-1]) + MIN_NS, 8 * 3600 * 10**9, dtype=np.int64)
    zeros = np.zeros(len(ft))
    pl.DataFrame(
        {
            "date": pl.Series(ft).cast(pl.Datetime("ns", "UTC")),
            "open": np.full(len(ft), 0.0001),
            "high": zeros,
            "low": zeros,
            "close": zeros,
            "volume": zeros,
        }
    ).write_parquet(funding)
    return bars, mark, funding


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """One run of ``fn``: seconds and its fill count."""
    gc.collect()  # the previous run's garbage is not this run's cost
    t0 = time.perf_counter()
    fills = fn()
    return time.perf_counter() - t0, fills


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    mid, lo, hi = statistics.median(values), min(values), max(values)
    return f"{mid:{fmt}} ({lo:{fmt}} to {hi:{fmt}})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from tessera.backtest import BacktestEngine, BarSeries
    from tessera.backtest.perp_inputs import load_perp_inputs
    from tessera.config import BacktestConfig
    from tessera.strategies import SmaCross

    with tempfile.TemporaryDirectory() as tmp:
        bars, mark, funding = make_files(args.bars, Path(tmp))
        series = BarSeries.from_frame("BTCUSDT", pl.read_parquet(bars))
        inputs = load_perp_inputs(
            [series], mark_files={"BTCUSDT": mark}, funding_files={"BTCUSDT": funding}
        )
    cfg = BacktestConfig.model_validate(
        {"initial_cash": 10_000_000, "perp": {"leverage": 2, "margin_mode": "isolated"}}
    )

    def spot() -> int:
        strat = SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01")
        return len(BacktestEngine(cfg).run([series], [strat]).fills)

    def perp(short: bool) -> int:
        strat = SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01", allow_short=short)
        res = BacktestEngine(cfg, perp=inputs).run([series], [strat])
        assert res.perp is not None and res.perp.funding_times > 0
        return len(res.fills)

    engines = {
        "spot": spot,
        "perp long-only": lambda: perp(False),
        "perp long/short": lambda: perp(True),
    }
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.bars:,} bars; "
        f"{args.repeat} interleaved rounds; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
        flush=True,
    )
    # interleaved rounds: a busy machine slows every engine of a round alike
    timings: dict[str, list[float]] = {name: [] for name in engines}
    fills: dict[str, int] = {}
    for k in range(args.repeat):
        for name, fn in engines.items():
            seconds, fills[name] = timed(fn)
            timings[name].append(seconds)
        cells = ", ".join(f"{name} {timings[name][-1]:.3f} s" for name in engines)
        print(f"round {k + 1}/{args.repeat}: {cells}", flush=True)
    spot_t = timings["spot"]
    rows = {
        name: {
            "seconds_median": statistics.median(ts),
            "seconds_min": min(ts),
            "seconds_max": max(ts),
            "bars_per_s_median": args.bars / statistics.median(ts),
            "bars_per_s_best": args.bars / min(ts),
            "fills": fills[name],
            "vs_spot": [t / s - 1.0 for t, s in zip(ts, spot_t, strict=True)],
        }
        for name, ts in timings.items()
    }
    print(json.dumps({"bars": args.bars, "repeat": args.repeat, "engines": rows}, indent=1))
    print(
        f"\n{'engine':18} {'bars/s median (min to max)':>32} {'best bars/s':>12} {'fills':>7} "
        f"{'vs spot, paired median (min to max)':>36}"
    )
    for name, ts in timings.items():
        row = rows[name]
        rates = spread([args.bars / t for t in ts], ",.0f")
        vs = "-" if name == "spot" else spread([100 * x for x in row["vs_spot"]], "+.1f") + " %"
        print(
            f"{name:18} {rates:>32} {row['bars_per_s_best']:>12,.0f} {row['fills']:>7,} {vs:>36}",
            flush=True,
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end {load}", flush=True)


if __name__ == "__main__":
    main()
