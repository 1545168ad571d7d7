"""Fixtures of the optimisation tests: a short slice of the real BTC bars bundled in samples/
(``btc_series`` of tests/conftest.py, shared with tests/backtest) for fast studies, and the
default backtest config (the costs ``tessera backtest`` applies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.backtest import BarSeries
from tessera.config import BacktestConfig

SLICE_BARS = 3000  # about two days of 1-minute bars: a trial takes a few milliseconds


@pytest.fixture(scope="session")
def btc_slice(btc_series: BarSeries) -> BarSeries:
    """The first `SLICE_BARS` real bars: enough for a strategy to trade, quick to search."""
    return btc_series.slice(0, SLICE_BARS)


@pytest.fixture
def backtest_config() -> BacktestConfig:
    """The defaults of ``tessera backtest``: 10,000 USDT, its fees and slippage."""
    return BacktestConfig()


@pytest.fixture
def env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working folder whose data dir (``TESSERA_DATA_DIR``) is inside it, for the
    end-to-end CLI tests."""
    monkeypatch.setenv("TESSERA_DATA_DIR", str(clean_env / "data"))
    return clean_env


@pytest.fixture(autouse=True)
def _registries_as_before(clean_registry: None) -> None:
    """Several tests here load user strategy and objective files in-process: each leaves the
    registries as it found them (see ``clean_registry`` in tests/conftest.py)."""
