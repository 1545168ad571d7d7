"""Backtest speed: SmaCross on N synthetic 1-minute bars, ours vs the peers, in one run.

    .venv/bin/python bench/bench_backtest.py [--bars 1000000] [--no-nautilus]

Engines, each in its own process (so peak RSS is its own):
- tessera event-driven engine (the one shared with live), and its vectorized fast path
- backtesting.py 0.6.6 (`Backtest.run`)
- vectorbt 1.2.0 (`Portfolio.from_signals`; first call includes numba compilation, so it is
  timed on a second call)
- nautilus_trader (its `BacktestEngine` with a Python SmaCross strategy) — it needs pandas < 3,
  so it runs from its own venv, created on first use in `bench/.venv-nautilus`.
Synthetic data is a seeded random walk (benchmarks may use synthetic data; correctness tests
use the real bars in samples/).

    .venv/bin/python bench/bench_backtest.py --paired 5 [--bars 1000000]

In-process and paired instead (issue 20): each round runs, one after the other in one
process, the event engine with the default `RiskConfig` (risk engine on; its limits do not bind
here), without a risk engine, with a strategy that does nothing, with SmaCross's arithmetic but
no orders, and backtesting.py; rounds are repeated and the medians (min–max) printed. The cost
of one order-and-fill round trip is (SmaCross - arithmetic only) / orders; the ratio to
backtesting.py is taken per round (so both saw the same machine load).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
FAST, SLOW = 10, 30
NAUTILUS_VENV = HERE / ".venv-nautilus"
NAUTILUS_PIN = "nautilus_trader==1.221.0"


def make_bars(n: int, path: Path) -> None:
    rng = np.random.default_rng(7)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate([[40_000.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0003, n)))
    t = np.arange(n, dtype=np.int64) * 60_000_000_000 + 1_600_000_000_000_000_000
    pl.DataFrame(
        {
            "open_time": pl.Series(t).cast(pl.Datetime("ns", "UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 100, n),
        }
    ).write_parquet(path)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tessera(path: Path, vectorized: bool) -> dict[str, float]:
    from decimal import Decimal

    from tessera.backtest import BacktestEngine, BarSeries
    from tessera.backtest.vectorized import sma_cross
    from tessera.config import BacktestConfig
    from tessera.strategies import SmaCross

    series = BarSeries.from_frame("BTCUSDT", pl.read_parquet(path))
    cfg = BacktestConfig.model_validate({"initial_cash": 10_000_000})
    t0 = time.perf_counter()
    if vectorized:
        res = sma_cross(series, FAST, SLOW, cfg, qty=Decimal("0.01"))
        fills = len(res.fills)
    else:
        out = BacktestEngine(cfg).run(
            [series], [SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01")]
        )
        fills = len(out.fills)
    return {"seconds": time.perf_counter() - t0, "fills": fills, "bars": len(series)}


def run_backtesting_py(path: Path) -> dict[str, float]:
    import warnings

    from backtesting import Backtest, Strategy

    from tessera.backtest.vectorized import sma

    df = pl.read_parquet(path).to_pandas().set_index("open_time")
    df.columns = ["Open", "High", "Low", "Close", "Volume"]

    class PeerSma(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.f = self.I(sma, self.data.Close, FAST)
            self.s = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            prev, cur = self.f[-2] - self.s[-2], self.f[-1] - self.s[-1]
            if prev < 0 < cur and not self.position:
                self.buy(size=1)
            elif prev > 0 > cur and self.position:
                self.position.close()

    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(df, PeerSma, cash=10_000_000, commission=0.001).run()
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "fills": 2 * len(stats["_trades"]),
        "bars": len(df),
    }


def run_vectorbt(path: Path) -> dict[str, float]:
    import pandas as pd
    import vectorbt as vbt

    from tessera.backtest.vectorized import crossings, sma

    df = pl.read_parquet(path).to_pandas().set_index("open_time")

    def once() -> tuple[float, int]:
        t0 = time.perf_counter()
        up, down = crossings(sma(df["close"].to_numpy(), FAST), sma(df["close"].to_numpy(), SLOW))
        entries = pd.Series(np.concatenate([[False], up[:-1]]), index=df.index)
        exits = pd.Series(np.concatenate([[False], down[:-1]]), index=df.index)
        pf = vbt.Portfolio.from_signals(
            df["close"],
            entries,
            exits,
            price=df["open"],
            size=0.01,
            size_type="amount",
            fees=0.001,
            init_cash=10_000_000,
        )
        n = len(pf.orders.records)
        return time.perf_counter() - t0, n

    once()  # numba compiles on the first call
    seconds, fills = once()
    return {"seconds": seconds, "fills": fills, "bars": len(df)}


def paired(path: Path, rounds: int, raw: Path | None = None) -> None:
    """See the module docstring: in-process, interleaved, medians with min–max."""
    import gc
    import os
    import statistics

    from tessera.backtest import BacktestEngine, BarSeries
    from tessera.config import BacktestConfig, RiskConfig
    from tessera.strategies import SmaCross, Strategy
    from tessera.strategies.base import Bar, StrategyContext

    class Idle(Strategy):
        name = "idle"

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            pass

    class ArithmeticOnly(SmaCross):
        """SmaCross's averages and crossings, a position kept in an int, no orders."""

        held = 0

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            fast, slow = self._fast[bar.symbol], self._slow[bar.symbol]
            fast.push(bar.close)
            slow.push(bar.close)
            if not slow.ready:
                return
            diff = fast.mean - slow.mean
            prev = self._prev[bar.symbol]
            self._prev[bar.symbol] = diff
            if prev is None:
                return
            if prev < 0 < diff:
                if self.held <= 0:
                    self.held = 1
            elif prev > 0 > diff and self.held > 0:
                self.held = 0

    series = BarSeries.from_frame("BTCUSDT", pl.read_parquet(path))
    cfg = BacktestConfig.model_validate({"initial_cash": 10_000_000})

    def tessera(strategy: Strategy, risk: RiskConfig | None) -> tuple[float, float, int, str]:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        out = BacktestEngine(cfg, risk).run([series], [strategy])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return wall, cpu, len(out.fills), str(out.final_equity)

    def sma() -> SmaCross:
        return SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01")

    runs: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # CPU seconds: less at the mercy of a shared machine
    fills: dict[str, int] = {}
    equity: dict[str, set[str]] = {"risk on": set(), "risk off": set()}
    ratio: list[float] = []
    for k in range(rounds):
        print(f"round {k + 1}/{rounds}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
        for name, strat, risk in [
            ("risk on", sma(), RiskConfig()),
            ("risk off", sma(), None),
            ("idle strategy", Idle(["BTCUSDT"]), None),
            (
                "arithmetic only",
                ArithmeticOnly(["BTCUSDT"], fast=FAST, slow=SLOW, qty="0.01"),
                None,
            ),
        ]:
            seconds, cpu_seconds, n, eq = tessera(strat, risk)
            runs.setdefault(name, []).append(seconds)
            cpu.setdefault(name, []).append(cpu_seconds)
            fills[name] = n
            if name in equity:
                equity[name].add(eq)
        gc.collect()
        peer = run_backtesting_py(path)
        runs.setdefault("backtesting.py", []).append(peer["seconds"])
        cpu.setdefault("backtesting.py", []).append(peer["cpu_seconds"])
        fills["backtesting.py"] = int(peer["fills"])
        ratio.append(peer["seconds"] / runs["risk on"][-1])
    bars = len(series)

    def spread(xs: list[float], scale: float = 1.0) -> str:
        return f"{statistics.median(xs) * scale:.2f} ({min(xs) * scale:.2f}–{max(xs) * scale:.2f})"

    print(f"\nSmaCross({FAST},{SLOW}) on {bars:,} synthetic 1-minute bars, in one process,")
    print(f"{rounds} interleaved rounds, medians (min–max); load {os.getloadavg()}\n")
    print("| run | seconds | CPU seconds | µs per bar (CPU) | fills |")
    print("|---|---:|---:|---:|---:|")
    for name, xs in runs.items():
        print(
            f"| {name} | {spread(xs)} | {spread(cpu[name])} | {spread(cpu[name], 1e6 / bars)} "
            f"| {fills[name]:,} |"
        )
    orders = fills["risk off"]
    print()
    for name in ("risk on", "risk off"):
        for label, times in (("wall", runs), ("CPU", cpu)):
            per = [
                (a - b) / orders * 1e6
                for a, b in zip(times[name], times["arithmetic only"], strict=True)
            ]
            print(f"µs per order-and-fill round trip, {name}, {label}: {spread(per)}")
    print(f"backtesting.py seconds / tessera (risk on) seconds, per round: {spread(ratio)}")
    cpu_ratio = [b / a for a, b in zip(cpu["risk on"], cpu["backtesting.py"], strict=True)]
    print(f"the same in CPU seconds: {spread(cpu_ratio)}")
    print(f"final equity, risk on: {sorted(equity['risk on'])}; off: {sorted(equity['risk off'])}")
    if raw is not None:  # every round's seconds, for comparing two checkouts run in turn
        raw.write_text(json.dumps({"runs": runs, "cpu": cpu, "fills": fills, "bars": bars}))


def ensure_nautilus_venv() -> Path:
    py = NAUTILUS_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {NAUTILUS_VENV} with {NAUTILUS_PIN} (first run only)…", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(NAUTILUS_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", NAUTILUS_PIN, "pyarrow"], check=True
        )
    return py


def child(engine: str, path: Path) -> None:
    runners = {
        "tessera-event": lambda: run_tessera(path, vectorized=False),
        "tessera-vectorized": lambda: run_tessera(path, vectorized=True),
        "backtesting.py": lambda: run_backtesting_py(path),
        "vectorbt": lambda: run_vectorbt(path),
    }
    result = runners[engine]()
    result["peak_rss_mb"] = _rss_mb()
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--no-nautilus", action="store_true", help="skip nautilus_trader")
    ap.add_argument("--paired", type=int, metavar="ROUNDS", help="in-process, interleaved")
    ap.add_argument("--raw", type=Path, help="--paired: also write every round's seconds here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.path)
        return
    path = Path("/tmp") / f"tessera_bench_bars_{args.bars}.parquet"
    if not path.exists():
        make_bars(args.bars, path)
    if args.paired:
        paired(path, args.paired, args.raw)
        return
    engines = ["tessera-event", "tessera-vectorized", "backtesting.py", "vectorbt"]
    results: dict[str, dict[str, float]] = {}
    for engine in engines:
        print(f"running {engine}…", file=sys.stderr)
        out = subprocess.run(
            [sys.executable, __file__, "--child", engine, "--path", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    if not args.no_nautilus:
        print("running nautilus_trader…", file=sys.stderr)
        py = ensure_nautilus_venv()
        out = subprocess.run(
            [
                str(py),
                str(HERE / "peers" / "nautilus_smacross.py"),
                str(path),
                str(FAST),
                str(SLOW),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results["nautilus_trader"] = json.loads(out.stdout.strip().splitlines()[-1])
    ours = results["tessera-event"]["bars"] / results["tessera-event"]["seconds"]
    print(f"\nSmaCross({FAST},{SLOW}) on {args.bars:,} synthetic 1-minute bars\n")
    print("| engine | seconds | bars/s | tessera-event is x faster | fills | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        rate = r["bars"] / r["seconds"]
        print(
            f"| {name} | {r['seconds']:.2f} | {rate:,.0f} | {ours / rate:.2f} | "
            f"{int(r['fills']):,} | {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
