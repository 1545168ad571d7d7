"""Feature computation speed: Tessera's batch build vs TA-Lib and pandas-ta, and live updates.

    .venv/bin/python bench/bench_features.py [--rows 5000000] [--repeat 3]

Batch: the four indicators all three libraries have (RSI 14, MACD 12/26/9, Bollinger 20/2,
ATR 14) on ``--rows`` synthetic 1-minute bars (a seeded random walk; synthetic data is for
throughput only), each engine in its own process so that its peak memory can be measured:

* ``tessera``: `build_features` (polars), output a polars frame with %b/width like ours;
* ``talib``: TA-Lib called indicator by indicator on the columns of a pandas frame;
* ``pandas-ta``: pandas-ta-classic 0.8 (the maintained fork of pandas-ta; pandas-ta itself now
  needs Python >= 3.12) with ``talib=False`` so that its own implementation is measured.

Also the whole default feature set (16 columns) in Tessera alone, and the live path: one
`IncrementalFeatures.update` per bar for the default set over the real bundled bars (median and
p99 latency in µs). Best of ``--repeat`` runs; peak memory is the process's peak resident set
above what it held with the bars loaded (Linux ``clear_refs``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_engine(engine: str, path: str, repeat: int) -> dict[str, float]:
    """Runs in a child process: load the bars, reset the peak, compute ``repeat`` times."""
    frame = pl.read_parquet(path)
    pdf = frame.to_pandas() if engine in ("talib", "pandas-ta") else None
    _reset_peak()
    base = _rss_kb("VmRSS")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
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

            assert pdf is not None
            c, h, lo = pdf["close"], pdf["high"], pdf["low"]
            rsi = talib.RSI(c, 14)
            macd, _sig, hist = talib.MACD(c, 12, 26, 9)
            up, mid, low = talib.BBANDS(c, 20, 2, 2)
            pctb, width = (c - low) / (up - low), (up - low) / mid
            atr = talib.ATR(h, lo, c, 14)
            assert len(rsi) == len(atr) == len(pctb) == len(width) == len(hist)
        elif engine == "pandas-ta":
            import pandas_ta_classic as pta

            assert pdf is not None
            c, h, lo = pdf["close"], pdf["high"], pdf["low"]
            rsi = pta.rsi(c, 14, talib=False)
            macd = pta.macd(c, 12, 26, 9, talib=False)
            bb = pta.bbands(c, 20, 2, talib=False)
            atr = pta.atr(h, lo, c, 14, talib=False)
            assert len(rsi) == len(macd) == len(bb) == len(atr)
        times.append(time.perf_counter() - t0)
    peak = _rss_kb("VmHWM")
    return {"seconds": min(times), "peak_mb": max(0, peak - base) / 1024}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:  # child process
        print(json.dumps(run_engine(args.engine, args.path, args.repeat)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bars.parquet")
        synthetic_bars(args.rows).write_parquet(path)
        results: dict[str, dict[str, float]] = {}
        for engine in ("tessera", "talib", "pandas-ta", "tessera-default-set"):
            cmd = [sys.executable, __file__, "--engine", engine, "--path", path]
            cmd += ["--repeat", str(args.repeat)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
            if proc.returncode != 0:
                print(f"{engine}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])

    n = args.rows
    print(f"\nBatch: RSI 14, MACD 12/26/9, Bollinger 20/2 (%b, width), ATR 14 on {n:,} bars")
    print(f"| engine | seconds (best of {args.repeat}) | rows/s | vs TA-Lib | peak MB |")
    print("|---|---:|---:|---:|---:|")
    ref = results.get("talib", {}).get("seconds")
    for engine, r in results.items():
        label = "tessera (default set, 16 columns)" if engine == "tessera-default-set" else engine
        speed = f"{ref / r['seconds']:.2f}x" if ref else "-"
        print(
            f"| {label} | {r['seconds']:.3f} | {n / r['seconds']:,.0f} | {speed} "
            f"| {r['peak_mb']:,.0f} |"
        )
    if "pandas-ta" in results and "tessera" in results:
        ratio = results["pandas-ta"]["seconds"] / results["tessera"]["seconds"]
        print(f"\ntessera vs pandas-ta: {ratio:.1f}x faster")

    lat = incremental_latency()
    print(
        f"\nIncremental, default set ({lat['features']:.0f} columns), {lat['bars']:,.0f} real "
        f"bars: median {lat['median_us']:.1f} µs, p99 {lat['p99_us']:.1f} µs, "
        f"max {lat['max_us']:.0f} µs per bar"
    )


if __name__ == "__main__":
    main()
