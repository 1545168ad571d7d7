"""Perpetual-futures backtest speed beside the spot engine on the same bars (issue 17).

    .venv/bin/python bench/bench_perp_backtest.py [--bars 200000] [--repeat 5]

One engine, two accounts: the same SmaCross(10, 30) with a fixed 0.01 BTC size on the same
1-minute bars, once as spot (`Portfolio`) and once as a USDⓈ-M perpetual (`PerpAccount`: mark
price per bar, the liquidation check on the mark's high/low, funding every 8 h, initial-margin
checks per order, margin stats per bar). The long-only perpetual run makes the same trades as
spot, so the difference is the funding and margin bookkeeping; a long/short run
(``allow_short``) is shown too. Best of ``--repeat`` runs each, in this process.

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
import tempfile
import time
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


def best(fn: object, repeat: int) -> tuple[float, int]:
    times, fills = [], 0
    for _ in range(repeat):
        gc.collect()  # the previous run's garbage is not this run's cost
        t0 = time.perf_counter()
        fills = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times), fills


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
    # interleaved, best of --repeat each: a busy machine slows every engine alike
    timings: dict[str, list[float]] = {name: [] for name in engines}
    fills: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, fn in engines.items():
            seconds, fills[name] = best(fn, 1)
            timings[name].append(seconds)
    rows = {
        name: {
            "seconds": min(ts),
            "bars_per_s": args.bars / min(ts),
            "fills": fills[name],
        }
        for name, ts in timings.items()
    }
    base = rows["spot"]["seconds"]
    for row in rows.values():
        row["vs_spot"] = row["seconds"] / base - 1.0
    print(json.dumps({"bars": args.bars, "repeat": args.repeat, "engines": rows}, indent=1))
    print(f"{'engine':18} {'bars/s':>10} {'fills':>7} {'vs spot':>8}")
    for name, row in rows.items():
        print(f"{name:18} {row['bars_per_s']:>10,.0f} {row['fills']:>7,} {row['vs_spot']:>+8.1%}")


if __name__ == "__main__":
    main()
