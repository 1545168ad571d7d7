"""Backtest speed: SmaCross on N synthetic 1-minute bars, ours vs the peers, in one run.

    .venv/bin/python bench/bench_backtest.py [--bars 1000000] [--no-nautilus] [--no-freqtrade]

Engines, each in its own process (so peak RSS is its own):
- tessera event-driven engine (the one shared with live), and its vectorized fast path
- backtesting.py 0.6.6 (`Backtest.run`)
- vectorbt 1.2.0 (`Portfolio.from_signals`; first call includes numba compilation, so it is
  timed on a second call)
- nautilus_trader (its `BacktestEngine` with a Python SmaCross strategy) — it needs pandas < 3,
  so it runs from its own venv, created on first use in `bench/.venv-nautilus`.
- whole processes, as a user runs them (start-up, reading the bars, the run, the reports):
  `tessera backtest` (risk engine on, kill-switch off) and freqtrade 2026.9's `freqtrade
  backtesting` (from `bench/.venv-freqtrade`, made by `make peers`; skipped when it is missing,
  or with --no-freqtrade), both trading SmaCross(10, 30) long/flat with all the equity of a
  10,000 USDT account, 1 bp fee a side, no slippage, at the next bar's open — the rules freqtrade
  can express without custom code (its stake is a quote amount; the in-process engines above
  buy a fixed 0.01 BTC with 10 bp fees, and at 10 bp an all-in account would be fees to dust
  after ~3,500 of the 19,291 trades). freqtrade reads the same bars as its own feather file and
  its markets from `tessera sim serve` (bench/peers/freqtrade_backtest/). Trade counts of both
  are printed side by side. Each process is killed after 120 s + 3 ms a bar; the temporary
  folders (configs, results, freqtrade's datadir) are removed, also when a run fails.
Synthetic data is a seeded random walk (benchmarks may use synthetic data; correctness tests
use the real bars in samples/).

    .venv/bin/python bench/bench_backtest.py --paired 5 [--bars 1000000]

In-process and paired instead (issue 20): each round runs, one after the other in one
process, the event engine with the default `RiskConfig` (risk engine on; its limits do not bind
here), without a risk engine, with a strategy that does nothing, with SmaCross's arithmetic but
no orders, and backtesting.py; rounds are repeated and the medians (min–max) printed. The cost
of one order-and-fill round trip is (SmaCross - arithmetic only) / orders; the ratio to
backtesting.py is taken per round (so both saw the same machine load).

    .venv/bin/python bench/bench_backtest.py --whole 3 [--bars 1000000] [--no-freqtrade]

Whole processes instead, paired: each round runs `tessera backtest`, backtesting.py (the user
script bench/peers/backtestingpy_smacross.py, as its own `python` process, the same all-in
rules as far as backtesting.py allows: see that file) and `freqtrade backtesting` (the all-in
rules above), the order reversed every other round, and prints wall and CPU seconds (user +
system of the process tree), peak RSS and trades as it goes; then medians (min–max), each peer
÷ tessera per round, both trade counts, and where freqtrade's time goes (its phases, timed from
inside).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
FAST, SLOW = 10, 30
NAUTILUS_VENV = HERE / ".venv-nautilus"
NAUTILUS_PIN = "nautilus_trader==1.221.0"
sys.path.insert(0, str(HERE / "peers" / "freqtrade_backtest"))

# `tessera backtest` as the whole-process twin of freqtrade's run (bench/peers/freqtrade_backtest/
# config.json): SmaCross(10, 30) with its default sizing (all the equity, long/flat), 1 bp fee,
# no slippage, fills at the next open; the risk engine on with the kill-switch off and the
# notional caps at 100 % of equity, so no limit binds (a denial would be counted in result.json).
CLI_BACKTEST_YAML = """\
initial_cash: 10000
fees: {maker_bps: 1, taker_bps: 1}
slippage: {kind: fixed_bps, bps: 0}
latency_ms: 0
fill_at: next_open
strategy: {name: sma_cross, params: {fast: 10, slow: 30}}
"""
CLI_RISK_YAML = """\
max_order_notional: "100%"
max_position_notional: "100%"
max_gross_exposure: "100%"
max_drawdown_pct: null
"""


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


class TesseraCli:
    """`tessera backtest` as a user runs it, in a temporary folder (removed on exit)."""

    def __init__(self, path: Path, bars: int) -> None:
        self.path = path
        self.bars = bars

    def __enter__(self) -> TesseraCli:
        import tempfile

        self.wd = Path(tempfile.mkdtemp(prefix="tessera-bench-cli-"))
        (self.wd / "configs").mkdir()
        (self.wd / "configs" / "backtest.yaml").write_text(CLI_BACKTEST_YAML)
        (self.wd / "configs" / "risk.yaml").write_text(CLI_RISK_YAML)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.wd, ignore_errors=True)

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "tessera"),
            "--config-dir", str(self.wd / "configs"),
            "backtest",
            "--bars", str(self.path),
            "--symbol", "BTCUSDT",
            "--no-baselines",
            "--out", str(self.wd / "out"),
        ]  # fmt: skip

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        from ft_backtest import measure, timeout_s  # both sides measured alike

        shutil.rmtree(self.wd / "out", ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        m = measure(self.command(), cwd=self.wd, env=env, timeout=timeout or timeout_s(self.bars))
        if m["code"] != 0:
            raise RuntimeError(
                f"tessera backtest failed (exit {m['code']}):\n{m['stderr'][-4000:]}"
            )
        doc = json.loads((self.wd / "out" / "result.json").read_text())
        if doc["risk"]["denials"] or doc["halted_at"]:
            raise RuntimeError(f"a risk limit bound in the CLI run: {doc['risk']}")
        return {
            "engine": "tessera backtest",
            "seconds": m["seconds"],
            "cpu_seconds": m["cpu_seconds"],
            "peak_rss_mb": m["peak_rss_mb"],
            "trades": int(doc["metrics"]["trades"]),
            "fills": len(doc["fills"]),
            # long/flat: an odd number of fills leaves a position open at the end, which
            # Tessera does not count as a trade and freqtrade closes at the last candle
            # (exit reason force_exit) and counts
            "open_at_end": len(doc["fills"]) % 2,
            "final_equity": float(doc["final_equity"]),
            "bars": int(doc["metrics"]["bars"]),
        }


class BacktestingPyCli:
    """backtesting.py as a user runs it: `python bench/peers/backtestingpy_smacross.py BARS`,
    a whole process of our venv's python (which has backtesting.py), measured like the others;
    its figures come back through a JSON file in a temporary folder (removed on exit)."""

    SCRIPT = HERE / "peers" / "backtestingpy_smacross.py"

    def __init__(self, path: Path, bars: int) -> None:
        self.path = path
        self.bars = bars

    def __enter__(self) -> BacktestingPyCli:
        import tempfile

        self.wd = Path(tempfile.mkdtemp(prefix="tessera-bench-btpy-"))
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.wd, ignore_errors=True)

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        from ft_backtest import measure, timeout_s

        out = self.wd / "result.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, str(self.SCRIPT), str(self.path), "--json", str(out)]
        m = measure(cmd, cwd=self.wd, timeout=timeout or timeout_s(self.bars))
        if m["code"] != 0:
            raise RuntimeError(f"backtesting.py failed (exit {m['code']}):\n{m['stderr'][-4000:]}")
        doc: dict[str, Any] = json.loads(out.read_text())
        doc.update(seconds=m["seconds"], cpu_seconds=m["cpu_seconds"], peak_rss_mb=m["peak_rss_mb"])
        return doc


def freqtrade_available(wanted: bool) -> bool:
    """Whether to run freqtrade: wanted and its venv made; says why not when it is skipped."""
    from ft_backtest import venv_python

    if not wanted:
        return False
    if venv_python() is None:
        print("freqtrade: skipped: run make peers (creates bench/.venv-freqtrade)", file=sys.stderr)
        return False
    return True


def _describe(r: dict[str, Any]) -> str:
    return (
        f"{r['engine']}: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
        f"{r['peak_rss_mb']:.0f} MB, {r['trades']:,} trades, final equity {r['final_equity']:,.2f}"
    )


def compare_trades(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Both trade counts side by side, and why they differ when they do."""
    a, b = ours["trades"], theirs["trades"]
    forced = theirs.get("exit_reasons", {}).get("force_exit", 0)
    text = f"trades: tessera backtest {a:,}, freqtrade {b:,}"
    if a == b:
        return text + " (the same)"
    if b == a + forced and ours["open_at_end"] == forced:
        return text + (
            f" (the same: freqtrade counts the {forced} position open at the end, which it "
            "closes at the last candle as force_exit; tessera leaves it open, uncounted)"
        )
    return text + " (DIFFERENT: look at both runs' trades)"


def whole(path: Path, bars: int, rounds: int, with_freqtrade: bool) -> None:
    """See the module docstring: `tessera backtest` and `freqtrade backtesting`, paired."""
    import statistics
    from contextlib import ExitStack

    from ft_backtest import FreqtradeBacktest, timeout_s

    results: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        cli = stack.enter_context(TesseraCli(path, bars))
        btpy = stack.enter_context(BacktestingPyCli(path, bars))
        ft = stack.enter_context(FreqtradeBacktest(path)) if with_freqtrade else None
        for k in range(rounds):
            print(f"round {k + 1}/{rounds}, load {os.getloadavg()}", file=sys.stderr)
            sides: list[Any] = [cli, btpy] if ft is None else [cli, btpy, ft]
            if k % 2:  # the order reversed every other round, so no side always goes first
                sides.reverse()
            for side in sides:
                r = side.run(timeout=timeout_s(bars))
                if side is ft:
                    r["final_equity"] = r["final_balance"]
                results.setdefault(r["engine"], []).append(r)
                print(f"  {_describe(r)}", file=sys.stderr, flush=True)

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"

    print(f"\nSmaCross({FAST},{SLOW}) long/flat all-in, 1 bp fee, on {bars:,} synthetic 1-minute")
    print(f"bars; whole processes, {rounds} paired rounds, medians (min–max)")
    print(f"load {os.getloadavg()}\n")
    print("| engine | wall seconds | CPU seconds | bars/s (wall) | peak RSS MB | trades |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        wall = [r["seconds"] for r in rs]
        print(
            f"| {name} | {spread(wall)} | {spread([r['cpu_seconds'] for r in rs])} | "
            f"{bars / statistics.median(wall):,.0f} | "
            f"{statistics.median(r['peak_rss_mb'] for r in rs):.0f} | "
            f"{', '.join(f'{t:,}' for t in sorted({r['trades'] for r in rs}))} |"
        )
    ours = results["tessera backtest"]
    for name, rs in results.items():
        if name == "tessera backtest":
            continue
        for unit in ("seconds", "cpu_seconds"):
            ratio = [b[unit] / a[unit] for a, b in zip(ours, rs, strict=True)]
            label = "wall" if unit == "seconds" else "CPU"
            print(f"{name} ÷ tessera backtest, {label}, per round: {spread(ratio)}")
    bp = results["backtesting.py"][0]
    print(
        f"trades: tessera backtest {ours[0]['trades']:,} (open at the end: "
        f"{ours[0]['open_at_end']}), backtesting.py {bp['trades']:,} (open at the end: "
        f"{bp['open_at_end']})" + (" (the same)" if ours[0]["trades"] == bp["trades"] else "")
    )
    print(
        f"final equity: tessera {ours[0]['final_equity']:,.2f}, backtesting.py "
        f"{bp['final_equity']:,.2f} (both commit 99 % of the equity; tessera sizes at the "
        "signal's close in 0.00001 BTC steps, backtesting.py at the fill's open, fee included, "
        "in 2**-17 BTC units)"
    )
    if ft is None:
        return
    theirs = results[next(n for n in results if n.startswith("freqtrade"))]
    phases = theirs[0]["phases"]
    print(
        "freqtrade's phases, medians (s): "
        + ", ".join(f"{p} {statistics.median(r['phases'][p] for r in theirs):.1f}" for p in phases)
    )
    print(compare_trades(ours[0], theirs[0]))
    print(
        f"final equity: tessera {ours[0]['final_equity']:,.2f}, freqtrade "
        f"{theirs[0]['final_equity']:,.2f} (tessera keeps 1 % of the equity back when it sizes "
        "an entry, freqtrade stakes the whole wallet)"
    )


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
    ap.add_argument("--no-freqtrade", action="store_true", help="skip freqtrade")
    ap.add_argument("--whole", type=int, metavar="ROUNDS", help="whole processes, paired")
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
    with_freqtrade = freqtrade_available(not args.no_freqtrade)
    if args.whole:
        whole(path, args.bars, args.whole, with_freqtrade)
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
    whole_runs: list[dict[str, Any]] = []
    print("running tessera backtest (whole process)…", file=sys.stderr)
    with TesseraCli(path, args.bars) as cli:
        r = cli.run()
    print(f"  {_describe(r)}", file=sys.stderr)
    results["tessera backtest, whole process (all-in, 1 bp)"] = r
    whole_runs.append(r)
    if with_freqtrade:
        from ft_backtest import FreqtradeBacktest, timeout_s

        print("running freqtrade backtesting (whole process)…", file=sys.stderr)
        with FreqtradeBacktest(path) as ft:
            r = ft.run(timeout=timeout_s(args.bars))
        r.update(final_equity=r["final_balance"], fills=2 * r["trades"], bars=args.bars)
        print(f"  {_describe(r)}", file=sys.stderr)
        results[f"{r['engine']} backtesting, whole process (all-in, 1 bp)"] = r
        whole_runs.append(r)
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
    if len(whole_runs) == 2:
        print("\n" + compare_trades(*whole_runs))


if __name__ == "__main__":
    main()
