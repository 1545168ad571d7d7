"""freqtrade's backtesting of SmaCross(10, 30) on bench_backtest.py's bars, offline, measured.

Usage:
    .venv/bin/python bench/peers/freqtrade_backtest/ft_backtest.py BARS.parquet [--runs 1]

What a run is (the freqtrade side of bench/bench_backtest.py, issue 20's "the peer users pick
most"):
- the bars (bench_backtest.py's seeded random walk, the Parquet file the Tessera side reads)
  written once as freqtrade's BTC/USDT 1m spot feather file by freqtrade's own data handler,
  in a fresh temporary datadir (not timed, as the Parquet file is not timed on our side);
- the markets from `tessera sim serve` (its bundled Binance spot exchangeInfo), started once
  and pointed at by the config's ``exchange.ccxt_config.urls.api`` — the way a freqtrade user
  points freqtrade at the simulator (tests/sim/test_freqtrade_client.py); nothing else of the
  run touches the network (offline_backtest.py allows loopback sockets only);
- config.json here (spot, one trade at a time, all-in: stake ``unlimited`` of the 10,000 USDT
  wallet, fee 1 bp a side) and strategies/SmaCross.py (Tessera's SmaCross rules, bit-identical
  averages, signals fill at the next candle's open);
- `freqtrade backtesting --cache none` (a repeated run is computed again, not read from
  freqtrade's result cache) in bench/.venv-freqtrade (`make peers`), timed as a whole process
  from the outside (wall and CPU seconds, peak RSS of the process tree), with freqtrade's
  phases timed from the inside.

Needs our venv (it starts `tessera sim serve`) and psutil for the peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from freqtrade_venv import VENV  # noqa: E402

STRATEGY = "SmaCross"


def timeout_s(bars: int) -> float:
    """A whole run's ceiling, grown with the bars: 120 s of start-up plus 3 ms a bar (freqtrade
    took 0.16 ms of CPU and up to 0.48 ms of wall a bar at a load of 12 on 2 cores)."""
    return 120.0 + 3e-3 * bars


def measure(
    cmd: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` as a whole process: wall and CPU seconds, peak RSS, exit code, stderr.

    CPU seconds (user + system of the process and the children it waited for, from
    ``getrusage(RUSAGE_CHILDREN)`` before and after) are less at the mercy of a loaded machine
    than wall seconds. The peak RSS is the largest sum over the process tree, sampled every
    0.1 s with psutil (this file is run from our venv, which has it). Both sides of
    bench_backtest.py's whole-process comparison are measured by this one function. A process
    still running after ``timeout`` seconds is killed with its children, and RuntimeError
    raised.
    """
    import resource
    import threading

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    errors: list[bytes] = []
    assert proc.stderr is not None
    stream = proc.stderr
    reader = threading.Thread(target=lambda: errors.append(stream.read()))
    reader.start()
    peak = 0.0
    root = psutil.Process(proc.pid)
    deadline = None if timeout is None else t0 + timeout
    while proc.poll() is None:
        if deadline is not None and time.perf_counter() > deadline:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    child.kill()
            proc.kill()
            proc.wait()
            reader.join()
            raise RuntimeError(f"{cmd[0]} still running after {timeout:.0f} s: killed")
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        peak = max(peak, total / 2**20)
        time.sleep(0.1)
    code = proc.wait()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reader.join()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak,
        "code": code,
        "stderr": b"".join(errors).decode(errors="replace"),
    }


def venv_python() -> Path | None:
    """freqtrade's venv python, or None when `make peers` has not made it."""
    py = VENV / "bin" / "python"
    return py if (VENV / "bin" / "freqtrade").exists() else None


class FreqtradeBacktest:
    """The simulator and a prepared freqtrade workdir; `run()` as many times as wanted.

    A context manager: the simulator is stopped and the temporary workdir removed on exit,
    also when a run fails.
    """

    def __init__(self, bars: Path) -> None:
        py = venv_python()
        if py is None:
            raise RuntimeError(f"{VENV} missing: run `make peers`")
        self.py = py
        self.bars = bars
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._sim: subprocess.Popen[str] | None = None

    def __enter__(self) -> FreqtradeBacktest:
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="tessera-bench-freqtrade-")
            self.wd = Path(self._tmp.name)
            rest = self._start_sim()
            t0 = time.perf_counter()
            self.config = self._prepare(rest)
            print(
                f"freqtrade: bars written as feather in {time.perf_counter() - t0:.1f} s, "
                f"markets from tessera sim serve at {rest}",
                file=sys.stderr,
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sim is not None:
            self._sim.send_signal(signal.SIGTERM)
            try:
                self._sim.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self._sim.kill()
                self._sim.wait()
            self._sim = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _start_sim(self) -> str:
        """`tessera sim serve` on a free port (our venv's command); its REST address."""
        tessera = Path(sys.executable).parent / "tessera"
        self._sim = subprocess.Popen(
            [str(tessera), "--metrics-port", "0", "sim", "serve", "--port", "0", "--start-now"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
            cwd=HERE.parents[2],
        )
        assert self._sim.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self._sim.stdout.readline()
            if not line and self._sim.poll() is not None:
                break
            lines.append(line)
            m = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", line)
            if m:
                # the rest of its output is not read: keep the pipe from filling up
                threading_drain(self._sim)
                return m.group(1)
        raise RuntimeError("tessera sim serve did not start:\n" + "".join(lines[-30:]))

    def _prepare(self, rest: str) -> Path:
        strategies = self.wd / "user_data" / "strategies"
        strategies.mkdir(parents=True)
        shutil.copy(HERE / "strategies" / f"{STRATEGY}.py", strategies)
        subprocess.run(
            [
                str(self.py),
                str(HERE / "offline_backtest.py"),
                "convert",
                str(self.bars),
                str(self.wd / "data"),
            ],
            check=True,
        )
        config = json.loads((HERE / "config.json").read_text())
        config.pop("$comment", None)
        config["datadir"] = str(self.wd / "data")
        config["user_data_dir"] = str(self.wd / "user_data")
        config["exchange"]["ccxt_config"]["urls"]["api"] = {
            "public": f"{rest}/api/v3",
            "private": f"{rest}/api/v3",
        }
        path = self.wd / "config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        """One `freqtrade backtesting` process: seconds, peak RSS, trades, phase seconds.

        ``timeout``: kill it after that many seconds (`timeout_s` of the bars is a fair one).
        """
        out = self.wd / "run.json"
        out.unlink(missing_ok=True)
        cmd = [
            str(self.py),
            str(HERE / "offline_backtest.py"),
            "run",
            str(out),
            "--",
            "backtesting",
            "--config", str(self.config),
            "--userdir", str(self.wd / "user_data"),
            "--datadir", str(self.wd / "data"),
            "--strategy", STRATEGY,
            "--cache", "none",
            "--no-color",
            "--logfile", str(self.wd / "freqtrade.log"),
        ]  # fmt: skip
        m = measure(cmd, cwd=self.wd, timeout=timeout)
        if m["code"] != 0:
            raise RuntimeError(
                f"freqtrade backtesting failed (exit {m['code']}):\n{m['stderr'][-4000:]}"
            )
        doc = json.loads(out.read_text())
        t = doc["timings"]
        phases = {
            "startup": t["backtesting_start"] - t["process_start"],
            "data_load": t["data_loaded"] - t["backtesting_start"],
            "indicators_signals": t["loop_start"] - t["data_loaded"],
            "loop": t["loop_end"] - t["loop_start"],
            "results": t["results_done"] - t["loop_end"],
            "exit": t["end"] - t["results_done"],
        }
        return {
            "engine": f"freqtrade {doc['freqtrade']}",
            "seconds": m["seconds"],
            "cpu_seconds": m["cpu_seconds"],
            "peak_rss_mb": m["peak_rss_mb"],
            "phases": phases,
            **doc["backtest"],
        }


def threading_drain(proc: subprocess.Popen[str]) -> None:
    """Read a child's remaining output in a daemon thread (it would block on a full pipe)."""
    import threading

    assert proc.stdout is not None
    stream = proc.stdout
    threading.Thread(target=lambda: stream.read(), daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("bars", type=Path)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    with FreqtradeBacktest(args.bars) as ft:
        for _ in range(args.runs):
            print(json.dumps(ft.run()), flush=True)


if __name__ == "__main__":
    main()
