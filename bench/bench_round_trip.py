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
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backtest import FAST, SLOW, make_bars
from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig, RiskConfig
from tessera.strategies import SmaCross
from tessera.strategies.base import Bar, StrategyContext


class _NoOrders:
    """What SmaCross asks of its context at a crossing, answered without an order: the
    position it targeted is kept here."""

    def __init__(self) -> None:
        self.held = Decimal(0)

    def position(self, symbol: str) -> Decimal:
        return self.held

    def target_position(self, symbol: str, qty: Decimal) -> None:
        self.held = qty


class ArithmeticOnly(SmaCross):
    """SmaCross's own `on_bar` — its averages and crossings — with a context that places no
    order (the bench's fixed ``qty`` needs nothing else of it). The one extra call a bar makes
    this row ~0.08 s per 200,000 bars dearer than SmaCross's arithmetic alone, so the round
    trip derived from it reads ~10 µs low; a copy of `on_bar` here would not, but could drift
    from the strategy it stands for (until 2026-12-07 it was such a copy)."""

    def __init__(self, symbols: list[str], **params: Any) -> None:
        super().__init__(symbols, **params)
        self._no_orders = _NoOrders()

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        super().on_bar(bar, self._no_orders)  # type: ignore[arg-type]


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
