"""`make demo` runs `python -m tessera.demo`: the README's first command must keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_demo_runs_end_to_end_on_the_bundled_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    out = tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, "-m", "tessera.demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for stage in ("live ingest", "sweep", "model", "backtest model_signal", "backtest buy & hold"):
        assert stage in res.stdout, stage
    report = (out / "backtest_report.html").read_text()
    assert report.count('class="plotly-graph-div"') == 4
    assert sorted(p.name for p in (out / "models" / "demo-lightgbm").iterdir()) == [
        "v0001",
        "v0002",
    ]
