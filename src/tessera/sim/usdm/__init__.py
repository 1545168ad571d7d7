"""The simulator's Binance USDⓈ-M futures market (``/fapi``), next to spot's ``/api/v3``.

Why a package: USDⓈ-M shares the replay, the book, the matching of our orders and the gateway
with spot (`tessera.sim.server`, `state`, `matching_core`, `trading`, `rest`) but has its own
exchangeInfo, mark prices, margin accounts and wire spellings. Modules: `market` (a USDⓈ-M
recording with the fapi exchangeInfo and brackets; mark prices), `rest` (public ``/fapi/v1``
endpoints), `trading` (signed ``/fapi`` trading, one-way positions, user data, funding),
`bars` (bar mode: perpetual candles with their mark klines and funding history).

    venue = usdm_venue(speed=None, trading=usdm_trading_config())  # the bundled BTCUSDT slice
    async with venue.sim as sim: ...      # ccxt binanceusdm with its fapi urls -> sim.rest_url
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.sim.market import SimMarket
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingConfig
from tessera.sim.usdm.bars import UsdmBarMarket, usdm_bar_market
from tessera.sim.usdm.mark_stream import serve_mark_streams
from tessera.sim.usdm.market import usdm_market
from tessera.sim.usdm.rest import UsdmPublicApi
from tessera.sim.usdm.trading import UsdmTradingEngine, usdm_trading_config

__all__ = [
    "UsdmBarMarket",
    "UsdmPublicApi",
    "UsdmTradingEngine",
    "UsdmVenue",
    "usdm_bar_market",
    "usdm_market",
    "usdm_trading_config",
    "usdm_venue",
]


@dataclass(frozen=True, slots=True)
class UsdmVenue:
    sim: ExchangeSimulator
    public: UsdmPublicApi
    engine: UsdmTradingEngine | None


def usdm_venue(
    market: SimMarket | None = None, *, trading: TradingConfig | None = None, **kwargs: Any
) -> UsdmVenue:
    """An `ExchangeSimulator` replaying ``market`` (default: the bundled USDⓈ-M recording)
    with the ``/fapi/v1`` public endpoints, and signed trading when ``trading`` is given
    (`usdm_trading_config` has USDⓈ-M's fees); ``kwargs`` go to `ExchangeSimulator`."""
    sim = ExchangeSimulator(market if market is not None else usdm_market(), **kwargs)
    public = UsdmPublicApi(sim)
    serve_mark_streams(sim.market, public.marks)  # @markPrice(@1s) as premiumIndex says
    sim.pass_hooks.append(public.on_pass)  # a looped replay's later passes: marks moved too
    engine = UsdmTradingEngine(sim, public, trading) if trading is not None else None
    return UsdmVenue(sim, public, engine)
