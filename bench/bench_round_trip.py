"""The order-and-fill round trip of the event engine, for comparing two trees on a busy machine.

    .venv/bin/python bench/bench_round_trip.py [--bars 200000] [--rounds 4]

One process runs, ``--rounds`` times in turn: SmaCross(10, 30) with 0.01 BTC per entry with the
default `RiskConfig` (risk engine on), the same without a risk engine, and SmaCross's
arithmetic with no orders; on the synthetic bars of `bench_backtest.py`. It prints the
**minimum** CPU seconds of each (the run the machine disturbed least; a shared, loaded machine
disturbs medians far more) and the µs per round trip, (SmaCross − arithmetic only) / orders.
To compare two checkouts, alternate them: ``PYTHONPATH=<other>/src`` puts the other tree's
package first. `bench_backtest.py --paired` is the fuller measure (backtesting.py in the same
process, 1M bars, medians).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backtest import FAST, SLOW, make_bars
from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig, RiskConfig
from tessera.strategies import SmaCross
from tessera.strategies.base import Bar, StrategyContext


class ArithmeticOnly(SmaCross):
    """SmaCross's averages and crossings, a position kept in an int, no orders."""

    held = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        close = bar.close  # as SmaCross.on_bar computes them
        fast, slow = self._fast[bar.symbol], self._slow[bar.symbol]
        fast.cum += close
        fh = fast.history
        fh.append(fast.cum)
        slow.cum += close
        sh = slow.history
        sh.append(slow.cum)
        if len(sh) <= slow.n:
            return
        diff = (fh[-1] - fh[0]) / fast.n - (sh[-1] - sh[0]) / slow.n
        prev = self._prev[bar.symbol]
        self._prev[bar.symbol] = diff
        if prev is None:
            return
        if prev < 0 < diff:
            if self.held <= 0:
                self.held = 1
        elif prev > 0 > diff and self.held > 0:
            self.held = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    path = Path("/tmp") / f"tessera_bench_bars_{args.bars}.parquet"
    if not path.exists():
        make_bars(args.bars, path)
    series = BarSeries.from_frame("BTCUSDT", pl.read_parquet(path))
    cfg = BacktestConfig.model_validate({"initial_cash": 10_000_000})
    best: dict[str, float] = {}
    fills, equity = 0, set()
    for _ in range(args.rounds):
        for name, cls, risk in [
            ("risk on", SmaCross, RiskConfig()),
            ("risk off", SmaCross, None),
            ("arithmetic only", ArithmeticOnly, None),
        ]:
            strategy = cls(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01")
            gc.collect()
            c0 = time.process_time()
            out = BacktestEngine(cfg, risk).run([series], [strategy])
            best[name] = min(best.get(name, float("inf")), time.process_time() - c0)
            if name != "arithmetic only":
                fills = len(out.fills)
                equity.add(str(out.final_equity))
    print(f"{args.bars:,} bars, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    for name, seconds in best.items():
        print(f"  {name}: {seconds:.3f} CPU s (min)")
    for name in ("risk on", "risk off"):
        per = (best[name] - best["arithmetic only"]) / fills * 1e6
        print(f"  µs per order-and-fill round trip, {name}: {per:.1f}")
    print(f"  fills {fills}, final equity {sorted(equity)}")


if __name__ == "__main__":
    main()
