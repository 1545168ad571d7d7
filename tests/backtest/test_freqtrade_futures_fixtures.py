"""The freqtrade futures cross-check's fixtures are what freqtrade prints today.

`tests/backtest/test_freqtrade_futures_crosscheck.py` compares our perpetual backtest with
freqtrade's on the committed output of `bench/peers/freqtrade_futures_run.py` (so that file's
tests need no freqtrade). Here the command written in each fixture is run again in
freqtrade's own venv (pinned freqtrade 2026.9, made by ``make peers``), offline, and its
document must equal the committed one field for field: a fixture edited by hand, a change in
how the data is laid out for freqtrade, or a drift of freqtrade's numbers fails here instead
of leaving the cross-check comparing against a stale figure.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_required import missing

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "tests" / "backtest" / "fixtures").glob("freqtrade_futures_*.json"))
VENV_PYTHON = REPO / "bench" / ".venv-freqtrade" / "bin" / "python"


def _venv() -> None:
    """Fails in CI (``make test`` makes the venv first), skips elsewhere."""
    if VENV_PYTHON.exists():
        return
    missing(f"{VENV_PYTHON} missing: run `make peers` (creates freqtrade's venv, ~70 s)")


def test_there_are_three_committed_freqtrade_futures_fixtures() -> None:
    assert [p.stem for p in FIXTURES] == [
        "freqtrade_futures_mark1h",
        "freqtrade_futures_mark8h",
        "freqtrade_futures_mark8h_25x",
    ]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_freqtrade_prints_the_committed_futures_fixture_again(fixture: Path) -> None:
    _venv()
    committed: dict[str, Any] = json.loads(fixture.read_text())
    script, *args = shlex.split(committed["command"])
    assert script == "bench/peers/freqtrade_futures_run.py", committed["command"]
    res = subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    fresh = json.loads(res.stdout)
    assert fresh["freqtrade"] == "2026.9"
    differing = sorted(
        k for k in committed.keys() | fresh.keys() if committed.get(k) != fresh.get(k)
    )
    assert not differing, f"{fixture.name}: {differing} differ from freqtrade's output today"
