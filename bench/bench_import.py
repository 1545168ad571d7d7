"""`tessera data import --bundled`'s work, timed: every bundled real dataset into an empty store,
then again into the same store (everything already there: all of it read, nothing written).

    .venv/bin/python bench/bench_import.py [--rounds 3]

Each round uses a store of its own in a temporary folder, removed after it; every round's
figures are printed as it ends, then the medians (min–max). To compare two checkouts, run it
from each in turn: ``PYTHONPATH=<other>/src`` puts the other tree's package first. What the
import does is in docs/data.md; the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from tessera.data.importers import import_bundled
from tessera.data.store import ParquetStore


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    # the importers log a line per file: quiet, so that the figures are what is printed
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {args.rounds} rounds, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    first: list[float] = []
    again: list[float] = []
    for i in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="tessera-bench-import-"))
        try:
            store = ParquetStore(root)
            t0 = time.perf_counter()
            rows = sum(import_bundled(store).values())
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            more = sum(import_bundled(store).values())
            again.append(time.perf_counter() - t0)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        load = os.getloadavg()[0]
        print(f"round {i + 1}: first {first[-1]:.2f} s ({rows:,} rows), again {again[-1]:.2f} s "
              f"({more} rows), load {load:.2f}", flush=True)  # fmt: skip
    print(f"bundled import, first: {spread(first)} s; again: {spread(again)} s; "
          f"load at the end {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
