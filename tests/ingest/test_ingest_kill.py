"""`tessera ingest` killed with SIGKILL mid-run, then restarted: every trade stored exactly once.

The real BTCUSDT recording is replayed at 20x by the simulator (in this process, over real
sockets); the ingest runs as a separate process, as in production. The kill loses at most the
unflushed batch, never a file; the restarted process resumes from the newest stored trade id
and backfills the hole (the lost batch and the trades sent while it was down) over REST.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_ingest_e2e import SPOT, recorded_trades, stored_trades

from tessera.data.store import ParquetStore
from tessera.sim import ExchangeSimulator
from tessera.sim.recording import load_recording
from tessera.sim.server import SimulatorThread


def _ingest(tmp_path: Path, sim: ExchangeSimulator) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATA_DIR=str(tmp_path / "data"),
        TESSERA_DATA__FLUSH_INTERVAL_S="1.0",
        TESSERA_METRICS_PORT="0",
    )
    cmd = [sys.executable, "-m", "tessera.cli", "ingest", "--symbol", "BTCUSDT"]
    cmd += ["--stream", "trade", "--ws-url", sim.ws_url, "--rest-url", sim.rest_url]
    cmd += ["--no-progress"]
    return subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_kill_9_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = SPOT / "btcusdt_20240808.gz"
    sim = ExchangeSimulator(load_recording([path]), speed=20.0, loop_replay=False)
    store_root = tmp_path / "data" / "store"
    with SimulatorThread(sim) as running:
        first = _ingest(tmp_path, running)
        deadline = time.monotonic() + 60
        files: list[Path] = []
        while time.monotonic() < deadline and len(files) < 2:
            time.sleep(0.2)
            files = list(store_root.rglob("dataset=trades/**/*.parquet"))
        assert len(files) >= 2, "the first ingest wrote nothing"
        time.sleep(0.7)  # mid-batch
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        # what the killed process left is complete Parquet, nothing half-written
        for f in store_root.rglob("*.parquet"):
            pq.read_table(f)
        written_before_restart = len(stored_trades(ParquetStore(store_root), "BTCUSDT"))
        time.sleep(1.5)  # the market moves on while we are down

        second = _ingest(tmp_path, running)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not sim.replay_finished.is_set():
                time.sleep(0.2)
            assert sim.replay_finished.is_set(), "the replay did not finish"
            time.sleep(3.0)  # last flush and backfills
        finally:
            second.send_signal(signal.SIGTERM)
            out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out[-3000:]
        assert "gap filled over REST" in out  # the hole was real, and filled

    store = ParquetStore(store_root)
    got = stored_trades(store, "BTCUSDT")  # asserts: no duplicate trade id
    want = recorded_trades(path)
    assert 0 < written_before_restart < len(want)
    assert got == want
