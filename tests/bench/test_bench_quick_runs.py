"""The benchmark scripts run to the end in a tiny quick mode, print their tables, and leave
nothing behind.

`make bench` and the commands in docs/benchmarks.md are run by hand, rarely, on a quiet machine;
a bench that broke since (an API renamed under it, a wait that no longer covers the work) was
found only then. Each test here runs one script as a user would, with the smallest sizes its
options allow, and checks what a user relies on: exit 0, the rows of its table, and that every
temporary folder it made is gone (``TMPDIR`` points at an empty folder of the test's own, which
the script and its child processes inherit). No figure is asserted: the machine is shared.

The ingest bench also gets its simulator-readiness wait checked: a simulator that dies while
loading fails the bench at once with the simulator's own error, not after the deadline.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def run_bench(script: str, args: list[str], tmp_path: Path, timeout: float = 240) -> str:
    """Run ``bench/<script>`` with ``args``; its stdout. Fails if it exits non-zero or leaves
    anything in its private temporary folder."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TMPDIR"] = str(tmp)
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp.iterdir()) == [], "temporary files left behind"
    return proc.stdout


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_startup_bench_times_a_command_five_times_and_prints_its_row(
    tmp_path: Path,
) -> None:
    out = run_bench("bench_startup.py", ["-n", "5", "--warmup", "0", "--only", "version"], tmp_path)
    assert "| `tessera --version` |" in out
    assert "load average at the end" in out
    assert "| `tessera --help` |" not in out  # --only kept the one case


def test_the_startup_bench_times_a_refused_bot_start_by_its_exit_code_2(tmp_path: Path) -> None:
    out = run_bench("bench_startup.py", ["-n", "5", "--warmup", "0", "--only", "refused"], tmp_path)
    assert "| `tessera run --mode dev, refused for its settings (exit 2)` |" in out


def test_the_reconcile_bench_times_a_pass_with_new_trades_and_one_without(
    tmp_path: Path,
) -> None:
    out = run_bench("bench_reconcile.py", ["--fills", "3", "--rounds", "2", "--sqlite"], tmp_path)
    assert "round 1: 3 fills stored" in out and "round 2: 6 fills stored" in out
    assert "with 3 new trades" in out and "(trade cursor: True)" in out
    assert "load average at the end" in out


def test_the_reconcile_bench_times_the_ledger_side_as_the_history_grows(tmp_path: Path) -> None:
    out = run_bench("bench_reconcile.py", ["--ledger", "50", "--sqlite"], tmp_path)
    assert "50 fills stored" in out and "reading every fill" in out
    assert "FillTotals, first read" in out and "a later read with nothing new" in out


def test_the_perpetual_backtest_bench_prints_each_round_and_paired_ratios(
    tmp_path: Path,
) -> None:
    out = run_bench("bench_perp_backtest.py", ["--bars", "3000", "--repeat", "2"], tmp_path)
    assert "round 1/2:" in out and "round 2/2:" in out
    perp = next(line for line in out.splitlines() if line.startswith("perp long-only"))
    assert " to " in perp and "%" in perp  # median (min to max) of the paired ratios


@pytest.mark.slow
def test_the_models_bench_trains_in_interleaved_rounds_and_gives_the_median_time(
    tmp_path: Path,
) -> None:
    out = run_bench(
        "bench_models.py", ["--kinds", "linear", "--bars", "8000", "--repeat", "2"], tmp_path
    )
    assert "round 1/2 linear" in out and "round 2/2 linear" in out
    assert "median (min-max) of 2" in out


@pytest.mark.slow
def test_the_features_bench_pairs_tessera_with_talib_and_prints_the_round(
    tmp_path: Path,
) -> None:
    args = ["--rows", "5000", "--rounds", "1", "--pairs", "2", "--engines", "tessera,talib"]
    out = run_bench(
        "bench_features.py", [*args, "--no-live", "--no-memory", "--no-first-call"], tmp_path
    )
    assert "round 1/1 (s): tessera " in out
    assert "| tessera | " in out and "| talib | " in out


@pytest.mark.slow
def test_the_ingest_bench_interleaves_clients_and_stops_every_simulator(tmp_path: Path) -> None:
    args = ["--messages", "3000", "--repeat", "2", "--clients", "bare,tessera", "--streams", "1"]
    out = run_bench("bench_ingest.py", args, tmp_path)
    assert "1 stream round 1/2 bare:" in out and "1 stream round 2/2 tessera:" in out
    assert "| 1 stream | tessera |" in out and "| 1 stream | bare |" in out


@pytest.mark.slow
def test_the_simulator_send_bench_runs_both_clients_on_synthetic_frames(tmp_path: Path) -> None:
    args = ["--synthetic", "2000", "--no-real", "--repeat", "1", "--clients", "bare,raw"]
    out = run_bench("bench_sim_send.py", args, tmp_path)
    assert out.count("| synthetic, ") == 4  # 2 scenarios x 2 clients


@pytest.mark.slow
def test_the_optimize_bench_runs_a_two_trial_study_and_removes_its_strategy_folder(
    tmp_path: Path,
) -> None:
    args = ["--trials", "2", "--workers", "1", "--strategies", "my_rsi"]
    out = run_bench("bench_optimize.py", [*args, "--engines", "processes", "--no-cross"], tmp_path)
    assert "tessera processes (workers=1)" in out and "my_rsi" in out


def test_a_simulator_that_dies_while_loading_fails_the_ingest_bench_at_once_with_its_error(
    tmp_path: Path,
) -> None:
    bench = load_bench("bench_ingest")
    missing = tmp_path / "no-such-recording.gz"
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="simulator exited") as err:
        bench.start_sim(missing, bench.free_port(), 500_000, tmp_path / "sim.log")
    assert time.monotonic() - t0 < bench.sim_deadline_s(500_000) / 2
    assert "recording not found" in str(err.value)  # the simulator's own message, passed on


def test_the_ingest_bench_waits_longer_for_a_larger_recording() -> None:
    bench = load_bench("bench_ingest")
    # 500k frames took 10.4 s to load on a quiet machine and 54 s at load 10: both fit
    assert bench.sim_deadline_s(500_000) > 54 * 2
    assert bench.sim_deadline_s(5_000_000) > 10 * bench.sim_deadline_s(500_000) / 2
    assert bench.client_timeout_s(5_000_000) > bench.client_timeout_s(500_000)
