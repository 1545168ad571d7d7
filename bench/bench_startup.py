"""Start-up time of the `tessera` command line, each run in a fresh process.

    .venv/bin/python bench/bench_startup.py [-n 7] [--warmup 1] [--all] [--baseline DIR]
        [--only REGEX]

What a user waits for before a command does its own work: Python starting, the imports, the
root bootstrap (settings, logging, seed) and the help rendering. Each case runs ``n`` times in
a new subprocess (after ``--warmup`` unmeasured runs, so ``.pyc`` files and the page cache are
warm); the table shows the median and the min–max of the wall time and the median CPU time
(user + system of the child), which moves less than the wall time on a shared machine.

``--baseline DIR`` compares with another version of the code, paired and interleaved: ``DIR``
is the ``src`` folder of that version, put first on ``PYTHONPATH``; each round runs the
baseline and the current code back to back, alternating which goes first, so load on the
machine hits both alike. Make one with (the backtest finds its bundled bars beside ``src``)::

    mkdir /tmp/base && git archive REV src | tar -x -C /tmp/base
    ln -s "$PWD/samples" /tmp/base/samples

The last case is a real command: ``tessera backtest --json`` on the bundled 45k 1-minute bars;
its row adds the engine's own time (the "N bars in X s" line the command prints) and the rest
of the process (start-up, data loading, the buy & hold baseline, writing the results).

Targets (issues 16 and 20): ``tessera --help`` under 0.5 s; any command's start under 1 s.
``--all`` adds ``--help`` of every other top-level command; ``--only REGEX`` keeps the cases
whose label matches. Rows are printed as each case ends. A run that has not ended after
``RUN_TIMEOUT_S`` is killed and stops the bench (a hang, not a slow start).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300  # a hang guard: the slowest case here (the real backtest) takes ~2 s
ENGINE_LINE = re.compile(r"Backtest: [\d,]+ bars in ([\d.]+) s")


@dataclass(frozen=True)
class Case:
    label: str
    argv: list[str]
    target_s: float | None
    engine: bool = False  # parse the engine's own time from the output
    env: tuple[tuple[str, str], ...] = ()  # TESSERA_* settings of this case
    code: int = 0  # the exit code the case must end with


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    engine: float | None


def tessera_argv() -> list[str]:
    """The installed ``tessera`` console script beside this Python, else ``python -m``."""
    script = Path(sys.executable).with_name("tessera")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tessera.cli"]


# with --all: every other top-level command; `--help` imports the command's module
OTHER_COMMANDS = [
    ["sweep"],
    ["optimize"],
    ["positions"],
    ["ingest"],
    ["train"],
    ["predict"],
    ["config", "show"],
    ["risk", "status"],
    ["fills", "list"],
    ["db", "upgrade"],
    ["sim", "serve"],
    ["features", "build"],
    ["models", "list"],
    ["strategy", "list"],
    ["control"],
    ["notify"],
    ["doctor"],
]


def cases(out_dir: Path, every_command: bool = False) -> list[Case]:
    cli = tessera_argv()
    data = out_dir / "bot-data"  # each bot run its own new SQLite database: a first start
    bot_env = (("TESSERA_DATA_DIR", str(data)), ("TESSERA_EXCHANGE__NAME", "binance"))
    helps = [["backtest"], ["data"], ["run"], ["data", "info"], ["orders", "list"]]
    if every_command:
        helps += OTHER_COMMANDS
    return [
        Case("tessera --help", [*cli, "--help"], 0.5),
        Case("tessera --version", [*cli, "--version"], 0.5),
        Case('python -c "import tessera.cli"', [sys.executable, "-c", "import tessera.cli"], 0.5),
        *(Case(f"tessera {' '.join(c)} --help", [*cli, *c, "--help"], 1.0) for c in helps),
        Case("tessera config show -f json", [*cli, "config", "show", "-f", "json"], 1.0),
        Case("tessera strategy list", [*cli, "strategy", "list"], 1.0),
        Case(
            "tessera backtest --json (bundled 45k bars)",
            [*cli, "backtest", "--json", "--out", str(out_dir)],
            None,
            engine=True,
        ),
        # a bot's settings refused (a leverage limit on spot): the answer needs no bot
        Case(
            "tessera run --mode dev, refused for its settings (exit 2)",
            [*cli, "run", "--mode", "dev", "--symbol", "BTCUSDT"],
            1.0,
            env=(*bot_env, ("TESSERA_RISK__MAX_LEVERAGE", "3")),
            code=2,
        ),
        # a whole dev bot: the embedded simulator loads the bundled replay, the bot starts on
        # SQLite (fsync per commit), warms up, trades 1 s of 1s bars, stops gracefully
        Case(
            "tessera run --mode dev --duration 1 (embedded simulator, whole run)",
            [
                *cli,
                "--metrics-port",
                "0",
                "run",
                "--mode",
                "dev",
                "--no-ingest",
                "--duration",
                "1",
                "--strategy",
                "sma_cross:fast=2,slow=3,qty=0.001",
                "--interval",
                "1s",
            ],
            None,
            env=bot_env,
        ),
    ]


def run_once(case: Case, src: str | None) -> Sample:
    """One run: wall and child CPU seconds (and the engine's seconds); an exit code other
    than the case's is an error."""
    argv = case.argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(case.env)
    for key, value in case.env:
        if key == "TESSERA_DATA_DIR":
            shutil.rmtree(value, ignore_errors=True)
    if src:
        env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=RUN_TIMEOUT_S,  # on expiry subprocess.run kills the child and raises
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != case.code:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found = ENGINE_LINE.search(proc.stdout + proc.stderr)
    return Sample(wall, cpu, float(found.group(1)) if found else None)


def fmt(samples: list[Sample]) -> str:
    walls = [s.wall for s in samples]
    cell = f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})"
    return f"{cell} | {statistics.median(s.cpu for s in samples):.2f}"


def engine_note(samples: list[Sample]) -> str:
    engines = [s.engine for s in samples if s.engine is not None]
    if not engines:
        return ""
    rest = [s.wall - s.engine for s in samples if s.engine is not None]
    return (
        f" engine {statistics.median(engines):.2f} ({min(engines):.2f}–{max(engines):.2f}),"
        f" rest of the process {statistics.median(rest):.2f} ({min(rest):.2f}–{max(rest):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=7, help="measured runs per case (>= 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per case first")
    parser.add_argument("--all", action="store_true", help="also every other command's --help")
    parser.add_argument(
        "--baseline", type=Path, help="src folder of the code to compare with (paired runs)"
    )
    parser.add_argument("--only", help="run only the cases whose label matches this regex")
    args = parser.parse_args()
    if args.n < 5:
        parser.error("-n must be at least 5: a median of fewer runs is noise")
    if args.baseline and not (args.baseline / "tessera" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no tessera package there (give its src)")
    versions: list[tuple[str, str | None]] = [("current", None)]
    if args.baseline:
        versions.insert(0, ("baseline", str(args.baseline.resolve())))
    load = f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.n} runs per case "
          f"after {args.warmup} warm-up run(s); {load}", flush=True)  # fmt: skip
    if args.baseline:
        print(f"baseline: PYTHONPATH={args.baseline}; paired, interleaved, alternating first")
    print()
    head = " | ".join(f"{v}: median (min–max) s | CPU s" for v, _ in versions)
    print(f"| command | {head} | target s |")
    print("|---|" + "---:|---:|" * len(versions) + "---:|")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        chosen = [c for c in cases(Path(tmp), args.all) if re.search(args.only or "", c.label)]
        if not chosen:
            parser.error(f"--only {args.only!r} matches no case")
        for case in chosen:
            samples: dict[str, list[Sample]] = {v: [] for v, _ in versions}
            for _ in range(args.warmup):
                for _, src in versions:
                    run_once(case, src)
            for i in range(args.n):
                order = versions if i % 2 == 0 else versions[::-1]
                for name, src in order:
                    samples[name].append(run_once(case, src))
            cells = " | ".join(fmt(samples[v]) for v, _ in versions)
            target = f"{case.target_s:.1f}" if case.target_s else "–"
            print(f"| `{case.label}` | {cells} | {target} |", flush=True)
            if case.engine:
                for name, _ in versions:
                    print(f"  {name}:{engine_note(samples[name])}", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
