"""Start-up time of the `tessera` command line, each run in a fresh process.

    .venv/bin/python bench/bench_startup.py [-n 7] [--warmup 1] [--all]

What a user waits for before a command does its own work: Python starting, the imports, the
root bootstrap (settings, logging, seed) and the help rendering. Each case runs ``n`` times in
a new subprocess (after ``--warmup`` unmeasured runs, so ``.pyc`` files and the page cache are
warm); the table shows the median and the min–max of the wall time and the median CPU time
(user + system of the child), which moves less than the wall time on a shared machine.

Targets (issue 16): ``tessera --help`` under 0.5 s; any command's start under 1 s. ``--all``
adds ``--help`` of every other top-level command (the start of each before its own work).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    label: str
    argv: list[str]
    target_s: float


def tessera_argv() -> list[str]:
    """The installed ``tessera`` console script beside this Python, else ``python -m``."""
    script = Path(sys.executable).with_name("tessera")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tessera.cli"]


# with --all: every other top-level command; `--help` runs the bootstrap and imports the command
OTHER_COMMANDS = [
    ["sweep"],
    ["positions"],
    ["ingest"],
    ["train"],
    ["predict"],
    ["run"],
    ["config", "show"],
    ["risk", "status"],
    ["fills", "list"],
    ["db", "upgrade"],
    ["sim", "serve"],
    ["features", "build"],
    ["models", "list"],
    ["strategy", "list"],
    ["doctor"],
]


def cases(every_command: bool = False) -> list[Case]:
    cli = tessera_argv()
    others = [
        Case(f"tessera {' '.join(cmd)} --help", [*cli, *cmd, "--help"], 1.0)
        for cmd in (OTHER_COMMANDS if every_command else [])
    ]
    return [
        Case("tessera --help", [*cli, "--help"], 0.5),
        Case("tessera --version", [*cli, "--version"], 0.5),
        Case("tessera backtest --help", [*cli, "backtest", "--help"], 1.0),
        Case("tessera data info --help", [*cli, "data", "info", "--help"], 1.0),
        Case("tessera orders list --help", [*cli, "orders", "list", "--help"], 1.0),
        Case('python -c "import tessera.cli"', [sys.executable, "-c", "import tessera.cli"], 0.5),
        *others,
    ]


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run; a non-zero exit is an error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=7, help="measured runs per case (>= 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per case first")
    parser.add_argument("--all", action="store_true", help="also every other command's --help")
    args = parser.parse_args()
    if args.n < 5:
        parser.error("-n must be at least 5: a median of fewer runs is noise")
    env_note = f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    print(f"{args.n} runs per case after {args.warmup} warm-up run(s); {env_note}")
    print()
    print("| command | median s | min–max s | CPU median s | target s | met |")
    print("|---|---:|---:|---:|---:|---|")
    for case in cases(args.all):
        for _ in range(args.warmup):
            run_once(case.argv)
        walls, cpus = zip(*(run_once(case.argv) for _ in range(args.n)), strict=True)
        median = statistics.median(walls)
        print(
            f"| `{case.label}` | {median:.2f} | {min(walls):.2f}–{max(walls):.2f} "
            f"| {statistics.median(cpus):.2f} | {case.target_s:.1f} "
            f"| {'yes' if median < case.target_s else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
