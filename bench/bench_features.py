"""Feature computation speed: Tessera's batch build vs TA-Lib and pandas-ta, and live updates.

    .venv/bin/python bench/bench_features.py [--rows 5000000] [--rounds 3] [--pairs 3]
        [--engines tessera,talib,pandas-ta,tessera-default-set] [--baseline-src DIR]
        [--no-live] [--no-memory] [--no-first-call]

Batch: the four indicators all three libraries have (RSI 14, MACD 12/26/9, Bollinger 20/2,
ATR 14) on ``--rows`` synthetic 1-minute bars (a seeded random walk; synthetic data is for
throughput only):

* ``tessera``: `build_features` (polars with compiled loops), a polars frame with %b/width;
* ``talib``: TA-Lib called indicator by indicator on the columns of a pandas frame;
* ``pandas-ta``: pandas-ta-classic 0.8 (the maintained fork of pandas-ta; pandas-ta itself now
  needs Python >= 3.12) with ``talib=False`` so that its own implementation is measured;
* ``tessera@base`` (and ``tessera-default-set@base``, with ``--baseline-src DIR``):
  `build_features` from another source tree (e.g. ``git archive <commit> src | tar -x -C D``
  then ``--baseline-src D/src``), for before/after figures, timed beside TA-Lib in its own
  processes.

The machine may be shared, so the timings are paired: ``--rounds`` fresh processes, each
computing every engine once untimed (imports, JIT cache load: "first call"), then ``--pairs``
rounds running the engines back to back (TA-Lib right after Tessera, the order reversed every
other round), so that a burst of load hits both sides of a ratio. Reported: the median over
all timed runs with min-max, and "vs TA-Lib" as the median (min-max) of the per-round ratios.
The load average is printed before and after, and each round's timings as the round ends.
Peak memory comes from one more process per engine: its peak resident set above what it held
with the bars loaded (Linux ``clear_refs``). A child process that outlives a deadline grown
from the rows, rounds and engines is killed and reported as failed; the bars' temporary folder
and the numba cache folder are removed also on failure.

Also the whole default feature set (16 columns) in Tessera alone; the compiled loops' one-off
cost (first call in a fresh process, with an empty numba cache and with a warm one); and the
live path: one `IncrementalFeatures.update` per bar for the default set over the real bundled
bars (median and p99 latency in µs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def synthetic_bars(rows: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 8e-4, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 4e-4, rows)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(3, 1, rows)
    start = np.datetime64("2020-01-01T00:00", "ns")
    times = start + np.arange(rows) * np.timedelta64(60, "s")
    return pl.DataFrame(
        {
            "open_time": pl.Series(times).dt.replace_time_zone("UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _compute(engine: str, frame: pl.DataFrame, pdf: Any) -> None:
    if engine.startswith("tessera"):
        from tessera.config.models import FeatureConfig, FeatureSpec
        from tessera.features import build_features

        spec = (
            FeatureConfig()
            if engine == "tessera-default-set"
            else [
                FeatureSpec(name="rsi", params={"window": 14}),
                FeatureSpec(name="macd"),
                FeatureSpec(name="bbands"),
                FeatureSpec(name="atr", params={"window": 14}),
            ]
        )
        out = build_features(frame, spec)
        assert out.height == frame.height
    elif engine == "talib":
        import talib

        c, h, lo = pdf["close"], pdf["high"], pdf["low"]
        rsi = talib.RSI(c, 14)
        _macd, _sig, hist = talib.MACD(c, 12, 26, 9)
        up, mid, low = talib.BBANDS(c, 20, 2, 2)
        pctb, width = (c - low) / (up - low), (up - low) / mid
        atr = talib.ATR(h, lo, c, 14)
        assert len(rsi) == len(atr) == len(pctb) == len(width) == len(hist)
    elif engine == "pandas-ta":
        import pandas_ta_classic as pta  # type: ignore[import-untyped]

        c, h, lo = pdf["close"], pdf["high"], pdf["low"]
        rsi = pta.rsi(c, 14, talib=False)
        macd = pta.macd(c, 12, 26, 9, talib=False)
        bb = pta.bbands(c, 20, 2, talib=False)
        atr = pta.atr(h, lo, c, 14, talib=False)
        assert len(rsi) == len(macd) == len(bb) == len(atr)
    else:
        raise SystemExit(f"unknown engine {engine!r}")


def peak_memory(engine: str, path: str) -> dict[str, float]:
    """Runs in a child process: load the bars, reset the peak, compute once."""
    frame = pl.read_parquet(path)
    pdf = frame.to_pandas() if engine in ("talib", "pandas-ta") else None
    _reset_peak()
    base = _rss_kb("VmRSS")
    _compute(engine, frame, pdf)
    return {"peak_mb": max(0, _rss_kb("VmHWM") - base) / 1024}


def paired_times(engines: list[str], path: str, pairs: int) -> dict[str, Any]:
    """Runs in a child process: each engine once untimed (its first call), then ``pairs``
    rounds timing every engine back to back, the order reversed every other round."""
    frame = pl.read_parquet(path)
    pdf = frame.to_pandas()
    first: dict[str, float] = {}
    for engine in engines:
        t0 = time.perf_counter()
        _compute(engine, frame, pdf)
        first[engine] = time.perf_counter() - t0
    times: dict[str, list[float]] = {e: [] for e in engines}
    for k in range(pairs):
        for engine in engines if k % 2 == 0 else engines[::-1]:
            t0 = time.perf_counter()
            _compute(engine, frame, pdf)
            times[engine].append(time.perf_counter() - t0)
    return {"first": first, "times": times}


def first_call_cost(cache_dir: str) -> dict[str, float]:
    """Runs in a child process: the first `build_features` of the four indicators on 1,000 bars
    (numba import and compile, or cache load) with ``NUMBA_CACHE_DIR=cache_dir``, then a second
    call (the steady cost at that size)."""
    from tessera.config.models import FeatureSpec
    from tessera.features import build_features

    frame = synthetic_bars(1_000)
    spec = [
        FeatureSpec(name="rsi", params={"window": 14}),
        FeatureSpec(name="macd"),
        FeatureSpec(name="bbands"),
        FeatureSpec(name="atr", params={"window": 14}),
    ]
    t0 = time.perf_counter()
    build_features(frame, spec)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_features(frame, spec)
    return {"first": first, "second": time.perf_counter() - t0}


def incremental_latency(repeat_bars: int = 45_031) -> dict[str, float]:
    from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
    from tessera.config.models import FeatureConfig
    from tessera.features import IncrementalFeatures

    bars = read_bar_file(SAMPLE_BARS).head(repeat_bars)
    rows = list(bars.iter_rows(named=True))
    inc = IncrementalFeatures(FeatureConfig())
    lat = np.empty(len(rows))
    clock = time.perf_counter_ns
    for i, bar in enumerate(rows):
        t0 = clock()
        inc.update(bar)
        lat[i] = clock() - t0
    lat = lat[200:] / 1000.0  # µs, past the warm-up
    return {
        "bars": float(len(lat)),
        "median_us": float(np.median(lat)),
        "p99_us": float(np.percentile(lat, 99)),
        "max_us": float(lat.max()),
        "features": float(len(inc.columns)),
    }


def child_timeout_s(rows: int, runs: int) -> float:
    """A child's ceiling: 120 s of start-up plus 10 µs a row per engine run (pandas-ta, the
    slowest, takes ~2 µs a row here)."""
    return 120.0 + rows * runs * 10e-6


def _child(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 600.0
) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=env, timeout=timeout
        )  # on expiry subprocess.run kills the child
    except subprocess.TimeoutExpired:
        print(f"{args}: killed after {timeout:.0f} s", file=sys.stderr, flush=True)
        return None
    if proc.returncode != 0:
        print(f"{args}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}-{format(max(values), fmt)})"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes (default 3)")
    ap.add_argument("--pairs", type=int, default=3, help="timed rounds per process (default 3)")
    ap.add_argument("--engines", default="tessera,talib,pandas-ta,tessera-default-set")
    ap.add_argument("--baseline-src", help="a source tree to time as 'tessera@base'")
    ap.add_argument("--no-live", action="store_true", help="skip the incremental latency")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument(
        "--no-first-call", action="store_true", help="skip the numba cold/warm first-call cost"
    )
    ap.add_argument("--memory", help=argparse.SUPPRESS)
    ap.add_argument("--paired", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--first-call", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:  # child process
        print(json.dumps(peak_memory(args.memory, args.path)))
        return
    if args.paired:  # child process
        print(json.dumps(paired_times(args.paired.split(","), args.path, args.pairs)))
        return
    if args.first_call:  # child process
        print(json.dumps(first_call_cost(args.first_call)))
        return

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    # TA-Lib right after Tessera in every round: the ratio that matters is the tightest pair
    if "talib" in engines and "tessera" in engines:
        engines.remove("talib")
        engines.insert(engines.index("tessera") + 1, "talib")
    groups: list[tuple[str, list[str], dict[str, str] | None]] = [("", engines, None)]
    if args.baseline_src:  # the other tree, in its own processes, with TA-Lib again
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
        base = [e for e in engines if e.startswith("tessera") or e == "talib"]
        groups.append(("@base", base, env))
    load_before = _load()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rows:,} bars; load average "
        f"(1, 5, 15 min) {load_before} on {os.cpu_count()} cores",
        flush=True,
    )
    times: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    first: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bars.parquet")
        synthetic_bars(args.rows).write_parquet(path)
        for k in range(args.rounds):
            for suffix, group, group_env in groups if k % 2 == 0 else groups[::-1]:
                cmd = ["--paired", ",".join(group), "--path", path, "--pairs", str(args.pairs)]
                limit = child_timeout_s(args.rows, (args.pairs + 1) * len(group))
                r = _child(cmd, group_env, limit)
                if r is None:
                    continue
                for engine, ts in r["times"].items():
                    name = engine + suffix if engine.startswith("tessera") else engine
                    if suffix and engine == "talib":
                        name = "talib" + suffix
                    times.setdefault(name, []).extend(ts)
                    first.setdefault(name, []).append(r["first"][engine])
                    if "talib" in r["times"]:
                        pairs = zip(r["times"]["talib"], ts, strict=True)
                        ratios.setdefault(name, []).extend(t / e for t, e in pairs)
                cells = ", ".join(
                    f"{e}{suffix} " + "/".join(f"{t:.3f}" for t in ts)
                    for e, ts in r["times"].items()
                )
                print(f"round {k + 1}/{args.rounds}{suffix} (s): {cells}", flush=True)
        for engine in [] if args.no_memory else engines:
            r = _child(["--memory", engine, "--path", path], None, child_timeout_s(args.rows, 1))
            if r is not None:
                peaks[engine] = r["peak_mb"]
    load_after = _load()

    n = args.rows
    print(f"\nBatch: RSI 14, MACD 12/26/9, Bollinger 20/2 (%b, width), ATR 14 on {n:,} bars")
    print(
        f"{args.rounds} processes x {args.pairs} paired rounds (engines back to back, order "
        f"alternating): median (min-max)"
    )
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print("| engine | seconds | rows/s (median) | vs TA-Lib (paired) | first call s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, secs in times.items():
        if name == "talib@base":
            continue
        label = name.replace("tessera-default-set", "tessera (default set, 16 columns)")
        vs = _spread(ratios[name], ".2f") + "x" if ratios.get(name) else "-"
        peak = f"{peaks[name]:,.0f}" if name in peaks else "-"
        print(
            f"| {label} | {_spread(secs, '.3f')} | {n / statistics.median(secs):,.0f} | {vs} "
            f"| {statistics.median(first[name]):.3f} | {peak} |"
        )
    if times.get("pandas-ta") and times.get("tessera"):
        per_pair = [p / t for t, p in zip(times["tessera"], times["pandas-ta"], strict=True)]
        print(f"\ntessera vs pandas-ta: {_spread(per_pair, '.1f')}x faster", flush=True)

    if not args.no_first_call:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            cold = _child(["--first-call", cache], env, child_timeout_s(0, 0))
            warm = _child(["--first-call", cache], env, child_timeout_s(0, 0))
        if cold and warm:
            print(
                f"\nFirst build_features call of the four on 1,000 bars in a fresh process: "
                f"{cold['first']:.2f} s with an empty numba cache (compiling), "
                f"{warm['first']:.2f} s with a warm one; "
                f"then {warm['second'] * 1000:.1f} ms per call",
                flush=True,
            )

    if not args.no_live:
        lat = incremental_latency()
        print(
            f"\nIncremental, default set ({lat['features']:.0f} columns), {lat['bars']:,.0f} "
            f"real bars: median {lat['median_us']:.1f} µs, p99 {lat['p99_us']:.1f} µs, "
            f"max {lat['max_us']:.0f} µs per bar",
            flush=True,
        )


if __name__ == "__main__":
    main()
