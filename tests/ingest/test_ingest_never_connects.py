"""`tessera ingest` that never reaches the websocket exits 1 and says so, instead of "complete".

Nothing listens on the port it is given (a port just bound and released), so every connect is
refused; the run ends at ``--duration`` with no row written and no data lost, which used to be
reported as a successful, empty ingest (exit 0).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_ingest_that_never_connects_exits_1_naming_the_url(tmp_path: Path) -> None:
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), TESSERA_METRICS_PORT="0", COLUMNS="200")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "ingest",
            "--symbol",
            "BTCUSDT",
            "--stream",
            "trade",
            "--ws-url",
            f"ws://127.0.0.1:{port}",
            "--rest-url",
            f"http://127.0.0.1:{port}",
            "--duration",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    assert "Traceback" not in res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert f"ingest never connected to ws://127.0.0.1:{port}" in last
    assert "ingest complete" not in res.stdout
