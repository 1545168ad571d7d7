"""The simulator's Binance USDⓈ-M futures market (``/fapi``), next to spot's ``/api/v3``.

Why a package: USDⓈ-M shares the replay, the book, the matching of our orders and the gateway
with spot (`tessera.sim.server`, `state`, `matching_core`, `rest`) but has its own exchangeInfo,
mark prices, margin accounts and wire spellings. Modules: `market` (loading a USDⓈ-M recording
with the fapi exchangeInfo and brackets; mark prices), `rest` (public ``/fapi/v1`` endpoints).

    sim = usdm_simulator(speed=None)          # the bundled BTCUSDT slice
    async with sim: ...                       # ccxt binanceusdm with urls -> sim.rest_url
"""

from __future__ import annotations

from typing import Any

from tessera.sim.market import SimMarket
from tessera.sim.server import ExchangeSimulator
from tessera.sim.usdm.market import usdm_market
from tessera.sim.usdm.rest import UsdmPublicApi

__all__ = ["UsdmPublicApi", "usdm_market", "usdm_simulator"]


def usdm_simulator(market: SimMarket | None = None, **kwargs: Any) -> ExchangeSimulator:
    """An `ExchangeSimulator` replaying ``market`` (default: the bundled USDⓈ-M recording)
    with the ``/fapi/v1`` public endpoints; ``kwargs`` go to `ExchangeSimulator`."""
    sim = ExchangeSimulator(market if market is not None else usdm_market(), **kwargs)
    sim.usdm = UsdmPublicApi(sim)  # type: ignore[attr-defined]
    return sim
