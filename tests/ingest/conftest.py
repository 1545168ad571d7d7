from __future__ import annotations

from pathlib import Path

import pytest

from tessera.sim.recording import Recording, load_recording

SPOT = Path(__file__).resolve().parents[2] / "samples" / "binance-raw-ws" / "spot"


@pytest.fixture(scope="session")
def btc_first_file() -> Path:
    return SPOT / "btcusdt_20240808.gz"


def fresh_recording(*paths: Path) -> Recording:
    return load_recording(paths)
