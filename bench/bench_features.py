"""Feature computation speed: Tessera's batch build vs TA-Lib and pandas-ta, and live updates.

    .venv/bin/python bench/bench_features.py [--rows 5000000] [--rounds 5] [--repeat 1]
        [--engines tessera,talib,pandas-ta,tessera-default-set] [--baseline-src DIR]

Batch: the four indicators all three libraries have (RSI 14, MACD 12/26/9, Bollinger 20/2,
ATR 14) on ``--rows`` synthetic 1-minute bars (a seeded random walk; synthetic data is for
throughput only), each run in its own process so that its peak memory can be measured:

* ``tessera``: `build_features` (polars with compiled loops), a polars frame with %b/width;
* ``talib``: TA-Lib called indicator by indicator on the columns of a pandas frame;
* ``pandas-ta``: pandas-ta-classic 0.8 (the maintained fork of pandas-ta; pandas-ta itself now
  needs Python >= 3.12) with ``talib=False`` so that its own implementation is measured;
* ``tessera@base`` (and ``tessera-default-set@base``, with ``--baseline-src DIR``):
  `build_features` from another source tree (e.g. ``git archive <commit> src | tar -x -C D``
  then ``--baseline-src D/src``), for before/after figures.

The machine may be shared, so the runs are paired and interleaved: ``--rounds`` rounds, each
running every engine once (the order reversed every other round), so that a burst of load hits
both sides of a ratio. Each process computes once untimed (imports, JIT cache load: reported as
"first call"), then ``--repeat`` timed times (best taken). Reported: the median over the rounds
with min-max, and "vs TA-Lib" as the median (min-max) of the per-round ratios. The load
average is printed before and after. Peak memory is the process's peak resident set above what
it held with the bars loaded (Linux ``clear_refs``).

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
        import pandas_ta_classic as pta

        c, h, lo = pdf["close"], pdf["high"], pdf["low"]
        rsi = pta.rsi(c, 14, talib=False)
        macd = pta.macd(c, 12, 26, 9, talib=False)
        bb = pta.bbands(c, 20, 2, talib=False)
        atr = pta.atr(h, lo, c, 14, talib=False)
        assert len(rsi) == len(macd) == len(bb) == len(atr)
    else:
        raise SystemExit(f"unknown engine {engine!r}")


def run_engine(engine: str, path: str, repeat: int) -> dict[str, float]:
    """Runs in a child process: load the bars, one untimed call, then ``repeat`` timed ones."""
    frame = pl.read_parquet(path)
    pdf = frame.to_pandas() if engine in ("talib", "pandas-ta") else None
    _reset_peak()
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    _compute(engine, frame, pdf)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _compute(engine, frame, pdf)
        times.append(time.perf_counter() - t0)
    peak = _rss_kb("VmHWM")
    return {"seconds": min(times), "first_call": first, "peak_mb": max(0, peak - base) / 1024}


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


def _child(args: list[str], env: dict[str, str] | None = None) -> dict[str, float] | None:
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if proc.returncode != 0:
        print(f"{args}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engines", default="tessera,talib,pandas-ta,tessera-default-set")
    ap.add_argument("--baseline-src", help="a source tree to bench as 'tessera@base'")
    ap.add_argument("--no-live", action="store_true", help="skip the incremental latency")
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--first-call", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:  # child process
        engine = args.engine.removesuffix("@base")
        print(json.dumps(run_engine(engine, args.path, args.repeat)))
        return
    if args.first_call:  # child process
        print(json.dumps(first_call_cost(args.first_call)))
        return

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.baseline_src:  # each tessera engine also from the other tree, right after it
        engines = [
            v for e in engines for v in ([e, f"{e}@base"] if e.startswith("tessera") else [e])
        ]
    base_env = None
    if args.baseline_src:
        base_env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
    load_before = _load()
    runs: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    ratios: dict[str, list[float]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bars.parquet")
        synthetic_bars(args.rows).write_parquet(path)
        for k in range(args.rounds):
            order = engines if k % 2 == 0 else engines[::-1]
            this_round: dict[str, float] = {}
            for engine in order:
                env = base_env if engine.endswith("@base") else None
                cmd = ["--engine", engine, "--path", path, "--repeat", str(args.repeat)]
                r = _child(cmd, env)
                if r is not None:
                    runs[engine].append(r)
                    this_round[engine] = r["seconds"]
            if "talib" in this_round:
                for engine, sec in this_round.items():
                    ratios[engine].append(this_round["talib"] / sec)
            print(f"round {k + 1}/{args.rounds}: {this_round}", file=sys.stderr)
    load_after = _load()

    n = args.rows
    print(f"\nBatch: RSI 14, MACD 12/26/9, Bollinger 20/2 (%b, width), ATR 14 on {n:,} bars")
    print(f"{args.rounds} paired rounds, interleaved; median (min-max); best of {args.repeat}")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print("| engine | seconds | rows/s (median) | vs TA-Lib | first call s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for engine, rs in runs.items():
        if not rs:
            continue
        label = engine.replace("tessera-default-set", "tessera (default set, 16 columns)")
        secs = [r["seconds"] for r in rs]
        vs = _spread(ratios[engine], ".2f") + "x" if ratios[engine] else "-"
        print(
            f"| {label} | {_spread(secs, '.3f')} | {n / statistics.median(secs):,.0f} | {vs} "
            f"| {statistics.median(r['first_call'] for r in rs):.3f} "
            f"| {max(r['peak_mb'] for r in rs):,.0f} |"
        )
    if ratios.get("pandas-ta") and ratios.get("tessera"):
        per_round = [t / p for t, p in zip(ratios["tessera"], ratios["pandas-ta"], strict=False)]
        print(f"\ntessera vs pandas-ta: {_spread(per_round, '.1f')}x faster")

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold = _child(["--first-call", cache], env)
        warm = _child(["--first-call", cache], env)
    if cold and warm:
        print(
            f"\nFirst build_features call of the four on 1,000 bars in a fresh process: "
            f"{cold['first']:.2f} s with an empty numba cache (compiling), {warm['first']:.2f} s "
            f"with a warm one; then {warm['second'] * 1000:.1f} ms per call"
        )

    if not args.no_live:
        lat = incremental_latency()
        print(
            f"\nIncremental, default set ({lat['features']:.0f} columns), {lat['bars']:,.0f} "
            f"real bars: median {lat['median_us']:.1f} µs, p99 {lat['p99_us']:.1f} µs, "
            f"max {lat['max_us']:.0f} µs per bar"
        )


if __name__ == "__main__":
    main()
