"""Fixtures for the simulator tests: a shared real market and a simulator on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sim_helpers import BTC_0808

from tessera.sim import ExchangeSimulator, SimMarket


@pytest.fixture(scope="session")
def btc_market() -> SimMarket:
    """Shared: a market is immutable (simulators keep their own state)."""
    return SimMarket.from_recording([BTC_0808])


@pytest.fixture
async def sim(btc_market: SimMarket) -> AsyncIterator[ExchangeSimulator]:
    async with ExchangeSimulator(btc_market, speed=None) as s:
        yield s
