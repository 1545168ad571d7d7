"""Optimisation speed: trials per minute on the bundled month, Tessera vs freqtrade's hyperopt.

    .venv/bin/python bench/bench_optimize.py [--trials 100] [--workers 2]
        [--strategies sma_cross,my_rsi] [--engines processes,ray,prune,freqtrade] [--no-cross]
        [--json FILE] [--repeat 1]

What it measures (issue 18, "Measure"): the same search on the same data, fees and number of
trials, with every trial a full backtest:
- data: the bundled real 1-minute BTC bars (samples/bars/btc-perp-20211231-20220201_1m.csv.gz,
  45,031 bars, 2021-12-31 23:01 -> 2022-02-01 05:31 UTC), as BTCUSDT (Tessera) and BTC/USDT
  spot (freqtrade);
- strategies: SmaCross long/flat (fast int 5..30, slow int 40..120, 10 % of equity per entry;
  freqtrade: stake 1000 of a 10,000 wallet) and the RSI strategy of the docs (the
  `tessera strategy new my_rsi` template: period int 5..30, oversold int 15..40, overbought
  int 60..85; notional 1000, stop-loss 1 %, take-profit 1.5 % fixed), freqtrade's twins in
  bench/peers/freqtrade_hyperopt/strategies (each says what differs);
- fees 0.1 % per side (Tessera: maker and taker 10 bps; freqtrade: fee 0.001), no slippage;
- search: Optuna TPE, seed 42, N trials, 2 parallel workers. Tessera: `tessera.optimize.study
  .optimize`, objective ``sharpe`` (Tessera's metric), on local processes (``workers=2``) and on
  a private local Ray (``ray_address="local"``), pruning off (every trial runs to the end, the
  like-for-like count) and, once, on (``prune``). freqtrade 2026.9: `freqtrade hyperopt
  --hyperopt-loss SharpeHyperOptLoss --spaces buy sell -j 2 --random-state 42 --epochs N`;
- each engine runs in its own process tree: wall seconds of the whole process (start-up, data,
  search), seconds of the search alone, peak RSS of the tree (the sum over the parent and its
  workers, sampled every 0.1 s with psutil; shared pages count once per process, so it is an
  upper bound for every engine alike);
- cross-check (unless ``--no-cross``): each engine's best parameters are backtested on both
  engines (Tessera `backtest_point`, `freqtrade backtesting`), with trades, total return, both
  Sharpe definitions computed on each engine's own trades (see docs/benchmarks.md for the
  difference between the two objectives).

Each engine's line is printed as its run ends, with the date and the load average at the start
and the end. ``--repeat R`` runs every engine R times, interleaved (the engine order reversed
every other round), and adds the median (min-max) trials per minute of each engine; the default
is one run each (100 trials of each engine take ~6 min here). Temporary folders (the study's
output, the RSI strategy's folder, freqtrade's work folders) are removed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "peers" / "freqtrade_hyperopt"))

from run_hyperopt import backtest as ft_backtest  # noqa: E402
from run_hyperopt import hyperopt as ft_hyperopt  # noqa: E402
from run_hyperopt import run_measured  # noqa: E402

BARS = REPO / "samples" / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"
SYMBOL = "BTCUSDT"
SEED = 42
STRATEGIES = ("sma_cross", "my_rsi")
ENGINES = ("processes", "ray", "prune", "freqtrade")
FT_STRATEGY = {"sma_cross": "SmaCrossHyperopt", "my_rsi": "MyRsiHyperopt"}
# The search spaces, the same on both sides (freqtrade's IntParameter ranges in its strategies).
# SmaCross's declared space (fast 5..50, slow 30..200) overlaps: a fast >= slow trial is an
# invalid point in Tessera (refused by its Params) but a trade-inverting one in freqtrade, so the
# benchmark gives both disjoint ranges.
SPACES = {
    "sma_cross": ["fast=int:5..30", "slow=int:40..120"],
    "my_rsi": ["period=int:5..30", "oversold=int:15..40", "overbought=int:60..85"],
}
FIXED = {"sma_cross": {"size": 0.1}, "my_rsi": {}}


# --- Tessera, in a child process ------------------------------------------------------------


def _load_series() -> Any:
    import polars as pl

    from tessera.backtest import BarSeries

    df = pl.read_csv(BARS).with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time")
    )
    return BarSeries.from_frame(SYMBOL, df)


def _register_my_rsi() -> None:
    """The docs' RSI strategy, exactly as `tessera strategy new my_rsi` writes it, registered
    from a temporary folder (the optimiser's workers load the same folder)."""
    from tessera.strategies.loader import load_strategies
    from tessera.strategies.template import render_template

    folder = Path(tempfile.mkdtemp(prefix="bench-optimize-strategies-"))
    # removed when this child exits, after the study (whose workers read it) has ended
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "my_rsi.py").write_text(render_template("my_rsi"))
    load_strategies(folder, entry_points=False)


def _config() -> Any:
    from tessera.config import BacktestConfig

    return BacktestConfig.model_validate(
        {"fees": {"maker_bps": 10, "taker_bps": 10}, "slippage": {"kind": "none"}}
    )


def child_tessera(args: dict[str, Any]) -> dict[str, Any]:
    """One Tessera study (run in its own process by the parent, which measures it)."""
    t_start = time.time()
    from tessera.logging import configure_logging
    from tessera.optimize.space import parse_dimension
    from tessera.optimize.study import optimize

    configure_logging("WARNING")
    strategy = args["strategy"]
    if strategy == "my_rsi":
        _register_my_rsi()
    series = _load_series()
    t_ready = time.time()
    result = optimize(
        [series],
        strategy,
        [parse_dimension(spec) for spec in SPACES[strategy]],  # exactly these, no more
        _config(),
        None,
        objectives=("sharpe",),
        trials=args["trials"],
        seed=SEED,
        sampler="tpe",
        prune=args["prune"],
        workers=args["workers"],
        ray_address=args["ray_address"],
        fixed_params=FIXED[strategy],
    )
    t_done = time.time()
    states: dict[str, int] = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    best = result.best
    return {
        "startup_seconds": t_ready - t_start,
        "search_seconds": t_done - t_ready,
        "states": states,
        "trials": len(result.trials),
        "best": {"params": best.params, "value": best.values[0], "metrics": best.metrics}
        if best
        else None,
    }


def _backtest_tessera(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """A Tessera backtest of one point, as a trial runs it (`backtest_point`)."""
    from tessera.logging import configure_logging
    from tessera.optimize.study import backtest_point

    configure_logging("WARNING")
    if strategy == "my_rsi":
        _register_my_rsi()
    series = _load_series()
    result = backtest_point([series], strategy, {**FIXED[strategy], **params}, _config())
    initial = float(result.metrics["initial_equity"])
    pnls = [float(t.pnl) for t in result.trades]  # end_of_data included, as freqtrade force-exits
    days = _days(int(series.open_time[-1] - series.open_time[0]))
    reasons: dict[str, int] = {}
    for t in result.trades:
        reasons[t.exit_reason] = reasons.get(t.exit_reason, 0) + 1
    return {
        "params": params,
        "trades": int(result.metrics["trades"]),
        "total_return": float(result.metrics["total_return"]),
        "sharpe": float(result.metrics["sharpe"]),
        "ft_sharpe": ft_style_sharpe([p / initial for p in pnls], days),
        "exit_reasons": reasons,
        "same_bar_exits": sum(t.exit_time == t.entry_time for t in result.trades),
    }


def _days(span_ns: int) -> int:
    """freqtrade's ``max(1, (max_date - min_date).days)``: whole days (31 for the month)."""
    return max(1, span_ns // 86_400_000_000_000)


def ft_style_sharpe(trade_returns: list[float], days: int) -> float:
    """freqtrade's `calculate_sharpe` (SharpeHyperOptLoss = minus this), on any trade list:
    sum(profit_abs / starting balance) / days, over the population std of the same per-trade
    ratios, times sqrt(365)."""
    n = len(trade_returns)
    if n == 0:
        return 0.0
    mean_daily = sum(trade_returns) / days
    mu = sum(trade_returns) / n
    std = math.sqrt(sum((r - mu) ** 2 for r in trade_returns) / n)
    return mean_daily / std * math.sqrt(365) if std > 0 else -100.0


# --- the parent: run, measure, print ---------------------------------------------------------


def run_tessera(strategy: str, engine: str, trials: int, workers: int) -> dict[str, Any]:
    args = {
        "strategy": strategy,
        "trials": trials,
        "workers": workers,
        "prune": engine == "prune",
        "ray_address": "local" if engine == "ray" else None,
    }
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, __file__, "--child", json.dumps(args), "--child-out", str(out)]
        seconds, peak, code, err = run_measured(cmd)
        if code != 0:
            raise RuntimeError(f"Tessera {engine} {strategy} failed (exit {code}):\n{err[-4000:]}")
        doc = json.loads(out.read_text())
    label = {
        "processes": f"tessera processes (workers={workers})",
        "ray": f"tessera Ray local ({workers} workers)",
        "prune": f"tessera processes, prune on (workers={workers})",
    }[engine]
    best = doc["best"]
    return {
        "engine": label,
        "strategy": strategy,
        "trials": doc["trials"],
        "states": doc["states"],
        "seconds": seconds,
        "search_seconds": doc["search_seconds"],
        "peak_rss_mb": peak,
        "best_params": best["params"] if best else None,
        "best_objective": best["value"] if best else None,
        "objective": "sharpe (Tessera)",
    }


def run_freqtrade(strategy: str, trials: int, workers: int) -> dict[str, Any]:
    doc = ft_hyperopt(FT_STRATEGY[strategy], epochs=trials, jobs=workers, seed=SEED)
    best = doc["best"]
    return {
        "engine": f"{doc['engine']} (-j {workers})",
        "strategy": strategy,
        "trials": doc["trials"],
        "states": {"complete": doc["trials"]},
        "seconds": doc["seconds"],
        "search_seconds": doc["search_seconds"],
        "peak_rss_mb": doc["peak_rss_mb"],
        "best_params": best["params"] if best else None,
        "best_objective": doc["best_objective"],
        "objective": "SharpeHyperOptLoss Sharpe",
        "epochs": doc["epochs"],
    }


def cross_check(
    strategy: str, tessera_best: dict[str, Any], ft_best: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each engine's best point backtested on both engines."""
    rows = []
    for source, params in (("tessera best", tessera_best), ("freqtrade best", ft_best)):
        with tempfile.TemporaryDirectory(prefix="bench-optimize-cross-") as tmp:
            out = Path(tmp) / "bt.json"
            cmd = [
                sys.executable,
                __file__,
                "--child-backtest",
                json.dumps({"strategy": strategy, "params": params}),
                "--child-out",
                str(out),
            ]
            _, _, code, err = run_measured(cmd)
            if code != 0:
                raise RuntimeError(f"Tessera backtest failed (exit {code}):\n{err[-4000:]}")
            ours = json.loads(out.read_text())
        theirs = ft_backtest(FT_STRATEGY[strategy], params)
        rows.append({"strategy": strategy, "source": source, "engine": "tessera", **ours})
        rows.append(
            {
                "strategy": strategy,
                "source": source,
                "engine": "freqtrade",
                "params": params,
                "trades": theirs["trades"],
                "total_return": theirs["profit_total"],
                "sharpe": float("nan"),  # freqtrade has no equity-curve Sharpe per bar
                "ft_sharpe": theirs["sharpe"],
                "exit_reasons": {k: v for k, v in theirs["exit_reasons"].items() if k != "TOTAL"},
                "same_bar_exits": theirs["same_candle_exits"],
            }
        )
    return rows


def _params(p: dict[str, Any] | None) -> str:
    if not p:
        return "-"
    return ",".join(f"{k}={v}" for k, v in p.items() if k in _searched())


def _searched() -> set[str]:
    return {spec.split("=")[0] for specs in SPACES.values() for spec in specs}


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'engine':<48} {'strategy':<9} {'trials':>7} {'seconds':>8} {'search s':>8} "
        f"{'trials/min':>10} {'s/trial':>7} {'peak RSS MB':>11}  {'best params':<36} best objective"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        n = r["trials"]
        states = r["states"]
        note = (
            ""
            if set(states) <= {"complete"}
            else " " + ",".join(f"{k}:{v}" for k, v in states.items())
        )
        print(
            f"{r['engine']:<48} {r['strategy']:<9} {n:>7} {r['seconds']:>8.1f} "
            f"{r['search_seconds']:>8.1f} {60 * n / r['seconds']:>10.1f} {r['seconds'] / n:>7.2f} "
            f"{r['peak_rss_mb']:>11.0f}  {_params(r['best_params']):<36} "
            f"{r['best_objective']:.3f} ({r['objective']}){note}"
        )


def print_cross(rows: list[dict[str, Any]]) -> None:
    print()
    print("Each engine's best point, backtested on both engines")
    head = (
        f"{'strategy':<9} {'point':<15} {'params':<36} {'engine':<10} {'trades':>6} "
        f"{'return %':>8} {'sharpe':>8} {'ft sharpe':>9} {'same-bar':>8}  exits"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        exits = ",".join(f"{k}:{v}" for k, v in sorted(r["exit_reasons"].items()))
        print(
            f"{r['strategy']:<9} {r['source']:<15} {_params(r['params']):<36} {r['engine']:<10} "
            f"{r['trades']:>6} {100 * r['total_return']:>8.2f} {r['sharpe']:>8.2f} "
            f"{r['ft_sharpe']:>9.2f} {r['same_bar_exits']:>8}  {exits}"
        )


def print_medians(rows: list[dict[str, Any]]) -> None:
    """Median (min-max) trials per minute of each engine and strategy over its runs."""
    runs: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        runs.setdefault((r["engine"], r["strategy"]), []).append(60 * r["trials"] / r["seconds"])
    print("\nTrials per minute, median (min-max) over the rounds")
    for (engine, strategy), rates in runs.items():
        print(
            f"{engine:<48} {strategy:<9} {statistics.median(rates):.1f} "
            f"({min(rates):.1f}-{max(rates):.1f}) over {len(rates)} runs",
            flush=True,
        )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=100, help="trials = freqtrade epochs (100)")
    ap.add_argument("--workers", type=int, default=2, help="parallel workers / -j (2)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--no-cross", action="store_true", help="skip the cross-engine backtests")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs per engine (1)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-backtest", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.child_out.write_text(json.dumps(child_tessera(json.loads(args.child))))
        return
    if args.child_backtest:
        spec = json.loads(args.child_backtest)
        args.child_out.write_text(json.dumps(_backtest_tessera(spec["strategy"], spec["params"])))
        return
    strategies = [s for s in args.strategies.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    for name, given, known in (("strategy", strategies, STRATEGIES), ("engine", engines, ENGINES)):
        bad = [x for x in given if x not in known]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {', '.join(known)}")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.trials} trials, "
        f"{args.workers} workers, {args.repeat} round(s); load average (1, 5, 15 min) "
        f"{_load()} on {os.cpu_count()} cores",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    cross: list[dict[str, Any]] = []
    for strategy in strategies:
        for k in range(args.repeat):
            for engine in engines if k % 2 == 0 else engines[::-1]:
                print(
                    f"running {engine} on {strategy} ({args.trials} trials), "
                    f"round {k + 1}/{args.repeat}…",
                    file=sys.stderr,
                    flush=True,
                )
                if engine == "freqtrade":
                    rows.append(run_freqtrade(strategy, args.trials, args.workers))
                else:
                    rows.append(run_tessera(strategy, engine, args.trials, args.workers))
                r = rows[-1]
                print(
                    f"  {r['engine']} {strategy}: {r['seconds']:.1f} s, {r['trials']} trials, "
                    f"{60 * r['trials'] / r['seconds']:.1f} trials/min, best {r['best_params']} "
                    f"{r['best_objective']}",
                    flush=True,
                )
        ours = next(
            (r for r in rows if r["strategy"] == strategy and "processes (" in r["engine"]), None
        )
        theirs = next(
            (r for r in rows if r["strategy"] == strategy and r["engine"].startswith("freqtrade")),
            None,
        )
        if not args.no_cross and ours and theirs and ours["best_params"] and theirs["best_params"]:
            searched = _searched()
            ours_p = {k: v for k, v in ours["best_params"].items() if k in searched}
            cross += cross_check(strategy, ours_p, theirs["best_params"])
    print_table(rows)
    if args.repeat > 1:
        print_medians(rows)
    if cross:
        print_cross(cross)
    print(f"\nload average at the end {_load()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "cross": cross}, indent=1, default=str))


if __name__ == "__main__":
    main()
